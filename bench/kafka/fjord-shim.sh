#!/usr/bin/env bash
# Runs Apache Kafka behind Fjord's command line, so the compat suites' harness-started mode
# (FJORD_BIN=..., with kill -9 / restart) can be checked against the reference broker:
#
#   FJORD_BIN=bench/kafka/fjord-shim.sh compat/python/run.sh
#
# Accepts: server --listen HOST:PORT --data-dir DIR [--override key=value ...]
#          [--add-scram 'SCRAM-SHA-256=[name=U,password=P]' ...] (kafka-storage.sh format's)
# A `listeners` override gets the controller listener added, as Fjord needs none.
# The JVM replaces this shell (exec), so killing the PID the harness holds kills Kafka.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="$here/../.cache/kafka-lib"
[[ "${1:-}" == "server" ]] || { echo "usage: $0 server --listen HOST:PORT --data-dir DIR [--override k=v]..." >&2; exit 2; }
shift
listen="" datadir="" overrides=() scrams=()
while (( $# )); do
  case "$1" in
    --listen) listen="$2"; shift 2 ;;
    --data-dir) datadir="$2"; shift 2 ;;
    --override) overrides+=("$2"); shift 2 ;;
    --add-scram) scrams+=(--add-scram "$2"); shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -n "$listen" && -n "$datadir" ]] || { echo "--listen and --data-dir are required" >&2; exit 2; }
host="${listen%:*}"
port="${listen##*:}"
ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1 \
  || (cd "$here" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib")

mkdir -p "$datadir"
conf="$datadir/.kafka-shim"
mkdir -p "$conf"
if [[ ! -f "$conf/controller.port" ]]; then
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' \
    > "$conf/controller.port"
fi
cport="$(cat "$conf/controller.port")"
{
  echo "process.roles=broker,controller"
  echo "node.id=1"
  echo "controller.quorum.voters=1@127.0.0.1:${cport}"
  echo "listeners=PLAINTEXT://${host}:${port},CONTROLLER://127.0.0.1:${cport}"
  echo "advertised.listeners=PLAINTEXT://${host}:${port}"
  echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
  echo "controller.listener.names=CONTROLLER"
  echo "inter.broker.listener.name=PLAINTEXT"
  echo "log.dirs=${datadir}/logs"
  echo "offsets.topic.replication.factor=1"
  echo "transaction.state.log.replication.factor=1"
  echo "transaction.state.log.min.isr=1"
  echo "share.coordinator.state.topic.replication.factor=1"
  echo "share.coordinator.state.topic.min.isr=1"
  echo "group.initial.rebalance.delay.ms=0"
  for kv in ${overrides[@]+"${overrides[@]}"}; do
    case "$kv" in
      listeners=*)
        echo "$kv,CONTROLLER://127.0.0.1:${cport}"
        echo "advertised.${kv}" ;;
      listener.security.protocol.map=*) echo "$kv,CONTROLLER:PLAINTEXT" ;;
      *) echo "$kv" ;;
    esac
  done
} > "$conf/server.properties"
cat > "$conf/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
LOG
jvm=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:TieredStopAtLevel=1
     "-Dlog4j2.configurationFile=$conf/log4j2.properties" -cp "$lib/*")
if [[ ! -f "$datadir/logs/meta.properties" ]]; then
  "${jvm[@]}" kafka.tools.StorageTool format -t "$("${jvm[@]}" kafka.tools.StorageTool random-uuid | tail -1)" \
    -c "$conf/server.properties" ${scrams[@]+"${scrams[@]}"} >/dev/null
fi
exec "${jvm[@]}" kafka.Kafka "$conf/server.properties"
