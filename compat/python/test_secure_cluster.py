"""A 3-node cluster that runs entirely over SASL_SSL, with confluent-kafka.

Each node has one client listener, INTERNAL (SASL_SSL: SCRAM-SHA-512, and a client
certificate required), which is also the inter-broker listener, and a CONTROLLER listener
(SASL_SSL: PLAIN, as Kafka allows there, and a client certificate required) for the
metadata quorum. The brokers log in to each other as User:broker with the JAAS line Kafka
reads for it (`listener.name.internal.scram-sha-512.sasl.jaas.config`), and the quorum
members as User:controller (`listener.name.controller.plain.sasl.jaas.config`, whose
user_controller entry is what they check); every node shows its own certificate and
checks the others' against the truststore and host name. The StandardAuthorizer is on, so
a follower's fetch is served only to a principal with ClusterAction, and the quorum only
to super users.

Covered:
  * acks=all with min.insync.replicas=3 is acknowledged only when both followers of each
    partition have copied the batch, so every acknowledged record proves replication over
    the secured listener; the ISR of every partition holds all three brokers.
  * A leader killed with SIGKILL: the survivors elect new leaders, take more acks=all
    writes, and serve every acknowledged record, over the same listener.
  * A user without ACLs is refused (TOPIC_AUTHORIZATION_FAILED) on this cluster too.
  * A broker given the wrong inter-broker password cannot copy anything: its fetcher logs
    one line naming the refused login (never the password), and the partitions it follows
    leave it out of their ISR.
  * A node given the wrong controller password cannot register with the quorum: the
    other two log the refused login (never the password) and serve as a 2-node cluster.
  * A broker-only node (process.roles=broker) receives the metadata log from the active
    controller on its SASL_SSL inter-broker listener, over the controller listener's
    TLS and login: it leads a partition and takes acks=all writes; quorum frames sent to
    it without that TLS and login are refused.

Needs FJORD_BIN: with KAFKA_BOOTSTRAP every test here is skipped.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import types

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)

from conftest import free_port
from helpers import consume_n, produce_checked, producer, unique, wait_for_topic
from test_security import keystore_pem, make_ca, make_cert

FJORD_BIN = os.environ.get("FJORD_BIN")
pytestmark = pytest.mark.skipif(
    not FJORD_BIN, reason="starts its own 3-node cluster (FJORD_BIN); a KAFKA_BOOTSTRAP "
                          "broker cannot be reconfigured")

BROKER_PW = "broker-secret-5Rt"
CONTROLLER_PW = "controller-secret-6Nw"
ADMIN_PW = "admin-secret-8Lm"
ALICE_PW = "alice-secret-2Jv"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
WAIT_S = 30.0


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="fjord-cluster-pki-")
    ca = make_ca(d, "ca")
    # One certificate serves each broker as server and, towards the others, as client.
    node = make_cert(d, "node", ca, "localhost",
                     "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                     "extendedKeyUsage=serverAuth,clientAuth")
    keystore = os.path.join(d, "node.pem")
    with open(keystore, "w") as f:
        f.write(keystore_pem(node))
    client = make_cert(d, "client", ca, "client", "extendedKeyUsage=clientAuth")
    yield types.SimpleNamespace(dir=d, ca=ca[0], keystore=keystore, client=client)
    shutil.rmtree(d, ignore_errors=True)


class SecureCluster:
    """Nodes 1..len(broker_passwords) are brokers and voters; `observers` more nodes after
    them are brokers only."""

    def __init__(self, pki, broker_passwords, controller_passwords=None, observers=0):
        n = len(broker_passwords)
        self.controller_passwords = controller_passwords or [CONTROLLER_PW] * n
        self.dir = tempfile.mkdtemp(prefix="fjord-secure-cluster-")
        self.pki = pki
        self.client_ports = [free_port() for _ in range(n + observers)]
        self.controller_ports = [free_port() for _ in range(n)]
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{p}"
                               for i, p in enumerate(self.controller_ports))
        self.passwords = broker_passwords + [BROKER_PW] * observers
        self.controller_passwords += [CONTROLLER_PW] * observers
        self.voter_count = n
        self.procs = {}
        self._admin = None
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.client_ports)
        for node in range(1, n + observers + 1):
            self.start(node)

    def log_path(self, node):
        return os.path.join(self.dir, f"node-{node}.log")

    def log(self, node):
        with open(self.log_path(node), "rb") as f:
            return f.read().decode(errors="replace")

    def start(self, node):
        i = node - 1
        jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="broker" password="{self.passwords[i]}";')
        # The node's own login, and the user it checks others' logins against.
        controller_jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                           f'username="controller" password="{self.controller_passwords[i]}" '
                           f'user_controller="{CONTROLLER_PW}";')
        if node <= self.voter_count:
            roles = ["process.roles=broker,controller",
                     f"listeners=INTERNAL://127.0.0.1:{self.client_ports[i]},"
                     f"CONTROLLER://127.0.0.1:{self.controller_ports[i]}"]
        else:
            # No controller listener of its own: the active controller reaches it on
            # INTERNAL, with the CONTROLLER listener's TLS and login all the same.
            roles = ["process.roles=broker",
                     f"listeners=INTERNAL://127.0.0.1:{self.client_ports[i]}"]
        settings = [
            f"node.id={node}",
            *roles,
            "listener.security.protocol.map=INTERNAL:SASL_SSL,CONTROLLER:SASL_SSL",
            "inter.broker.listener.name=INTERNAL",
            "controller.listener.names=CONTROLLER",
            f"controller.quorum.voters={self.voters}",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={self.pki.keystore}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={self.pki.ca}",
            "listener.name.internal.ssl.client.auth=required",
            "listener.name.controller.ssl.client.auth=required",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.internal.scram-sha-512.sasl.jaas.config={jaas}",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={controller_jaas}",
            f"authorizer.class.name={STANDARD_AUTHORIZER}",
            "super.users=User:broker;User:admin;User:controller",
            # A follower that cannot copy leaves the ISR within seconds, not Kafka's 30.
            "replica.lag.time.max.ms=4000",
        ]
        cmd = [FJORD_BIN, "server", "--data-dir", os.path.join(self.dir, f"node-{node}")]
        for s in settings:
            cmd += ["--override", s]
        # The first start of a new cluster writes its users once, whichever node is first.
        for user, pw in [("broker", BROKER_PW), ("admin", ADMIN_PW), ("alice", ALICE_PW)]:
            cmd += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={pw}]"]
        log = open(self.log_path(node), "ab")
        self.procs[node] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        log.close()

    def kill9(self, node):
        p = self.procs.pop(node)
        p.kill()
        p.wait(timeout=10)

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs = {}
        shutil.rmtree(self.dir, ignore_errors=True)

    def conf(self, user, password, **extra):
        c = {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL",
             "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
             "sasl.password": password, "ssl.ca.location": self.pki.ca,
             "ssl.certificate.location": self.pki.client[0],
             "ssl.key.location": self.pki.client[1]}
        c.update(extra)
        return c

    def admin(self):
        # One client for the cluster's life: futures fail if their client is collected.
        if self._admin is None:
            self._admin = AdminClient(self.conf("admin", ADMIN_PW))
        return self._admin

    def wait_ready(self, brokers=None):
        """Until metadata lists `brokers` (all, by default) as the cluster's brokers."""
        want = brokers or list(range(1, len(self.passwords) + 1))
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                md = self.admin().list_topics(timeout=5)
                if sorted(md.brokers) == want:
                    return
            except KafkaException:
                pass
            assert time.monotonic() < deadline, "the secured cluster did not form: " + \
                "\n".join(self.log(n)[-2000:] for n in self.procs)
            time.sleep(0.3)

    def partitions(self, topic):
        md = self.admin().list_topics(topic=topic, timeout=3)
        return md.topics[topic].partitions

    def wait_isr(self, topic, want, what):
        deadline = time.monotonic() + WAIT_S
        parts = {}
        while True:
            try:
                parts = self.partitions(topic)
            except KafkaException:
                # The client may have asked a broker that was just killed; it moves on.
                parts = {}
            if parts and all(want(p) for p in parts.values()):
                return parts
            assert time.monotonic() < deadline, (
                f"{what}: {[(p.id, p.leader, p.isrs) for p in parts.values()]}")
            time.sleep(0.3)


def dump_logs_on_failure(cluster):
    for n in sorted(cluster.procs):
        print(f"--- node {n} log (tail)\n{cluster.log(n)[-3000:]}")


@pytest.fixture
def cluster_factory(pki):
    made = []

    def make(passwords, controller_passwords=None, brokers=None, observers=0):
        c = SecureCluster(pki, passwords, controller_passwords, observers)
        made.append(c)
        try:
            c.wait_ready(brokers)
        except Exception:
            dump_logs_on_failure(c)
            raise
        return c

    yield make
    for c in made:
        c.stop()


def create(cluster, topic, partitions, min_isr):
    fs = cluster.admin().create_topics(
        [NewTopic(topic, partitions, 3, config={"min.insync.replicas": str(min_isr)})],
        request_timeout=15)
    fs[topic].result(timeout=20)
    wait_for_topic(cluster.admin(), topic, partitions)


def test_brokers_replicate_over_sasl_ssl_and_fail_over(cluster_factory):
    c = cluster_factory([BROKER_PW] * 3)
    topic = unique("secure-repl")
    create(c, topic, 3, min_isr=3)
    c.wait_isr(topic, lambda p: p.leader > 0 and sorted(p.isrs) == [1, 2, 3],
               "every partition's ISR should hold all three brokers")
    # min.insync.replicas=3: each acknowledgement needs both followers' copies.
    p = producer(c.bootstrap, **c.conf("admin", ADMIN_PW, acks="all",
                                       **{"enable.idempotence": True}))
    first = [(f"k{i}".encode(), f"before-{i}".encode()) for i in range(300)]
    produce_checked(p, topic, first)
    c.wait_isr(topic, lambda p: sorted(p.isrs) == [1, 2, 3],
               "followers stayed in sync while copying")

    # Kill the leader of partition 0; the others elect new leaders from the ISR.
    victim = c.partitions(topic)[0].leader
    c.kill9(victim)
    c.wait_isr(topic, lambda p: p.leader > 0 and p.leader != victim,
               f"every partition should get a leader other than the killed {victim}")
    # Two replicas left: acks=all now waits for the one surviving follower.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.insync.replicas", "2",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in c.admin().incremental_alter_configs([res]).values():
        f.result(timeout=20)
    second = [(f"k{i}".encode(), f"after-{i}".encode()) for i in range(100)]
    p2 = producer(c.bootstrap, **c.conf("admin", ADMIN_PW, acks="all",
                                        **{"enable.idempotence": True}))
    produce_checked(p2, topic, second)

    got = consume_n(c.bootstrap, topic, [0, 1, 2], len(first) + len(second),
                    timeout=WAIT_S, **c.conf("admin", ADMIN_PW))
    values = sorted(m.value() for m in got)
    assert values == sorted(v for _, v in first + second)


def test_a_user_without_acls_is_refused_on_the_secured_cluster(cluster_factory):
    c = cluster_factory([BROKER_PW] * 3)
    # The quorum's own frames in the clear are not spoken on the controller listener.
    with socket.create_connection(("127.0.0.1", c.controller_ports[0]), timeout=10) as raw:
        body = b'{"Forward":[]}'
        raw.sendall(struct.pack(">i", len(body)) + body)
        reply = raw.recv(4096)
        # Nothing, or a TLS alert record (type 21): never a quorum answer.
        assert reply == b"" or reply[0] == 21, f"a frame in the clear was answered: {reply!r}"
    deadline = time.monotonic() + WAIT_S
    while "refused: TLS handshake failed" not in c.log(1):
        assert time.monotonic() < deadline, c.log(1)[-3000:]
        time.sleep(0.3)
    topic = unique("secure-acl")
    create(c, topic, 1, min_isr=1)
    p = producer(c.bootstrap, **c.conf("alice", ALICE_PW, acks="all",
                                       **{"message.timeout.ms": 10000}))
    errors = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors


def test_a_broker_with_the_wrong_password_copies_nothing(cluster_factory):
    c = cluster_factory([BROKER_PW, BROKER_PW, "not-the-password-4Qz"])
    topic = unique("secure-refused")
    create(c, topic, 3, min_isr=1)
    # Node 3 cannot log in to the others, so it never catches up and leaves the ISR of
    # every partition it follows; the others copy from each other as usual.
    c.wait_isr(topic, lambda p: p.leader > 0 and (p.leader == 3 or 3 not in p.isrs),
               "node 3 should drop out of the ISR of the partitions it follows")
    deadline = time.monotonic() + WAIT_S
    while "SASL SCRAM-SHA-512 login as broker refused" not in c.log(3):
        assert time.monotonic() < deadline, c.log(3)[-3000:]
        time.sleep(0.3)
    log = c.log(3)
    assert log.count("replica fetcher cannot connect") <= 4, \
        "a refusal is logged once per reason, not per retry"
    for n in c.procs:
        assert "not-the-password-4Qz" not in c.log(n)
        assert BROKER_PW not in c.log(n)


def test_a_node_with_the_wrong_controller_password_cannot_join(cluster_factory):
    wrong = "not-the-controller-password-8Hs"
    c = cluster_factory([BROKER_PW] * 3, [CONTROLLER_PW, CONTROLLER_PW, wrong], brokers=[1, 2])
    deadline = time.monotonic() + WAIT_S
    while not any("refused: failed authentication" in c.log(n) for n in (1, 2)):
        assert time.monotonic() < deadline, c.log(1)[-3000:]
        time.sleep(0.3)
    # Still only the two: node 3 never gets its registration through.
    time.sleep(2)
    assert sorted(c.admin().list_topics(timeout=5).brokers) == [1, 2]
    for n in c.procs:
        assert wrong not in c.log(n)
        assert CONTROLLER_PW not in c.log(n)


def test_a_broker_only_node_follows_the_quorum_over_sasl_ssl(cluster_factory):
    c = cluster_factory([BROKER_PW] * 3, observers=1)
    assert "following the metadata quorum as an observer" in c.log(4)
    # Node 4 leads the partition: it must have the metadata log (the topic, its own
    # leadership) that only the active controller's replication brings it.
    topic = unique("secure-observer")
    fs = c.admin().create_topics(
        [NewTopic(topic, 1, replica_assignment=[[4, 1, 2]],
                  config={"min.insync.replicas": "3"})], request_timeout=15)
    fs[topic].result(timeout=20)
    wait_for_topic(c.admin(), topic, 1)
    c.wait_isr(topic, lambda p: p.leader == 4 and sorted(p.isrs) == [1, 2, 4],
               "node 4 should lead with both followers in sync")
    p = producer(c.bootstrap, **c.conf("admin", ADMIN_PW, acks="all",
                                       **{"enable.idempotence": True}))
    records = [(f"k{i}".encode(), f"observer-{i}".encode()) for i in range(200)]
    produce_checked(p, topic, records)
    got = consume_n(c.bootstrap, topic, [0], len(records), timeout=WAIT_S,
                    **c.conf("admin", ADMIN_PW))
    assert [m.value() for m in got] == [v for _, v in records]
    # The quorum's frames reach node 4 only through the controller listener's TLS and
    # login: in the clear, with or without the observer preface, they are refused.
    body = b'{"Forward":[]}'
    frame = struct.pack(">i", len(body)) + body
    for head in (b"", b"\xf7FQ1"):
        with socket.create_connection(("127.0.0.1", c.client_ports[3]), timeout=10) as raw:
            raw.sendall(head + frame)
            reply = raw.recv(4096)
            # Nothing, or a TLS alert record (type 21): never a quorum answer.
            assert reply == b"" or reply[0] == 21, f"{head!r}: answered {reply!r}"
