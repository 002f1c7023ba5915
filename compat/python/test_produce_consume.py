"""Produce and consume with confluent-kafka and kafka-python, cross-checked with each other."""
import os
import threading
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import (admin, consume_n, consumer, create_topic, kp_consume_n, leader_conn,
                     produce_checked, producer, unique)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def payloads(n):
    """Mixed values: compressible text, incompressible random bytes, empty, and a large one."""
    vals = []
    for i in range(n):
        if i % 4 == 0:
            vals.append((f"record-{i} " * 20).encode())
        elif i % 4 == 1:
            vals.append(os.urandom(200 + i))
        elif i % 4 == 2:
            vals.append(b"")
        else:
            vals.append(bytes(range(256)) * 40)  # 10 KiB
    return vals


def test_keyed_records_same_partition_and_order(bootstrap):
    t = create_topic(bootstrap, unique("pc-keyed"), partitions=4)
    p = producer(bootstrap)
    keys = [f"key-{k}".encode() for k in range(12)]
    records = [(keys[i % 12], f"{i % 12}:{i // 12}".encode()) for i in range(12 * 25)]
    delivered = produce_checked(p, t, records)
    part_of = {}
    for m in delivered:
        part_of.setdefault(m.key(), set()).add(m.partition())
    assert all(len(s) == 1 for s in part_of.values()), part_of
    assert len({next(iter(s)) for s in part_of.values()}) > 1, "all keys hashed to one partition"

    msgs = consume_n(bootstrap, t, [0, 1, 2, 3], len(records))
    seen = {}
    for m in msgs:
        assert m.partition() in part_of[m.key()]
        k, seq = m.value().decode().split(":")
        assert keys[int(k)] == m.key()
        seen.setdefault(m.key(), []).append(int(seq))
    assert all(v == list(range(25)) for v in seen.values()), "per-key order broken"
    # per partition, offsets are 0..n-1 without gaps
    by_part = {}
    for m in msgs:
        by_part.setdefault(m.partition(), []).append(m.offset())
    for offs in by_part.values():
        assert offs == list(range(len(offs)))


def test_null_keys_spread_over_partitions(bootstrap):
    t = create_topic(bootstrap, unique("pc-nullkey"), partitions=4)
    p = producer(bootstrap, **{"sticky.partitioning.linger.ms": 0})
    delivered = []
    for batch in range(40):
        delivered += produce_checked(p, t, [(None, f"{batch}-{i}".encode()) for i in range(5)])
    parts = {m.partition() for m in delivered}
    assert len(parts) > 1, f"200 null-key records all went to partitions {parts}"
    msgs = consume_n(bootstrap, t, [0, 1, 2, 3], 200)
    assert sorted(m.value() for m in msgs) == sorted(m.value() for m in delivered)
    for m in msgs:
        assert m.key() is None


@pytest.mark.parametrize("codec", CODECS)
def test_compression_confluent_to_kafka_python(bootstrap, codec):
    t = create_topic(bootstrap, unique(f"pc-z-ck-{codec}"))
    vals = payloads(40)
    p = producer(bootstrap, **{"compression.type": codec, "linger.ms": 50})
    produce_checked(p, t, [(f"k{i}".encode(), v) for i, v in enumerate(vals)], partition=0)
    got = kp_consume_n(bootstrap, t, [0], len(vals))
    assert [m.offset for m in got] == list(range(len(vals)))
    assert [m.value for m in got] == vals
    assert [m.key for m in got] == [f"k{i}".encode() for i in range(len(vals))]
    # and confluent reads the same bytes
    got2 = consume_n(bootstrap, t, [0], len(vals))
    assert [m.value() for m in got2] == vals


@pytest.mark.parametrize("codec", CODECS)
def test_compression_kafka_python_to_confluent(bootstrap, codec):
    from kafka import KafkaProducer
    t = create_topic(bootstrap, unique(f"pc-z-kc-{codec}"))
    vals = payloads(40)
    kp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50,
                       compression_type=None if codec == "none" else codec)
    try:
        futs = [kp.send(t, key=f"k{i}".encode(), value=v, partition=0)
                for i, v in enumerate(vals)]
        kp.flush(timeout=30)
        offsets = [f.get(timeout=20).offset for f in futs]
    finally:
        kp.close(timeout=5)
    assert offsets == list(range(len(vals)))
    got = consume_n(bootstrap, t, [0], len(vals))
    assert [m.value() if m.value() is not None else b"" for m in got] == vals
    assert [m.key() for m in got] == [f"k{i}".encode() for i in range(len(vals))]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(bootstrap, acks):
    t = create_topic(bootstrap, unique(f"pc-acks-{acks}"))
    p = producer(bootstrap, acks=acks)
    delivered = produce_checked(p, t, [(None, f"a{i}".encode()) for i in range(50)], partition=0)
    assert len(delivered) == 50
    if acks == "0":
        # no response from the broker, so no offsets are known to the client
        assert all(m.offset() is None or m.offset() < 0 for m in delivered)
    else:
        assert [m.offset() for m in delivered] == list(range(50))
    msgs = consume_n(bootstrap, t, [0], 50)
    assert [m.value() for m in msgs] == [f"a{i}".encode() for i in range(50)]
    # acks=0 must not leave the connection out of step: acks=1 after it still works
    p2 = producer(bootstrap, acks="1")
    after = produce_checked(p2, t, [(None, b"after")], partition=0)
    assert after[0].offset() == 50


def test_headers_round_trip(bootstrap):
    t = create_topic(bootstrap, unique("pc-headers"))
    headers = [("trace", b"abc123"), ("bin", bytes([0, 255, 1, 254])), ("empty", b""),
               ("dup", b"1"), ("dup", b"2"), ("unicode-\u00e9", "\u2603".encode())]
    p = producer(bootstrap)
    produce_checked(p, t, [{"key": b"k", "value": b"v", "headers": headers},
                           {"key": b"k2", "value": b"no headers"}], partition=0)
    got = consume_n(bootstrap, t, [0], 2)
    assert got[0].headers() == headers
    assert not got[1].headers()
    kgot = kp_consume_n(bootstrap, t, [0], 2)
    assert [(k, bytes(v)) for k, v in kgot[0].headers] == headers
    assert not kgot[1].headers


def test_create_time_preserved(bootstrap):
    t = create_topic(bootstrap, unique("pc-ts"))
    stamps = [1_234_567_890_123, 1_600_000_000_000, 42]
    p = producer(bootstrap)
    produce_checked(p, t, [{"value": f"t{i}".encode(), "timestamp": ts}
                           for i, ts in enumerate(stamps)], partition=0)
    got = consume_n(bootstrap, t, [0], 3)
    assert [m.timestamp() for m in got] == [(TIMESTAMP_CREATE_TIME, ts) for ts in stamps]
    kgot = kp_consume_n(bootstrap, t, [0], 3)
    assert [m.timestamp for m in kgot] == stamps
    assert [m.timestamp_type for m in kgot] == [0, 0, 0]  # 0 = CreateTime


def test_list_offsets_earliest_latest_by_time(bootstrap):
    t = create_topic(bootstrap, unique("pc-offsets"))
    p = producer(bootstrap)
    produce_checked(p, t, [{"value": f"at{ts}".encode(), "timestamp": ts}
                           for ts in (1000, 2000, 3000, 4000, 5000)], partition=0)
    tp = TopicPartition(t, 0)

    # consumer API
    c = consumer(bootstrap)
    try:
        lo, hi = c.get_watermark_offsets(tp, timeout=10)
        assert (lo, hi) == (0, 5)
        res = c.offsets_for_times([TopicPartition(t, 0, 2500)], timeout=10)
        assert res[0].offset == 2
        res = c.offsets_for_times([TopicPartition(t, 0, 3000)], timeout=10)
        assert res[0].offset == 2
        res = c.offsets_for_times([TopicPartition(t, 0, 0)], timeout=10)
        assert res[0].offset == 0
        res = c.offsets_for_times([TopicPartition(t, 0, 9999)], timeout=10)
        assert res[0].offset == -1  # no record at or after: end (OFFSET_END)
    finally:
        c.close()

    # admin API
    a = admin(bootstrap)
    for spec, want in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 5),
                       (OffsetSpec.for_timestamp(2500), 2),
                       (OffsetSpec.max_timestamp(), 4)):
        r = list(a.list_offsets({tp: spec}, request_timeout=15).values())[0].result(timeout=20)
        assert r.offset == want, (spec, r.offset)
    r = list(a.list_offsets({tp: OffsetSpec.for_timestamp(2500)},
                            request_timeout=15).values())[0].result(timeout=20)
    assert r.timestamp == 3000

    # kafka-python
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        ktp = KTP(t, 0)
        assert kc.beginning_offsets([ktp]) == {ktp: 0}
        assert kc.end_offsets([ktp]) == {ktp: 5}
        r = kc.offsets_for_times({ktp: 2500})[ktp]
        assert (r.offset, r.timestamp) == (2, 3000)
        assert kc.offsets_for_times({ktp: 9999})[ktp] is None
    finally:
        kc.close()


def test_assign_from_offset(bootstrap):
    t = create_topic(bootstrap, unique("pc-seek"), partitions=2)
    p = producer(bootstrap)
    produce_checked(p, t, [(None, f"p1-{i}".encode()) for i in range(10)], partition=1)
    got = consume_n(bootstrap, t, [1], 4, offset=6)
    assert [(m.partition(), m.offset(), m.value()) for m in got] == [
        (1, i, f"p1-{i}".encode()) for i in range(6, 10)]
    kgot = kp_consume_n(bootstrap, t, [1], 3, offset=7)
    assert [(m.offset, m.value) for m in kgot] == [(i, f"p1-{i}".encode()) for i in range(7, 10)]


def test_empty_topic_long_poll_wire(bootstrap):
    """Fetch on an empty partition waits about max_wait_ms; a produce during the wait
    answers it early with the data."""
    t = create_topic(bootstrap, unique("pc-longpoll"))
    c = leader_conn(bootstrap, t, 0)
    try:
        t0 = time.monotonic()
        res = c.fetch_v4(t, 0, 0, max_wait_ms=1000)
        waited = time.monotonic() - t0
        err, hw, records = res[(t, 0)]
        assert (err, hw) == (0, 0)
        assert not records
        assert 0.8 <= waited <= 3.0, f"empty fetch returned after {waited:.2f}s, max_wait=1s"

        def produce_later():
            time.sleep(0.7)
            p = producer(bootstrap, **{"linger.ms": 0})
            produce_checked(p, t, [(None, b"wake-up")], partition=0)

        th = threading.Thread(target=produce_later)
        th.start()
        t0 = time.monotonic()
        res = c.fetch_v4(t, 0, 0, max_wait_ms=8000)
        waited = time.monotonic() - t0
        th.join(20)
        err, hw, records = res[(t, 0)]
        assert (err, hw) == (0, 1)
        assert records and b"wake-up" in records
        assert 0.5 <= waited <= 5.0, f"fetch was not woken by the produce ({waited:.2f}s)"
    finally:
        c.close()


def test_empty_topic_long_poll_confluent(bootstrap):
    t = create_topic(bootstrap, unique("pc-longpoll-c"))
    c = consumer(bootstrap, **{"fetch.wait.max.ms": 500})
    try:
        c.assign([TopicPartition(t, 0, 0)])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            m = c.poll(0.5)
            assert m is None or m.error() is not None, "message from an empty topic"

        def produce_later():
            time.sleep(0.5)
            produce_checked(producer(bootstrap, **{"linger.ms": 0}), t,
                            [(b"k", b"late")], partition=0)

        th = threading.Thread(target=produce_later)
        th.start()
        got, deadline = None, time.monotonic() + 10
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got = m
        th.join(20)
        assert got is not None, "message produced during the poll never arrived"
        assert (got.offset(), got.key(), got.value()) == (0, b"k", b"late")
    finally:
        c.close()
