"""Durability across kill -9 (harness-started broker only; skipped with KAFKA_BOOTSTRAP)."""
from helpers import consume_n, create_topic, produce_checked, producer, unique, admin

N = 2000


def test_acks_all_survives_kill9(restartable_broker):
    b = restartable_broker
    t = create_topic(b.bootstrap, unique("dur"), partitions=3)
    p = producer(b.bootstrap, acks="all", **{"compression.type": "lz4"})
    records = [(f"k{i % 50}".encode(), f"value-{i}".encode() * 3) for i in range(N)]
    delivered = produce_checked(p, t, records)
    assert len(delivered) == N
    expect = {(m.partition(), m.offset()): (m.key(), m.value()) for m in delivered}
    del p

    b.restart(hard=True)  # kill -9, start on the same data dir and port

    md = admin(b.bootstrap).list_topics(topic=t, timeout=15)
    assert md.topics[t].error is None and len(md.topics[t].partitions) == 3
    got = consume_n(b.bootstrap, t, [0, 1, 2], N, timeout=60)
    assert {(m.partition(), m.offset()): (m.key(), m.value()) for m in got} == expect

    # the log continues after the recovered tail
    p2 = producer(b.bootstrap, acks="all")
    more = produce_checked(p2, t, [(None, b"after-restart")], partition=0)
    before = sum(1 for (part, _off) in expect if part == 0)
    assert more[0].offset() == before


def test_topic_configs_survive_restart(restartable_broker):
    from confluent_kafka.admin import ConfigResource, ResourceType
    b = restartable_broker
    t = create_topic(b.bootstrap, unique("dur-cfg"), partitions=2,
                     config={"retention.ms": "98765"})
    b.restart(hard=True)
    a = admin(b.bootstrap)
    md = a.list_topics(topic=t, timeout=15)
    assert len(md.topics[t].partitions) == 2
    res = ConfigResource(ResourceType.TOPIC, t)
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert cfg["retention.ms"].value == "98765"
