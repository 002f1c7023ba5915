#!/usr/bin/env bash
# The short chaos runs of the test suite: one queue run per fault type on 3 nodes, then
# one txn run and one copier run (kills and network partitions), each CHAOS_MINUTES long
# (default 1), with fixed seeds so that a failure replays. Needs root (network namespaces, tmpfs): elsewhere
# it says SKIP and why, and exits 0.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
minutes="${CHAOS_MINUTES:-1}"
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP chaos: needs root for network namespaces and tmpfs mounts"
  exit 0
fi
if ! ip netns add fjord-chaos-probe 2>/dev/null; then
  echo "SKIP chaos: this machine cannot create network namespaces"
  exit 0
fi
ip netns del fjord-chaos-probe
mkdir -p "$here/out"
status=0

# run NAME SEED ARGS...: one run into out/ci-NAME; on failure, the report and the nodes'
# warnings.
run() {
  local name="$1" seed="$2"
  shift 2
  echo "== chaos: $name, $minutes min, seed $seed"
  local out="$here/out/ci-$name"
  rm -rf "$out"
  if ! "$here/run" --nodes 3 --minutes "$minutes" --seed "$seed" "$@" \
      --out "$out" > "$out.txt" 2>&1; then
    status=1
    echo "FAIL chaos $name (seed $seed): the report follows, then the node logs' tails"
    grep -v '^%' "$out.txt" | tail -60
    for f in "$out"/node-*.log; do
      # Warnings and errors say most about what went wrong; the routine INFO lines of
      # a cluster under faults would crowd them out.
      [[ -f "$f" ]] && { echo "--- warnings and errors at the end of $f"; grep -v ' INFO ' "$f" | tail -40; }
    done
  else
    tail -1 "$out.txt"
  fi
}

seed=11
for fault in kill pause partition disk restart; do
  run "$fault" "$seed" --faults "$fault"
  seed=$((seed + 1))
done
run txn 16 --workload txn --faults kill,partition
# Kafka's TransactionalMessageCopier, one per input partition, on 3 partitions.
run copier 17 --workload copier --faults kill,partition --partitions 3 --rate 300
exit "$status"
