"""SASL/OAUTHBEARER with unsecured tokens (Kafka's default validator, for testing), through
confluent-kafka (librdkafka's own unsecured JWT), kafka-python (a token provider) and raw
frames.

Covered:
  * The token's `sub` claim is the principal: a super user's token produces and consumes,
    another's is refused by the authorizer (TOPIC_AUTHORIZATION_FAILED).
  * Expired, signed and malformed tokens get SASL_AUTHENTICATION_FAILED and the connection
    closes; the log gives the reason, never the token.
  * A login lasts until its token expires, within connections.max.reauth.ms.
  * The broker says at start that the listener takes unsecured tokens.

Needs FJORD_BIN: with KAFKA_BOOTSTRAP every test here is skipped.
"""
import base64
import json
import os
import time

import pytest
from confluent_kafka import KafkaError

import kafka_wire
from conftest import free_port
from helpers import consume_n, create_topic, produce_checked, producer, unique
from test_security import (SASL_AUTHENTICATION_FAILED, assert_closed, broker_log,
                           own_brokers, sasl_authenticate_lifetime, sasl_handshake)

FJORD_BIN = os.environ.get("FJORD_BIN")
pytestmark = pytest.mark.skipif(
    not FJORD_BIN, reason="starts its own broker with an OAUTHBEARER listener (FJORD_BIN)")

__all__ = ["own_brokers"]  # the fixture, used by name

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
REAUTH_MS = 60000


@pytest.fixture
def oauth_broker(own_brokers):
    return own_brokers({"SASL_PLAINTEXT": free_port()}, overrides=[
        "sasl.enabled.mechanisms=OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
        f"authorizer.class.name={STANDARD_AUTHORIZER}",
        # PLAINTEXT (the test's own admin connection) is User:ANONYMOUS.
        "super.users=User:alice;User:ANONYMOUS",
        f"connections.max.reauth.ms={REAUTH_MS}",
    ])


def conf(principal):
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
            "enable.sasl.oauthbearer.unsecure.jwt": True,
            "sasl.oauthbearer.config": f"principal={principal}"}


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def token(claims, header=None, signature=""):
    return f"{b64(header or {'alg': 'none'})}.{b64(claims)}.{signature}"


def login(addr, tok):
    """OAUTHBEARER over raw frames: (connection, error, message, session lifetime)."""
    c = kafka_wire.Conn(addr)
    err, _ = sasl_handshake(c, "OAUTHBEARER")
    assert err == 0
    err, text, _, lifetime = sasl_authenticate_lifetime(
        c, f"n,,\x01auth=Bearer {tok}\x01\x01".encode())
    return c, err, text, lifetime


def test_the_tokens_subject_is_the_principal(oauth_broker):
    b = oauth_broker
    topic = unique("oauth")
    create_topic(b.addr["PLAINTEXT"], topic)
    bs = b.addr["SASL_PLAINTEXT"]
    sent = produce_checked(producer(bs, **conf("alice")), topic,
                           [(b"k", f"v{i}".encode()) for i in range(10)])
    got = consume_n(bs, topic, [0], 10, **conf("alice"))
    assert [m.value() for m in got] == [m.value() for m in sent]

    errors = []
    p = producer(bs, **conf("bob"), **{"message.timeout.ms": 10000})
    p.produce(topic, b"no", on_delivery=lambda err, msg: errors.append(err))
    p.flush(15)
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
    assert "takes unsecured OAUTHBEARER tokens" in broker_log(b)


def test_kafka_python_logs_in_with_a_token_provider(oauth_broker):
    from kafka import KafkaProducer
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Unsecured(AbstractTokenProvider):
        def token(self):
            now = int(time.time())
            return token({"sub": "alice", "iat": now, "exp": now + 300})

    b = oauth_broker
    topic = unique("oauth-kp")
    create_topic(b.addr["PLAINTEXT"], topic)
    p = KafkaProducer(bootstrap_servers=b.addr["SASL_PLAINTEXT"],
                      security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                      sasl_oauth_token_provider=Unsecured())
    p.send(topic, b"from-kafka-python").get(timeout=20)
    p.close()
    got = consume_n(b.addr["SASL_PLAINTEXT"], topic, [0], 1, **conf("alice"))
    assert got[0].value() == b"from-kafka-python"


def test_bad_tokens_are_refused_and_never_logged(oauth_broker):
    b = oauth_broker
    now = int(time.time())
    cases = [
        (token({"sub": "alice", "exp": now - 10}), "expired"),
        (token({"sub": "alice", "exp": now + 60}, header={"alg": "HS256"}, signature="c2ln"),
         "only unsecured tokens"),
        (token({"exp": now + 60}), "no 'sub' claim"),
        ("not-a-token", "not a compact JWS"),
    ]
    for tok, why in cases:
        c, err, msg, _ = login(b.addr["SASL_PLAINTEXT"], tok)
        assert err == SASL_AUTHENTICATION_FAILED, (why, err, msg)
        assert_closed(c.sock)
        deadline = time.monotonic() + 10
        while why not in broker_log(b):
            assert time.monotonic() < deadline, f"no log line for {why}"
            time.sleep(0.1)
        assert tok not in broker_log(b)


def test_a_login_lasts_until_its_token_expires(oauth_broker):
    now = int(time.time())
    c, err, msg, lifetime = login(oauth_broker.addr["SASL_PLAINTEXT"],
                                  token({"sub": "alice", "exp": now + 10}))
    assert err == 0, msg
    assert 5000 < lifetime <= 10000, lifetime
    c.close()
    c, err, msg, lifetime = login(oauth_broker.addr["SASL_PLAINTEXT"],
                                  token({"sub": "alice", "exp": now + 3600}))
    assert (err, lifetime) == (0, REAUTH_MS), msg
    c.close()
