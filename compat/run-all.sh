#!/usr/bin/env bash
# Run every compat suite (python, kcat, java, connect, streams, librdkafka, franz-go) and fail if
# any fails.
#   FJORD_BIN=target/release/fjord compat/run-all.sh     # each suite starts its own fjord
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/run-all.sh    # an already running broker
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/target.sh"
ok=0
bad=0
failed_suites=()
# Each suite's header says when it starts (minutes into this script).
at() { printf '(at %dm%02ds)' $((SECONDS / 60)) $((SECONDS % 60)); }
# suite NAME TITLE COMMAND...: runs one suite, counted as passed or failed under NAME.
suite() {
  local name="$1" title="$2"; shift 2
  echo "=== compat/$title === $(at)"
  if "$@"; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("$name")
  fi
}
for s in python kcat java connect streams librdkafka franz-go; do
  suite "$s" "$s" "$here/$s/run.sh"
done
# The kcat and Java suites once more against a 3-node cluster whose topics are replicated
# 3 times by default: any broker bootstraps, and partitions live on all of them.
if [[ -n "${FJORD_BIN:-}" ]]; then
  suite kcat-3-nodes "kcat on a 3-node cluster" env FJORD_CLUSTER_NODES=3 "$here/kcat/run.sh"
  for s in java python; do
    suite "$s-3-nodes" "$s on a 3-node cluster" "$here/on-cluster.sh" "$s"
  done
  # franz-go's tests with replication factor 3, as its own CI runs them against several
  # Kafka brokers; 20,000 records (not 500,000) in each ETL chain keep it to minutes on a
  # debug build, where every acks=all batch waits for two followers' fsyncs.
  suite franz-go-3-nodes "franz-go on a 3-node cluster (KGO_TEST_RF=3)" \
    env FJORD_CLUSTER_NODES=3 KGO_TEST_RF=3 KGO_TEST_RECORDS=20000 "$here/franz-go/run.sh"
  # librdkafka's re-authentication test needs replication factor 3 and SASL: a cluster
  # whose brokers talk SASL_PLAINTEXT to clients and to each other.
  suite librdkafka-sasl-3-nodes "librdkafka sasl on a 3-node SASL cluster" \
    env FJORD_CLUSTER_NODES=3 LIBRDKAFKA_MODES=sasl \
    LIBRDKAFKA_ALLOW_LIST="$here/librdkafka/allow-list-cluster.txt" "$here/librdkafka/run.sh"
  # librdkafka's noautocreate scenario (subscriptions to topics that do not exist yet, or
  # are deleted and created again), on a cluster that creates no topics on demand.
  suite librdkafka-noautocreate-3-nodes "librdkafka noautocreate on a 3-node cluster" \
    env FJORD_CLUSTER_NODES=3 LIBRDKAFKA_MODES=noautocreate \
    LIBRDKAFKA_ALLOW_LIST="$here/librdkafka/allow-list-cluster.txt" "$here/librdkafka/run.sh"
  # librdkafka's tests that need replication factor 3 (transactions among them), and
  # fetching from the follower in the consumer's rack.
  suite librdkafka-3-nodes "librdkafka on a 3-node cluster" \
    env BROKER_CLUSTER_RACKS=1 LIBRDKAFKA_MODES=classic \
    LIBRDKAFKA_ALLOW_LIST="$here/librdkafka/allow-list-cluster.txt" \
    "$here/on-cluster.sh" librdkafka
fi
if (( bad > 0 )); then
  echo "failed suites: ${failed_suites[*]}"
fi
echo "suites: $ok passed, $bad failed"
(( bad == 0 ))
