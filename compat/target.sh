# Sourced first by every compat suite: the broker under test is either started by the
# suite itself (FJORD_BIN, made absolute here because suites change directory) or already
# running (KAFKA_BOOTSTRAP). Without either, the suite stops with exit code 2.
if [[ -z "${FJORD_BIN:-}" && -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  echo "set FJORD_BIN=/path/to/fjord or KAFKA_BOOTSTRAP=host:port" >&2
  exit 2
fi
if [[ -n "${FJORD_BIN:-}" ]]; then
  FJORD_BIN="$(cd "$(dirname "$FJORD_BIN")" && pwd)/$(basename "$FJORD_BIN")"
  export FJORD_BIN
fi

# java_build JAR SOURCE...: for a suite in Java, run from its directory: its Maven
# dependencies into lib/ (fetched again whenever pom.xml changed, or no lib/JAR-*.jar is
# there), then SOURCE... compiled afresh into lib/classes.
java_build() {
  local jar="$1" stamp
  shift
  stamp="lib/.pom-$(sha256sum pom.xml | cut -c1-16)"
  if [[ ! -f "$stamp" ]] || ! ls lib/"$jar"-*.jar >/dev/null 2>&1; then
    rm -rf lib
    mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib
    touch "$stamp"
  fi
  rm -rf lib/classes
  mkdir -p lib/classes
  javac -d lib/classes -cp "lib/*" "$@"
}
