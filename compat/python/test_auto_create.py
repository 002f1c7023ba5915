"""auto.create.topics.enable: on by default; off with --override (Fjord) or a second broker.

With KAFKA_BOOTSTRAP, the "disabled" test needs a second external broker started with
auto.create.topics.enable=false, named by KAFKA_BOOTSTRAP_NO_AUTOCREATE; skipped otherwise."""
import os
import time

import pytest
from confluent_kafka import KafkaError

from helpers import admin, produce_checked, producer, unique, WAIT_S

UNKNOWN_TOPIC_OR_PARTITION = 3


def test_produce_to_missing_topic_creates_it(bootstrap):
    t = unique("auto-on")
    assert t not in admin(bootstrap).list_topics(timeout=10).topics
    p = producer(bootstrap)
    delivered = produce_checked(p, t, [(b"k", b"first"), (b"k", b"second")])
    assert [m.offset() for m in delivered] == [0, 1]
    md = admin(bootstrap).list_topics(topic=t, timeout=10)
    assert md.topics[t].error is None
    assert len(md.topics[t].partitions) == 1  # num.partitions default is 1


def test_kafka_python_produce_to_missing_topic_creates_it(bootstrap):
    from kafka import KafkaProducer
    t = unique("auto-on-kp")
    kp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_block_ms=20000)
    try:
        meta = kp.send(t, value=b"v").get(timeout=20)
        assert (meta.topic, meta.partition, meta.offset) == (t, 0, 0)
    finally:
        kp.close(timeout=5)


def no_autocreate_bootstrap(broker, broker_factory):
    if broker.managed:
        return broker_factory(["auto.create.topics.enable=false"]).bootstrap
    other = os.environ.get("KAFKA_BOOTSTRAP_NO_AUTOCREATE")
    if not other:
        pytest.skip("external mode: set KAFKA_BOOTSTRAP_NO_AUTOCREATE to a broker running "
                    "with auto.create.topics.enable=false")
    return other


def test_auto_create_disabled(broker, broker_factory):
    bs = no_autocreate_bootstrap(broker, broker_factory)
    t = unique("auto-off")
    # a producer's metadata request asks for auto-creation; the broker must refuse
    p = producer(bs, **{"message.timeout.ms": 5000})
    md = p.list_topics(topic=t, timeout=10)
    assert md.topics[t].error is not None
    assert md.topics[t].error.code() == UNKNOWN_TOPIC_OR_PARTITION
    results = []
    p.produce(t, value=b"v", on_delivery=lambda err, msg: results.append(err))
    p.flush(20)
    assert len(results) == 1 and results[0] is not None
    assert results[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
    time.sleep(0.5)
    md = admin(bs).list_topics(timeout=10)
    assert t not in md.topics
    # explicit creation still works there
    from helpers import create_topic
    create_topic(bs, t)
    delivered = produce_checked(producer(bs), t, [(None, b"ok")])
    assert delivered[0].offset() == 0
