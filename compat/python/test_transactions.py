"""Transactions (KIP-98 exactly-once) end to end through real clients.

A transactional producer's records become visible to read_committed consumers only when its
transaction commits; aborted records stay in the log but are skipped; one control record
(commit or abort marker) per partition ends each transaction and takes an offset of its own,
which no client hands to the application. An open transaction holds back the last stable
offset (LSO): read_committed readers stop there, even for later non-transactional records.
A newer producer with the same transactional.id fences the older one and aborts what it left
open; so does the coordinator when transaction.timeout.ms runs out. Offsets sent with
send_offsets_to_transaction commit and abort with the transaction.

Most tests assert exact offsets, since each data record and each marker takes one offset;
only where a broker restarts may a marker be written twice.
"""
import threading
import time

import pytest
from confluent_kafka import (ConsumerGroupTopicPartitions, IsolationLevel, KafkaError,
                             KafkaException, TopicPartition)
from confluent_kafka.admin import OffsetSpec

from helpers import (admin, consumer, create_topic, kafka_error, produce_checked, producer,
                     unique)

# The first InitProducerId on a fresh broker waits for the transaction coordinator (Kafka
# creates __transaction_state then); give every transactional call room for that.
TXN_WAIT_S = 60.0
READ_WAIT_S = 30.0
# How long a reader must see nothing to count as held back by an open transaction.
QUIET_S = 2.0

RC = "read_committed"
RU = "read_uncommitted"
FENCED = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


def txn_producer(bootstrap, txn_id, **conf):
    p = producer(bootstrap, **{"transactional.id": txn_id, **conf})
    p.init_transactions(TXN_WAIT_S)
    return p


def latest(bootstrap, topic, partition, isolation):
    """ListOffsets(latest) at the given isolation level: the HW, or the LSO."""
    tp = TopicPartition(topic, partition)
    a = admin(bootstrap)  # must outlive the future
    fs = a.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation, request_timeout=15)
    return list(fs.values())[0].result(timeout=20).offset


def wait_settled(bootstrap, topic, partitions, timeout=READ_WAIT_S):
    """commit_transaction and abort_transaction return once the coordinator has logged the
    outcome; it writes the markers to the partitions after that. Waits until no transaction
    is open on the partitions (LSO == high watermark); returns the high watermarks."""
    deadline = time.monotonic() + timeout
    while True:
        hw = {p: latest(bootstrap, topic, p, IsolationLevel.READ_UNCOMMITTED) for p in partitions}
        lso = {p: latest(bootstrap, topic, p, IsolationLevel.READ_COMMITTED) for p in partitions}
        if lso == hw:
            return hw
        assert time.monotonic() < deadline, (
            f"{topic}: LSO {lso} still behind the high watermark {hw} after {timeout}s")
        time.sleep(0.1)


def read_to_end(bootstrap, topic, partitions, isolation, timeout=READ_WAIT_S, settle=True):
    """Reads each partition from offset 0 until the client says it reached the end
    (PARTITION_EOF): the high watermark with read_uncommitted, the LSO with read_committed.
    With `settle`, first waits for the markers of transactions that have ended.
    Returns ({partition: [(offset, key, value)]}, {partition: end offset})."""
    if settle:
        wait_settled(bootstrap, topic, partitions, timeout)
    c = consumer(bootstrap, **{"isolation.level": isolation, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        got = {p: [] for p in partitions}
        ends = {}
        deadline = time.monotonic() + timeout
        while len(ends) < len(partitions):
            assert time.monotonic() < deadline, (
                f"{isolation} read of {topic} did not reach the end of "
                f"{set(partitions) - set(ends)} in {timeout}s; got {got}")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    ends[m.partition()] = m.offset()
                    continue
                raise KafkaException(m.error())
            ends.pop(m.partition(), None)
            got[m.partition()].append((m.offset(), m.key(), m.value()))
        return got, ends
    finally:
        c.close()


def values(records):
    return [v for _, _, v in records]


def poll_data(c, seconds):
    """Every data record `c` returns within `seconds` (EOF events are not data)."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(m.error())
        out.append((m.partition(), m.offset(), m.value()))
    return out


def poll_until(c, n, timeout):
    """Data records from `c` until there are n; fails if fewer arrive within timeout."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} records in {timeout}s: {out}"
        out += poll_data(c, 0.2)
    assert len(out) == n, f"expected {n} records, got {out}"
    return out


def expect_fenced(call):
    """Runs a transactional call that must fail because a newer producer fenced this one;
    returns the KafkaError."""
    with pytest.raises(KafkaException) as e:
        call()
    err = kafka_error(e.value)
    assert err.code() in FENCED, f"expected a fencing error, got {err.name()}: {err.str()}"
    assert err.fatal(), f"fencing must be fatal for the fenced producer, got {err}"
    return err


def bounded(call, timeout=TXN_WAIT_S):
    """kafka-python's commit/abort wait without a bound; run them in a thread that has one."""
    result = {}

    def run():
        try:
            call()
            result["ok"] = True
        except Exception as e:  # re-raised below
            result["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), f"{call.__name__} did not finish in {timeout}s"
    if "error" in result:
        raise result["error"]


def test_commit_abort_commit_read_committed_and_uncommitted(bootstrap):
    """Three transactions from one producer over two partitions: commit A, abort B, commit C.
    read_committed returns exactly A and C in per-partition order, read_uncommitted all 15
    data records; neither returns a marker, and each marker leaves a one-offset gap."""
    t = create_topic(bootstrap, unique("txn-cac"), partitions=2)
    p = txn_producer(bootstrap, unique("txn-cac-id"))
    for name, commit in (("a", True), ("b", False), ("c", True)):
        p.begin_transaction()
        produce_checked(p, t, [{"key": f"{name}{i}".encode(), "value": f"{name}{i}".encode(),
                                "partition": (i - 1) % 2} for i in range(1, 6)])
        if commit:
            p.commit_transaction(TXN_WAIT_S)
        else:
            p.abort_transaction(TXN_WAIT_S)

    # partition 0: a1 a3 a5 [commit] b1 b3 b5 [abort] c1 c3 c5 [commit]
    # partition 1: a2 a4 [commit] b2 b4 [abort] c2 c4 [commit]
    committed = {0: [(0, "a1"), (1, "a3"), (2, "a5"), (8, "c1"), (9, "c3"), (10, "c5")],
                 1: [(0, "a2"), (1, "a4"), (6, "c2"), (7, "c4")]}
    everything = {0: [(0, "a1"), (1, "a3"), (2, "a5"), (4, "b1"), (5, "b3"), (6, "b5"),
                      (8, "c1"), (9, "c3"), (10, "c5")],
                  1: [(0, "a2"), (1, "a4"), (3, "b2"), (4, "b4"), (6, "c2"), (7, "c4")]}
    high = {0: 12, 1: 9}

    def as_pairs(got):
        for recs in got.values():
            for _, k, v in recs:
                assert k == v, f"record with key {k!r} holds {v!r}"
        return {p: [(o, v.decode()) for o, _, v in recs] for p, recs in got.items()}

    got, ends = read_to_end(bootstrap, t, [0, 1], RC)
    assert as_pairs(got) == committed
    # read_committed ends at the LSO, which with no open transaction is the high watermark:
    # past the last commit marker, one more than the last record the client returned.
    assert ends == high
    got, ends = read_to_end(bootstrap, t, [0, 1], RU)
    assert as_pairs(got) == everything
    assert ends == high
    for part in (0, 1):
        assert latest(bootstrap, t, part, IsolationLevel.READ_COMMITTED) == high[part]
        assert latest(bootstrap, t, part, IsolationLevel.READ_UNCOMMITTED) == high[part]

    # kafka-python's read_committed consumer drops the same aborted records and markers.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                       isolation_level=RC)
    try:
        kc.assign([KTP(t, 0), KTP(t, 1)])
        kc.seek_to_beginning()
        kgot = {0: [], 1: []}
        deadline = time.monotonic() + READ_WAIT_S
        while sum(map(len, kgot.values())) < 10 and time.monotonic() < deadline:
            for tp, msgs in kc.poll(timeout_ms=500).items():
                kgot[tp.partition] += [(m.offset, m.value.decode()) for m in msgs]
        for tp, msgs in kc.poll(timeout_ms=1000).items():
            kgot[tp.partition] += [(m.offset, m.value.decode()) for m in msgs]
        assert kgot == committed
    finally:
        kc.close()


def test_fetches_of_nothing_but_aborted_records_reach_the_end(bootstrap):
    """A large aborted transaction fills whole fetch responses with records read_committed
    must drop (librdkafka once failed such a response as too large, its issue 2993): the
    consumer skips them all, without error, to the one committed record after them."""
    topic = unique("txn-aborted-fetch")
    create_topic(bootstrap, topic, 1, config={"max.message.bytes": "10000"})
    p = txn_producer(bootstrap, unique("txn-aborted-fetch-id"),
                     **{"linger.ms": 100, "message.max.bytes": 10000})
    p.begin_transaction()
    for i in range(1000):
        p.produce(topic, b"%04d" % i + b"x" * 996, partition=0)
    p.flush(TXN_WAIT_S)
    p.abort_transaction(TXN_WAIT_S)
    p.begin_transaction()
    p.produce(topic, b"committed", partition=0)
    p.commit_transaction(TXN_WAIT_S)
    got, ends = read_to_end(bootstrap, topic, [0], RC)
    # 1000 aborted records, their marker, the committed record and its marker.
    assert [(o, v) for o, _, v in got[0]] == [(1001, b"committed")]
    assert ends == {0: 1003}


def test_open_transaction_holds_back_read_committed(bootstrap):
    """An open transaction pins the LSO at its first offset: read_committed sees nothing from
    there on, not even a later non-transactional record, and ListOffsets(read_committed)
    answers the LSO. After the commit the reader continues with both, in offset order."""
    t = create_topic(bootstrap, unique("txn-lso"))
    plain = producer(bootstrap)
    produce_checked(plain, t, [(None, b"pre0"), (None, b"pre1")], partition=0)
    p = txn_producer(bootstrap, unique("txn-lso-id"))
    p.begin_transaction()
    produce_checked(p, t, [(None, b"x1"), (None, b"x2")], partition=0)  # offsets 2, 3
    produce_checked(plain, t, [(None, b"after")], partition=0)           # offset 4

    rc = consumer(bootstrap, **{"isolation.level": RC})
    ru = consumer(bootstrap, **{"isolation.level": RU})
    try:
        rc.assign([TopicPartition(t, 0, 0)])
        ru.assign([TopicPartition(t, 0, 0)])
        # read_uncommitted is not held back: the records really are in the log.
        assert poll_until(ru, 5, READ_WAIT_S) == [
            (0, 0, b"pre0"), (0, 1, b"pre1"), (0, 2, b"x1"), (0, 3, b"x2"), (0, 4, b"after")]
        assert poll_until(rc, 2, READ_WAIT_S) == [(0, 0, b"pre0"), (0, 1, b"pre1")]
        assert poll_data(rc, QUIET_S) == [], "read_committed read past an open transaction"

        assert latest(bootstrap, t, 0, IsolationLevel.READ_COMMITTED) == 2
        assert latest(bootstrap, t, 0, IsolationLevel.READ_UNCOMMITTED) == 5
        assert rc.get_watermark_offsets(TopicPartition(t, 0), timeout=10) == (0, 2)
        assert ru.get_watermark_offsets(TopicPartition(t, 0), timeout=10) == (0, 5)

        p.commit_transaction(TXN_WAIT_S)  # commit marker at offset 5
        assert poll_until(rc, 3, READ_WAIT_S) == [
            (0, 2, b"x1"), (0, 3, b"x2"), (0, 4, b"after")]
        assert poll_data(rc, 1.0) == []
        assert latest(bootstrap, t, 0, IsolationLevel.READ_COMMITTED) == 6
        assert latest(bootstrap, t, 0, IsolationLevel.READ_UNCOMMITTED) == 6
        assert rc.get_watermark_offsets(TopicPartition(t, 0), timeout=10) == (0, 6)
    finally:
        rc.close()
        ru.close()


def test_new_producer_fences_the_old_and_aborts_its_transaction(bootstrap):
    """init_transactions with a transactional.id that another producer is using bumps the
    epoch and aborts that producer's open transaction. The old producer's commit fails with
    a fatal fencing error; its records are never visible to read_committed, while the new
    producer's committed records are."""
    t = create_topic(bootstrap, unique("txn-fence"), partitions=2)
    txn_id = unique("txn-fence-id")
    p1 = txn_producer(bootstrap, txn_id)
    p1.begin_transaction()
    produce_checked(p1, t, [{"value": f"p1-{i}".encode(), "partition": i % 2}
                            for i in range(4)])

    p2 = txn_producer(bootstrap, txn_id)  # aborts p1's: a marker at offset 2 of each
    expect_fenced(lambda: p1.commit_transaction(TXN_WAIT_S))
    # Fatal means fatal: the fenced producer cannot start over either.
    expect_fenced(p1.begin_transaction)

    p2.begin_transaction()
    produce_checked(p2, t, [{"value": f"p2-{i}".encode(), "partition": i % 2}
                            for i in range(4)])
    p2.commit_transaction(TXN_WAIT_S)

    got, ends = read_to_end(bootstrap, t, [0, 1], RC)
    assert {p: [(o, v) for o, _, v in recs] for p, recs in got.items()} == {
        0: [(3, b"p2-0"), (4, b"p2-2")], 1: [(3, b"p2-1"), (4, b"p2-3")]}
    assert ends == {0: 6, 1: 6}
    got, _ = read_to_end(bootstrap, t, [0, 1], RU)
    assert {p: values(recs) for p, recs in got.items()} == {
        0: [b"p1-0", b"p1-2", b"p2-0", b"p2-2"], 1: [b"p1-1", b"p1-3", b"p2-1", b"p2-3"]}


def test_coordinator_aborts_a_transaction_that_times_out(bootstrap):
    """A transaction left open past transaction.timeout.ms is aborted by the coordinator: the
    LSO moves on, read_committed sees the non-transactional record written after the hung
    transaction and never the hung records, and the hung producer's commit fails.

    Apache Kafka looks for expired transactions every
    transaction.abort.timed.out.transaction.cleanup.interval.ms (10 s by default), so the
    abort comes within about 13 s of the begin; the 60 s bound covers that."""
    t = create_topic(bootstrap, unique("txn-timeout"))
    hung = txn_producer(bootstrap, unique("txn-timeout-id"), **{"transaction.timeout.ms": 3000})
    hung.begin_transaction()
    produce_checked(hung, t, [(None, b"hung0"), (None, b"hung1")], partition=0)
    produce_checked(producer(bootstrap), t, [(None, b"later")], partition=0)  # offset 2

    rc = consumer(bootstrap, **{"isolation.level": RC})
    try:
        rc.assign([TopicPartition(t, 0, 0)])
        assert poll_data(rc, 1.0) == [], "read_committed read past an open transaction"
        assert latest(bootstrap, t, 0, IsolationLevel.READ_COMMITTED) == 0
        assert poll_until(rc, 1, 60.0) == [(0, 2, b"later")]
    finally:
        rc.close()

    got, ends = read_to_end(bootstrap, t, [0], RC)
    assert got == {0: [(2, None, b"later")]}
    assert ends == {0: 4}  # the abort marker went in after "later", at offset 3
    got, _ = read_to_end(bootstrap, t, [0], RU)
    assert values(got[0]) == [b"hung0", b"hung1", b"later"]
    # The coordinator bumped the epoch when it aborted: this producer is fenced.
    expect_fenced(lambda: hung.commit_transaction(TXN_WAIT_S))


class Processor:
    """A consume-transform-produce loop: a read_committed group consumer and a
    transactional producer that writes each input record's transformation to the same
    partition of the output topic and commits the consumed offsets with it."""

    def __init__(self, bootstrap, txn_id, group, src, dst):
        self.src, self.dst = src, dst
        # Producer first: its init_transactions aborts whatever an older instance left open,
        # including offsets for the group, which the consumer is about to fetch.
        self.producer = txn_producer(bootstrap, txn_id)
        self.consumer = consumer(bootstrap, **{"group.id": group, "isolation.level": RC,
                                               "enable.auto.commit": False})
        self.consumer.subscribe([src])

    def take(self, n, timeout=READ_WAIT_S):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"processor got {len(out)} of {n} records"
            m = self.consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                raise KafkaException(m.error())
            out.append(m)
        return out

    def batch(self, n, end="commit"):
        """Consumes n records and processes them in one transaction, ended by `end`:
        "commit", "abort" or "open" (left open). Returns the input records."""
        msgs = self.take(n)
        p, c = self.producer, self.consumer
        p.begin_transaction()
        produce_checked(p, self.dst, [{"key": m.key(), "value": b"out:" + m.value(),
                                       "partition": m.partition()} for m in msgs])
        positions = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
        p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), TXN_WAIT_S)
        if end == "commit":
            p.commit_transaction(TXN_WAIT_S)
        elif end == "abort":
            p.abort_transaction(TXN_WAIT_S)
        return msgs

    def close_consumer(self):
        self.consumer.close()  # auto commit is off: this commits nothing


def test_consume_transform_produce_exactly_once(bootstrap):
    """send_offsets_to_transaction ties consumed offsets to produced records: after an
    aborted batch, a batch left open by a processor that goes away, and a new processor
    with the same transactional.id (which fences the old one and aborts its open batch),
    the committed output holds every input record exactly once, in input order per
    partition, and the group's committed offsets are the input's end offsets."""
    src = create_topic(bootstrap, unique("txn-ctp-in"), partitions=3)
    dst = create_topic(bootstrap, unique("txn-ctp-out"), partitions=3)
    group = unique("txn-ctp-group")
    txn_id = unique("txn-ctp-id")
    n, size = 200, 20
    inputs = [{"key": f"k{i % 17}".encode(), "value": f"v{i}".encode(), "partition": i % 3}
              for i in range(n)]
    delivered = produce_checked(producer(bootstrap, enable_idempotence=True), src, inputs)
    by_part = {p: [m.value() for m in delivered if m.partition() == p] for p in range(3)}
    ends = {p: len(v) for p, v in by_part.items()}

    first = Processor(bootstrap, txn_id, group, src, dst)
    done = 0
    for _ in range(4):
        done += len(first.batch(size, "commit"))
    first.batch(size, "abort")
    first.batch(size, "open")  # offsets sent, records flushed, never committed
    first.close_consumer()

    second = Processor(bootstrap, txn_id, group, src, dst)  # fences `first`
    while done < n:
        done += len(second.batch(min(size, n - done), "commit"))
    assert poll_data(second.consumer, QUIET_S) == [], "more input than the committed offsets left"
    second.close_consumer()
    expect_fenced(lambda: first.producer.commit_transaction(TXN_WAIT_S))

    got, _ = read_to_end(bootstrap, dst, [0, 1, 2], RC)
    assert {p: values(recs) for p, recs in got.items()} == {
        p: [b"out:" + v for v in vals] for p, vals in by_part.items()}
    # The aborted and the fenced batch did reach the log; read_committed skipped them.
    got, _ = read_to_end(bootstrap, dst, [0, 1, 2], RU)
    assert sum(len(recs) for recs in got.values()) == n + 2 * size

    c = consumer(bootstrap, **{"group.id": group, "isolation.level": RC})
    try:
        committed = c.committed([TopicPartition(src, p) for p in range(3)], timeout=20)
    finally:
        c.close()
    assert {tp.partition: tp.offset for tp in committed} == ends


def test_transactional_offsets_visible_only_after_commit(bootstrap):
    """Offsets sent to a transaction (TxnOffsetCommit) stay pending until it ends: a plain
    OffsetFetch keeps answering the previous commit, one that requires stable offsets is
    told UNSTABLE_OFFSET_COMMIT (a read_committed consumer waits), an abort leaves the old
    offset, and a commit publishes the new one."""
    t = create_topic(bootstrap, unique("txn-offs"))
    group = unique("txn-offs-group")
    tp = TopicPartition(t, 0)
    c = consumer(bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(t, 0, 2)], asynchronous=False)
        meta = c.consumer_group_metadata()
    finally:
        c.close()

    def committed(isolation=RU, timeout=20):
        c = consumer(bootstrap, **{"group.id": group, "isolation.level": isolation})
        try:
            return c.committed([tp], timeout=timeout)[0].offset
        finally:
            c.close()

    def stable_fetch(wait=True):
        """OffsetFetch with RequireStable; with `wait`, retried while the offset is unstable
        (the coordinator writes the marker to __consumer_offsets after EndTxn returns)."""
        deadline = time.monotonic() + READ_WAIT_S
        while True:
            a = admin(bootstrap)
            fs = a.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, [tp])], require_stable=True,
                request_timeout=15)
            [r] = fs[group].result(timeout=20).topic_partitions
            if not (wait and r.error is not None
                    and r.error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT
                    and time.monotonic() < deadline):
                return r
            time.sleep(0.1)

    p = txn_producer(bootstrap, unique("txn-offs-id"))
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(t, 0, 7)], meta, TXN_WAIT_S)
    assert committed() == 2
    r = stable_fetch(wait=False)
    assert r.error is not None and r.error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT, r
    p.abort_transaction(TXN_WAIT_S)
    assert committed() == 2
    assert committed(RC) == 2
    assert stable_fetch().offset == 2

    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(t, 0, 7)], meta, TXN_WAIT_S)
    assert committed() == 2
    # A read_committed consumer's committed() retries while the offset is unstable, and
    # returns the new offset once the transaction commits.
    result = {}

    def fetch():
        try:
            result["offset"] = committed(RC, timeout=45)
        except Exception as e:  # reported below
            result["error"] = e

    fetcher = threading.Thread(target=fetch, daemon=True)
    fetcher.start()
    fetcher.join(QUIET_S)
    assert fetcher.is_alive(), f"read_committed committed() did not wait: {result}"
    p.commit_transaction(TXN_WAIT_S)
    fetcher.join(50)
    assert not fetcher.is_alive()
    assert result == {"offset": 7}
    assert committed() == 7
    assert stable_fetch().offset == 7


def test_kafka_python_transactions(bootstrap):
    """kafka-python's transactional producer (its own choice of request versions) commits and
    aborts; both clients' read_committed consumers agree on what is visible."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    t = create_topic(bootstrap, unique("txn-kp"))
    kp = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("txn-kp-id"),
                       max_block_ms=int(TXN_WAIT_S * 1000))
    try:
        kp.init_transactions()
        for name, commit in (("a", True), ("b", False), ("c", True)):
            kp.begin_transaction()
            for i in range(3):
                kp.send(t, value=f"{name}{i}".encode(), partition=0)
            kp.flush(timeout=30)
            bounded(kp.commit_transaction if commit else kp.abort_transaction)
    finally:
        kp.close(timeout=5)
    want = [(0, b"a0"), (1, b"a1"), (2, b"a2"), (8, b"c0"), (9, b"c1"), (10, b"c2")]
    got, ends = read_to_end(bootstrap, t, [0], RC)
    assert [(o, v) for o, _, v in got[0]] == want
    assert ends == {0: 12}
    kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                       isolation_level=RC)
    try:
        kc.assign([KTP(t, 0)])
        kc.seek_to_beginning()
        kgot = []
        deadline = time.monotonic() + READ_WAIT_S
        while len(kgot) < len(want) and time.monotonic() < deadline:
            for msgs in kc.poll(timeout_ms=500).values():
                kgot += [(m.offset, m.value) for m in msgs]
        for msgs in kc.poll(timeout_ms=1000).values():
            kgot += [(m.offset, m.value) for m in msgs]
        assert kgot == want
    finally:
        kc.close()


def test_transactions_survive_kill9(restartable_broker):
    """Transaction state and markers are durable: after kill -9 and restart, the same
    transactional.id initialises again, aborts and commits, and read_committed shows
    exactly the committed transactions from before and after the restart."""
    b = restartable_broker
    t = create_topic(b.bootstrap, unique("txn-dur"), partitions=2)
    txn_id = unique("txn-dur-id")

    def run(p, name, commit):
        p.begin_transaction()
        produce_checked(p, t, [{"value": f"{name}{i}".encode(), "partition": i % 2}
                               for i in range(4)])
        (p.commit_transaction if commit else p.abort_transaction)(TXN_WAIT_S)

    p = txn_producer(b.bootstrap, txn_id)
    run(p, "a", True)
    run(p, "b", False)
    del p
    b.restart(hard=True)

    p = txn_producer(b.bootstrap, txn_id)
    run(p, "c", False)
    run(p, "d", True)
    got, ends = read_to_end(b.bootstrap, t, [0, 1], RC, timeout=60)
    assert {q: values(recs) for q, recs in got.items()} == {
        0: [b"a0", b"a2", b"d0", b"d2"], 1: [b"a1", b"a3", b"d1", b"d3"]}
    # Not exact offsets here: a coordinator that restarts before it has logged a transaction
    # as complete writes its markers again, so a partition may hold a second abort marker
    # for "b" (Apache Kafka does that when killed right after abort_transaction returns).
    assert ends == {q: latest(b.bootstrap, t, q, IsolationLevel.READ_UNCOMMITTED)
                    for q in (0, 1)}
    assert all(12 <= e <= 13 for e in ends.values()), ends


def test_transaction_open_across_kill9_is_aborted_by_the_next_init(restartable_broker):
    """A transaction open when the broker is killed never becomes visible: after the restart
    it still holds back the LSO (Apache Kafka keeps it open until it times out) or has been
    aborted; a new producer with the same transactional.id aborts it if need be, and
    read_committed then sees the records written after it and none of its own."""
    b = restartable_broker
    t = create_topic(b.bootstrap, unique("txn-dur-open"))
    txn_id = unique("txn-dur-open-id")
    plain = producer(b.bootstrap)
    produce_checked(plain, t, [(None, b"before")], partition=0)  # offset 0
    # A long timeout, so that only the restart or the next init can end the transaction.
    old = txn_producer(b.bootstrap, txn_id, **{"transaction.timeout.ms": 300000})
    old.begin_transaction()
    produce_checked(old, t, [(None, b"open0"), (None, b"open1")], partition=0)  # 1, 2
    produce_checked(plain, t, [(None, b"behind")], partition=0)  # 3
    del plain

    b.restart(hard=True)

    got, ends = read_to_end(b.bootstrap, t, [0], RC, timeout=60, settle=False)
    assert [(o, v) for o, _, v in got[0]] in ([(0, b"before")], [(0, b"before"), (3, b"behind")])
    assert ends[0] in (1, 5), ends  # held back at the open transaction, or past its abort
    new = txn_producer(b.bootstrap, txn_id)  # aborts the old transaction: marker at 4
    produce_checked(producer(b.bootstrap), t, [(None, b"after")], partition=0)  # 5
    new.begin_transaction()
    produce_checked(new, t, [(None, b"new0")], partition=0)  # 6, marker at 7
    new.commit_transaction(TXN_WAIT_S)

    got, ends = read_to_end(b.bootstrap, t, [0], RC, timeout=60)
    assert [(o, v) for o, _, v in got[0]] == [
        (0, b"before"), (3, b"behind"), (5, b"after"), (6, b"new0")]
    assert ends == {0: 8}
    got, _ = read_to_end(b.bootstrap, t, [0], RU)
    assert values(got[0]) == [b"before", b"open0", b"open1", b"behind", b"after", b"new0"]
    del old
