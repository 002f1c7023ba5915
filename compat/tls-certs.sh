#!/usr/bin/env bash
# Test certificates for the compat suites' TLS listeners, made with the openssl CLI:
#   compat/tls-certs.sh DIR
# writes into DIR (created if needed) a CA (ca.pem, ca.key), the broker's PEM keystore
# (server.pem: its unencrypted key, then its certificate for localhost and 127.0.0.1) and
# a client certificate for mTLS (client.crt, client.key, subject CN=client,OU=compat,O=Fjord).
# All are X.509 v3 (rustls refuses v1) and valid for 2 days. Never use them outside tests.
set -euo pipefail
dir="$1"
mkdir -p "$dir"
cd "$dir"
quiet() { "$@" > /dev/null 2>&1 || { echo "tls-certs: $* failed" >&2; "$@"; exit 1; }; }
quiet openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj "/CN=Fjord compat test CA"
quiet openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
quiet openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out server.crt -days 2 -extfile server.ext
cat server.key server.crt > server.pem
quiet openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr \
  -subj "/O=Fjord/OU=compat/CN=client"
printf 'extendedKeyUsage=clientAuth\n' > client.ext
quiet openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out client.crt -days 2 -extfile client.ext
rm -f server.csr client.csr server.ext client.ext
