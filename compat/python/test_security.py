"""Security of the client listeners, through confluent-kafka, kafka-python and raw frames.

Covered:
  * TLS: produce and consume over SSL with both clients; a client that trusts another CA
    gets a handshake error and delivers nothing; mutual TLS on a listener of its own (MTLS,
    mapped to SSL, ssl.client.auth=required) refuses a client without a certificate and
    serves one with a CA-signed certificate; with an authorizer, ACLs name the
    certificate's subject as ssl.principal.mapping.rules maps it.
  * SASL: PLAIN (a JAAS user, and a SCRAM user through PLAIN), SCRAM-SHA-256 and
    SCRAM-SHA-512 on SASL_PLAINTEXT, SCRAM-SHA-512 on SASL_SSL; wrong passwords and unknown
    users are refused (and the broker's log names the peer, never the password); a
    mechanism the listener does not enable is refused.
  * SCRAM users made, described and deleted with `fjord configs` and with the AdminClient
    (Alter/DescribeUserScramCredentials), including the refused cases.
  * Metadata (and the group coordinator) answer with the address of the listener the
    client came in on.
  * Hostile clients on raw sockets: requests before login, garbage SASL tokens, unknown
    mechanisms, huge frames announced before login (they must not stall other clients),
    bytes that are not TLS, silent TLS connections, a TLS handshake that never finishes,
    and 10,000 failed SCRAM logins (descriptors and memory stay bounded, and return).
  * A renewed keystore file is served without a restart.
  * DescribeConfigs hides password values.

Certificates are made at test time with the openssl CLI in a temporary directory (X.509 v3:
rustls refuses v1). One module-scoped broker with five listeners serves most tests; the
reload and handshake-timeout tests start their own. Needs FJORD_BIN: with KAFKA_BOOTSTRAP
every test here is skipped.

kafka-python 3.0.12 never raises the broker's authentication error itself: a failed login
is answered and the connection closed, and when kafka-python reads the answer and the close
in one go it drops the answer (net/transport.py _sock_recv), so it retries until its
bootstrap times out. Its failure tests therefore expect a KafkaError and check the
broker's log for the refused login.
"""
import base64
import concurrent.futures
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

import kafka_wire
from conftest import Broker, free_port
from helpers import consume_n, create_topic, kafka_error, produce_checked, unique, WAIT_S

FJORD_BIN = os.environ.get("FJORD_BIN")
pytestmark = pytest.mark.skipif(
    not FJORD_BIN,
    reason="security tests start their own brokers with TLS and SASL listeners (FJORD_BIN); "
           "a KAFKA_BOOTSTRAP broker has none")

ADMIN_PW = "admin-secret-7Qx"          # SCRAM-SHA-256 and -512, from --add-scram
ALICE_PW = "alice-secret-3Kp"          # PLAIN only, from the listener's JAAS line
KEYSTORE_PW = "keystore-secret-9Wd"    # set so that DescribeConfigs has a secret to hide
SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS, METADATA = 17, 36, 18, 3
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE = 58, 33, 34


# ---------------------------------------------------------------------------------------
# Certificates (openssl CLI)
# ---------------------------------------------------------------------------------------

def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed: {r.stderr}"


def make_ca(d, name):
    """A self-signed CA: (cert path, key path)."""
    crt, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
            "-days", "2", "-subj", f"/CN=fjord-test-{name}", cwd=d)
    return crt, key


def make_cert(d, name, ca, cn, ext):
    """A v3 certificate for `cn` signed by `ca` (the -extfile makes it v3): (cert, key)."""
    crt, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    csr, extfile = os.path.join(d, f"{name}.csr"), os.path.join(d, f"{name}.ext")
    with open(extfile, "w") as f:
        f.write(ext + "\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", f"/CN={cn}", cwd=d)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", extfile, cwd=d)
    return crt, key


def server_cert(d, name, ca):
    return make_cert(d, name, ca, "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")


def keystore_pem(cert):
    """What ssl.keystore.location holds: the private key, then the certificate."""
    crt, key = cert
    with open(key) as k, open(crt) as c:
        return k.read() + c.read()


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="fjord-pki-")
    ca1 = make_ca(d, "ca1")
    ca2 = make_ca(d, "ca2")
    server1 = server_cert(d, "server1", ca1)
    keystore = os.path.join(d, "keystore.pem")
    with open(keystore, "w") as f:
        f.write(keystore_pem(server1))
    yield types.SimpleNamespace(
        dir=d, ca1=ca1[0], ca2=ca2[0], server1=server1,
        server2=server_cert(d, "server2", ca2),  # the same name, signed by CA2
        keystore=keystore,
        client=make_cert(d, "client1", ca1, "client1", "extendedKeyUsage=clientAuth"),
        rogue_client=make_cert(d, "rogue", ca2, "rogue", "extendedKeyUsage=clientAuth"))
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Brokers
# ---------------------------------------------------------------------------------------

def start_broker(listeners, overrides=(), extra_args=()):
    """A broker whose first listener is PLAINTEXT on Broker.port; `listeners` maps the
    other listener names to their ports."""
    b = Broker(fjord_bin=FJORD_BIN, extra_args=list(extra_args))
    names = ["PLAINTEXT"] + list(listeners)
    addrs = [f"PLAINTEXT://127.0.0.1:{b.port}"] + [
        f"{n}://127.0.0.1:{p}" for n, p in listeners.items()]
    b.overrides = [f"listeners={','.join(addrs)}"] + list(overrides)
    b.ports = dict(listeners, PLAINTEXT=b.port)
    b.addr = {n: f"127.0.0.1:{b.ports[n]}" for n in names}
    try:
        b.start()
        for p in listeners.values():
            wait_port(p)
    except Exception:
        b.cleanup()
        raise
    return b


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def tls_overrides(keystore, truststore):
    return ["ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={truststore}"]


@pytest.fixture(scope="module")
def sec(pki):
    """The module's broker: PLAINTEXT, SSL, SASL_PLAINTEXT (PLAIN and both SCRAMs),
    SASL_SSL (SCRAM-SHA-512 only) and MTLS (SSL requiring a client certificate)."""
    listeners = {n: free_port() for n in ["SSL", "SASL_PLAINTEXT", "SASL_SSL", "MTLS"]}
    jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_alice="{ALICE_PW}";')
    b = start_broker(listeners, overrides=tls_overrides(pki.keystore, pki.ca1) + [
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL",
        # Fjord does not need it for an unencrypted PEM file; it is here to be hidden.
        f"ssl.keystore.password={KEYSTORE_PW}",
        "listener.name.mtls.ssl.client.auth=required",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
    ], extra_args=["--add-scram", f"SCRAM-SHA-256=[name=admin,password={ADMIN_PW}]",
                   "--add-scram", f"SCRAM-SHA-512=[name=admin,password={ADMIN_PW}]"])
    b.pki = pki
    yield b
    b.cleanup()


@pytest.fixture
def own_brokers():
    """Start extra brokers for one test; stopped and removed after it."""
    started = []

    def make(listeners, overrides=(), extra_args=()):
        b = start_broker(listeners, overrides, extra_args)
        started.append(b)
        return b

    yield make
    for b in started:
        b.cleanup()


def broker_log(b):
    with open(b.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def log_count(b, text):
    return broker_log(b).count(text)


def wait_for_log(b, predicate, what, timeout=10):
    """The broker's log, once `predicate(log)` holds (bounded: the log is written a little
    after the event)."""
    deadline = time.monotonic() + timeout
    while True:
        log = broker_log(b)
        if predicate(log):
            return log
        assert time.monotonic() < deadline, f"broker log has no {what}"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------
# Client configs
# ---------------------------------------------------------------------------------------

def ssl_conf(ca, cert=None):
    c = {"security.protocol": "SSL", "ssl.ca.location": ca}
    if cert:
        c.update({"ssl.certificate.location": cert[0], "ssl.key.location": cert[1]})
    return c


def sasl_conf(mechanism, user, password, ca=None):
    c = {"security.protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT",
         "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    if ca:
        c["ssl.ca.location"] = ca
    return c


def kp_ssl_conf(ca, cert=None):
    c = {"security_protocol": "SSL", "ssl_cafile": ca}
    if cert:
        c.update({"ssl_certfile": cert[0], "ssl_keyfile": cert[1]})
    return c


def kp_sasl_conf(mechanism, user, password, ca=None):
    c = {"security_protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT",
         "sasl_mechanism": mechanism, "sasl_plain_username": user,
         "sasl_plain_password": password}
    if ca:
        c["ssl_cafile"] = ca
    return c


# ---------------------------------------------------------------------------------------
# Round trips and refusals
# ---------------------------------------------------------------------------------------

def confluent_roundtrip(b, listener, conf, tag="rt"):
    """Produce three records through `listener` into a new topic and read them back
    through the same listener with the same security settings."""
    topic = create_topic(b.addr["PLAINTEXT"], unique(f"sec-{tag}"))
    values = [f"{tag}-{i}-{uuid.uuid4().hex[:6]}".encode() for i in range(3)]
    p = Producer({"bootstrap.servers": b.addr[listener], "linger.ms": 5,
                  "message.timeout.ms": int(WAIT_S * 1000), **conf})
    produce_checked(p, topic, [(None, v) for v in values])
    del p
    got = consume_n(b.addr[listener], topic, [0], 3, **conf)
    assert [m.value() for m in got] == values
    return topic


def kp_roundtrip(b, listener, conf, tag="kp"):
    """The same with kafka-python's KafkaProducer and KafkaConsumer."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    topic = create_topic(b.addr["PLAINTEXT"], unique(f"sec-{tag}"))
    values = [f"{tag}-{i}-{uuid.uuid4().hex[:6]}".encode() for i in range(3)]
    p = KafkaProducer(bootstrap_servers=b.addr[listener], bootstrap_timeout_ms=15000, **conf)
    try:
        for v in values:
            p.send(topic, value=v).get(timeout=WAIT_S)
    finally:
        p.close(timeout=5)
    c = KafkaConsumer(bootstrap_servers=b.addr[listener], group_id=None,
                      enable_auto_commit=False, bootstrap_timeout_ms=15000, **conf)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        got, deadline = [], time.monotonic() + WAIT_S
        while len(got) < 3 and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=500).items():
                got.extend(m.value for m in msgs)
    finally:
        c.close()
    assert got == values


def stored_count(b, topic):
    """Records in partition 0, asked over PLAINTEXT."""
    c = Consumer({"bootstrap.servers": b.addr["PLAINTEXT"], "group.id": unique("wm")})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return high - low
    finally:
        c.close()


def confluent_refused(b, listener, conf, expect, timeout=15):
    """A producer through `listener` must not get in: returns the first client error that
    `expect(err)` accepts (bounded wait), after checking that nothing was stored."""
    topic = create_topic(b.addr["PLAINTEXT"], unique("sec-refused"))
    errors, reports = [], []
    p = Producer({"bootstrap.servers": b.addr[listener], "message.timeout.ms": 30000,
                  "error_cb": errors.append, **conf})
    p.produce(topic, value=b"must-not-arrive", on_delivery=lambda e, m: reports.append(e))
    deadline = time.monotonic() + timeout
    while not any(expect(e) for e in errors) and time.monotonic() < deadline:
        p.poll(0.1)
    matched = [e for e in errors if expect(e)]
    p.purge()
    p.flush(5)
    del p
    assert matched, f"no expected client error within {timeout}s; errors: {errors}"
    assert reports and reports[0] is not None, f"record was delivered: {reports}"
    assert stored_count(b, topic) == 0, "a refused client stored a record"
    return matched[0]


def kp_refused(b, listener, conf):
    """kafka-python must fail to produce through `listener` (see the module docstring for
    which error it raises). Returns the exception."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KPError
    with pytest.raises(KPError) as e:
        p = KafkaProducer(bootstrap_servers=b.addr[listener], bootstrap_timeout_ms=2000,
                          max_block_ms=2000, **conf)
        try:
            p.send(unique("sec-kp-refused"), value=b"must-not-arrive").get(timeout=5)
        finally:
            p.close(timeout=2)
    return e.value


def is_ssl_error(e):
    return e.code() in (KafkaError._SSL, KafkaError._TRANSPORT)


def is_auth_error(e):
    return e.code() == KafkaError._AUTHENTICATION and "Authentication failed" in e.str()


# ---------------------------------------------------------------------------------------
# Raw frames
# ---------------------------------------------------------------------------------------

def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def sasl_handshake(c, mechanism):
    """SaslHandshake v1: (error code, offered mechanisms)."""
    r = c.request(SASL_HANDSHAKE, 1, _str(mechanism))
    err = r.take(">h")
    return err, [r.string() for _ in range(r.take(">i"))]


def sasl_authenticate(c, token):
    """SaslAuthenticate v1: (error code, error message, auth bytes)."""
    return sasl_authenticate_lifetime(c, token)[:3]


def sasl_authenticate_lifetime(c, token):
    """SaslAuthenticate v1: (error code, error message, auth bytes, session_lifetime_ms)."""
    r = c.request(SASL_AUTHENTICATE, 1, struct.pack(">i", len(token)) + token)
    return r.take(">h"), r.string(), r.nbytes(), r.take(">q")


def assert_closed(sock, timeout=10.0):
    """The broker closes the connection (bounded wait): EOF or reset, after at most a few
    bytes (a TLS alert)."""
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except ConnectionError:
            return got
        except socket.timeout:
            break
        if not chunk:
            return got
        got += chunk
        assert len(got) < 1024, f"the broker keeps talking: {got[:100]!r}"
    pytest.fail(f"the broker left the connection open for {timeout}s")


def failed_scram_login(addr, user="admin", abandon=False):
    """A real SCRAM-SHA-256 exchange with a wrong proof: returns (error code, message),
    after checking the connection was closed. With `abandon`, the client hangs up after
    the server's first message instead, and None is returned."""
    c = kafka_wire.Conn(addr, timeout=15)
    try:
        err, _ = sasl_handshake(c, "SCRAM-SHA-256")
        assert err == 0
        nonce = uuid.uuid4().hex
        err, msg, server_first = sasl_authenticate(c, f"n,,n={user},r={nonce}".encode())
        assert err == 0, (err, msg)
        fields = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        assert fields["r"].startswith(nonce) and int(fields["i"]) >= 4096, server_first
        if abandon:
            return None
        proof = base64.b64encode(b"\x00" * 32).decode()
        err, msg, _ = sasl_authenticate(c, f"c=biws,r={fields['r']},p={proof}".encode())
        assert_closed(c.sock)
        return err, msg
    finally:
        c.close()


def open_fds(b):
    return len(os.listdir(f"/proc/{b.proc.pid}/fd"))


# ---------------------------------------------------------------------------------------
# 1-3: TLS
# ---------------------------------------------------------------------------------------

def test_ssl_round_trip_confluent(sec):
    confluent_roundtrip(sec, "SSL", ssl_conf(sec.pki.ca1), tag="ssl")


def test_ssl_round_trip_kafka_python(sec):
    kp_roundtrip(sec, "SSL", kp_ssl_conf(sec.pki.ca1), tag="kp-ssl")


def test_untrusted_server_certificate_is_refused_by_the_client(sec):
    handshake_failures = log_count(sec, "TLS handshake failed")
    err = confluent_refused(sec, "SSL", ssl_conf(sec.pki.ca2), is_ssl_error)
    assert "certificate verify failed" in err.str() or "SSL" in err.str(), err.str()
    kp_refused(sec, "SSL", kp_ssl_conf(sec.pki.ca2))
    # The client aborts the handshake; the broker logs it and goes on.
    wait_for_log(sec, lambda log: log.count("TLS handshake failed") > handshake_failures,
                 "new TLS handshake failure")
    confluent_roundtrip(sec, "SSL", ssl_conf(sec.pki.ca1), tag="ssl-after")


def test_mtls_requires_a_client_certificate(sec):
    pki = sec.pki
    confluent_refused(sec, "MTLS", ssl_conf(pki.ca1), is_ssl_error)
    # A certificate from a CA the listener does not trust is no better than none.
    confluent_refused(sec, "MTLS", ssl_conf(pki.ca1, pki.rogue_client), is_ssl_error)
    kp_refused(sec, "MTLS", kp_ssl_conf(pki.ca1))
    confluent_roundtrip(sec, "MTLS", ssl_conf(pki.ca1, pki.client), tag="mtls")
    kp_roundtrip(sec, "MTLS", kp_ssl_conf(pki.ca1, pki.client), tag="kp-mtls")
    # The plain SSL listener still takes clients without a certificate.
    confluent_roundtrip(sec, "SSL", ssl_conf(pki.ca1), tag="ssl-no-cert")


def test_acls_apply_to_the_certificate_principal(pki, own_brokers):
    """With an authorizer, a client certificate's mapped subject is the principal ACLs name."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    b = own_brokers({"MTLS": free_port()}, overrides=tls_overrides(pki.keystore, pki.ca1) + [
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,MTLS:SSL",
        "listener.name.mtls.ssl.client.auth=required",
        # CN=client1 -> User:client1; the test's PLAINTEXT admin is User:ANONYMOUS.
        "ssl.principal.mapping.rules=RULE:^CN=([a-z0-9]+)$/$1/L,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
    ])
    conf = ssl_conf(pki.ca1, pki.client)
    topic = create_topic(b.addr["PLAINTEXT"], unique("sec-mtls-acl"))
    reports = []
    p = Producer({"bootstrap.servers": b.addr["MTLS"], "message.timeout.ms": 10000, **conf})
    p.produce(topic, b"no ACL yet", on_delivery=lambda err, msg: reports.append(err))
    p.flush(15)
    assert reports and reports[0] is not None, reports
    assert reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, reports

    admin = AdminClient({"bootstrap.servers": b.addr["PLAINTEXT"]})
    grants = [
        AclBinding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:client1", "*",
                   op, AclPermissionType.ALLOW)
        for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE)
    ] + [AclBinding(ResourceType.GROUP, "*", ResourcePatternType.LITERAL, "User:client1",
                    "*", AclOperation.READ, AclPermissionType.ALLOW)]
    for f in admin.create_acls(grants, request_timeout=15).values():
        assert f.result(timeout=WAIT_S) is None
    confluent_roundtrip(b, "MTLS", conf, tag="mtls-acl")


# ---------------------------------------------------------------------------------------
# 4-7: SASL
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism,user,password", [
    ("PLAIN", "alice", ALICE_PW),           # a user of the listener's JAAS line
    ("PLAIN", "admin", ADMIN_PW),           # a SCRAM user, checked through PLAIN
    ("SCRAM-SHA-256", "admin", ADMIN_PW),
    ("SCRAM-SHA-512", "admin", ADMIN_PW),
], ids=["plain-jaas-user", "plain-scram-user", "scram-sha-256", "scram-sha-512"])
def test_sasl_plaintext_round_trip_confluent(sec, mechanism, user, password):
    confluent_roundtrip(sec, "SASL_PLAINTEXT", sasl_conf(mechanism, user, password),
                        tag=mechanism.lower())


@pytest.mark.parametrize("mechanism,user,password", [
    ("SCRAM-SHA-512", "admin", ADMIN_PW),
    ("PLAIN", "alice", ALICE_PW),
], ids=["scram-sha-512", "plain"])
def test_sasl_plaintext_round_trip_kafka_python(sec, mechanism, user, password):
    kp_roundtrip(sec, "SASL_PLAINTEXT", kp_sasl_conf(mechanism, user, password),
                 tag="kp-" + mechanism.lower())


def test_sasl_ssl_round_trip(sec):
    ca = sec.pki.ca1
    confluent_roundtrip(sec, "SASL_SSL", sasl_conf("SCRAM-SHA-512", "admin", ADMIN_PW, ca),
                        tag="sasl-ssl")
    kp_roundtrip(sec, "SASL_SSL", kp_sasl_conf("SCRAM-SHA-512", "admin", ADMIN_PW, ca),
                 tag="kp-sasl-ssl")


@pytest.mark.parametrize("mechanism,user,password", [
    ("SCRAM-SHA-256", "admin", "wrong-pw-Zr81"),
    ("SCRAM-SHA-512", "nobody", "wrong-pw-Ub42"),   # an unknown user
    ("PLAIN", "alice", "wrong-pw-Hq57"),            # PLAIN sends the password itself
    ("PLAIN", "admin", "wrong-pw-Lm03"),            # PLAIN against a SCRAM credential
], ids=["scram-sha-256-wrong-password", "scram-sha-512-unknown-user",
        "plain-jaas-wrong-password", "plain-scram-wrong-password"])
def test_wrong_credentials_are_refused(sec, mechanism, user, password):
    def failures(log):
        return [line for line in log.splitlines() if "failed authentication" in line]

    before = len(failures(broker_log(sec)))
    err = confluent_refused(sec, "SASL_PLAINTEXT", sasl_conf(mechanism, user, password),
                            is_auth_error)
    assert mechanism in err.str() or mechanism == "PLAIN", err.str()
    log = wait_for_log(sec, lambda log: len(failures(log)) > before,
                       "'failed authentication' for the confluent client")
    middle = len(failures(log))
    kp_refused(sec, "SASL_PLAINTEXT", kp_sasl_conf(mechanism, user, password))
    log = wait_for_log(sec, lambda log: len(failures(log)) > middle,
                       "'failed authentication' for the kafka-python client")
    new = failures(log)[before:]
    assert all("127.0.0.1" in line for line in new), new
    assert any(mechanism in line for line in new), new
    for secret in (password, ADMIN_PW, ALICE_PW, KEYSTORE_PW):
        assert secret not in log, f"the broker log shows a password ({secret})"


def test_mechanism_not_enabled_on_the_listener_is_refused(sec):
    """SASL_SSL enables SCRAM-SHA-512 only: PLAIN and SCRAM-SHA-256 with credentials that
    are right for those mechanisms on SASL_PLAINTEXT are refused."""
    ca = sec.pki.ca1
    refused = log_count(sec, "SASL handshake refused (code 33)")
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        err = confluent_refused(
            sec, "SASL_SSL", sasl_conf(mechanism, "admin", ADMIN_PW, ca),
            lambda e: e.code() == KafkaError._AUTHENTICATION)
        assert "Unsupported SASL mechanism" in err.str(), err.str()
        assert "SCRAM-SHA-512" in err.str(), err.str()
    kp_refused(sec, "SASL_SSL", kp_sasl_conf("PLAIN", "admin", ADMIN_PW, ca))
    wait_for_log(sec, lambda log: log.count("SASL handshake refused (code 33)") >= refused + 3,
                 "the refused handshakes (two confluent, one kafka-python)")


# ---------------------------------------------------------------------------------------
# 8: SCRAM users
# ---------------------------------------------------------------------------------------

def fjord_configs(sec, *args):
    r = subprocess.run([FJORD_BIN, "configs", "--bootstrap-server", sec.addr["PLAINTEXT"],
                        *args], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_scram_users_with_the_cli(sec):
    user, pw = unique("carol"), "carol-secret-Pd6"
    rc, out = fjord_configs(sec, "--alter", "--entity-type", "users", "--entity-name", user,
                            "--add-config", f"SCRAM-SHA-256=[iterations=8192,password={pw}]")
    assert rc == 0 and f"Completed updating config for user {user}." in out, out

    confluent_roundtrip(sec, "SASL_PLAINTEXT", sasl_conf("SCRAM-SHA-256", user, pw),
                        tag="cli-user")
    # Only the mechanism that was set: SCRAM-SHA-512 has no credential for this user.
    confluent_refused(sec, "SASL_PLAINTEXT", sasl_conf("SCRAM-SHA-512", user, pw),
                      is_auth_error)

    expected = (f"SCRAM credential configs for user-principal '{user}' are "
                "SCRAM-SHA-256=iterations=8192")
    rc, out = fjord_configs(sec, "--describe", "--entity-type", "users",
                            "--entity-name", user)
    assert rc == 0 and expected in out, out
    rc, out = fjord_configs(sec, "--describe", "--entity-type", "users")
    assert rc == 0 and expected in out and "user-principal 'admin'" in out, out
    assert pw not in out

    # Too few iterations is refused, and creates nothing.
    rc, out = fjord_configs(sec, "--alter", "--entity-type", "users", "--entity-name",
                            user + "-weak", "--add-config",
                            "SCRAM-SHA-256=[iterations=1000,password=weak-pw]")
    assert rc != 0 and "4096" in out, out

    rc, out = fjord_configs(sec, "--alter", "--entity-type", "users", "--entity-name", user,
                            "--delete-config", "SCRAM-SHA-256")
    assert rc == 0 and f"Completed updating config for user {user}." in out, out
    rc, out = fjord_configs(sec, "--describe", "--entity-type", "users",
                            "--entity-name", user)
    assert rc == 0 and "SCRAM-SHA-256" not in out, out
    confluent_refused(sec, "SASL_PLAINTEXT", sasl_conf("SCRAM-SHA-256", user, pw),
                      is_auth_error)


def test_scram_users_with_the_admin_client(sec):
    a = AdminClient({"bootstrap.servers": sec.addr["PLAINTEXT"]})
    user, weak = unique("dave"), unique("erin")
    pw1, pw2 = "dave-secret-1Nc", "dave-secret-2Vb"
    fs = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), pw1.encode()),
        UserScramCredentialUpsertion(
            weak, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"erin-secret"),
    ], request_timeout=15)
    assert fs[user].result(timeout=20) is None
    with pytest.raises(KafkaException) as e:
        fs[weak].result(timeout=20)
    assert kafka_error(e.value).code() == KafkaError.UNACCEPTABLE_CREDENTIAL, e.value

    desc = a.describe_user_scram_credentials([user], request_timeout=15)[user].result(20)
    assert desc.user == user
    assert [(i.mechanism, i.iterations) for i in desc.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_512, 8192)]
    for missing in (weak, unique("nobody")):
        with pytest.raises(KafkaException) as e:
            a.describe_user_scram_credentials([missing], request_timeout=15)[missing].result(20)
        assert kafka_error(e.value).code() == KafkaError.RESOURCE_NOT_FOUND, e.value
    everyone = a.describe_user_scram_credentials(request_timeout=15).result(20)
    assert user in everyone and "admin" in everyone and weak not in everyone

    # The new user logs in over SASL_SSL (which offers SCRAM-SHA-512 only).
    ca = sec.pki.ca1
    confluent_roundtrip(sec, "SASL_SSL", sasl_conf("SCRAM-SHA-512", user, pw1, ca),
                        tag="admin-user")

    # A new password replaces the old one.
    a.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), pw2.encode())],
        request_timeout=15)[user].result(20)
    confluent_refused(sec, "SASL_SSL", sasl_conf("SCRAM-SHA-512", user, pw1, ca),
                      is_auth_error)
    confluent_roundtrip(sec, "SASL_SSL", sasl_conf("SCRAM-SHA-512", user, pw2, ca),
                        tag="admin-user2")

    a.alter_user_scram_credentials([UserScramCredentialDeletion(
        user, ScramMechanism.SCRAM_SHA_512)], request_timeout=15)[user].result(20)
    confluent_refused(sec, "SASL_SSL", sasl_conf("SCRAM-SHA-512", user, pw2, ca),
                      is_auth_error)
    with pytest.raises(KafkaException) as e:
        a.alter_user_scram_credentials([UserScramCredentialDeletion(
            user, ScramMechanism.SCRAM_SHA_512)], request_timeout=15)[user].result(20)
    assert kafka_error(e.value).code() == KafkaError.RESOURCE_NOT_FOUND, e.value


# ---------------------------------------------------------------------------------------
# 9: Metadata per listener
# ---------------------------------------------------------------------------------------

def test_metadata_names_the_listener_the_client_came_in_on(sec):
    pki = sec.pki
    confs = {
        "PLAINTEXT": {},
        "SSL": ssl_conf(pki.ca1),
        "SASL_PLAINTEXT": sasl_conf("SCRAM-SHA-256", "admin", ADMIN_PW),
        "SASL_SSL": sasl_conf("SCRAM-SHA-512", "admin", ADMIN_PW, pki.ca1),
        "MTLS": ssl_conf(pki.ca1, pki.client),
    }
    for listener, conf in confs.items():
        a = AdminClient({"bootstrap.servers": sec.addr[listener], **conf})
        md = a.list_topics(timeout=15)
        addrs = {(b.host, b.port) for b in md.brokers.values()}
        assert addrs == {("127.0.0.1", sec.ports[listener])}, (listener, addrs)


def test_group_consumer_through_sasl_ssl(sec):
    """FindCoordinator must answer with the SASL_SSL address too: a subscribing consumer
    joins, reads and commits through that listener only."""
    conf = sasl_conf("SCRAM-SHA-512", "admin", ADMIN_PW, sec.pki.ca1)
    topic = confluent_roundtrip(sec, "SASL_SSL", conf, tag="group")
    group = unique("sec-group")
    c = Consumer({"bootstrap.servers": sec.addr["SASL_SSL"], "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    try:
        c.subscribe([topic])
        got, deadline = [], time.monotonic() + WAIT_S
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is None, m.error()
                got.append(m)
        assert len(got) == 3
        c.commit(message=got[-1], asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=15)
        assert committed[0].offset == 3
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# 10: hostile raw clients
# ---------------------------------------------------------------------------------------

def test_requests_before_login_close_the_connection(sec):
    c = kafka_wire.Conn(sec.addr["SASL_PLAINTEXT"])
    try:
        r = c.request(API_VERSIONS, 0, b"")   # served before login
        assert r.take(">h") == 0
        with pytest.raises(ConnectionError):
            c.request(METADATA, 1, struct.pack(">i", -1))
    finally:
        c.close()
    # A SaslAuthenticate before any SaslHandshake: ILLEGAL_SASL_STATE, then closed.
    c = kafka_wire.Conn(sec.addr["SASL_PLAINTEXT"])
    try:
        err, msg, _ = sasl_authenticate(c, b"\x00admin\x00" + ADMIN_PW.encode())
        assert err == ILLEGAL_SASL_STATE, (err, msg)
        assert_closed(c.sock)
    finally:
        c.close()


def test_garbage_sasl_token_is_refused_and_closed(sec):
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        c = kafka_wire.Conn(sec.addr["SASL_PLAINTEXT"])
        try:
            err, offered = sasl_handshake(c, mechanism)
            assert err == 0 and offered == SASL_MECHANISMS, (err, offered)
            err, msg, _ = sasl_authenticate(c, b"\xff\x00garbage\x00\x01" + os.urandom(64))
            assert err == SASL_AUTHENTICATION_FAILED, (mechanism, err, msg)
            assert_closed(c.sock)
        finally:
            c.close()
    # A SCRAM exchange whose final proof is wrong.
    err, msg = failed_scram_login(sec.addr["SASL_PLAINTEXT"])
    assert err == SASL_AUTHENTICATION_FAILED
    assert msg == ("Authentication failed during authentication due to invalid "
                   "credentials with SASL mechanism SCRAM-SHA-256"), msg


def test_unknown_sasl_mechanism_gets_33(sec):
    c = kafka_wire.Conn(sec.addr["SASL_PLAINTEXT"])
    try:
        err, offered = sasl_handshake(c, "GSSAPI")
        assert err == UNSUPPORTED_SASL_MECHANISM
        assert offered == SASL_MECHANISMS
        assert_closed(c.sock)
    finally:
        c.close()


def raw_sasl(c, token):
    """After a SaslHandshake v0 the SASL messages go as bare size-prefixed frames."""
    c.sock.sendall(struct.pack(">i", len(token)) + token)
    size = struct.unpack(">i", c._recv_exact(4))[0]
    return c._recv_exact(size)


@pytest.mark.parametrize("password,ok", [(ALICE_PW, True), ("wrong", False)])
def test_sasl_handshake_v0_takes_bare_frames(sec, password, ok):
    """Older clients (and librdkafka's feature check) use SaslHandshake v0, after which
    the PLAIN message travels without a Kafka header; a good login then serves requests,
    a bad one closes the connection."""
    c = kafka_wire.Conn(sec.addr["SASL_PLAINTEXT"])
    try:
        r = c.request(SASL_HANDSHAKE, 0, _str("PLAIN"))
        assert r.take(">h") == 0
        if not ok:
            c.sock.sendall(struct.pack(">i", 12) + b"\0alice\0wrong")
            assert_closed(c.sock)
            return
        assert raw_sasl(c, f"\0alice\0{password}".encode()) == b""
        # Logged in: an ordinary request is served (Metadata v1, all topics).
        r = c.request(3, 1, struct.pack(">i", -1))
        assert r.take(">i") >= 1  # at least this broker
    finally:
        c.close()


def test_unauthenticated_clients_cannot_stall_the_broker(sec):
    """Before login a SASL listener reads small frames only (Kafka closes the connection
    when one exceeds sasl.server.max.receive.size, 512 KiB by default). A few connections
    that announce 100 MB frames and then send nothing must not take the broker-wide request
    memory (queued.max.request.bytes) that every other client needs: a produce through
    PLAINTEXT goes through while they are open, and they are closed."""
    a = AdminClient({"bootstrap.servers": sec.addr["PLAINTEXT"]})
    res = ConfigResource(ResourceType.BROKER, "1")
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    frame = 100_000_000
    assert frame <= int(cfg["socket.request.max.bytes"].value)
    n = int(cfg["queued.max.request.bytes"].value) // frame + 1
    topic = create_topic(sec.addr["PLAINTEXT"], unique("sec-stall"))
    hostile = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", sec.ports["SASL_PLAINTEXT"]), timeout=10)
            # The start of a SaslHandshake that claims to be 100 MB long.
            s.sendall(struct.pack(">ihhi", frame, SASL_HANDSHAKE, 1, 1))
            hostile.append(s)
        time.sleep(1)  # lets the broker read those headers (not a timing assertion)

        reports = []
        p = Producer({"bootstrap.servers": sec.addr["PLAINTEXT"],
                      "message.timeout.ms": 10000})
        p.produce(topic, value=b"through", on_delivery=lambda e, m: reports.append(e))
        p.flush(15)
        del p
        delivered = reports == [None]
        assert delivered, (
            f"a PLAINTEXT produce did not get through while {n} unauthenticated SASL "
            f"connections announced {frame}-byte frames: {[str(e) for e in reports]}")
        for s in hostile:
            assert_closed(s, timeout=10)
    finally:
        for s in hostile:
            s.close()


def test_non_tls_bytes_on_the_ssl_port(sec):
    # A PLAINTEXT client's ApiVersions, then junk: not a ClientHello.
    handshake_failures = log_count(sec, "TLS handshake failed")
    frame = struct.pack(">ihhih", 14, API_VERSIONS, 0, 1, 4) + b"oops"
    for payload in (frame, os.urandom(300), b"\x16\x03\x01\x00\x05hello" + os.urandom(50)):
        s = socket.create_connection(("127.0.0.1", sec.ports["SSL"]), timeout=10)
        try:
            s.sendall(payload)
            reply = assert_closed(s)
            # Nothing, or a TLS alert record: never a Kafka answer.
            assert reply == b"" or reply[:1] == b"\x15", f"reply on the TLS port: {reply!r}"
        finally:
            s.close()
    wait_for_log(sec, lambda log: log.count("TLS handshake failed") >= handshake_failures + 3,
                 "three new TLS handshake failures")
    assert sec.proc.poll() is None, "the broker exited"
    confluent_roundtrip(sec, "SSL", ssl_conf(sec.pki.ca1), tag="ssl-after-junk")


def test_silent_tls_connections_do_not_block_others(sec):
    silent = [socket.create_connection(("127.0.0.1", sec.ports[n]), timeout=10)
              for n in ("SSL", "SSL", "SASL_SSL", "MTLS")]
    try:
        confluent_roundtrip(sec, "SSL", ssl_conf(sec.pki.ca1), tag="ssl-beside-silent")
        confluent_roundtrip(sec, "SASL_SSL",
                            sasl_conf("SCRAM-SHA-512", "admin", ADMIN_PW, sec.pki.ca1),
                            tag="sasl-ssl-beside-silent")
    finally:
        for s in silent:
            s.close()


def test_tls_handshake_must_finish_in_time(pki, own_brokers):
    b = own_brokers({"SSL": free_port()},
                    overrides=tls_overrides(pki.keystore, pki.ca1)
                    + ["fjord.request.read.timeout.ms=1500"])
    silent = socket.create_connection(("127.0.0.1", b.ports["SSL"]), timeout=10)
    # The first bytes of a TLS record header, then nothing.
    partial = socket.create_connection(("127.0.0.1", b.ports["SSL"]), timeout=10)
    partial.sendall(b"\x16\x03\x01")
    try:
        confluent_roundtrip(b, "SSL", ssl_conf(pki.ca1), tag="ssl-beside-stalled")
        assert_closed(silent, timeout=15)
        assert_closed(partial, timeout=15)
    finally:
        silent.close()
        partial.close()
    wait_for_log(b, lambda log: "TLS handshake not done within 1500 ms" in log,
                 "handshake timeout")
    confluent_roundtrip(b, "SSL", ssl_conf(pki.ca1), tag="ssl-after-stalled")


# ---------------------------------------------------------------------------------------
# 11: many failed logins
# ---------------------------------------------------------------------------------------

def test_many_failed_logins_leave_the_broker_serving(own_brokers):
    # A broker of its own, with a shorter failed-login delay than the default 100 ms, so
    # that 10,000 refused logins take seconds rather than minutes; what is checked is that
    # they leave it up, bounded and serving.
    b = own_brokers({"SASL_PLAINTEXT": free_port()}, overrides=[
        "sasl.enabled.mechanisms=SCRAM-SHA-256",
        "connection.failed.authentication.delay.ms=10",
    ], extra_args=["--add-scram", f"SCRAM-SHA-256=[name=admin,password={ADMIN_PW}]"])
    addr = b.addr["SASL_PLAINTEXT"]
    baseline = open_fds(b)
    attempts, threads = 10_000, 50
    peak = [baseline]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], open_fds(b))
            time.sleep(0.05)

    def one(i):
        # Every fifth client hangs up in the middle of the exchange instead.
        return failed_scram_login(addr, abandon=(i % 5 == 4))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, range(attempts), timeout=300))
    finally:
        stop.set()
        watcher.join(timeout=5)
    elapsed = time.monotonic() - started
    refused = [r for r in results if r is not None]
    assert len(refused) == attempts - attempts // 5
    assert all(err == SASL_AUTHENTICATION_FAILED for err, _ in refused), (
        {err for err, _ in refused})
    assert b.proc.poll() is None, "the broker exited"
    assert peak[0] > baseline, "the connections never showed up as descriptors"
    # Bounded: at most the clients' own connections at once, plus a little slack.
    assert peak[0] < baseline + threads + 50, (baseline, peak[0])
    rss = broker_rss_mib(b)
    assert rss < 256, f"the broker grew to {rss} MiB over {attempts} failed logins"

    # Every refused or abandoned connection is released.
    deadline = time.monotonic() + 20
    while (now := open_fds(b)) > baseline + 10:
        assert time.monotonic() < deadline, (
            f"broker holds {now} descriptors, {baseline} before {attempts} failed logins "
            f"(peak {peak[0]})")
        time.sleep(0.2)

    confluent_roundtrip(b, "SASL_PLAINTEXT",
                        sasl_conf("SCRAM-SHA-256", "admin", ADMIN_PW), tag="after-flood")
    print(f"{attempts} failed logins over {threads} threads in {elapsed:.1f}s; "
          f"descriptors {baseline} -> peak {peak[0]} -> {open_fds(b)}; RSS {rss} MiB")


def broker_rss_mib(b):
    with open(f"/proc/{b.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


# ---------------------------------------------------------------------------------------
# 12: certificate reload
# ---------------------------------------------------------------------------------------

def test_renewed_keystore_is_served_without_restart(pki, own_brokers):
    d = tempfile.mkdtemp(prefix="fjord-reload-", dir=pki.dir)
    keystore = os.path.join(d, "keystore.pem")
    with open(keystore, "w") as f:
        f.write(keystore_pem(pki.server1))
    b = own_brokers({"SSL": free_port()}, overrides=tls_overrides(keystore, pki.ca1))

    confluent_roundtrip(b, "SSL", ssl_conf(pki.ca1), tag="before-reload")
    confluent_refused(b, "SSL", ssl_conf(pki.ca2), is_ssl_error)

    # Renew: the certificate signed by CA2, written beside and moved over the old file.
    tmp = keystore + ".new"
    with open(tmp, "w") as f:
        f.write(keystore_pem(pki.server2))
    os.replace(tmp, keystore)

    deadline = time.monotonic() + 20
    while True:
        a = AdminClient({"bootstrap.servers": b.addr["SSL"], **ssl_conf(pki.ca2)})
        try:
            a.list_topics(timeout=2)
            break
        except KafkaException as e:
            assert time.monotonic() < deadline, f"renewed certificate not served: {e}"
        finally:
            del a
    confluent_roundtrip(b, "SSL", ssl_conf(pki.ca2), tag="after-reload")
    # The old certificate is no longer served.
    confluent_refused(b, "SSL", ssl_conf(pki.ca1), is_ssl_error)
    wait_for_log(b, lambda log: "TLS certificate reloaded" in log, "reload message")


def test_pkcs12_keystore_and_truststore(pki, own_brokers):
    """Kafka's other keystore type: a PKCS12 keystore and truststore, opened with their
    passwords, serve TLS and check client certificates; a wrong password stops the
    broker at start with a line naming the file."""
    d = tempfile.mkdtemp(prefix="fjord-p12-", dir=pki.dir)
    keystore, truststore = os.path.join(d, "server.p12"), os.path.join(d, "trust.p12")
    crt, key = pki.server1
    openssl("pkcs12", "-export", "-in", crt, "-inkey", key, "-out", keystore,
            "-passout", "pass:store-secret", cwd=d)
    openssl("pkcs12", "-export", "-nokeys", "-in", pki.ca1, "-out", truststore,
            "-passout", "pass:trust-secret", cwd=d)
    p12 = ["ssl.keystore.type=PKCS12", f"ssl.keystore.location={keystore}",
           "ssl.keystore.password=store-secret", "ssl.truststore.type=PKCS12",
           f"ssl.truststore.location={truststore}", "ssl.truststore.password=trust-secret",
           "ssl.client.auth=required"]
    b = own_brokers({"SSL": free_port()}, overrides=p12)
    confluent_roundtrip(b, "SSL", ssl_conf(pki.ca1, pki.client), tag="p12")
    confluent_refused(b, "SSL", ssl_conf(pki.ca1), is_ssl_error)

    bad = [o.replace("store-secret", "wrong") if o.startswith("ssl.keystore.password") else o
           for o in p12]
    overrides = [f"listeners=PLAINTEXT://127.0.0.1:{free_port()},SSL://127.0.0.1:{free_port()}",
                 *bad]
    r = subprocess.run([FJORD_BIN, "server", "--data-dir", os.path.join(d, "data"),
                        *sum((["--override", o] for o in overrides), [])],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stderr
    assert "server.p12" in r.stderr and "password" in r.stderr, r.stderr
    assert "wrong" not in r.stderr.replace("wrong)", ""), r.stderr


# ---------------------------------------------------------------------------------------
# 13: secrets in DescribeConfigs
# ---------------------------------------------------------------------------------------

def test_describe_configs_hides_passwords(sec):
    a = AdminClient({"bootstrap.servers": sec.addr["PLAINTEXT"]})
    res = ConfigResource(ResourceType.BROKER, "1")
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    secret = {n: e for n, e in cfg.items()
              if n.endswith("password") or n.endswith("sasl.jaas.config")}
    assert "ssl.keystore.password" in secret, sorted(cfg)
    for name, e in secret.items():
        assert e.is_sensitive, name
        assert e.value is None, (name, e.value)
    # The set value is hidden, not merely absent; and nothing shows any password.
    assert cfg["ssl.keystore.password"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert cfg["ssl.keystore.location"].value == sec.pki.keystore
    for e in cfg.values():
        for pw in (KEYSTORE_PW, ADMIN_PW, ALICE_PW):
            assert e.value is None or pw not in e.value, (e.name, e.value)
    # Through a SASL listener it is the same.
    a = AdminClient({"bootstrap.servers": sec.addr["SASL_SSL"],
                     **sasl_conf("SCRAM-SHA-512", "admin", ADMIN_PW, sec.pki.ca1)})
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert cfg["ssl.keystore.password"].value is None
    assert cfg["ssl.keystore.password"].is_sensitive
