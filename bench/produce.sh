#!/usr/bin/env bash
# Produce benchmark against a release `fjord server`: 1 KiB records at acks=1 and acks=all
# with librdkafka (`fjord perf produce`), then the acks=1 records read back with
# read_uncommitted and read_committed consumers (`fjord perf consume`), plus the broker's
# peak RSS. Prints numbers; not a pass/fail test. For the side-by-side comparison with
# Apache Kafka see bench/compare.
#   bash bench/produce.sh [records]
#   FJORD_BIN=/path/to/fjord bash bench/produce.sh [records]   # another build (no cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-1000000}"
if [[ -n "${FJORD_BIN:-}" ]]; then
  fjord="$FJORD_BIN"
else
  cargo build --release --bin fjord
  fjord=./target/release/fjord
fi

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$fjord" server --listen "127.0.0.1:$port" --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
for acks in 1 all; do
  echo "acks=$acks:"
  "$fjord" perf produce --bootstrap-server "127.0.0.1:$port" --topic "bench-acks-$acks" \
    --num-records "$records" --record-size 1024 --throughput -1 \
    --producer-props "acks=$acks" linger.ms=5 batch.size=262144 | tail -1
done
for isolation in read_uncommitted read_committed; do
  echo "consume, $isolation:"
  "$fjord" perf consume --bootstrap-server "127.0.0.1:$port" --topic bench-acks-1 \
    --messages "$records" --consumer-props "isolation.level=$isolation" | tail -1
done
echo "broker peak RSS: $(awk '/VmHWM/{print $2, $3}' /proc/$pid/status)"
