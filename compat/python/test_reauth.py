"""KIP-368: SASL logins that run out (connections.max.reauth.ms) and are renewed on the
same connection, through raw frames and confluent-kafka (librdkafka re-authenticates).

Covered:
  * SaslAuthenticate tells the client how long its login lasts (session_lifetime_ms), per
    mechanism (listener.name.<l>.<mechanism>.connections.max.reauth.ms overrides the
    broker's setting).
  * A request after the login ran out closes the connection, with one log line.
  * A client that logs in again before then keeps its connection past the first expiry.
  * Logging in again as someone else is refused (SASL_AUTHENTICATION_FAILED) and closes.
  * A producer and a consumer keep working across many expiries, re-authenticating
    instead of being disconnected.
  * Without the setting, a login lasts as long as its connection (lifetime 0).

Needs FJORD_BIN: with KAFKA_BOOTSTRAP every test here is skipped.
"""
import os
import struct
import time

import pytest

import kafka_wire
from conftest import free_port
from helpers import consume_n, create_topic, produce_checked, producer, unique
from test_security import (ADMIN_PW, ALICE_PW, METADATA, SASL_AUTHENTICATION_FAILED,
                           assert_closed, broker_log, own_brokers, sasl_authenticate_lifetime,
                           sasl_handshake)

FJORD_BIN = os.environ.get("FJORD_BIN")
pytestmark = pytest.mark.skipif(
    not FJORD_BIN, reason="starts its own broker with connections.max.reauth.ms (FJORD_BIN)")

__all__ = ["own_brokers"]  # the fixture, used by name

LIFETIME_MS = 1500
PLAIN_LIFETIME_MS = 2500


@pytest.fixture
def reauth_broker(own_brokers, monkeypatch):
    # Successful logins are logged at debug level: the tests count them.
    monkeypatch.setenv("FJORD_LOG", "info,fjord_broker::connection=debug")
    jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_alice="{ALICE_PW}";')
    return own_brokers({"SASL_PLAINTEXT": free_port()}, overrides=[
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
        f"connections.max.reauth.ms={LIFETIME_MS}",
        f"listener.name.sasl_plaintext.plain.connections.max.reauth.ms={PLAIN_LIFETIME_MS}",
    ], extra_args=["--add-scram", f"SCRAM-SHA-256=[name=admin,password={ADMIN_PW}]"])


def plain_login(c, user, password):
    """SaslHandshake v1 and SaslAuthenticate v1 with PLAIN: (error, message, lifetime)."""
    err, _ = sasl_handshake(c, "PLAIN")
    assert err == 0
    err, msg, _, lifetime = sasl_authenticate_lifetime(c, f"\0{user}\0{password}".encode())
    return err, msg, lifetime


def metadata_ok(c):
    """A Metadata v1 request for no topics; the connection stays usable."""
    r = c.request(METADATA, 1, struct.pack(">i", 0))
    assert r.take(">i") >= 1  # at least this broker


def test_login_lifetime_is_told_and_enforced(reauth_broker):
    b = reauth_broker
    c = kafka_wire.Conn(b.addr["SASL_PLAINTEXT"])
    err, msg, lifetime = plain_login(c, "alice", ALICE_PW)
    assert (err, lifetime) == (0, PLAIN_LIFETIME_MS), msg
    metadata_ok(c)
    time.sleep(PLAIN_LIFETIME_MS / 1000 + 0.5)
    # The next request finds the login run out: no answer, the connection closes.
    c.sock.sendall(struct.pack(">i", 14) + struct.pack(">hhih", METADATA, 1, 99, -1)
                   + struct.pack(">i", 0))
    assert_closed(c.sock)
    deadline = time.monotonic() + 10
    while "SASL login expired" not in broker_log(b):
        assert time.monotonic() < deadline, broker_log(b)[-2000:]
        time.sleep(0.1)


def test_logging_in_again_keeps_the_connection(reauth_broker):
    c = kafka_wire.Conn(reauth_broker.addr["SASL_PLAINTEXT"])
    err, _, lifetime = plain_login(c, "alice", ALICE_PW)
    assert err == 0
    for _ in range(3):
        time.sleep(lifetime / 1000 * 0.6)
        err, msg, lifetime = plain_login(c, "alice", ALICE_PW)
        assert (err, lifetime) == (0, PLAIN_LIFETIME_MS), msg
        metadata_ok(c)
    c.close()


def test_logging_in_again_as_someone_else_is_refused(reauth_broker):
    c = kafka_wire.Conn(reauth_broker.addr["SASL_PLAINTEXT"])
    assert plain_login(c, "alice", ALICE_PW)[0] == 0
    # PLAIN falls back to SCRAM credentials, so admin's password is right: only the
    # change of principal is refused.
    err, msg, _ = plain_login(c, "admin", ADMIN_PW)
    assert err == SASL_AUTHENTICATION_FAILED
    assert "Cannot change principals during re-authentication" in msg
    assert_closed(c.sock)


def test_librdkafka_reauthenticates_instead_of_reconnecting(reauth_broker):
    b = reauth_broker
    bs = b.addr["SASL_PLAINTEXT"]
    conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "admin", "sasl.password": ADMIN_PW}
    topic = unique("reauth")
    create_topic(b.addr["PLAINTEXT"], topic)
    p = producer(bs, **conf)
    sent = []
    deadline = time.monotonic() + 4 * LIFETIME_MS / 1000
    i = 0
    while time.monotonic() < deadline:
        sent += produce_checked(p, topic, [(b"k", f"v{i}".encode())])
        i += 1
        time.sleep(0.1)
    got = consume_n(bs, topic, [0], len(sent), **conf)
    assert [m.value() for m in got] == [m.value() for m in sent]
    log = broker_log(b)
    assert log.count("re-authenticated") >= 2, "librdkafka should have logged in again"
    assert "SASL login expired" not in log, "a connection outlived its login"


def test_without_the_setting_a_login_lasts_for_the_connection(own_brokers):
    jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_alice="{ALICE_PW}";')
    b = own_brokers({"SASL_PLAINTEXT": free_port()}, overrides=[
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}"])
    c = kafka_wire.Conn(b.addr["SASL_PLAINTEXT"])
    err, _, lifetime = plain_login(c, "alice", ALICE_PW)
    assert (err, lifetime) == (0, 0)
    # A second login on a logged-in connection is not expected without it.
    err, _ = sasl_handshake(c, "PLAIN")
    assert err != 0
    c.close()
