# Sourced by the compat suites' run.sh: one broker for the whole run, and a work directory.
#
#   broker_start NAME [fjord server arguments...]
#
# sets `work` (a temporary directory, removed at exit) and `BS` (the bootstrap address).
# With FJORD_BIN it starts `fjord server` on a free loopback port with its data and log
# (`$work/server.log`) under `work`, waits up to 20 s for the port, and stops the server at
# exit (SIGTERM, then SIGKILL after 10 s). With KAFKA_BOOTSTRAP it uses that broker as is.

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
  trap broker_cleanup EXIT
  if [[ -z "${FJORD_BIN:-}" ]]; then
    BS="$KAFKA_BOOTSTRAP"
    return
  fi
  local port deadline
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  BS="127.0.0.1:$port"
  mkdir -p "$work/data"
  "$FJORD_BIN" server --listen "$BS" --data-dir "$work/data" "$@" > "$work/server.log" 2>&1 &
  server_pid=$!
  deadline=$((SECONDS + 20))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "fjord exited during startup:" >&2; tail -20 "$work/server.log" >&2; exit 1
    fi
    (( SECONDS < deadline )) || { echo "fjord did not listen on $BS within 20 s" >&2; exit 1; }
    sleep 0.1
  done
}
