#!/usr/bin/env bash
# Python compat suite: confluent-kafka (librdkafka) and kafka-python against a broker.
#   FJORD_BIN=/path/to/fjord compat/python/run.sh     # harness starts/stops fjord itself
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/python/run.sh   # an already running broker
# Extra arguments go to pytest (e.g. -k acks).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../target.sh"
cd "$here"
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
# Each test bounds its own waits; the outer timeout only guards against a hung client.
exec timeout --kill-after=10 900 .venv/bin/python -m pytest -q -rs -p no:cacheprovider \
  --junitxml=.venv/junit.xml "$@"
