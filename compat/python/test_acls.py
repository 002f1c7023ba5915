"""ACLs (StandardAuthorizer semantics) through confluent-kafka, kafka-python and `fjord acls`.

Covered:
  * A matrix of principals on a SASL_PLAINTEXT listener (SCRAM-SHA-512): admin (a super
    user), alice (Write and Read on topic `orders`, Read on group `g-orders`), bob (a
    PREFIXED Write on `logs-` and a literal DENY All on `logs-secret`) and carol (no ACLs).
    Real producers and consumers (confluent-kafka for everyone, kafka-python for alice)
    can do exactly what the ACLs allow: topic and group authorization errors otherwise,
    deny beats allow, deny by default, and carol's metadata lists no topics.
  * CreateAcls / DescribeAcls / DeleteAcls through the AdminClient: filters return exactly
    the matching bindings, a delete removes (and returns) only what its filter matches, and
    the removed permission stops working.
  * Host matching: an ACL for 127.0.0.1 grants, one for another address does not (and a
    DENY for another address does not take anything away).
  * The `fjord acls` CLI (like kafka-acls.sh) as admin over SASL_PLAINTEXT: --add, --list
    in Kafka's output format, --producer, --remove --force; over PLAINTEXT (User:ANONYMOUS,
    no ACLs) it fails with an authorization error.
  * Authorized-operations masks of DescribeTopics / DescribeCluster for alice and admin.
  * A transactional producer needs Write on its TRANSACTIONAL_ID.
  * A broker without an authorizer answers CreateAcls with SECURITY_DISABLED.
  * allow.everyone.if.no.acl.found=true: a resource without ACLs is open to everyone, one
    with an ACL for someone else is not.

One module-scoped broker (PLAINTEXT + SASL_PLAINTEXT, authorizer on, super.users=User:admin,
SCRAM users made with --add-scram) serves most tests; the last two tests start their own.
Needs FJORD_BIN: with KAFKA_BOOTSTRAP every test here is skipped.
"""
import os
import subprocess
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import TopicCollection
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)

from conftest import Broker, free_port, wait_for_port

FJORD_BIN = os.environ.get("FJORD_BIN")
pytestmark = pytest.mark.skipif(
    not FJORD_BIN,
    reason="ACL tests start their own brokers with an authorizer and SASL users (FJORD_BIN); "
           "a KAFKA_BOOTSTRAP broker has neither")

AUTHORIZER = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
MECHANISM = "SCRAM-SHA-512"
PASSWORDS = {"admin": "admin-secret-4Rf", "alice": "alice-secret-8Nv",
             "bob": "bob-secret-2Hs", "carol": "carol-secret-6Tz"}
WAIT_S = 20.0

ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
CLUSTER = ResourceType.BROKER  # Kafka's CLUSTER resource type (4)
TRANSACTIONAL_ID = ResourceType.TRANSACTIONAL_ID


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------
# Brokers
# ---------------------------------------------------------------------------------------

def start_broker(overrides=(), users=(), sasl=True):
    """A harness-owned broker with PLAINTEXT on Broker.port and, when `sasl`, a
    SASL_PLAINTEXT listener (PLAIN and both SCRAMs) whose SCRAM-SHA-512 users are `users`."""
    b = Broker(fjord_bin=FJORD_BIN)
    listeners = [f"PLAINTEXT://127.0.0.1:{b.port}"]
    b.sasl_addr = None
    if sasl:
        sasl_port = free_port()
        b.sasl_addr = f"127.0.0.1:{sasl_port}"
        listeners.append(f"SASL_PLAINTEXT://{b.sasl_addr}")
        b.overrides.append("sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512")
        for u in users:
            b.extra_args += ["--add-scram", f"{MECHANISM}=[name={u},password={PASSWORDS[u]}]"]
    b.overrides.insert(0, f"listeners={','.join(listeners)}")
    b.overrides += list(overrides)
    try:
        b.start()
        if sasl:
            wait_for_port("127.0.0.1", sasl_port, 10, b.proc)
    except Exception:
        b.cleanup()
        raise
    return b


@pytest.fixture(scope="module")
def acl_broker():
    b = start_broker(overrides=[AUTHORIZER, "super.users=User:admin"],
                     users=["admin", "alice", "bob", "carol"])
    yield b
    b.cleanup()


# ---------------------------------------------------------------------------------------
# Client configs
# ---------------------------------------------------------------------------------------

def client_conf(b, user, **extra):
    """librdkafka settings for `user` on b's SASL_PLAINTEXT listener."""
    c = {"bootstrap.servers": b.sasl_addr, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanism": MECHANISM, "sasl.username": user,
         "sasl.password": PASSWORDS[user]}
    c.update(extra)
    return c


def admin_client(b, user="admin"):
    return AdminClient(client_conf(b, user))


def producer_for(b, user, **extra):
    conf = {"linger.ms": 5, "message.timeout.ms": 15000}
    conf.update(extra)
    return Producer(client_conf(b, user, **conf))


def consumer_for(b, user, group=None, **extra):
    conf = {"group.id": group or uniq("unused-group"), "enable.auto.commit": False,
            "enable.partition.eof": False, "auto.offset.reset": "earliest"}
    conf.update(extra)
    return Consumer(client_conf(b, user, **conf))


def kp_conf(b, user):
    """kafka-python settings for `user` on b's SASL_PLAINTEXT listener."""
    return {"bootstrap_servers": b.sasl_addr, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM, "sasl_plain_username": user,
            "sasl_plain_password": PASSWORDS[user]}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def acl(restype, name, principal, op, perm=ALLOW, pattern=LITERAL, host="*"):
    return AclBinding(restype, name, pattern, principal, host, op, perm)


def create_acls(a, bindings):
    fs = a.create_acls(bindings, request_timeout=15)
    for f in fs.values():
        assert f.result(timeout=WAIT_S) is None


def create_topics(a, *names, partitions=1):
    fs = a.create_topics([NewTopic(n, partitions, 1) for n in names], request_timeout=15)
    for f in fs.values():
        f.result(timeout=WAIT_S)
    deadline = time.monotonic() + WAIT_S
    for n in names:
        while True:
            t = a.list_topics(topic=n, timeout=10).topics.get(n)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                break
            assert time.monotonic() < deadline, f"topic {n} not in metadata"
            time.sleep(0.1)


def eventually(check, timeout=10.0, what="condition"):
    """Poll `check()` (truthy = done) until it holds; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout}s"
        time.sleep(0.2)


def produce(p, topic, values):
    """Produce values and flush; return the list of delivery errors (None for delivered)."""
    results = []

    def cb(err, msg):
        results.append(err)

    for v in values:
        p.produce(topic, value=v, on_delivery=cb)
        p.poll(0)
    assert p.flush(30) == 0, "delivery reports did not arrive within 30s"
    assert len(results) == len(values)
    return results


def produce_ok(p, topic, values):
    errs = produce(p, topic, values)
    assert errs == [None] * len(values), f"delivery errors to {topic}: {errs}"


def produce_error(p, topic):
    """Produce one record that must fail; return its error code."""
    [err] = produce(p, topic, [b"must-not-land"])
    assert err is not None, f"a record was delivered to {topic}"
    return err.code()


def consume_values(c, want, timeout=WAIT_S):
    """Poll c until every value in `want` has arrived (others are ignored); raise on a
    consumer error."""
    got = set()
    deadline = time.monotonic() + timeout
    while not want <= got:
        assert time.monotonic() < deadline, f"missing {sorted(want - got)[:5]}"
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        got.add(m.value())
    return got


def wait_for_error(c, code, timeout=WAIT_S):
    """Poll c until it reports error `code`; a record is a failure. Other errors are passed
    over: librdkafka looks up the coordinator of its group.id even for an assign()ed
    consumer, and reports GROUP_AUTHORIZATION_FAILED for a group the user may not use."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is not None, f"read a record at offset {m.offset()}"
        if m.error().code() == code:
            return
        seen.append(m.error())
    raise AssertionError(f"no error {code} within {timeout}s; saw {seen}")


def assert_fetch_denied(b, user, topic):
    """An assign()ed fetch of `topic` (which has records) fails with
    TOPIC_AUTHORIZATION_FAILED. Only meaningful where the user may Describe the topic: for a
    topic hidden from its metadata, librdkafka (and kafka-python) wait silently."""
    c = consumer_for(b, user)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        wait_for_error(c, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    finally:
        c.close()


def assert_subscribe_denied(b, user, topic, group, code):
    """A group consumer subscribed to `topic` gets error `code` (and no record)."""
    c = consumer_for(b, user, group=group)
    try:
        c.subscribe([topic])
        wait_for_error(c, code)
    finally:
        c.close()


def visible_topics(b, user):
    md = admin_client(b, user).list_topics(timeout=10)
    return {n for n in md.topics if not n.startswith("__")}


# ---------------------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------------------

MATRIX_ACLS = [
    acl(TOPIC, "orders", "User:alice", AclOperation.WRITE),
    acl(TOPIC, "orders", "User:alice", AclOperation.READ),
    acl(GROUP, "g-orders", "User:alice", AclOperation.READ),
    acl(TOPIC, "logs-", "User:bob", AclOperation.WRITE, pattern=PREFIXED),
    acl(TOPIC, "logs-secret", "User:bob", AclOperation.ALL, perm=DENY),
]


@pytest.fixture(scope="module")
def matrix(acl_broker):
    """Topics made by admin, and the matrix's ACLs."""
    a = admin_client(acl_broker)
    create_topics(a, "orders", "other", "logs-app", "logs-secret")
    # A record in each, so that a fetch that should be refused would have something to read.
    p = producer_for(acl_broker, "admin")
    for t in ["orders", "other", "logs-app", "logs-secret"]:
        produce_ok(p, t, [f"seed-{t}".encode()])
    create_acls(a, MATRIX_ACLS)
    # Write implies Describe: wait until alice sees `orders` (the ACLs are in force).
    eventually(lambda: "orders" in visible_topics(acl_broker, "alice"), what="alice's ACLs")
    return acl_broker


def test_alice_produces_and_consumes_only_what_her_acls_allow(matrix):
    b = matrix
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.errors import TopicAuthorizationFailedError

    run = uuid.uuid4().hex[:8]
    ck = [f"ck-{run}-{i}".encode() for i in range(5)]
    kp = [f"kp-{run}-{i}".encode() for i in range(5)]

    # confluent-kafka producer
    p = producer_for(b, "alice")
    produce_ok(p, "orders", ck)
    assert produce_error(p, "other") == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # kafka-python producer (idempotent by default: Write on a topic stands in for
    # IdempotentWrite on the cluster)
    kprod = KafkaProducer(**kp_conf(b, "alice"))
    try:
        for v in kp:
            kprod.send("orders", value=v).get(timeout=WAIT_S)
        with pytest.raises(TopicAuthorizationFailedError):
            kprod.send("other", value=b"must-not-land").get(timeout=WAIT_S)
    finally:
        kprod.close(timeout=10)

    # confluent-kafka consumer in group g-orders
    c = consumer_for(b, "alice", group="g-orders")
    try:
        c.subscribe(["orders"])
        consume_values(c, set(ck) | set(kp))
        c.commit(asynchronous=False)
    finally:
        c.close()

    # kafka-python consumer (assign, no group)
    kc = KafkaConsumer(group_id=None, enable_auto_commit=False,
                       auto_offset_reset="earliest", **kp_conf(b, "alice"))
    try:
        kc.assign([KTP("orders", 0)])
        kc.seek(KTP("orders", 0), 0)
        got = set()
        deadline = time.monotonic() + WAIT_S
        while not set(ck) | set(kp) <= got and time.monotonic() < deadline:
            for msgs in kc.poll(timeout_ms=500).values():
                got.update(m.value for m in msgs)
        assert set(ck) | set(kp) <= got
    finally:
        kc.close()

    # Another group, and a topic she may not read
    assert_subscribe_denied(b, "alice", "orders", "g-other",
                            KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert_subscribe_denied(b, "alice", "other", "g-orders",
                            KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert visible_topics(b, "alice") == {"orders"}


def test_bob_prefixed_allow_and_literal_deny(matrix):
    b = matrix
    p = producer_for(b, "bob")
    produce_ok(p, "logs-app", [b"bob-1", b"bob-2"])
    # The DENY All on logs-secret beats the PREFIXED allow on logs-.
    assert produce_error(p, "logs-secret") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(p, "orders") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Write, not Read.
    assert_fetch_denied(b, "bob", "logs-app")
    # Write implies Describe on logs-app; the deny hides logs-secret.
    assert visible_topics(b, "bob") == {"logs-app"}


def test_carol_without_acls_is_denied_everything(matrix):
    b = matrix
    assert visible_topics(b, "carol") == set()
    p = producer_for(b, "carol")
    assert produce_error(p, "orders") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(p, "logs-app") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert_subscribe_denied(b, "carol", "orders", "g-orders",
                            KafkaError.GROUP_AUTHORIZATION_FAILED)

    a = admin_client(b, "carol")
    name = uniq("carol-new")
    fs = a.create_topics([NewTopic(name, 1, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[name].result(timeout=WAIT_S)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        a.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                         None, None, AclOperation.ANY,
                                         AclPermissionType.ANY),
                        request_timeout=15).result(timeout=WAIT_S)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_admin_super_user_can_do_everything(matrix):
    b = matrix
    a = admin_client(b)
    p = producer_for(b, "admin")
    produce_ok(p, "logs-secret", [b"admin-secret-record"])
    produce_ok(p, "other", [b"admin-other-record"])
    c = consumer_for(b, "admin", group=uniq("admin-group"))
    try:
        c.subscribe(["logs-secret"])
        consume_values(c, {b"admin-secret-record"})
    finally:
        c.close()
    assert {"orders", "other", "logs-app", "logs-secret"} <= visible_topics(b, "admin")

    name = uniq("admin-new")
    create_topics(a, name)
    a.delete_topics([name], operation_timeout=10)[name].result(timeout=WAIT_S)
    got = a.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                           None, None, AclOperation.ANY,
                                           AclPermissionType.ANY),
                          request_timeout=15).result(timeout=WAIT_S)
    assert set(MATRIX_ACLS) <= set(got)
