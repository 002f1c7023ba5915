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
for suite in python kcat java connect streams librdkafka franz-go; do
  echo "=== compat/$suite === $(at)"
  if "$here/$suite/run.sh"; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("$suite")
  fi
done
# The kcat and Java suites once more against a 3-node cluster whose topics are replicated
# 3 times by default: any broker bootstraps, and partitions live on all of them.
if [[ -n "${FJORD_BIN:-}" ]]; then
  echo "=== compat/kcat on a 3-node cluster === $(at)"
  if FJORD_CLUSTER_NODES=3 "$here/kcat/run.sh"; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("kcat-3-nodes")
  fi
  for suite in java python; do
    echo "=== compat/$suite on a 3-node cluster === $(at)"
    if "$here/on-cluster.sh" "$suite"; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      failed_suites+=("$suite-3-nodes")
    fi
  done
  # franz-go's tests with replication factor 3, as its own CI runs them against several
  # Kafka brokers; 20,000 records (not 500,000) in each ETL chain keep it to minutes on a
  # debug build, where every acks=all batch waits for two followers' fsyncs.
  echo "=== compat/franz-go on a 3-node cluster (KGO_TEST_RF=3) === $(at)"
  if FJORD_CLUSTER_NODES=3 KGO_TEST_RF=3 KGO_TEST_RECORDS=20000 "$here/franz-go/run.sh"; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("franz-go-3-nodes")
  fi
  # librdkafka's re-authentication test needs replication factor 3 and SASL: a cluster
  # whose brokers talk SASL_PLAINTEXT to clients and to each other.
  echo "=== compat/librdkafka sasl on a 3-node SASL cluster === $(at)"
  if FJORD_CLUSTER_NODES=3 LIBRDKAFKA_MODES=sasl \
    LIBRDKAFKA_ALLOW_LIST="$here/librdkafka/allow-list-cluster.txt" "$here/librdkafka/run.sh"; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("librdkafka-sasl-3-nodes")
  fi
  # librdkafka's noautocreate scenario (subscriptions to topics that do not exist yet, or
  # are deleted and created again), on a cluster that creates no topics on demand.
  echo "=== compat/librdkafka noautocreate on a 3-node cluster === $(at)"
  if FJORD_CLUSTER_NODES=3 LIBRDKAFKA_MODES=noautocreate \
    LIBRDKAFKA_ALLOW_LIST="$here/librdkafka/allow-list-cluster.txt" "$here/librdkafka/run.sh"; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("librdkafka-noautocreate-3-nodes")
  fi
  # librdkafka's tests that need replication factor 3 (transactions among them), and
  # fetching from the follower in the consumer's rack.
  echo "=== compat/librdkafka on a 3-node cluster === $(at)"
  if BROKER_CLUSTER_RACKS=1 LIBRDKAFKA_MODES=classic \
    LIBRDKAFKA_ALLOW_LIST="$here/librdkafka/allow-list-cluster.txt" \
    "$here/on-cluster.sh" librdkafka; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    failed_suites+=("librdkafka-3-nodes")
  fi
fi
if (( bad > 0 )); then
  echo "failed suites: ${failed_suites[*]}"
fi
echo "suites: $ok passed, $bad failed"
(( bad == 0 ))
