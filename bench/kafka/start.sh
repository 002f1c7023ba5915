#!/usr/bin/env bash
# Start a single-node Apache Kafka (KRaft, broker+controller in one JVM) on loopback,
# from jars fetched from Maven Central. Used as the reference broker for the compat
# suites (KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT) and for benchmarks.
#
#   bench/kafka/start.sh            # prints PID and bootstrap address, returns when ready
#   bench/kafka/stop.sh
#
# Environment:
#   KAFKA_PORT            PLAINTEXT listener port (default 19092)
#   KAFKA_CONTROLLER_PORT controller listener port (default 19093)
#   KAFKA_HEAP            JVM heap (default 512m)
#   KAFKA_OVERRIDES       extra server.properties lines, separated by ';' (e.g. "auto.create.topics.enable=false")
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/../.cache"
lib="$cache/kafka-lib"
run="$cache/kafka-run"
port="${KAFKA_PORT:-19092}"
cport="${KAFKA_CONTROLLER_PORT:-19093}"
heap="${KAFKA_HEAP:-512m}"

if [[ -f "$run/pid" ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null; then
  echo "Apache Kafka already running: PID $(cat "$run/pid"), bootstrap $(cat "$run/bootstrap")" >&2
  exit 1
fi

if ! ls "$lib"/kafka_2.13-*.jar "$lib"/kafka-tools-[0-9]*.jar >/dev/null 2>&1; then
  echo "fetching Apache Kafka jars into $lib ..." >&2
  mkdir -p "$lib"
  (cd "$here" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$lib")
fi

rm -rf "$run"
mkdir -p "$run"
datadir="$(mktemp -d "${TMPDIR:-/tmp}/apache-kafka-data.XXXXXX")"
echo "$datadir" > "$run/datadir"

cat > "$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=${datadir}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
PROPS
if [[ -n "${KAFKA_OVERRIDES:-}" ]]; then
  tr ';' '\n' <<<"$KAFKA_OVERRIDES" >> "$run/server.properties"
fi

cat > "$run/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
LOG

cp="$lib/*"
jvm=(java "-Xms${heap}" "-Xmx${heap}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
     -Djava.awt.headless=true "-Dlog4j2.configurationFile=$run/log4j2.properties"
     -cp "$cp")

cluster_id="$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
"${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" \
  > "$run/format.log" 2>&1 || { cat "$run/format.log" >&2; exit 1; }

nohup "${jvm[@]}" kafka.Kafka "$run/server.properties" > "$run/server.log" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$run/pid"
echo "127.0.0.1:${port}" > "$run/bootstrap"

# Ready when the PLAINTEXT port accepts connections and the log says the broker started.
deadline=$((SECONDS + 90))
until grep -q "Kafka Server started" "$run/server.log" 2>/dev/null \
      && (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "Apache Kafka exited during startup; last log lines:" >&2
    tail -30 "$run/server.log" >&2
    exit 1
  fi
  if (( SECONDS > deadline )); then
    echo "Apache Kafka did not become ready in 90 s; stopping it" >&2
    "$here/stop.sh" || true
    exit 1
  fi
  sleep 0.5
done
echo "Apache Kafka PID $pid bootstrap 127.0.0.1:${port} (log: $run/server.log)"
