#!/usr/bin/env bash
# What TLS costs: produce and consume throughput over PLAINTEXT and over SSL, on Fjord and
# on Apache Kafka, each single-node on loopback with the same certificates
# (compat/tls-certs.sh). Not run in CI.
#
#   bash bench/tls.sh [--runs N] [--records N]
#
# The client is Kafka's own perf tools (ProducerPerformance, ConsumerPerformance: the
# Java client, the same for both brokers): 1 KiB records, one partition, acks=1,
# linger.ms=5, then everything read back from the beginning. Prints one line per
# measurement and a median table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3
records=500000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --records) records="$2"; shift 2 ;;
    *) echo "tls.sh: unknown argument $1 (use --runs N, --records N)" >&2; exit 2 ;;
  esac
done

cargo build --release --bin fjord
fjord="$PWD/target/release/fjord"
lib=bench/.cache/kafka-lib
if ! ls "$lib"/kafka-tools-[0-9]*.jar >/dev/null 2>&1; then
  mkdir -p "$lib"
  (cd bench/kafka && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="../.cache/kafka-lib")
fi
java_tool() { java -Xmx1g -cp "$lib/*" -Dlog4j2.level=warn "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fjord-tls-bench.XXXXXX")"
pid=""
cleanup() {
  bash bench/kafka/stop.sh >/dev/null 2>&1 || true
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
bash compat/tls-certs.sh "$work/tls"
plain_port=19192
ssl_port=19193
printf 'security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s\n' \
  "$work/tls/ca.pem" > "$work/ssl.properties"
: > "$work/plain.properties"
results="$work/results.tsv"

start() { # system
  if [[ $1 == kafka ]]; then
    KAFKA_HEAP=1g KAFKA_PORT=$plain_port KAFKA_CONTROLLER_PORT=19194 KAFKA_OVERRIDES="$(printf '%s;' \
      "listeners=PLAINTEXT://127.0.0.1:$plain_port,SSL://127.0.0.1:$ssl_port,CONTROLLER://127.0.0.1:19194" \
      "advertised.listeners=PLAINTEXT://127.0.0.1:$plain_port,SSL://127.0.0.1:$ssl_port" \
      "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT" \
      "ssl.keystore.type=PEM" "ssl.keystore.location=$work/tls/server.pem")" \
      bash bench/kafka/start.sh >/dev/null
    pid=""
  else
    rm -rf "$work/data"
    "$fjord" server --data-dir "$work/data" \
      --override "listeners=PLAINTEXT://127.0.0.1:$plain_port,SSL://127.0.0.1:$ssl_port" \
      --override ssl.keystore.type=PEM --override "ssl.keystore.location=$work/tls/server.pem" \
      --override group.initial.rebalance.delay.ms=0 > "$work/fjord.log" 2>&1 &
    pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$plain_port") 2>/dev/null; do sleep 0.1; done
  fi
}
stop() { # system
  if [[ $1 == kafka ]]; then bash bench/kafka/stop.sh >/dev/null 2>&1 || true
  else kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  fi
}

measure() { # run system protocol port
  local run=$1 system=$2 protocol=$3 port=$4 topic="tls-$2-$3-$1" line mbps
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$plain_port" \
    --create --topic "$topic" --partitions 1 --replication-factor 1 >/dev/null 2>&1 || true
  line=$(java_tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
    --num-records "$records" --record-size 1024 --throughput -1 \
    --producer.config "$work/$protocol.properties" \
    --producer-props "bootstrap.servers=127.0.0.1:$port" acks=1 linger.ms=5 batch.size=262144 \
    | grep "99.9th" | tail -1)
  mbps=$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")
  printf '%s\t%s\t%s\tproduce\t%s\n' "$run" "$system" "$protocol" "$mbps" >> "$results"
  echo "  run $run $system $protocol produce: $mbps MB/s"
  line=$(java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "127.0.0.1:$port" \
    --consumer.config "$work/$protocol.properties" --topic "$topic" --messages "$records" \
    --group "tls-$RANDOM" --timeout 60000 | tail -1)
  mbps=$(python3 -c 'import sys; print(sys.argv[1].split(",")[3].strip())' "$line")
  printf '%s\t%s\t%s\tconsume\t%s\n' "$run" "$system" "$protocol" "$mbps" >> "$results"
  echo "  run $run $system $protocol consume: $mbps MB/s"
}

for run in $(seq "$runs"); do
  if (( run % 2 )); then order="kafka fjord"; else order="fjord kafka"; fi
  for system in $order; do
    start "$system"
    measure "$run" "$system" plain "$plain_port"
    measure "$run" "$system" ssl "$ssl_port"
    stop "$system"
  done
done

python3 - "$results" "$records" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
med = {}
for run, system, proto, what, mbps in rows:
    med.setdefault((system, proto, what), []).append(float(mbps))
print(f"\nmedian MB/s over {len({r[0] for r in rows})} runs, {sys.argv[2]} records of 1 KiB:")
print(f"{'':8} {'produce':>10} {'produce':>10} {'':>8} {'consume':>10} {'consume':>10} {'':>8}")
print(f"{'system':8} {'plain':>10} {'ssl':>10} {'ssl cost':>8} {'plain':>10} {'ssl':>10} {'ssl cost':>8}")
for system in ("fjord", "kafka"):
    cells = []
    for what in ("produce", "consume"):
        p = statistics.median(med[(system, "plain", what)])
        s = statistics.median(med[(system, "ssl", what)])
        cells += [f"{p:10.1f}", f"{s:10.1f}", f"{(1 - s / p) * 100:7.0f}%"]
    print(f"{system:8} " + " ".join(cells))
PY
