"""Shared helpers for the Python compat tests (clients: confluent-kafka, kafka-python)."""
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WAIT_S = 20.0


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, name, partitions=1, config=None, replication_factor=-1):
    """Creates a topic with the broker's default.replication.factor unless told otherwise:
    one replica on a single node, three on the compat cluster, so every test there runs
    on replicated partitions."""
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, partitions, replication_factor, config=config or {})],
                         request_timeout=15)
    fs[name].result(timeout=20)
    wait_for_topic(a, name, partitions)
    wait_for_leaders(bootstrap, name, partitions)
    return name


def leader_address(bootstrap, name, partition, timeout=WAIT_S):
    """host:port of the broker that metadata names as the partition's leader (waits while
    the partition has none yet)."""
    a = admin(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        p = t.partitions.get(partition) if t is not None and t.error is None else None
        if p is not None and p.error is None and p.leader in md.brokers:
            b = md.brokers[p.leader]
            return f"{b.host}:{b.port}"
        assert time.monotonic() < deadline, (
            f"no leader for {name}-{partition} in metadata after {timeout}s")
        time.sleep(0.1)


def leader_conn(bootstrap, name, partition):
    """A raw connection to the partition's leader: produce and fetch go to the leader."""
    import kafka_wire
    return kafka_wire.Conn(leader_address(bootstrap, name, partition))


def wait_for_leaders(bootstrap, name, partitions, timeout=WAIT_S):
    """Metadata can list a new topic before its leader serves it (Kafka answers
    NOT_LEADER_OR_FOLLOWER for a moment); wait until a fetch of each partition from the
    leader that metadata names succeeds."""
    deadline = time.monotonic() + timeout
    for p in range(partitions):
        while True:
            c = leader_conn(bootstrap, name, p)
            try:
                err = c.fetch_v4(name, p, 0, max_wait_ms=0)[(name, p)][0]
            finally:
                c.close()
            if err == 0:
                break
            # Not served yet, or the leader metadata named has just changed: ask again.
            assert err in (3, 5, 6) and time.monotonic() < deadline, (
                f"partition {name}-{p} not ready: error {err}")
            time.sleep(0.1)


def wait_for_topic(a, name, partitions, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return md
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} with {partitions} partitions not in metadata "
                                 f"after {timeout}s (got {t and t.error}, "
                                 f"{t and len(t.partitions)})")
        time.sleep(0.2)


def producer(bootstrap, **conf):
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(c)


def produce_checked(p, topic, records, partition=None):
    """Produce (key, value) or dict records and flush; return list of delivered Message objects
    in delivery order. Fails on any delivery error."""
    delivered, errors = [], []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    for r in records:
        kw = dict(r) if isinstance(r, dict) else {"key": r[0], "value": r[1]}
        if partition is not None and "partition" not in kw:
            kw["partition"] = partition
        p.produce(topic, on_delivery=cb, **kw)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} records not delivered within 30s"
    assert not errors, f"delivery errors: {errors}"
    return delivered


def consumer(bootstrap, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": unique("compat-unused-group"),  # required by librdkafka; assign() only
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
    }
    c.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(c)


def consume_n(bootstrap, topic, partitions, n, offset=0, timeout=WAIT_S, **conf):
    """assign() the given partitions at `offset` and read exactly n messages (error if fewer
    arrive before timeout). Returns the Message list in arrival order."""
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, offset) for p in partitions])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            out.append(m)
        assert len(out) == n, f"expected {n} messages from {topic}, got {len(out)}"
        # nothing more should be there
        extra = c.poll(0.5)
        assert extra is None or extra.error() is not None, (
            f"unexpected extra message at offset {extra.offset()}")
        return out
    finally:
        c.close()


def kp_consume_n(bootstrap, topic, partitions, n, offset=0, timeout=WAIT_S):
    """Same as consume_n but with kafka-python's KafkaConsumer (no group)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=int(timeout * 1000))
    try:
        tps = [KTP(topic, p) for p in partitions]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, offset)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=500).items():
                out.extend(msgs)
        assert len(out) == n, f"expected {n} messages from {topic}, got {len(out)}"
        return out
    finally:
        c.close()


def kafka_error(exc):
    """The confluent KafkaError inside a KafkaException."""
    assert isinstance(exc, KafkaException), repr(exc)
    return exc.args[0]
