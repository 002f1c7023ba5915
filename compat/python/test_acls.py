"""ACLs (StandardAuthorizer semantics) through confluent-kafka, kafka-python and `fjord acls`.

Covered:
  * A matrix of principals on a SASL_PLAINTEXT listener (SCRAM-SHA-512): admin (a super
    user), alice (Write and Read on topic `orders`, Read on group `g-orders`), bob (a
    PREFIXED Write on `logs-` and a literal DENY All on `logs-secret`) and carol (no ACLs).
    Real producers and consumers (confluent-kafka for everyone, kafka-python for alice)
    can do exactly what the ACLs allow: topic and group authorization errors otherwise,
    deny beats allow, deny by default, Write does not give Read, carol's metadata lists no
    topics, and only a super user may create, describe or delete ACLs.
  * Auto-creation of a topic by a producer's metadata request needs Create.
  * Admin requests and groups: CreateTopics / DeleteTopics / CreatePartitions /
    DescribeConfigs / IncrementalAlterConfigs by their operations (AlterConfigs implies
    DescribeConfigs), metadata for an undescribable topic, an offset commit for a topic
    without Read, ListGroups filtered to the groups the client may describe, DeleteGroups,
    and an idempotent producer without IdempotentWrite or any Write. Users made at test
    time with AlterUserScramCredentials.
  * Wildcards: the `*` resource name and the `User:*` principal.
  * A KIP-848 regex subscription (group.protocol=consumer) is resolved to the topics the
    member may describe only, as Kafka resolves it.
  * CreateAcls / DescribeAcls / DeleteAcls through the AdminClient: filters (literal,
    prefixed, MATCH, principal, host, operation, permission) return exactly the matching
    bindings, a delete removes (and returns) only what its filter matches, and the removed
    permission stops working.
  * Host matching: an ACL for 127.0.0.1 grants, one for another address does not; a DENY
    for another address takes nothing away, one for 127.0.0.1 does.
  * The `fjord acls` CLI (like kafka-acls.sh) as admin over SASL_PLAINTEXT: --add, --list
    in Kafka's output format, --producer, --deny-principal/--deny-host, --remove --force;
    over PLAINTEXT (User:ANONYMOUS, no ACLs) it fails with an authorization error.
  * Authorized-operations masks of DescribeTopics / DescribeCluster.
  * A transactional producer needs Write on its TRANSACTIONAL_ID.
  * A broker without an authorizer answers the ACL requests with SECURITY_DISABLED.
  * allow.everyone.if.no.acl.found=true: a resource without ACLs is open to everyone, one
    with an ACL for someone else is not.

One module-scoped broker (PLAINTEXT + SASL_PLAINTEXT, authorizer on, super.users=User:admin,
SCRAM users made with --add-scram) serves most tests; the last two tests start their own.
Tests that add ACLs use fresh resource or principal names, or remove what they add, so the
matrix holds whatever ran before. Needs FJORD_BIN: with KAFKA_BOOTSTRAP every test here is
skipped.

Client behaviour the tests work around: librdkafka (and kafka-python) wait silently on an
assign()ed partition of a topic the client may not describe, so fetch refusals are checked
where the topic is describable; librdkafka's assign()ed consumer still looks up its
group.id's coordinator and reports GROUP_AUTHORIZATION_FAILED; and librdkafka drops
DescribeAcls' top-level error code (it returns an empty list), so that refusal is checked
with kafka-python.
"""
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import TopicCollection
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, AlterConfigOpType,
                                   ConfigEntry, ConfigResource, NewPartitions, NewTopic,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialUpsertion)

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
    b = start_broker(overrides=[AUTHORIZER, "super.users=User:admin",
                                "group.initial.rebalance.delay.ms=0"],
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


def kp_admin(b, user):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(**kp_conf(b, user))


def kp_any_filter():
    """kafka-python's filter matching every ACL."""
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, ResourcePatternFilter)
    from kafka.admin import ResourceType as KRT
    return ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                     permission_type=ACLPermissionType.ANY,
                     resource_pattern=ResourcePatternFilter(KRT.ANY, None,
                                                            ACLResourcePatternType.ANY))


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


def any_filter(restype=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY,
               principal=None, host=None, op=AclOperation.ANY, perm=AclPermissionType.ANY):
    return AclBindingFilter(restype, name, pattern, principal, host, op, perm)


def describe(a, flt):
    return set(a.describe_acls(flt, request_timeout=15).result(timeout=WAIT_S))


def try_produce(b, user, topic):
    """One record from a fresh producer (no cached metadata): None when delivered, else
    the error code."""
    [err] = produce(producer_for(b, user), topic, [b"probe"])
    return None if err is None else err.code()


def future_error(f):
    """The error code a future fails with (a result is a failure)."""
    with pytest.raises(KafkaException) as e:
        f.result(timeout=WAIT_S)
    return e.value.args[0].code()


def new_user(b, name):
    """A SCRAM-SHA-512 user made now by admin (AlterUserScramCredentials needs Alter on the
    cluster); waits until it can log in."""
    password = f"{name}-secret"
    a = admin_client(b)
    fs = a.alter_user_scram_credentials([UserScramCredentialUpsertion(
        name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode())])
    fs[name].result(timeout=WAIT_S)
    PASSWORDS[name] = password

    def logs_in():
        try:
            admin_client(b, name).list_topics(timeout=3)
            return True
        except KafkaException:
            return False
    eventually(logs_in, what=f"{name} logs in")


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


def consume_values(c, want, timeout=WAIT_S, ignore=()):
    """Poll c until every value in `want` has arrived (others are passed over); raise on a
    consumer error whose code is not in `ignore`."""
    got = set()
    deadline = time.monotonic() + timeout
    while not want <= got:
        assert time.monotonic() < deadline, f"missing {sorted(want - got)[:5]}"
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() in ignore:
                continue
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

MATRIX_TOPICS = {"orders", "other", "logs-app", "logs-secret"}
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
    create_topics(a, *sorted(MATRIX_TOPICS))
    # A record in each, so that a fetch that should be refused would have something to read.
    p = producer_for(acl_broker, "admin")
    for t in sorted(MATRIX_TOPICS):
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
    assert visible_topics(b, "alice") & MATRIX_TOPICS == {"orders"}


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
    assert visible_topics(b, "bob") & MATRIX_TOPICS == {"logs-app"}


def test_auto_creation_needs_create(matrix):
    """A producer's metadata request may create a missing topic, which needs Create on the
    cluster or the topic. bob may Describe (through Write) every `logs-` topic but not
    Create: Kafka answers TOPIC_AUTHORIZATION_FAILED for a missing one and makes nothing
    (KafkaApis.handleTopicMetadataRequest), so his producer fails at once instead of
    waiting for a topic that will never come."""
    b = matrix
    a = admin_client(b)
    missing = uniq("logs-auto")
    # A producer handle's metadata request for one topic asks for auto-creation.
    p = Producer(client_conf(b, "bob", **{"allow.auto.create.topics": True}))
    err = p.list_topics(topic=missing, timeout=10).topics[missing].error
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    assert missing not in a.list_topics(timeout=10).topics

    # With Create on a prefix, the same request makes the topic, and bob writes to it.
    create_acls(a, [acl(TOPIC, "logs-auto-", "User:bob", AclOperation.CREATE,
                        pattern=PREFIXED)])
    eventually(lambda: try_produce(b, "bob", missing) is None,
               what="bob auto-creates a topic once he may Create it")
    assert missing in a.list_topics(timeout=10).topics


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
    # ACLs are the cluster's: CreateAcls needs Alter on it, DescribeAcls Describe.
    fs = a.create_acls([acl(TOPIC, "orders", "User:carol", AclOperation.READ)],
                       request_timeout=15)
    for f in fs.values():
        with pytest.raises(KafkaException) as e:
            f.result(timeout=WAIT_S)
        assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # librdkafka drops DescribeAcls' top-level error (it returns no bindings), so the
    # refusal is checked with kafka-python, which raises it.
    from kafka.errors import ClusterAuthorizationFailedError
    ka = kp_admin(b, "carol")
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            ka.describe_acls(kp_any_filter())
    finally:
        ka.close()


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
    assert MATRIX_TOPICS <= visible_topics(b, "admin")

    name = uniq("admin-new")
    create_topics(a, name)
    a.delete_topics([name], operation_timeout=10)[name].result(timeout=WAIT_S)
    assert set(MATRIX_ACLS) <= describe(a, any_filter())


# ---------------------------------------------------------------------------------------
# Admin requests and groups
# ---------------------------------------------------------------------------------------

def test_admin_requests_and_groups_follow_the_acls(acl_broker):
    """CreateTopics needs Create, DeleteTopics Delete, CreatePartitions Alter, configs
    DescribeConfigs / AlterConfigs (which implies DescribeConfigs); ListGroups shows only
    the groups the client may describe; DeleteGroups needs Delete on the group; an
    idempotent producer without Write anywhere needs IdempotentWrite on the cluster."""
    b = acl_broker
    frank = uniq("frank")
    p = f"{frank}-"
    a = admin_client(b)
    principal = f"User:{frank}"
    create_acls(a, [
        acl(TOPIC, p, principal, op, pattern=PREFIXED)
        for op in (AclOperation.CREATE, AclOperation.READ, AclOperation.ALTER_CONFIGS)] + [
        acl(TOPIC, f"{p}b", principal, AclOperation.DELETE),
        acl(GROUP, f"{p}g1", principal, AclOperation.READ)])
    new_user(b, frank)
    fa = admin_client(b, frank)

    # CreateTopics / DeleteTopics / CreatePartitions
    create_topics(fa, f"{p}a", f"{p}b")
    outside = uniq("not-franks")
    assert future_error(fa.create_topics([NewTopic(outside, 1, 1)], request_timeout=15)[
        outside]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert future_error(fa.delete_topics([f"{p}a"], operation_timeout=10)[f"{p}a"]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    fa.delete_topics([f"{p}b"], operation_timeout=10)[f"{p}b"].result(timeout=WAIT_S)
    assert future_error(fa.create_partitions([NewPartitions(f"{p}a", 2)],
                                             request_timeout=15)[f"{p}a"]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED

    # Metadata for one topic by name: refused without Describe.
    md = fa.list_topics(topic="orders", timeout=10)
    assert md.topics["orders"].error is not None
    assert md.topics["orders"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # Configs
    mine = ConfigResource(ResourceType.TOPIC, f"{p}a")
    entries = fa.describe_configs([mine], request_timeout=15)[mine].result(timeout=WAIT_S)
    assert "retention.ms" in entries
    fs = fa.incremental_alter_configs([ConfigResource(
        ResourceType.TOPIC, f"{p}a", incremental_configs=[ConfigEntry(
            "retention.ms", "3600000",
            incremental_operation=AlterConfigOpType.SET)])], request_timeout=15)
    [f.result(timeout=WAIT_S) for f in fs.values()]
    got = a.describe_configs([mine], request_timeout=15)[mine].result(timeout=WAIT_S)
    assert got["retention.ms"].value == "3600000"
    theirs = ConfigResource(ResourceType.TOPIC, "orders")
    assert future_error(fa.describe_configs([theirs], request_timeout=15)[theirs]) == \
        KafkaError.TOPIC_AUTHORIZATION_FAILED
    broker = ConfigResource(ResourceType.BROKER, "1")
    assert future_error(fa.describe_configs([broker], request_timeout=15)[broker]) == \
        KafkaError.CLUSTER_AUTHORIZATION_FAILED

    # Groups: frank's group and one of admin's; frank lists only his own.
    for user, group in ((frank, f"{p}g1"), ("admin", f"{p}hidden")):
        c = consumer_for(b, user, group=group)
        try:
            c.commit(offsets=[TopicPartition(f"{p}a", 0, 0)], asynchronous=False)
        finally:
            c.close()

    # Read on the group but not on the topic: the commit is refused for that partition.
    c = consumer_for(b, frank, group=f"{p}g1")
    try:
        try:
            res = c.commit(offsets=[TopicPartition("orders", 0, 0)], asynchronous=False)
            errs = [tp.error.code() if tp.error else None for tp in res]
        except KafkaException as e:
            errs = [e.args[0].code()]
        assert errs == [KafkaError.TOPIC_AUTHORIZATION_FAILED], errs
    finally:
        c.close()

    def groups(client):
        res = client.list_consumer_groups(request_timeout=15).result(timeout=WAIT_S)
        return {g.group_id for g in res.valid}
    assert {f"{p}g1", f"{p}hidden"} <= groups(a)
    assert groups(fa) == {f"{p}g1"}
    assert future_error(fa.delete_consumer_groups([f"{p}g1"], request_timeout=15)[
        f"{p}g1"]) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert groups(a) >= {f"{p}g1"}

    # Read is not Write; and with no Write anywhere, no idempotent producer either.
    assert try_produce(b, frank, f"{p}a") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    errors = []
    idem = producer_for(b, frank, **{"enable.idempotence": True, "error_cb": errors.append})
    idem.produce(f"{p}a", value=b"idempotent")
    deadline = time.monotonic() + WAIT_S
    while not errors and time.monotonic() < deadline:
        try:
            idem.poll(0.2)
        except KafkaException as e:  # the fatal error, raised instead of passed to error_cb
            errors.append(e.args[0])
    assert errors, "the idempotent producer reported no error"
    assert errors[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, errors
    assert errors[0].fatal(), errors


# ---------------------------------------------------------------------------------------
# Wildcards
# ---------------------------------------------------------------------------------------

def test_wildcards(matrix):
    """The literal `*` resource name matches every topic; the principal `User:*` matches
    every user; a DENY for `User:*` beats a user's own allow, but not a super user."""
    b = matrix
    a = admin_client(b)
    gina = uniq("gina")
    pub = uniq("public")
    create_topics(a, pub)
    gina_star = acl(TOPIC, "*", f"User:{gina}", AclOperation.WRITE)
    create_acls(a, [gina_star])
    new_user(b, gina)
    assert try_produce(b, gina, "orders") is None
    assert try_produce(b, gina, "other") is None
    assert_fetch_denied(b, gina, "other")

    everyone = [acl(TOPIC, pub, "User:*", AclOperation.READ),
                acl(TOPIC, pub, "User:*", AclOperation.WRITE, perm=DENY)]
    create_acls(a, everyone)
    try:
        produce_ok(producer_for(b, "admin"), pub, [b"for-everyone"])
        assert try_produce(b, gina, pub) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        for user in ("carol", gina):
            c = consumer_for(b, user)
            try:
                c.assign([TopicPartition(pub, 0, 0)])
                consume_values(c, {b"for-everyone"},
                               ignore=(KafkaError.GROUP_AUTHORIZATION_FAILED,))
            finally:
                c.close()
    finally:
        # Leave nothing behind that would open topics to the other tests' users.
        fs = a.delete_acls([any_filter(TOPIC, pub, LITERAL, principal="User:*"),
                            any_filter(TOPIC, "*", LITERAL, principal=f"User:{gina}")],
                           request_timeout=15)
        deleted = set()
        for f in fs.values():
            deleted |= set(f.result(timeout=WAIT_S))
        assert deleted == set(everyone) | {gina_star}


# ---------------------------------------------------------------------------------------
# CreateAcls / DescribeAcls / DeleteAcls
# ---------------------------------------------------------------------------------------

def test_a_regex_subscription_matches_only_describable_topics(acl_broker):
    b = acl_broker
    user, group = uniq("rx-user"), uniq("rx-group")
    new_user(b, user)
    prefix = uniq("rx")
    seen, hidden = f"{prefix}-seen", f"{prefix}-hidden"
    a = admin_client(b)
    create_topics(a, seen, hidden)
    principal = f"User:{user}"
    create_acls(a, [acl(TOPIC, seen, principal, AclOperation.READ),
                    acl(TOPIC, seen, principal, AclOperation.DESCRIBE),
                    acl(GROUP, group, principal, AclOperation.READ)])
    p = producer_for(b, "admin")
    produce_ok(p, seen, [b"seen-1"])
    produce_ok(p, hidden, [b"hidden-1"])

    c = consumer_for(b, user, group=group, **{"group.protocol": "consumer"})
    try:
        # Both topics match; the member may describe only one of them.
        c.subscribe([f"^{prefix}-.*"])
        assert consume_values(c, {b"seen-1"}) == {b"seen-1"}
        # What the coordinator assigned, as the admin sees it (ConsumerGroupDescribe): a
        # client never shows topics it may not describe, assigned or not.
        [desc] = a.describe_consumer_groups([group])[group].result(timeout=WAIT_S).members
        assert {tp.topic for tp in desc.assignment.topic_partitions} == {seen}
        # Nothing of the hidden topic arrives.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            m = c.poll(0.3)
            assert m is None or m.error() or m.topic() == seen, m.topic()
    finally:
        c.close()


def test_describe_and_delete_acls_with_filters(matrix):
    b = matrix
    a = admin_client(b)
    t, g = uniq("ledger"), uniq("ledger-g")
    create_topics(a, t)
    dave = f"User:{uniq('dave')}"  # a principal no other test uses
    alice_w = acl(TOPIC, t, "User:alice", AclOperation.WRITE)
    alice_d = acl(TOPIC, t, "User:alice", AclOperation.DESCRIBE)
    bob_r = acl(TOPIC, t, "User:bob", AclOperation.READ)
    dave_g = acl(GROUP, g, dave, AclOperation.READ)
    dave_prefix = acl(TOPIC, f"{t}-", dave, AclOperation.WRITE, pattern=PREFIXED)
    dave_deny = acl(TOPIC, t, dave, AclOperation.DELETE, perm=DENY, host="10.1.2.3")
    dave_star = acl(TOPIC, "*", dave, AclOperation.DESCRIBE)
    mine = {alice_w, alice_d, bob_r, dave_g, dave_prefix, dave_deny, dave_star}
    create_acls(a, list(mine))

    # Filters, each answered with exactly the matching bindings.
    assert describe(a, any_filter(TOPIC, t, LITERAL)) == {alice_w, alice_d, bob_r, dave_deny}
    assert describe(a, any_filter(principal=dave)) == {dave_g, dave_prefix, dave_deny,
                                                        dave_star}
    assert describe(a, any_filter(GROUP, g)) == {dave_g}
    assert describe(a, any_filter(TOPIC, "*", LITERAL, principal=dave)) == {dave_star}
    assert describe(a, any_filter(TOPIC, f"{t}-", PREFIXED)) == {dave_prefix}
    # MATCH: every pattern that applies to the named resource: literal, wildcard, prefixed.
    match = ResourcePatternType.MATCH
    assert describe(a, any_filter(TOPIC, f"{t}-x", match, principal=dave)) == \
        {dave_prefix, dave_star}
    assert describe(a, any_filter(TOPIC, t, match, principal=dave)) == \
        {dave_deny, dave_star}
    assert {alice_w, alice_d, bob_r} <= describe(a, any_filter(TOPIC, t, match))
    assert describe(a, any_filter(TOPIC, t, op=AclOperation.READ)) == {bob_r}
    assert describe(a, any_filter(TOPIC, t, perm=DENY)) == {dave_deny}
    assert describe(a, any_filter(TOPIC, t, host="10.1.2.3")) == {dave_deny}
    assert describe(a, any_filter(principal="User:alice", name=t)) == {alice_w, alice_d}
    everything = describe(a, any_filter())
    assert mine <= everything and set(MATRIX_ACLS) <= everything

    assert try_produce(b, "alice", t) is None

    # Delete alice's ACLs on the topic: only those go, and the answer lists them.
    fs = a.delete_acls([any_filter(TOPIC, t, LITERAL, principal="User:alice")],
                       request_timeout=15)
    [deleted] = [f.result(timeout=WAIT_S) for f in fs.values()]
    assert set(deleted) == {alice_w, alice_d}
    assert describe(a, any_filter(TOPIC, t, LITERAL)) == {bob_r, dave_deny}
    assert describe(a, any_filter(principal=dave)) == {dave_g, dave_prefix, dave_deny,
                                                        dave_star}
    # A second delete with the same filter matches nothing.
    fs = a.delete_acls([any_filter(TOPIC, t, LITERAL, principal="User:alice")],
                       request_timeout=15)
    assert [f.result(timeout=WAIT_S) for f in fs.values()] == [[]]

    eventually(lambda: try_produce(b, "alice", t) == KafkaError.TOPIC_AUTHORIZATION_FAILED,
               what="alice refused once her Write is deleted")

    # Two filters in one request, each with its own matches.
    fs = a.delete_acls([any_filter(principal=dave, pattern=PREFIXED),
                        any_filter(GROUP, g)], request_timeout=15)
    results = {str(f_): set(f.result(timeout=WAIT_S)) for f_, f in fs.items()}
    assert sorted(map(len, results.values())) == [1, 1]
    assert set().union(*results.values()) == {dave_prefix, dave_g}
    assert describe(a, any_filter(principal=dave)) == {dave_deny, dave_star}
    # Nothing else was touched.
    assert set(MATRIX_ACLS) <= describe(a, any_filter())


# ---------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------

def test_acl_host_must_match_the_clients_address(acl_broker):
    b = acl_broker
    a = admin_client(b)
    local, remote, denied_local = uniq("host-local"), uniq("host-remote"), uniq("host-deny")
    create_topics(a, local, remote, denied_local)
    create_acls(a, [
        acl(TOPIC, local, "User:alice", AclOperation.WRITE, host="127.0.0.1"),
        # A DENY for another address takes nothing away here.
        acl(TOPIC, local, "User:alice", AclOperation.WRITE, perm=DENY, host="10.9.9.9"),
        acl(TOPIC, remote, "User:alice", AclOperation.WRITE, host="10.9.9.9"),
        acl(TOPIC, denied_local, "User:alice", AclOperation.WRITE),
        acl(TOPIC, denied_local, "User:alice", AclOperation.WRITE, perm=DENY,
            host="127.0.0.1"),
    ])
    eventually(lambda: try_produce(b, "alice", local) is None,
               what="alice writes from 127.0.0.1")
    assert try_produce(b, "alice", remote) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert try_produce(b, "alice", denied_local) == KafkaError.TOPIC_AUTHORIZATION_FAILED


# ---------------------------------------------------------------------------------------
# fjord acls
# ---------------------------------------------------------------------------------------

def fjord_acls(bootstrap, *args, config=None):
    cmd = [FJORD_BIN, "acls", "--bootstrap-server", bootstrap]
    if config:
        cmd += ["--command-config", config]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


def acl_blocks(out):
    """`fjord acls` output as {header line: set of ACL lines}."""
    blocks, header = {}, None
    for line in out.splitlines():
        if line.startswith(("Current ACLs for resource", "Adding ACLs for resource")):
            header = line
            blocks[header] = set()
        elif line.strip():
            assert header is not None, f"ACL line before any header: {line!r}"
            blocks[header].add(line)
    return blocks


def acl_line(principal, op, perm="ALLOW", host="*"):
    return f" \t(principal={principal}, host={host}, operation={op}, permissionType={perm}) "


def current(restype, name, pattern="LITERAL"):
    return (f"Current ACLs for resource `ResourcePattern(resourceType={restype}, "
            f"name={name}, patternType={pattern})`: ")


def test_fjord_acls_cli(acl_broker, tmp_path):
    b = acl_broker
    config = tmp_path / "admin.properties"
    config.write_text("security.protocol=SASL_PLAINTEXT\n"
                      f"sasl.mechanism={MECHANISM}\n"
                      "sasl.username=admin\n"
                      f"sasl.password={PASSWORDS['admin']}\n")
    t, g, pt = uniq("cli-t"), uniq("cli-g"), uniq("cli-p")
    dave = f"User:{uniq('dave')}"

    def run(*args):
        r = fjord_acls(b.sasl_addr, *args, config=str(config))
        assert r.returncode == 0, f"fjord acls {args} failed: {r.stderr}"
        return r.stdout

    run("--add", "--allow-principal", dave, "--operation", "Read", "--operation", "Describe",
        "--topic", t, "--group", g)
    run("--add", "--deny-principal", dave, "--deny-host", "10.0.0.7", "--operation", "Write",
        "--topic", t)
    run("--add", "--allow-principal", dave, "--producer", "--topic", pt,
        "--resource-pattern-type", "prefixed")

    assert acl_blocks(run("--list", "--topic", t)) == {current("TOPIC", t): {
        acl_line(dave, "READ"), acl_line(dave, "DESCRIBE"),
        acl_line(dave, "WRITE", "DENY", "10.0.0.7")}}
    assert acl_blocks(run("--list", "--group", g)) == {current("GROUP", g): {
        acl_line(dave, "READ"), acl_line(dave, "DESCRIBE")}}
    assert acl_blocks(run("--list", "--principal", dave)) == {
        current("TOPIC", t): {acl_line(dave, "READ"), acl_line(dave, "DESCRIBE"),
                              acl_line(dave, "WRITE", "DENY", "10.0.0.7")},
        current("GROUP", g): {acl_line(dave, "READ"), acl_line(dave, "DESCRIBE")},
        current("TOPIC", pt, "PREFIXED"): {acl_line(dave, "WRITE"), acl_line(dave, "DESCRIBE"),
                                           acl_line(dave, "CREATE")}}
    # What the CLI added is what the AdminClient sees.
    a = admin_client(b)
    assert describe(a, any_filter(TOPIC, pt, PREFIXED)) == {
        acl(TOPIC, pt, dave, op, pattern=PREFIXED)
        for op in (AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE)}

    run("--remove", "--allow-principal", dave, "--operation", "Read", "--topic", t, "--force")
    assert acl_blocks(run("--list", "--topic", t)) == {current("TOPIC", t): {
        acl_line(dave, "DESCRIBE"), acl_line(dave, "WRITE", "DENY", "10.0.0.7")}}
    run("--remove", "--topic", pt, "--resource-pattern-type", "prefixed", "--force")
    run("--remove", "--group", g, "--force")
    assert describe(a, any_filter(principal=dave)) == {
        acl(TOPIC, t, dave, AclOperation.DESCRIBE),
        acl(TOPIC, t, dave, AclOperation.WRITE, perm=DENY, host="10.0.0.7")}

    # Over PLAINTEXT the CLI is User:ANONYMOUS, neither a super user nor allowed anything.
    r = fjord_acls(b.bootstrap, "--list")
    assert r.returncode != 0
    assert "authorization failed" in r.stderr.lower(), r.stderr
    r = fjord_acls(b.bootstrap, "--add", "--allow-principal", "User:ANONYMOUS",
                   "--operation", "All", "--cluster")
    assert r.returncode != 0
    assert "authorization failed" in r.stderr.lower(), r.stderr
    assert describe(a, any_filter(principal="User:ANONYMOUS")) == set()


# ---------------------------------------------------------------------------------------
# Authorized operations
# ---------------------------------------------------------------------------------------

TOPIC_OPS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
             AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
             AclOperation.ALTER_CONFIGS}
CLUSTER_OPS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION,
               AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
               AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE}


def topic_ops(b, user, topic):
    a = admin_client(b, user)
    fs = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True,
                           request_timeout=15)
    return set(fs[topic].result(timeout=WAIT_S).authorized_operations or [])


def cluster_ops(b, user):
    a = admin_client(b, user)  # kept alive until the answer is in
    d = a.describe_cluster(include_authorized_operations=True,
                           request_timeout=15).result(timeout=WAIT_S)
    return set(d.authorized_operations or [])


def test_authorized_operations(matrix):
    b = matrix
    assert topic_ops(b, "alice", "orders") == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE}
    assert topic_ops(b, "bob", "logs-app") == {AclOperation.WRITE, AclOperation.DESCRIBE}
    assert TOPIC_OPS <= topic_ops(b, "admin", "orders")
    assert cluster_ops(b, "alice") == set()
    assert CLUSTER_OPS <= cluster_ops(b, "admin")

    # A user made now by admin (AlterUserScramCredentials needs Alter on the cluster), with
    # Describe and AlterConfigs on the cluster: AlterConfigs implies DescribeConfigs.
    erin = uniq("erin")
    a = admin_client(b)
    create_acls(a, [acl(CLUSTER, "kafka-cluster", f"User:{erin}", AclOperation.DESCRIBE),
                    acl(CLUSTER, "kafka-cluster", f"User:{erin}",
                        AclOperation.ALTER_CONFIGS)])
    new_user(b, erin)
    got = cluster_ops(b, erin)
    assert got == {AclOperation.DESCRIBE, AclOperation.ALTER_CONFIGS,
                   AclOperation.DESCRIBE_CONFIGS}


# ---------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------

def test_transactional_id_needs_write(matrix):
    b = matrix
    tid = "tx-alice"
    p = producer_for(b, "alice", **{"transactional.id": tid})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(15)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    create_acls(admin_client(b), [acl(TRANSACTIONAL_ID, tid, "User:alice",
                                      AclOperation.WRITE)])
    run = uuid.uuid4().hex[:8]
    values = [f"tx-{run}-{i}".encode() for i in range(3)]

    def commit():
        p = producer_for(b, "alice", **{"transactional.id": tid})
        try:
            p.init_transactions(15)
        except KafkaException as e:
            if e.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
                return False
            raise
        p.begin_transaction()
        for v in values:
            p.produce("orders", value=v)
        p.commit_transaction(15)
        return True

    eventually(commit, what="a transaction commits once Write on tx-alice is granted")
    c = consumer_for(b, "admin", **{"isolation.level": "read_committed"})
    try:
        c.assign([TopicPartition("orders", 0, 0)])
        consume_values(c, set(values))
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# Other authorizer settings
# ---------------------------------------------------------------------------------------

def test_without_an_authorizer_acl_requests_are_security_disabled():
    from kafka.errors import SecurityDisabledError
    from kafka.admin import KafkaAdminClient
    b = start_broker(sasl=False)
    try:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        fs = a.create_acls([acl(TOPIC, "t", "User:alice", AclOperation.READ)],
                           request_timeout=15)
        for f in fs.values():
            with pytest.raises(KafkaException) as e:
                f.result(timeout=WAIT_S)
            assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED == 54
        fs = a.delete_acls([any_filter()], request_timeout=15)
        for f in fs.values():
            with pytest.raises(KafkaException) as e:
                f.result(timeout=WAIT_S)
            assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED
        ka = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            with pytest.raises(SecurityDisabledError):
                ka.describe_acls(kp_any_filter())
        finally:
            ka.close()
    finally:
        b.cleanup()


def test_allow_everyone_if_no_acl_found():
    b = start_broker(overrides=[AUTHORIZER, "super.users=User:admin",
                                "allow.everyone.if.no.acl.found=true"],
                     users=["admin", "alice", "carol"])
    try:
        a = admin_client(b)
        create_topics(a, "open", "guarded")
        create_acls(a, [acl(TOPIC, "guarded", "User:alice", AclOperation.WRITE)])
        assert try_produce(b, "carol", "open") is None
        eventually(lambda: try_produce(b, "carol", "guarded") ==
                   KafkaError.TOPIC_AUTHORIZATION_FAILED,
                   what="carol refused on a topic with an ACL for alice")
        assert try_produce(b, "alice", "guarded") is None
        # User:ANONYMOUS on PLAINTEXT too.
        [err] = produce(Producer({"bootstrap.servers": b.bootstrap,
                                  "message.timeout.ms": 15000}), "open", [b"anon"])
        assert err is None, err
        [err] = produce(Producer({"bootstrap.servers": b.bootstrap,
                                  "message.timeout.ms": 15000}), "guarded", [b"anon"])
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        b.cleanup()
