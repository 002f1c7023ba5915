#!/usr/bin/env bash
# Java compat suite (org.apache.kafka:kafka-clients from Maven Central).
#   FJORD_BIN=/path/to/fjord compat/java/run.sh          # starts/stops fjord itself
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/java/run.sh   # an already running broker
# An optional argument runs only the tests whose name contains it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../target.sh"
cd "$here"
java_build kafka-clients src/ClientCompat.java
exec timeout --kill-after=10 900 java -Xmx256m -cp "lib/classes:lib/*" ClientCompat "$@"
