#!/usr/bin/env bash
# librdkafka's own test suite (tests/ of the librdkafka source that the pinned rdkafka-sys
# crate vendors) against a broker, in both consumer group protocols.
#   FJORD_BIN=/path/to/fjord compat/librdkafka/run.sh          # starts/stops fjord itself
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/librdkafka/run.sh   # an already running broker
#   compat/librdkafka/run.sh --build                           # only build test-runner
#
# The source is copied from ~/.cargo/registry into compat/.cache/librdkafka-<version> and
# built there once (librdkafka, librdkafka++ and tests/test-runner); later runs reuse it.
# allow-list.txt names the tests expected to pass, per group protocol. Only their test
# numbers are run; an allow-listed test that does not pass fails the suite. Other tests
# that share a number with an allow-listed one run too and are reported, but never fail it.
# When at most three allow-listed tests fail, each gets one more run, alone, and tests that
# never ran (test-runner stops everything after a test that hangs) get a run of their own;
# the output says so, and a test that fails again fails the suite.
#
# Environment:
#   LIBRDKAFKA_MODES     modes to run (default "classic alone consumer sasl": the classic
#                        group protocol, its timing-bound tests one at a time, the consumer
#                        group protocol, then the SASL tests over the SASL_PLAINTEXT listener,
#                        skipped unless this script started the broker; "ssl" runs tests
#                        over the SSL listener, with LIBRDKAFKA_TESTS, none being listed;
#                        "noautocreate", given as the only mode, runs the tests of
#                        librdkafka's scenario of that name against a broker started with
#                        auto.create.topics.enable false, as that scenario's cluster is)
#   LIBRDKAFKA_PARALLEL  tests run at once by test-runner (default 2: with 4 on two cores,
#                        timing-bound tests such as 0088 or an admin call in 0091 sometimes
#                        ran out of time, and one test timing out aborts the whole run)
#   LIBRDKAFKA_TESTS     run only these test numbers, e.g. "0001,0030" (default: allow-list)
#   LIBRDKAFKA_ALLOW_LIST  another allow-list file (allow-list-cluster.txt: the tests that
#                        need several brokers, run by compat/on-cluster.sh librdkafka)
#   LIBRDKAFKA_KEEP_LOGS a directory to copy test-runner's output (and fjord's log) into
# A broker given by KAFKA_BOOTSTRAP needs librdkafka's default test cluster settings:
# num.partitions=4 (e.g. KAFKA_OVERRIDES="num.partitions=4" bench/kafka/start.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$here/../.cache"

build_only=0
if [[ "${1:-}" == "--build" ]]; then
  build_only=1
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--build]" >&2
  exit 2
fi
if (( ! build_only )) && [[ -z "${FJORD_BIN:-}" && -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  echo "set FJORD_BIN=/path/to/fjord or KAFKA_BOOTSTRAP=host:port" >&2
  exit 2
fi

# --- the librdkafka version rdkafka-sys pins, and its source in cargo's registry -----------
sys_ver="$(awk '$0 == "name = \"rdkafka-sys\"" { getline; gsub(/version = |"/, ""); print; exit }' \
  "$root/Cargo.lock")"
[[ -n "$sys_ver" ]] || { echo "rdkafka-sys not found in Cargo.lock" >&2; exit 1; }
lib_ver="${sys_ver#*+}"   # 4.10.0+2.12.1 -> 2.12.1
find_src() {
  ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$sys_ver"/librdkafka 2>/dev/null \
    | head -1 || true
}
src="$(find_src)"
if [[ -z "$src" ]]; then
  (cd "$root" && cargo fetch --locked)
  src="$(find_src)"
  [[ -n "$src" ]] || { echo "rdkafka-sys-$sys_ver source not in the cargo registry" >&2; exit 1; }
fi

build="$cache/librdkafka-$lib_ver"
runner="$build/tests/test-runner"
recipe=2   # bump when the dependencies or configure/make steps below change
stamp="$build/.built-from-rdkafka-sys-$sys_ver-recipe-$recipe"
if [[ ! -f "$stamp" || ! -x "$runner" ]]; then
  missing=()
  for pkg in libssl-dev zlib1g-dev libzstd-dev rapidjson-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if (( ${#missing[@]} > 0 )); then
    if ! apt-get install -y "${missing[@]}" >/dev/null 2>&1; then
      apt-get update >/dev/null
      apt-get install -y "${missing[@]}" >/dev/null
    fi
  fi
  echo "building librdkafka $lib_ver and its tests in $build ..."
  rm -rf "$build"
  mkdir -p "$cache"
  cp -a "$src" "$build"
  jobs="$(nproc)"
  (
    cd "$build"
    ./configure --disable-gssapi --disable-curl --disable-lz4-ext
    make -j"$jobs" libs
    make -j"$jobs" -C tests build
  ) > "$cache/librdkafka-$lib_ver-build.log" 2>&1 || {
    tail -30 "$cache/librdkafka-$lib_ver-build.log" >&2
    echo "librdkafka build failed (log: $cache/librdkafka-$lib_ver-build.log)" >&2
    exit 1
  }
  touch "$stamp"
fi
if (( build_only )); then
  echo "built $runner"
  exit 0
fi

# --- the broker -------------------------------------------------------------------------
source "$here/../broker.sh"
# librdkafka's tests expect its default test cluster's settings: auto-created topics
# with 4 partitions.
# An authorizer that lets everyone do what no ACL speaks of, as the tests that add ACLs
# (0109, 0115, 0119: kafka-acls.sh denies their topics) expect; the rest run unaffected.
# It also gets SASL listeners and the SCRAM user the sasl mode logs in as; its logins run
# out every few seconds, for 0142. A cluster started for the sasl mode alone
# (LIBRDKAFKA_MODES=sasl) has only a SASL_PLAINTEXT client listener.
export BROKER_SECURITY=1
if [[ -n "${FJORD_CLUSTER_NODES:-}" && "${LIBRDKAFKA_MODES:-}" == sasl ]]; then
  export BROKER_CLUSTER_SASL=1
fi
scenario=default autocreate=true
if [[ "${LIBRDKAFKA_MODES:-}" == *noautocreate* ]]; then
  [[ "$LIBRDKAFKA_MODES" == noautocreate ]] \
    || { echo "the noautocreate mode runs alone (its broker creates no topics)" >&2; exit 2; }
  scenario=noautocreate autocreate=false
fi
# 0097 expects its SSL listener to require client certificates.
broker_start librdkafka --override num.partitions=4 \
  --override "auto.create.topics.enable=$autocreate" \
  --override authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer \
  --override allow.everyone.if.no.acl.found=true \
  --override connections.max.reauth.ms=4000 \
  --override listener.name.ssl.ssl.client.auth=required

printf 'bootstrap.servers=%s\n' "$BS" > "$work/test.conf"
if [[ -n "$BS_SASL_PLAINTEXT" ]]; then
  printf '%s\n' "bootstrap.servers=$BS_SASL_PLAINTEXT" security.protocol=SASL_PLAINTEXT \
    sasl.mechanism=SCRAM-SHA-256 "sasl.username=$SCRAM_USER" "sasl.password=$SCRAM_PASSWORD" \
    > "$work/test-sasl.conf"
fi
ssl_env=()
if [[ -n "$BS_SSL" ]]; then
  # The client's certificate in every form 0097 loads it in (trivup's SSL_* variables):
  # PEM, DER, and a PKCS12 keystore with the CA, under the key password.
  ssl_pw=client-keystore-secret
  (
    cd "$TLS_DIR"
    openssl x509 -in client.crt -outform DER -out client.der
    openssl pkey -in client.key -outform DER -out client.key.der
    openssl x509 -in ca.pem -outform DER -out ca.der
    openssl pkcs12 -export -in client.crt -inkey client.key -certfile ca.pem \
      -passout "pass:$ssl_pw" -out client.p12
  ) > /dev/null 2>&1 || { echo "making the SSL test certificates failed" >&2; exit 1; }
  printf '%s\n' "bootstrap.servers=$BS_SSL" security.protocol=SSL \
    "ssl.ca.location=$TLS_DIR/ca.pem" "ssl.certificate.location=$TLS_DIR/client.crt" \
    "ssl.key.location=$TLS_DIR/client.key" "ssl.key.password=$ssl_pw" > "$work/test-ssl.conf"
  ssl_env=(SSL_pkcs="$TLS_DIR/client.p12" SSL_password="$ssl_pw"
    SSL_pub_der="$TLS_DIR/client.der" SSL_pub_pem="$TLS_DIR/client.crt"
    SSL_priv_der="$TLS_DIR/client.key.der" SSL_priv_pem="$TLS_DIR/client.key"
    SSL_ca_der="$TLS_DIR/ca.der" SSL_all_cas_pem="$TLS_DIR/ca.pem")
fi

# --- KAFKA_PATH: kafka-topics.sh, kafka-configs.sh and kafka-acls.sh, which some tests run,
# as wrappers around Apache Kafka's own tool classes (the jars bench/kafka/start.sh uses).
kafka_lib="$root/bench/.cache/kafka-lib"
if ! ls "$kafka_lib"/kafka_2.13-*.jar "$kafka_lib"/kafka-tools-[0-9]*.jar >/dev/null 2>&1; then
  echo "fetching Apache Kafka jars into $kafka_lib ..."
  mkdir -p "$kafka_lib"
  (cd "$root/bench/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$kafka_lib")
fi
mkdir -p "$work/kafka/bin"
cat > "$work/kafka/log4j2.properties" <<'LOG'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
LOG
for tool in kafka-topics.sh:org.apache.kafka.tools.TopicCommand \
            kafka-acls.sh:org.apache.kafka.tools.AclCommand \
            kafka-configs.sh:kafka.admin.ConfigCommand; do
  cat > "$work/kafka/bin/${tool%%:*}" <<WRAP
#!/usr/bin/env bash
exec java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \\
  -Dlog4j2.configurationFile="$work/kafka/log4j2.properties" \\
  -cp "$kafka_lib/*" ${tool#*:} "\$@"
WRAP
  chmod +x "$work/kafka/bin/${tool%%:*}"
done
# librdkafka's Java helpers (tests/java): test_run_java builds them with `make java`
# against $KAFKA_PATH/libs and runs them through kafka-run-class.sh, with CLASSPATH set to
# their directory. 0098_consumer_txn's transactions come from TransactionProducerCli.
ln -sfn "$kafka_lib" "$work/kafka/libs"
cat > "$work/kafka/bin/kafka-run-class.sh" <<WRAP
#!/usr/bin/env bash
exec java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \\
  -Dlog4j2.configurationFile="$work/kafka/log4j2.properties" \\
  -cp "\${CLASSPATH:+\$CLASSPATH:}$kafka_lib/*" "\$@"
WRAP
chmod +x "$work/kafka/bin/kafka-run-class.sh"

# --- run each mode, then check the allow-list -------------------------------------------
allow="${LIBRDKAFKA_ALLOW_LIST:-$here/allow-list.txt}"
modes="${LIBRDKAFKA_MODES:-classic alone consumer sasl}"

# run_tests MODE TESTS PARALLEL SECONDS LOG: test-runner on test numbers TESTS; its exit
# code is reported, the verdict comes from the allow-list check of LOG.
run_tests() {
  local start=$SECONDS rc protocol="$1" conf="$work/test.conf" brokers="$BS" quick=-Q
  local extra=()
  if [[ "$1" == sasl ]]; then
    # Not quick: in quick mode 0142 skips every one of its re-authentication cases.
    protocol=classic conf="$work/test-sasl.conf" brokers="$BS_SASL_PLAINTEXT" quick=
  elif [[ "$1" == ssl ]]; then
    protocol=classic conf="$work/test-ssl.conf" brokers="$BS_SSL" quick= extra=("${ssl_env[@]}")
  elif [[ "$1" == alone ]]; then
    protocol=classic
  elif [[ "$1" == noautocreate ]]; then
    # Not quick either: in quick mode 0045's subtests skip themselves.
    protocol=classic quick=
  fi
  set +e
  (
    cd "$build/tests"
    # The sockem tests (librdkafka's socket fault injector) can write to a socket the
    # other side already closed; that must fail the write, not kill test-runner.
    trap '' PIPE
    # -Q: the suite's quick mode (fewer messages and iterations), as librdkafka's CI runs it
    # (but for the sasl mode).
    # stdbuf: test-runner prints its summary table to stdout and may abort() right after
    # (e.g. on leaked client threads); line buffering keeps the table.
    env "${extra[@]}" TESTS="$2" TEST_SCENARIO="$scenario" TEST_KAFKA_VERSION=4.1.1 TEST_CONSUMER_GROUP_PROTOCOL="$protocol" \
      RDKAFKA_TEST_CONF="$conf" BROKERS="$brokers" KAFKA_PATH="$work/kafka" \
      LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      timeout --kill-after=10 "$4" stdbuf -oL ./test-runner $quick -p"$3"
  ) > "$5" 2>&1
  rc=$?
  set -e
  echo "test-runner exited $rc after $((SECONDS - start)) s"
  if [[ -n "${LIBRDKAFKA_KEEP_LOGS:-}" ]]; then
    mkdir -p "$LIBRDKAFKA_KEEP_LOGS"
    cp "$5" "$LIBRDKAFKA_KEEP_LOGS/"
  fi
}

bad=0
for mode in $modes; do
  if [[ ( "$mode" == sasl && -z "$BS_SASL_PLAINTEXT" ) || ( "$mode" == ssl && -z "$BS_SSL" ) ]]
  then
    echo "=== librdkafka $mode mode skipped: this broker has no such listener set up here"
    continue
  fi
  tests="${LIBRDKAFKA_TESTS:-$(python3 "$here/allow_list.py" numbers "$allow" "$mode")}"
  tests_arg="${LIBRDKAFKA_TESTS:-}"
  if [[ -z "$tests" ]]; then
    echo "no tests allow-listed for $mode" >&2; bad=1; continue
  fi
  echo "=== librdkafka $lib_ver tests, group protocol $mode, against $BS"
  # The tests listed `alone` time the client's requests through librdkafka's socket
  # emulator (sockem) to within 100 ms; with another test beside them on two cores they
  # miss now and then, alone they do not.
  [[ "$mode" == alone ]] && parallel=1 || parallel="${LIBRDKAFKA_PARALLEL:-2}"
  run_tests "$mode" "$tests" "$parallel" 900 "$work/$mode.log"
  if python3 "$here/allow_list.py" check "$allow" "$mode" "$work/$mode.log" $tests_arg; then
    continue
  fi
  # Many of these tests assert timings (a poll within 10 s, a result within its timeout)
  # that two tests at a time on two loaded cores occasionally miss, and one test that hangs
  # makes test-runner stop every test after it. So: the tests that never ran get a run of
  # their own, and up to three failed ones one more run each, alone. A test that fails
  # again fails the suite, and so do more than three failures, a real breakage rather
  # than timing.
  read -r failed never <<<"$(python3 "$here/allow_list.py" failed "$allow" "$mode" \
    "$work/$mode.log" $tests_arg)"
  if [[ "$failed" != "-" && "$(tr ',' '\n' <<<"$failed" | wc -l)" -gt 3 ]]; then
    bad=1; continue
  fi
  if [[ "$never" != "-" ]]; then
    echo "=== running $never, which did not run, group protocol $mode"
    run_tests "$mode" "$never" "$parallel" 900 "$work/$mode-rest.log"
    python3 "$here/allow_list.py" check "$allow" "$mode" "$work/$mode-rest.log" "$never" || bad=1
  fi
  if [[ "$failed" != "-" ]]; then
    echo "=== retrying $failed alone, group protocol $mode"
    run_tests "$mode" "$failed" 1 300 "$work/$mode-retry.log"
    python3 "$here/allow_list.py" check "$allow" "$mode" "$work/$mode-retry.log" "$failed" || bad=1
  fi
done
if [[ -n "${LIBRDKAFKA_KEEP_LOGS:-}" && -f "$work/server.log" ]]; then
  cp "$work/server.log" "$LIBRDKAFKA_KEEP_LOGS/"
fi
(( bad == 0 ))
