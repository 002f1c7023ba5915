"""compression.type on a topic: batches are stored in the topic's codec whatever the
producer sent, and every client reads them back."""
import struct

import pytest

from helpers import consume_n, create_topic, kp_consume_n, leader_conn, produce_checked, producer, unique

CODECS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_codecs(bootstrap, topic):
    """The codec of every batch the leader returns for partition 0, read off the wire."""
    c = leader_conn(bootstrap, topic, 0)
    try:
        err, _hw, records = c.fetch_v4(topic, 0, 0)[(topic, 0)]
    finally:
        c.close()
    assert err == 0
    codecs, pos = [], 0
    while pos + 61 <= len(records):
        (length,) = struct.unpack_from(">i", records, pos + 8)
        (attributes,) = struct.unpack_from(">h", records, pos + 21)
        codecs.append(attributes & 7)
        pos += 12 + length
    return codecs


@pytest.mark.parametrize("topic_codec,producer_codec",
                         [("lz4", "gzip"), ("zstd", "none"), ("uncompressed", "snappy"),
                          ("gzip", "lz4")])
def test_batches_are_stored_in_the_topic_codec(bootstrap, topic_codec, producer_codec):
    t = unique(f"ct-{topic_codec}")
    create_topic(bootstrap, t, 1, config={"compression.type": topic_codec})
    p = producer(bootstrap, **{"compression.type": producer_codec, "linger.ms": 50})
    records = [(f"k{i}".encode(), (f"value {i} " * (i % 9 + 1)).encode()) for i in range(50)]
    delivered = produce_checked(p, t, records, partition=0)
    assert [m.offset() for m in delivered] == list(range(50))
    codecs = stored_codecs(bootstrap, t)
    assert codecs and set(codecs) == {CODECS[topic_codec]}, codecs
    for got in (consume_n(bootstrap, t, [0], 50), kp_consume_n(bootstrap, t, [0], 50)):
        values = [(m.key(), m.value()) if callable(m.key) else (m.key, m.value) for m in got]
        assert values == records


def test_producer_keeps_the_producers_codec(bootstrap):
    t = unique("ct-producer")
    create_topic(bootstrap, t, 1, config={"compression.type": "producer"})
    produce_checked(producer(bootstrap, **{"compression.type": "zstd", "linger.ms": 50}), t,
                    [(b"k", b"v" * 100)] * 10, partition=0)
    assert set(stored_codecs(bootstrap, t)) == {4}
