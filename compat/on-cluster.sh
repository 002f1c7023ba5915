#!/usr/bin/env bash
# Runs one compat suite (python, kcat or java) against a 3-node Fjord cluster whose topics
# are replicated 3 times unless a test asks otherwise:
#   FJORD_BIN=/path/to/fjord compat/on-cluster.sh python [suite arguments...]
# The suite sees the cluster as an already running broker (KAFKA_BOOTSTRAP), so its tests
# that restart their own broker are skipped here; they run in the one-node pass.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
suite="${1:?usage: on-cluster.sh python|kcat|java [arguments...]}"; shift
[[ -n "${FJORD_BIN:-}" ]] || { echo "set FJORD_BIN=/path/to/fjord" >&2; exit 2; }
FJORD_BIN="$(cd "$(dirname "$FJORD_BIN")" && pwd)/$(basename "$FJORD_BIN")"
export FJORD_CLUSTER_NODES="${FJORD_CLUSTER_NODES:-3}"
# shellcheck source=broker.sh
source "$here/broker.sh"
broker_start "$suite-cluster"
status=0
# One broker is enough to bootstrap into the whole cluster (and some clients take only
# one address).
# KAFKA_BOOTSTRAP_IS_FJORD tells the suites to expect Fjord's answers (its error
# messages), not Apache Kafka's, from this external broker.
env -u FJORD_BIN KAFKA_BOOTSTRAP="${BS%%,*}" KAFKA_BOOTSTRAP_IS_FJORD=1 \
  "$here/$suite/run.sh" "$@" || status=$?
if (( status != 0 )); then
  for f in "$work"/cluster/node-*.log; do
    [[ -f "$f" ]] && { echo "--- tail of $f"; tail -40 "$f"; }
  done
fi
exit "$status"
