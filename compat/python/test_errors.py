"""Error answers: exact Kafka error codes (and messages where clients show them)."""
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import kafka_wire
from helpers import admin, consumer, create_topic, leader_conn, producer, unique

# Error codes from the Kafka protocol.
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38


def rf_too_large_message(is_fjord, rf, brokers):
    """The exact refusal text. Fjord's is the one older ZooKeeper-mode Kafka used; Apache
    Kafka 4.x (KRaft controller) words it differently, and against it we check its own
    text, so both are exact."""
    if is_fjord:
        return f"Replication factor: {rf} larger than available brokers: {brokers}."
    return (f"Unable to replicate the partition {rf} time(s): The target replication "
            f"factor of {rf} cannot be reached because only {brokers} broker(s) are "
            f"registered.")


def create_error(bootstrap, new_topic):
    a = admin(bootstrap)
    fut = a.create_topics([new_topic], request_timeout=15)[new_topic.topic]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=20)
    return ei.value.args[0]


def test_invalid_topic_name(bootstrap):
    err = create_error(bootstrap, NewTopic("bad name!", 1, 1))
    assert err.code() == INVALID_TOPIC_EXCEPTION
    assert err.code() == KafkaError.TOPIC_EXCEPTION


def test_invalid_topic_name_too_long(bootstrap):
    err = create_error(bootstrap, NewTopic("x" * 250, 1, 1))
    assert err.code() == INVALID_TOPIC_EXCEPTION


def test_duplicate_create(bootstrap):
    t = create_topic(bootstrap, unique("err-dup"))
    err = create_error(bootstrap, NewTopic(t, 1, 1))
    assert err.code() == TOPIC_ALREADY_EXISTS
    assert err.str() == f"Topic '{t}' already exists."


def test_zero_partitions(bootstrap):
    err = create_error(bootstrap, NewTopic(unique("err-p0"), 0, 1))
    assert err.code() == INVALID_PARTITIONS


def test_negative_partitions_kafka_python(bootstrap):
    # librdkafka refuses < -1 locally, and -1 means "broker default"; kafka-python sends it.
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic
    from kafka.errors import InvalidPartitionsError
    ka = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        with pytest.raises(InvalidPartitionsError) as ei:
            ka.create_topics([KNewTopic(unique("err-pneg"), -5, 1)], raise_errors=True)
        assert ei.value.errno == INVALID_PARTITIONS
    finally:
        ka.close()


def test_replication_factor_too_large(bootstrap, is_fjord):
    # One more replica than the cluster has brokers.
    brokers = len(admin(bootstrap).list_topics(timeout=10).brokers)
    rf = brokers + 1
    t = unique(f"err-rf{rf}")
    err = create_error(bootstrap, NewTopic(t, 1, rf))
    assert err.code() == INVALID_REPLICATION_FACTOR
    assert err.str() == rf_too_large_message(is_fjord, rf, brokers)
    # and nothing was created
    md = admin(bootstrap).list_topics(timeout=10)
    assert t not in md.topics


def test_message_too_large_confluent(bootstrap):
    t = create_topic(bootstrap, unique("err-big"), config={"max.message.bytes": "1024"})
    p = producer(bootstrap, **{"message.max.bytes": 10_000_000, "compression.type": "none"})
    results = []
    p.produce(t, value=b"x" * 4096, partition=0,
              on_delivery=lambda err, msg: results.append(err))
    assert p.flush(30) == 0
    assert len(results) == 1 and results[0] is not None
    assert results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert results[0].code() == MESSAGE_TOO_LARGE
    # a small record to the same topic still works and is the first offset
    ok = []
    p.produce(t, value=b"small", partition=0, on_delivery=lambda err, msg: ok.append((err, msg)))
    assert p.flush(30) == 0
    assert ok[0][0] is None and ok[0][1].offset() == 0


def test_message_too_large_kafka_python(bootstrap):
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError
    t = create_topic(bootstrap, unique("err-big-kp"), config={"max.message.bytes": "1024"})
    kp = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=10_000_000, retries=0)
    try:
        fut = kp.send(t, value=b"y" * 4096, partition=0)
        with pytest.raises(MessageSizeTooLargeError) as ei:
            fut.get(timeout=20)
        assert ei.value.errno == MESSAGE_TOO_LARGE
    finally:
        kp.close(timeout=5)


def test_message_too_large_wire(bootstrap):
    t = create_topic(bootstrap, unique("err-big-wire"), config={"max.message.bytes": "1024"})
    c = leader_conn(bootstrap, t, 0)
    try:
        res = c.produce_v3(t, 0, kafka_wire.record_batch([b"z" * 4096]))
        assert res[(t, 0)][0] == MESSAGE_TOO_LARGE
        res = c.produce_v3(t, 0, kafka_wire.record_batch([b"small"]))
        assert res[(t, 0)] == (0, 0)
    finally:
        c.close()


def test_produce_to_missing_partition_confluent(bootstrap):
    t = create_topic(bootstrap, unique("err-p7"))
    p = producer(bootstrap, **{"message.timeout.ms": 10000})
    results = []
    p.produce(t, value=b"v", partition=7, on_delivery=lambda err, msg: results.append(err))
    p.flush(20)
    assert len(results) == 1 and results[0] is not None
    # librdkafka checks the partition against metadata and fails it locally
    assert results[0].code() == KafkaError._UNKNOWN_PARTITION


def test_produce_to_missing_partition_wire(bootstrap):
    t = create_topic(bootstrap, unique("err-p7-wire"))
    c = leader_conn(bootstrap, t, 0)
    try:
        res = c.produce_v3(t, 7, kafka_wire.record_batch([b"v"]))
        assert res[(t, 7)][0] == UNKNOWN_TOPIC_OR_PARTITION
        # the connection is still usable, and partition 0 works
        res = c.produce_v3(t, 0, kafka_wire.record_batch([b"v"]))
        assert res[(t, 0)] == (0, 0)
    finally:
        c.close()


def test_fetch_unknown_topic_wire(bootstrap):
    t = unique("err-nosuch")
    c = kafka_wire.Conn(bootstrap)
    try:
        res = c.fetch_v4(t, 0, 0, max_wait_ms=100)
        assert res[(t, 0)][0] == UNKNOWN_TOPIC_OR_PARTITION
        # a fetch never auto-creates
        md = admin(bootstrap).list_topics(timeout=10)
        assert t not in md.topics
    finally:
        c.close()


def test_fetch_missing_partition_wire(bootstrap):
    t = create_topic(bootstrap, unique("err-fetch-p9"))
    c = kafka_wire.Conn(bootstrap)
    try:
        res = c.fetch_v4(t, 9, 0, max_wait_ms=100)
        assert res[(t, 9)][0] == UNKNOWN_TOPIC_OR_PARTITION
    finally:
        c.close()


def test_consume_unknown_topic_confluent(bootstrap):
    # librdkafka reports nothing for an assign()ed topic that does not exist (it waits for it),
    # but its metadata requests say allow_auto_topic_creation=false, so the topic must not
    # appear, and no message may be delivered.
    t = unique("err-nosuch-c")
    c = consumer(bootstrap, **{"topic.metadata.refresh.interval.ms": 500})
    try:
        c.assign([TopicPartition(t, 0, 0)])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            assert m is None or m.error() is not None, "message from a nonexistent topic"
    finally:
        c.close()
    md = admin(bootstrap).list_topics(timeout=10)
    assert t not in md.topics
