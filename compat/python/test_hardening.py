"""What a careless or hostile client must not be able to do, seen through real clients:
idempotent retries across a kill -9, internal topics, keyless records on compacted topics,
configs outside Kafka's ranges, oversized partition counts, and pipelined commits."""
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

from helpers import (admin, consume_n, create_topic, kafka_error, producer, unique,
                     wait_for_leaders, WAIT_S)


def produce_one(p, topic, **kw):
    """Produce one record and return the delivery error (None when delivered)."""
    result = {}

    def cb(err, msg):
        result["err"] = err

    p.produce(topic, on_delivery=cb, **kw)
    p.flush(30)
    assert "err" in result, "no delivery report within 30s"
    return result["err"]


def test_idempotent_producer_across_kill9_stores_every_record_once(restartable_broker):
    """An idempotent producer keeps sending while the broker is killed -9 and restarted.
    Batches written before the kill whose answers were lost are retried; the broker must
    recognise them from its rebuilt producer state, so every record is stored exactly once
    and in order."""
    b = restartable_broker
    t = create_topic(b.bootstrap, unique("idem-kill"), partitions=1)
    p = producer(b.bootstrap, **{"enable.idempotence": True, "acks": "all",
                                 "linger.ms": 2, "batch.num.messages": 50,
                                 "message.timeout.ms": 60000,
                                 "retry.backoff.ms": 100})
    n = 150000
    errors, delivered = [], []
    kill_at = {n // 3, 2 * n // 3}

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append(int(msg.value()))

    killers = []
    for i in range(n):
        while True:
            try:
                p.produce(t, value=str(i).encode(), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        # The local queue (100k records) fills, so the loop runs at the broker's pace
        # and requests are in flight at each kill.
        p.poll(0)
        if i in kill_at:
            # kill -9 with batches in flight, twice over the run
            for k in killers:
                k.join(timeout=60)
            killers.append(threading.Thread(target=lambda: b.restart(hard=True)))
            killers[-1].start()
    for k in killers:
        k.join(timeout=60)
    assert p.flush(90) == 0, "records left undelivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert sorted(delivered) == list(range(n))

    got = consume_n(b.bootstrap, t, [0], n, timeout=60)
    values = [int(m.value()) for m in got]
    assert values == list(range(n)), "every record once, in order"
    assert [m.offset() for m in got] == list(range(n))


def ensure_offsets_topic(bootstrap):
    """The internal topic exists once a group has committed."""
    from confluent_kafka import TopicPartition
    from helpers import consumer
    t = create_topic(bootstrap, unique("warm"), partitions=1)
    c = consumer(bootstrap, **{"group.id": unique("warm")})
    try:
        c.commit(offsets=[TopicPartition(t, 0, 1)], asynchronous=False)
    finally:
        c.close()


def test_clients_cannot_write_to_consumer_offsets(broker):
    ensure_offsets_topic(broker.bootstrap)
    a = admin(broker.bootstrap)
    p = producer(broker.bootstrap, **{"message.timeout.ms": 10000})
    err = produce_one(p, "__consumer_offsets", key=b"forged", value=b"commit", partition=0)
    assert err is not None and err.code() == KafkaError.TOPIC_EXCEPTION, err

    fs = a.delete_topics(["__consumer_offsets"], operation_timeout=10)
    with pytest.raises(KafkaException) as e:
        fs["__consumer_offsets"].result(timeout=20)
    assert kafka_error(e.value).code() == KafkaError.TOPIC_EXCEPTION


def test_compacted_topics_refuse_keyless_records(broker):
    t = create_topic(broker.bootstrap, unique("compacted"), partitions=1,
                     config={"cleanup.policy": "compact"})
    p = producer(broker.bootstrap, **{"message.timeout.ms": 10000, "retries": 0})
    err = produce_one(p, t, value=b"no key")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    assert produce_one(p, t, key=b"k", value=b"keyed") is None


def test_topic_configs_outside_kafkas_ranges_are_refused(broker):
    a = admin(broker.bootstrap)
    name = unique("tiny-seg")
    fs = a.create_topics([NewTopic(name, 1, 1, config={"segment.bytes": "14"})],
                         request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[name].result(timeout=20)
    err = kafka_error(e.value)
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "segment.bytes" in err.str() and "1048576" in err.str(), err.str()

    t = create_topic(broker.bootstrap, unique("ratio"), partitions=1)
    res = ConfigResource(ResourceType.TOPIC, t, set_config={"min.cleanable.dirty.ratio": "2"})
    with pytest.raises(KafkaException) as e:
        a.alter_configs([res], request_timeout=15)[res].result(timeout=20)
    assert kafka_error(e.value).code() == KafkaError.INVALID_CONFIG


def test_huge_partition_counts_are_refused_at_once(broker):
    a = admin(broker.bootstrap)
    name = unique("huge")
    started = time.monotonic()
    fs = a.create_topics([NewTopic(name, 100_000, 1)], request_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[name].result(timeout=40)
    assert kafka_error(e.value).code() == KafkaError.POLICY_VIOLATION
    assert time.monotonic() - started < 10
    md = a.list_topics(timeout=10)
    assert name not in md.topics

    t = create_topic(broker.bootstrap, unique("grow"), partitions=1)
    fs = a.create_partitions([NewPartitions(t, 50_001)], request_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[t].result(timeout=40)
    assert kafka_error(e.value).code() == KafkaError.POLICY_VIOLATION


def test_pipelined_commits_keep_their_order(broker):
    """librdkafka pipelines async commits on one connection; the last one must win."""
    from confluent_kafka import TopicPartition
    t = create_topic(broker.bootstrap, unique("commits"), partitions=1)
    wait_for_leaders(broker.bootstrap, t, 1)
    group = unique("committer")
    from helpers import consumer
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        for offset in range(1, 101):
            c.commit(offsets=[TopicPartition(t, 0, offset)], asynchronous=True)
        c.commit(offsets=[TopicPartition(t, 0, 101)], asynchronous=False)
        got = c.committed([TopicPartition(t, 0)], timeout=WAIT_S)
        assert got[0].offset == 101
    finally:
        c.close()
