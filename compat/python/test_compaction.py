"""Log compaction (cleanup.policy=compact) seen through real clients.

With FJORD_BIN the tests start their own broker whose cleaner looks for work every 200 ms
(log.cleaner.backoff.ms); against KAFKA_BOOTSTRAP they use that broker as it is, and wait
up to its default 15 s backoff."""
import threading
import time

import pytest
from confluent_kafka import TopicPartition

from helpers import consumer, create_topic, produce_checked, producer, unique

# Kafka refuses segments under 1 MiB; 6,000 records of 1 KiB fill about six.
SEGMENT_BYTES = 1 << 20
KEYS = 100
RECORDS = 6000
VALUE_PAD = 1000
CLEAN_WAIT_S = 90.0


@pytest.fixture
def compacting_bootstrap(broker, broker_factory):
    if broker.managed:
        return broker_factory(["log.cleaner.backoff.ms=200"]).bootstrap
    return broker.bootstrap


def value(key, version):
    return f"{key}:{version}:".encode() + b"x" * VALUE_PAD


def version_of(v):
    return int(v.split(b":")[1])


def read_all(bootstrap, topic, timeout=20.0, **conf):
    """Every record of partition 0 from the start up to the high watermark, as
    (offset, key, value) in the order the broker returned them."""
    c = consumer(bootstrap, **conf)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if out and out[-1][0] >= high - 1:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append((m.offset(), m.key(), m.value()))
        else:
            raise AssertionError(f"did not reach the high watermark {high} of {topic}")
        return out, high
    finally:
        c.close()


def write_history(bootstrap, topic, compression):
    """6,000 keyed 1 KiB records over 100 keys, then a tombstone for every tenth key.
    Returns {offset: (key, value)} of every record as produced."""
    p = producer(bootstrap, compression_type=compression, linger_ms=20,
                 enable_idempotence=True)
    history = []
    for i in range(RECORDS):
        key = f"key-{i % KEYS:03d}".encode()
        history.append((key, value(key.decode(), i)))
    history += [(f"key-{k:03d}".encode(), None) for k in range(0, KEYS, 10)]
    delivered = []
    for start in range(0, len(history), 1000):
        delivered += produce_checked(p, topic, history[start:start + 1000], partition=0)
    return {m.offset(): (m.key(), m.value()) for m in delivered}


def roll(bootstrap, topic, segment_ms):
    """One more record after segment.ms, so that everything before it is in sealed
    segments the cleaner may touch (the active segment is never cleaned)."""
    time.sleep(segment_ms / 1000 + 0.5)
    [m] = produce_checked(producer(bootstrap), topic, [(b"roll", b"roll")], partition=0)
    return m.offset()


def expected_survivors(by_offset):
    newest = {}
    for offset in sorted(by_offset):
        key, v = by_offset[offset]
        newest[key] = (offset, v)
    return {key: ov for key, ov in newest.items() if ov[1] is not None}


def wait_compacted(bootstrap, topic, want):
    """Reads from the start until exactly `want` ({key: (offset, value)}) is what is left."""
    deadline = time.monotonic() + CLEAN_WAIT_S
    while True:
        got, high = read_all(bootstrap, topic)
        seen = {k: (o, v) for o, k, v in got}
        if len(got) == len(want) and seen == want:
            return got, high
        assert time.monotonic() < deadline, (
            f"not compacted after {CLEAN_WAIT_S}s: {len(got)} records left, want {len(want)}")
        time.sleep(1)


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compaction_keeps_the_newest_value_of_each_live_key(compacting_bootstrap, compression):
    bs = compacting_bootstrap
    topic = unique(f"compact-{compression}")
    segment_ms = 2000
    create_topic(bs, topic, 1, config={
        "cleanup.policy": "compact",
        "segment.bytes": str(SEGMENT_BYTES),
        "segment.ms": str(segment_ms),
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "3000",
    })
    by_offset = write_history(bs, topic, compression)
    roll_offset = roll(bs, topic, segment_ms)
    by_offset[roll_offset] = (b"roll", b"roll")
    _, high_before = read_all(bs, topic, timeout=60)

    # Readers during cleaning: within one read, offsets only grow and no key ever goes
    # back to an older version.
    stop = threading.Event()
    problems = []
    reads = [0]

    def reader():
        while not stop.is_set():
            got, _ = read_all(bs, topic, timeout=60)
            reads[0] += 1
            last = {}
            for (o1, _, _), (o2, _, _) in zip(got, got[1:]):
                if o2 <= o1:
                    problems.append(f"offset {o2} after {o1}")
            for o, k, v in got:
                if v is None or k == b"roll":
                    continue
                if k in last and version_of(v) <= last[k]:
                    problems.append(f"{k!r} went from version {last[k]} to {version_of(v)} at {o}")
                last[k] = version_of(v)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        want = expected_survivors(by_offset)
        got, high_after = wait_compacted(bs, topic, want)
    finally:
        stop.set()
        t.join(timeout=90)
    assert not problems, problems[:5]
    assert reads[0] > 0

    # Tombstoned keys are gone, after delete.retention.ms.
    tombstoned = {k for k, v in by_offset.values() if v is None}
    assert tombstoned and not tombstoned & {k for _, k, _ in got}
    # Each survivor sits at the offset it was produced at; offsets increase.
    for o, k, v in got:
        assert by_offset[o] == (k, v), f"offset {o} holds another record"
    assert [o for o, _, _ in got] == sorted(o for o, _, _ in got)
    # The high watermark never moves.
    assert high_after == high_before == roll_offset + 1
    assert len(got) == KEYS - len(tombstoned) + 1


def test_kafka_python_reads_a_compacted_topic(compacting_bootstrap):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    bs = compacting_bootstrap
    topic = unique("compact-kp")
    segment_ms = 1000
    create_topic(bs, topic, 1, config={
        "cleanup.policy": "compact",
        "segment.ms": str(segment_ms),
        "min.cleanable.dirty.ratio": "0.01",
    })
    # Batches of several records in each codec, so that cleaning rewrites batches that
    # keep some of their records.
    by_offset = {}
    for n, codec in enumerate(["gzip", "snappy", "lz4", "zstd", "none"]):
        p = producer(bs, compression_type=codec, linger_ms=50)
        records = [(f"k{i % 7}".encode(), f"{codec}-{n}-{i}".encode()) for i in range(40)]
        for m in produce_checked(p, topic, records, partition=0):
            by_offset[m.offset()] = (m.key(), m.value())
    roll_offset = roll(bs, topic, segment_ms)
    by_offset[roll_offset] = (b"roll", b"roll")
    want = expected_survivors(by_offset)
    wait_compacted(bs, topic, want)

    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=20000)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(want) and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=500).values():
                got.extend((m.offset, m.key, m.value) for m in msgs)
        assert {k: (o, v) for o, k, v in got} == want
        assert len(got) == len(want)
    finally:
        c.close()
