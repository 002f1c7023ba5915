#!/usr/bin/env bash
# The short chaos runs of the test suite: one run per fault type on 3 nodes, each
# CHAOS_MINUTES long (default 1), with fixed seeds so that a failure replays. Needs root
# (network namespaces, tmpfs): elsewhere it says SKIP and why, and exits 0.
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
seed=11
for fault in kill pause partition disk restart; do
  echo "== chaos: $fault, $minutes min, seed $seed"
  out="$here/out/ci-$fault"
  rm -rf "$out"
  if ! "$here/run" --nodes 3 --minutes "$minutes" --seed "$seed" --faults "$fault" \
      --out "$out" > "$out.txt" 2>&1; then
    status=1
    echo "FAIL chaos $fault (seed $seed): the report follows, then the node logs' tails"
    grep -v '^%' "$out.txt" | tail -60
    for f in "$out"/node-*.log; do
      # Warnings and errors say most about what went wrong; the routine INFO lines of
      # a cluster under faults would crowd them out.
      [[ -f "$f" ]] && { echo "--- warnings and errors at the end of $f"; grep -v ' INFO ' "$f" | tail -40; }
    done
  else
    tail -1 "$out.txt"
  fi
  seed=$((seed + 1))
done
exit "$status"
