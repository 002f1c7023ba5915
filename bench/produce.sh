#!/usr/bin/env bash
# Produce benchmark against a release `fjord server`: 1 KiB records at acks=1 and acks=all
# with librdkafka, plus the broker's peak RSS. Prints numbers; not a pass/fail test.
#   bash bench/produce.sh [records]
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-200000}"
cargo build --release --bin fjord
venv=bench/.cache/venv
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check confluent-kafka==2.16.1

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/fjord server --listen "127.0.0.1:$port" --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
for acks in 1 all; do
  "$venv/bin/python" bench/produce.py --bootstrap "127.0.0.1:$port" \
    --topic "bench-acks-$acks" --records "$records" --acks "$acks"
done
echo "broker peak RSS: $(awk '/VmHWM/{print $2, $3}' /proc/$pid/status)"
