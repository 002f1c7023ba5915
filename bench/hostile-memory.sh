#!/usr/bin/env bash
# The broker's peak RSS under clients that behave badly: pipelined 64 MiB fetches that are
# never read, and 50 concurrent 50 MiB produces. Each case starts a fresh release broker.
# Prints numbers; not a pass/fail test.
#   bash bench/hostile-memory.sh [path/to/fjord ...]   # default: this tree's release build
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin fjord --example hostile_clients -p fjord-cli -p fjord-broker
client=./target/release/examples/hostile_clients
bins=("$@")
(( ${#bins[@]} )) || bins=(./target/release/fjord)

for fjord in "${bins[@]}"; do
  for mode in unread-fetch big-produce; do
    data=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$fjord" server --listen "127.0.0.1:$port" --data-dir "$data" >"$data.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
    timeout 120 "$client" "127.0.0.1:$port" "$mode" || echo "$mode: client ended early (exit $?)"
    if kill -0 "$pid" 2>/dev/null; then
      peak=$(awk '/VmHWM/{print $2/1024 " MiB"}' "/proc/$pid/status")
      kill "$pid"; wait "$pid" 2>/dev/null || true
    else
      peak="broker died ($(tail -1 "$data.log"))"
    fi
    printf '%-40s %-14s peak RSS %s\n' "$fjord" "$mode" "$peak"
    rm -rf "$data" "$data.log"
  done
done
