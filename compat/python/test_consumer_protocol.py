"""The new consumer group protocol (KIP-848, `group.protocol=consumer`) with confluent-kafka:
server-side assignment shared by 1 to 4 members, partitions moving when a member leaves,
records consumed once, and committed offsets surviving a broker restart."""
import time

import pytest
from confluent_kafka import ConsumerGroupType, TopicPartition

from conftest import Broker, _mode
from helpers import admin, create_topic, produce_checked, producer, unique
from test_groups import close_all, settle

SETTLE_S = 45.0


@pytest.fixture(scope="module")
def cbroker():
    """A broker for this module. Fjord tells members to heartbeat every 500 ms so each
    reconciliation step takes a fraction of a second (Kafka's default is 5 s)."""
    fjord_bin, bootstrap = _mode()
    if fjord_bin:
        b = Broker(fjord_bin=fjord_bin, overrides=[
            "group.consumer.heartbeat.interval.ms=500",
            "group.consumer.session.timeout.ms=6000",
            "offsets.topic.num.partitions=5",
        ])
        b.start()
    else:
        b = Broker(bootstrap=bootstrap)
    yield b
    if b.managed:
        b.cleanup()


def new_consumer(bootstrap, group, **conf):
    # Session and heartbeat timing belong to the broker under this protocol: the client
    # must not set them.
    from confluent_kafka import Consumer
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    c.update(conf)
    return Consumer(c)


def listed_type(bootstrap, group):
    """The group's type as ListGroups reports it (None when not listed)."""
    a = admin(bootstrap)
    res = a.list_consumer_groups(request_timeout=10).result(timeout=15)
    for g in res.valid:
        if g.group_id == group:
            return g.type
    return None


def test_partitions_shared_by_one_to_four_members(cbroker):
    b = cbroker
    topic = create_topic(b.bootstrap, unique("kip848-share"), partitions=3)
    group = unique("g848-share")
    consumers = []
    try:
        for n in range(1, 5):
            consumers.append(new_consumer(b.bootstrap, group))
            consumers[-1].subscribe([topic])
            parts = settle(consumers, topic, 3, timeout=SETTLE_S)
            assert sum(1 for p in parts if p) == min(n, 3), parts
        idle = [i for i, p in enumerate(parts) if not p]
        assert len(idle) == 1, parts
        # The group really runs the new protocol.
        assert listed_type(b.bootstrap, group) == ConsumerGroupType.CONSUMER

        # A member with a partition leaves: its partition moves to the idle member.
        leaving = next(i for i, p in enumerate(parts) if p)
        consumers.pop(leaving).close()
        idle_index = idle[0] - (1 if idle[0] > leaving else 0)
        parts = settle(consumers, topic, 3, timeout=SETTLE_S)
        assert all(parts), parts
        assert parts[idle_index], "the idle member now owns a partition"
    finally:
        close_all(consumers)


def test_members_consume_every_record_once(cbroker):
    b = cbroker
    topic = create_topic(b.bootstrap, unique("kip848-data"), partitions=3)
    group = unique("g848-data")
    consumers = [new_consumer(b.bootstrap, group) for _ in range(2)]
    try:
        for c in consumers:
            c.subscribe([topic])
        settle(consumers, topic, 3, timeout=SETTLE_S)
        p = producer(b.bootstrap)
        produce_checked(p, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(60)])
        seen = {}
        deadline = time.monotonic() + SETTLE_S
        while len(seen) < 60 and time.monotonic() < deadline:
            for i, c in enumerate(consumers):
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    seen.setdefault((m.partition(), m.offset()), []).append(i)
        assert len(seen) == 60
        assert all(len(v) == 1 for v in seen.values()), "a record was consumed twice"
    finally:
        close_all(consumers)


def test_resume_at_committed_offset_after_broker_restart(cbroker):
    b = cbroker
    if not b.managed:
        pytest.skip("needs a broker started by the harness (FJORD_BIN)")
    topic = create_topic(b.bootstrap, unique("kip848-resume"), partitions=1)
    p = producer(b.bootstrap, acks="all")
    produce_checked(p, topic, [(None, f"r{i}".encode()) for i in range(20)])
    group = unique("g848-resume")
    c = new_consumer(b.bootstrap, group)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + SETTLE_S
    while len(got) < 7 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
    assert len(got) == 7
    # The commit carries the member id and member epoch, which the broker checks.
    c.commit(offsets=[TopicPartition(topic, 0, 7, "checkpoint-848")], asynchronous=False)
    c.close()

    b.restart(hard=True)

    c2 = new_consumer(b.bootstrap, group)
    try:
        c2.subscribe([topic])
        first = None
        deadline = time.monotonic() + SETTLE_S
        while first is None and time.monotonic() < deadline:
            m = c2.poll(0.2)
            if m is not None and m.error() is None:
                first = m
        assert first is not None and first.offset() == 7 and first.value() == b"r7"
        committed = c2.committed([TopicPartition(topic, 0)], timeout=20)
        assert committed[0].offset == 7
        assert committed[0].metadata == "checkpoint-848"
    finally:
        close_all([c2])


def test_regex_subscription_is_resolved_by_the_broker(cbroker):
    """A regex subscription is sent to the broker (SubscribedTopicRegex), which matches
    it against every topic name and follows topics created later."""
    bootstrap = cbroker.bootstrap
    prefix = unique("rx")
    first = create_topic(bootstrap, f"{prefix}-a", partitions=2)
    create_topic(bootstrap, unique("not-rx"))  # matches no regex below
    c = new_consumer(bootstrap, unique("rx-group"))
    try:
        c.subscribe([f"^{prefix}-.*"])

        def assigned_topics():
            return {tp.topic for tp in c.assignment()}

        deadline = time.monotonic() + SETTLE_S
        while assigned_topics() != {first}:
            assert time.monotonic() < deadline, f"assigned {c.assignment()}"
            c.poll(0.2)
        assert len(c.assignment()) == 2

        second = create_topic(bootstrap, f"{prefix}-b")
        deadline = time.monotonic() + SETTLE_S
        while assigned_topics() != {first, second}:
            assert time.monotonic() < deadline, f"assigned {c.assignment()}"
            c.poll(0.2)
    finally:
        c.close()
