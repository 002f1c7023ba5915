"""Consumer groups with real clients: partitions shared among members, rebalances when
members come, leave or die, committed offsets across broker restarts (confluent-kafka and
kafka-python)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import Broker, _mode
from helpers import create_topic, produce_checked, producer, unique

SETTLE_S = 45.0
SESSION_MS = 6000


@pytest.fixture(scope="module")
def gbroker():
    """A broker for this module. Fjord runs with no initial rebalance delay so that each
    membership change settles promptly (Kafka's default holds the first rebalance 3 s)."""
    fjord_bin, bootstrap = _mode()
    if fjord_bin:
        b = Broker(fjord_bin=fjord_bin, overrides=[
            "group.initial.rebalance.delay.ms=0",
            "offsets.topic.num.partitions=5",
        ])
        b.start()
    else:
        b = Broker(bootstrap=bootstrap)
    yield b
    if b.managed:
        b.cleanup()


def group_consumer(bootstrap, group, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "enable.partition.eof": False,
    }
    c.update(conf)
    return Consumer(c)


def owned(c, topic):
    return sorted(tp.partition for tp in c.assignment() if tp.topic == topic)


def settle(consumers, topic, partitions, timeout=SETTLE_S):
    """Polls every consumer until each partition is owned by exactly one of them and as
    many of them as possible own something; returns each consumer's partitions."""
    want_owners = min(len(consumers), partitions)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.05)
        last = [owned(c, topic) for c in consumers]
        flat = sorted(p for parts in last for p in parts)
        if flat == list(range(partitions)) and sum(1 for p in last if p) == want_owners:
            # Hold for a moment: a settled group stays settled.
            stable_until = time.monotonic() + 1.0
            while time.monotonic() < stable_until:
                for c in consumers:
                    c.poll(0.05)
            if [owned(c, topic) for c in consumers] == last:
                return last
    raise AssertionError(f"group did not settle within {timeout}s; last assignments {last}")


def close_all(consumers):
    for c in consumers:
        try:
            c.close()
        except Exception:
            pass


def test_partitions_shared_by_one_to_four_members(gbroker):
    b = gbroker
    topic = create_topic(b.bootstrap, unique("grp-share"), partitions=3)
    group = unique("g-share")
    consumers = []
    try:
        for n in range(1, 5):
            consumers.append(group_consumer(b.bootstrap, group))
            consumers[-1].subscribe([topic])
            parts = settle(consumers, topic, 3)
            assert sum(1 for p in parts if p) == min(n, 3), parts
        idle = [i for i, p in enumerate(parts) if not p]
        assert len(idle) == 1, parts

        # A member with a partition leaves: the idle member takes over.
        leaving = next(i for i, p in enumerate(parts) if p)
        consumers.pop(leaving).close()
        idle_consumer_index = idle[0] - (1 if idle[0] > leaving else 0)
        parts = settle(consumers, topic, 3)
        assert all(parts), parts
        assert parts[idle_consumer_index], "the idle member now owns a partition"
    finally:
        close_all(consumers)


def test_group_members_consume_every_record_once(gbroker):
    b = gbroker
    topic = create_topic(b.bootstrap, unique("grp-data"), partitions=3)
    group = unique("g-data")
    consumers = [group_consumer(b.bootstrap, group) for _ in range(2)]
    try:
        for c in consumers:
            c.subscribe([topic])
        # Settle first (settling polls, and would swallow records), then produce.
        settle(consumers, topic, 3)
        p = producer(b.bootstrap)
        produce_checked(p, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(90)])
        seen = {}
        deadline = time.monotonic() + SETTLE_S
        while len(seen) < 90 and time.monotonic() < deadline:
            for i, c in enumerate(consumers):
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    seen.setdefault((m.partition(), m.offset()), []).append(i)
        assert len(seen) == 90
        assert all(len(v) == 1 for v in seen.values()), "no record went to two members"
    finally:
        close_all(consumers)


CHILD = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    bootstrap, group, topic, commit_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([topic])
    reported = False
    consumed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is not None and m.error() is None:
            consumed += 1
            if consumed == commit_after:
                c.commit(message=m, asynchronous=False)
            print("consumed", m.partition(), m.offset(), flush=True)
        parts = sorted(tp.partition for tp in c.assignment())
        if parts and not reported:
            print("assigned", ",".join(map(str, parts)), flush=True)
            reported = True
""")


def spawn_child(bootstrap, group, topic, commit_after=0):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, bootstrap, group, topic, str(commit_after)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def read_until(proc, prefix, timeout):
    """Lines from the child until one starts with `prefix` (bounded by `timeout`).

    A thread reads the pipe: waiting on the descriptor with select() and then calling
    readline() would miss lines that readline() had already pulled into Python's buffer."""
    import queue
    import threading
    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                proc.lines.put(line.strip())
            proc.lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
    lines = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = proc.lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"child never printed {prefix!r}; got {lines}")


def test_killed_member_partitions_move_after_session_timeout(gbroker):
    b = gbroker
    topic = create_topic(b.bootstrap, unique("grp-kill"), partitions=3)
    group = unique("g-kill")
    child = spawn_child(b.bootstrap, group, topic)
    survivor = group_consumer(b.bootstrap, group)
    try:
        read_until(child, "assigned", SETTLE_S)  # the child is a member first
        survivor.subscribe([topic])
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            survivor.poll(0.1)
            if 0 < len(owned(survivor, topic)) < 3:
                break
        assert 0 < len(owned(survivor, topic)) < 3, "the two members share the partitions"

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        killed_at = time.monotonic()
        while time.monotonic() < killed_at + SETTLE_S and owned(survivor, topic) != [0, 1, 2]:
            survivor.poll(0.1)
        took = time.monotonic() - killed_at
        assert owned(survivor, topic) == [0, 1, 2], "the survivor inherits every partition"
        # Nothing told the group the member died: only its session expiry could.
        assert took >= (SESSION_MS / 1000.0) * 0.5, f"moved after {took:.1f}s"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        close_all([survivor])


@pytest.mark.parametrize("hard", [False, True], ids=["clean-restart", "kill-9"])
def test_resume_at_committed_offset_after_broker_restart(gbroker, hard):
    b = gbroker
    if not b.managed:
        pytest.skip("needs a broker started by the harness (FJORD_BIN)")
    topic = create_topic(b.bootstrap, unique("grp-resume"), partitions=1)
    p = producer(b.bootstrap, acks="all")
    produce_checked(p, topic, [(None, f"r{i}".encode()) for i in range(20)])
    group = unique("g-resume")
    c = group_consumer(b.bootstrap, group)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + SETTLE_S
    while len(got) < 7 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
    assert len(got) == 7
    # Commit through the 7th record (next offset 7) with a metadata string.
    c.commit(offsets=[TopicPartition(topic, 0, 7, "checkpoint-a")], asynchronous=False)
    c.close()

    b.restart(hard=hard)

    c2 = group_consumer(b.bootstrap, group)
    try:
        committed = c2.committed([TopicPartition(topic, 0)], timeout=20)
        assert committed[0].offset == 7
        assert committed[0].metadata == "checkpoint-a"
        c2.subscribe([topic])
        first = None
        deadline = time.monotonic() + SETTLE_S
        while first is None and time.monotonic() < deadline:
            m = c2.poll(0.2)
            if m is not None and m.error() is None:
                first = m
        assert first is not None and first.offset() == 7 and first.value() == b"r7"
    finally:
        close_all([c2])


def test_uncommitted_records_are_redelivered_after_a_crash(gbroker):
    b = gbroker
    topic = create_topic(b.bootstrap, unique("grp-alo"), partitions=1)
    p = producer(b.bootstrap, acks="all")
    produce_checked(p, topic, [(None, f"m{i}".encode()) for i in range(6)])
    group = unique("g-alo")
    # The child commits after its 2nd record, keeps consuming, then is killed.
    child = spawn_child(b.bootstrap, group, topic, commit_after=2)
    try:
        lines = read_until(child, "consumed 0 5", SETTLE_S)
        assert sum(1 for line in lines if line.startswith("consumed")) == 6
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    c = group_consumer(b.bootstrap, group)
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + SETTLE_S
        while len(got) < 4 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.offset())
        assert got == [2, 3, 4, 5], "everything after the last commit comes again"
    finally:
        close_all([c])


def test_static_member_restart_keeps_its_partitions(gbroker):
    b = gbroker
    topic = create_topic(b.bootstrap, unique("grp-static"), partitions=2)
    group = unique("g-static")
    conf = {"group.instance.id": "static-a"}
    a = group_consumer(b.bootstrap, group, **conf)
    other = group_consumer(b.bootstrap, group, **{"group.instance.id": "static-b"})
    try:
        a.subscribe([topic])
        other.subscribe([topic])
        before = settle([a, other], topic, 2)
        # A static member closing does not leave the group; its replacement takes its
        # place without moving partitions.
        a.close()
        a = group_consumer(b.bootstrap, group, **conf)
        a.subscribe([topic])
        after = settle([a, other], topic, 2)
        assert after == before
    finally:
        close_all([a, other])


def test_kafka_python_group_consumer(gbroker):
    from kafka import KafkaConsumer, OffsetAndMetadata
    from kafka import TopicPartition as KTP
    b = gbroker
    topic = create_topic(b.bootstrap, unique("grp-kp"), partitions=2)
    group = unique("g-kp")

    def make():
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group,
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          # Generous: kafka-python heartbeats from a Python thread,
                          # which a loaded machine can starve for seconds.
                          session_timeout_ms=15000, heartbeat_interval_ms=500,
                          consumer_timeout_ms=500)
        # kafka-python's group leader assigns from the metadata it holds at that moment;
        # if the new topic is not in it yet, it assigns nothing and can keep rebalancing
        # (seen against Apache Kafka too). Load the topic's metadata before joining.
        deadline = time.monotonic() + SETTLE_S
        while not c.partitions_for_topic(topic):
            assert time.monotonic() < deadline, "topic metadata never arrived"
            time.sleep(0.1)
        c.subscribe([topic])
        return c

    def assigned(c):
        return {tp.partition for tp in c.assignment()}

    # kafka-python (3.0.x) drops a JoinGroup/SyncGroup round that completes while the
    # application is not inside that consumer's poll(), and joins again; when the dropped
    # round is the leader's, every later round completes during the other member's poll
    # and the group rebalances for ever. A first round with both members (held by the
    # broker's group.initial.rebalance.delay.ms, 3 s by default) ends at a moment of the
    # broker's choosing, so let the first member form the group alone, then add the
    # second: that round completes when the first member rejoins, inside its own poll.
    c1 = make()
    c2 = None
    try:
        deadline = time.monotonic() + SETTLE_S
        while assigned(c1) != {0, 1}:
            assert time.monotonic() < deadline, "the first member never got both partitions"
            assert not c1.poll(timeout_ms=100), "no records were produced yet"
        c2 = make()
        deadline = time.monotonic() + SETTLE_S
        while True:
            for c in (c1, c2):
                assert not c.poll(timeout_ms=100), "no records were produced yet"
            a1, a2 = assigned(c1), assigned(c2)
            if a1 and a2 and not (a1 & a2):
                break
            assert time.monotonic() < deadline, f"the members never shared: {a1}, {a2}"
        # Produce once the group has settled (settling polls, and would swallow records).
        p = producer(b.bootstrap)
        produce_checked(p, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)])
        seen = {}
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            for i, c in enumerate((c1, c2)):
                for tp, msgs in c.poll(timeout_ms=100).items():
                    for m in msgs:
                        seen.setdefault((tp.partition, m.offset), set()).add(i)
            a1 = {tp.partition for tp in c1.assignment()}
            a2 = {tp.partition for tp in c2.assignment()}
            if len(seen) == 10 and a1 and a2 and not (a1 & a2):
                break
        assert len(seen) == 10
        assert a1 and a2 and not (a1 & a2) and a1 | a2 == {0, 1}, (a1, a2)
        for c in (c1, c2):
            c.commit({KTP(topic, tp.partition): OffsetAndMetadata(c.position(tp), "kp", -1)
                      for tp in c.assignment()})
    finally:
        c1.close()
        if c2 is not None:
            c2.close()

    # Read back by the other client: offsets as committed. (Metadata is checked through
    # kafka-python: confluent-kafka treats metadata as a NUL-terminated C string.)
    check = group_consumer(b.bootstrap, group)
    try:
        committed = check.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)],
                                    timeout=20)
        assert sum(tp.offset for tp in committed) == 10, committed
    finally:
        close_all([check])
    kp = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        for part in (0, 1):
            assert kp.committed(KTP(topic, part), metadata=True).metadata == "kp"
    finally:
        kp.close()
