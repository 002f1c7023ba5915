# Sourced by the compat suites' run.sh: one broker for the whole run, and a work directory.
#
#   broker_start NAME [fjord server arguments...]
#
# sets `work` (a temporary directory, removed at exit) and `BS` (the bootstrap address).
# With FJORD_BIN it starts `fjord server` on a free loopback port with its data and log
# (`$work/server.log`) under `work`, waits up to 20 s for the port, and stops the server at
# exit (SIGTERM, then SIGKILL after 10 s). With FJORD_CLUSTER_NODES=N it starts
# `fjord cluster --nodes N` instead, with default.replication.factor 3 (or N when
# smaller), and `BS` lists every broker. With KAFKA_BOOTSTRAP it
# uses that broker as is.
#
# With BROKER_SECURITY=1 (one `fjord server` only) the server also gets SSL,
# SASL_PLAINTEXT and SASL_SSL listeners, certificates from compat/tls-certs.sh under
# `$work/tls`, and the SCRAM-SHA-256 and SCRAM-SHA-512 user admin/admin-secret; it sets
# `BS_SSL`, `BS_SASL_PLAINTEXT`, `BS_SASL_SSL`, `TLS_DIR`, `SCRAM_USER` and
# `SCRAM_PASSWORD`. With BROKER_CLUSTER_SASL=1 a cluster's client listener itself becomes
# SASL_PLAINTEXT (so `BS_SASL_PLAINTEXT` is `BS`, and PLAINTEXT clients cannot use it),
# brokers log in to each other as admin with SCRAM-SHA-256, and only SCRAM_USER,
# SCRAM_PASSWORD and BS_SASL_PLAINTEXT are set. Otherwise those stay empty, and suites
# skip what needs them. With BROKER_CLUSTER_RACKS=1 each node of a cluster is in a rack of
# its own, RACK<node id> (as librdkafka's test clusters are), and followers serve
# consumers in their rack (RackAwareReplicaSelector).
#
#   broker_restart [SECONDS_DOWN]
#
# (one `fjord server` only) kill -9s the server and starts it again (after SECONDS_DOWN,
# default 0) on the same port and data directory, appending to `$work/server.log`, and
# waits up to 30 s for the port.

broker_cleanup() {
  if [[ -n "${server_pid:-}" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}

broker_start() {
  local name="$1"; shift
  work="$(mktemp -d "${TMPDIR:-/tmp}/$name-compat.XXXXXX")"
  server_pid=""
  BS_SSL=""; BS_SASL_PLAINTEXT=""; BS_SASL_SSL=""; TLS_DIR=""; SCRAM_USER=""; SCRAM_PASSWORD=""
  trap broker_cleanup EXIT
  if [[ -z "${FJORD_BIN:-}" ]]; then
    BS="$KAFKA_BOOTSTRAP"
    return
  fi
  local port ports=()
  if [[ -n "${FJORD_CLUSTER_NODES:-}" ]]; then
    local n="$FJORD_CLUSTER_NODES" base
    # A base port whose N client ports and N controller ports (base+100...) are all free.
    base="$(python3 - "$n" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 40000)
    socks = []
    try:
        for p in [base + i for i in range(n)] + [base + 100 + i for i in range(n)]:
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)"
    [[ -n "$base" ]] || { echo "no free ports for a $n-node cluster" >&2; exit 1; }
    for ((i = 0; i < n; i++)); do ports+=($((base + i))); done
    BS="$(printf '127.0.0.1:%s,' "${ports[@]}")"; BS="${BS%,}"
    # Replicated as a production cluster would be: topics created without an explicit
    # replication factor (and auto-created ones) get up to 3 replicas. min.insync.replicas
    # stays Kafka's default, 1, since the suites also create one-replica topics.
    local rf=$(( n < 3 ? n : 3 )) extra=()
    if [[ "${BROKER_CLUSTER_SASL:-}" == 1 ]]; then
      SCRAM_USER=admin; SCRAM_PASSWORD=admin-secret; BS_SASL_PLAINTEXT="$BS"
      extra=(
        --override listener.security.protocol.map=PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
        --override sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
        --override sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
        --override "listener.name.plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$SCRAM_USER\" password=\"$SCRAM_PASSWORD\";"
        --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
        --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
      )
    fi
    if [[ "${BROKER_CLUSTER_RACKS:-}" == 1 ]]; then
      extra+=(
        --override 'broker.rack=RACK{node}'
        --override replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector
      )
    fi
    "$FJORD_BIN" cluster --nodes "$n" --base-port "$base" --data-dir "$work/cluster" \
      --override "default.replication.factor=$rf" "${extra[@]}" "$@" \
      > "$work/server.log" 2>&1 &
  else
    port="$(broker_free_port)"
    ports=("$port")
    BS="127.0.0.1:$port"
    mkdir -p "$work/data"
    server_args=("$@")
    if [[ "${BROKER_SECURITY:-}" == 1 ]]; then
      broker_secure "$port"
    fi
    "$FJORD_BIN" server --listen "$BS" --data-dir "$work/data" "${server_args[@]}" \
      > "$work/server.log" 2>&1 &
  fi
  server_pid=$!
  broker_wait_listening "${ports[@]}"
}

broker_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Adds the secured listeners and the SCRAM user to server_args (see BROKER_SECURITY).
broker_secure() {
  local plain="$1" ssl sasl sasl_ssl
  TLS_DIR="$work/tls"
  "$(dirname "${BASH_SOURCE[0]}")/tls-certs.sh" "$TLS_DIR"
  ssl="$(broker_free_port)"; sasl="$(broker_free_port)"; sasl_ssl="$(broker_free_port)"
  BS_SSL="127.0.0.1:$ssl"; BS_SASL_PLAINTEXT="127.0.0.1:$sasl"; BS_SASL_SSL="127.0.0.1:$sasl_ssl"
  SCRAM_USER=admin; SCRAM_PASSWORD=admin-secret
  server_args+=(
    --override "listeners=PLAINTEXT://$BS,SSL://$BS_SSL,SASL_PLAINTEXT://$BS_SASL_PLAINTEXT,SASL_SSL://$BS_SASL_SSL"
    --override ssl.keystore.type=PEM --override "ssl.keystore.location=$TLS_DIR/server.pem"
    --override ssl.truststore.type=PEM --override "ssl.truststore.location=$TLS_DIR/ca.pem"
    --override ssl.client.auth=requested
    --override sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
  )
  # The JAAS lines Apache Kafka needs for these mechanisms (bench/kafka/fjord-shim.sh runs
  # the same command line on Kafka). Fjord reads PLAIN's users from them and needs none
  # for SCRAM, whose credentials are in its metadata log.
  local l m
  for l in sasl_plaintext sasl_ssl; do
    server_args+=(--override "listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$SCRAM_USER\" password=\"$SCRAM_PASSWORD\" user_$SCRAM_USER=\"$SCRAM_PASSWORD\";")
    for m in scram-sha-256 scram-sha-512; do
      server_args+=(--override "listener.name.$l.$m.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;")
    done
  done
  server_args+=(
    --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
    --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
  )
}

# Waits up to 30 s until every port given accepts connections; exits if the server dies.
broker_wait_listening() {
  local port deadline
  # A cluster's nodes listen once the quorum has formed and they are registered.
  deadline=$((SECONDS + 30))
  for port in "$@"; do
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "fjord exited during startup:" >&2; tail -20 "$work/server.log" >&2
        tail -20 "$work"/cluster/node-*.log >&2 2>/dev/null || true
        exit 1
      fi
      (( SECONDS < deadline )) || { echo "fjord did not listen on $port within 30 s" >&2; exit 1; }
      sleep 0.1
    done
  done
}

broker_restart() {
  [[ -n "${server_pid:-}" && -z "${FJORD_CLUSTER_NODES:-}" ]] \
    || { echo "broker_restart: needs one fjord server started by broker_start" >&2; return 1; }
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  echo "=== $(date +%H:%M:%S.%N | cut -c1-12) kill -9 ===" >> "$work/server.log"
  sleep "${1:-0}"
  echo "=== $(date +%H:%M:%S.%N | cut -c1-12) restarting on the same data dir ===" \
    >> "$work/server.log"
  "$FJORD_BIN" server --listen "$BS" --data-dir "$work/data" "${server_args[@]}" \
    >> "$work/server.log" 2>&1 &
  server_pid=$!
  broker_wait_listening "${BS##*:}"
}
