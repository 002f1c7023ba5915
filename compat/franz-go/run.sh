#!/usr/bin/env bash
# franz-go's own kgo integration tests (github.com/twmb/franz-go/pkg/kgo, the version pinned
# in go.mod, from the Go module proxy) against a broker.
#   FJORD_BIN=/path/to/fjord compat/franz-go/run.sh          # starts/stops fjord itself
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/franz-go/run.sh   # an already running broker
#
# allow-list.txt names the top-level tests expected to pass; only those run, and one that
# does not pass (fails, skips or never reports) fails the suite.
#
# Environment:
#   FRANZ_GO_TESTS   a regular expression of test names to run instead of the allow-list
#   KGO_TEST_RF      replication factor of the tests' topics (default 1: a single broker)
#   KGO_TEST_RECORDS records each ETL test sends through its chain (franz-go's default
#                    500,000)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/../.cache/franz-go"
source "$here/../target.sh"

# --- build the kgo test binary ----------------------------------------------------------
mkdir -p "$cache"
cd "$here"
pkg_dir="$(go list -mod=readonly -m -f '{{.Dir}}' github.com/twmb/franz-go)/pkg/kgo"
if [[ ! -d "$pkg_dir" ]]; then
  go mod download github.com/twmb/franz-go
  pkg_dir="$(go list -mod=readonly -m -f '{{.Dir}}' github.com/twmb/franz-go)/pkg/kgo"
fi
go test -mod=readonly -c -o "$cache/kgo.test" github.com/twmb/franz-go/pkg/kgo

# --- the broker -------------------------------------------------------------------------
source "$here/../broker.sh"
# A server started here also gets a SASL_PLAINTEXT listener with a SCRAM user, for
# TestSCRAMAuth and TestSCRAMAuthBadCredentials (see broker.sh).
BROKER_SECURITY=1 broker_start franz-go

# --- run --------------------------------------------------------------------------------
mapfile -t allowed < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/allow-list.txt" | grep -v '^$')
scram=()
if [[ -n "$BS_SASL_PLAINTEXT" ]]; then
  scram=(KGO_TEST_SCRAM_SEEDS="$BS_SASL_PLAINTEXT" KGO_TEST_SCRAM="$SCRAM_USER:$SCRAM_PASSWORD:512")
else
  echo "=== no SASL listener here (KAFKA_BOOTSTRAP or a cluster): the SCRAM tests are left out"
  mapfile -t allowed < <(printf '%s\n' "${allowed[@]}" | grep -v '^TestSCRAMAuth')
fi
if [[ -n "${FRANZ_GO_TESTS:-}" ]]; then
  regex="$FRANZ_GO_TESTS"
else
  (( ${#allowed[@]} > 0 )) || { echo "allow-list.txt is empty" >&2; exit 1; }
  regex="^($(IFS='|'; echo "${allowed[*]}"))\$"
fi
echo "=== franz-go kgo tests against $BS"
start=$SECONDS
set +e
# The tests read no files of their own; run them from the package directory anyway, as
# `go test` would.
(cd "$pkg_dir" && env KGO_SEEDS="$BS" KGO_TEST_RF="${KGO_TEST_RF:-1}" KGO_LOG_LEVEL=none "${scram[@]}" \
  timeout --kill-after=10 900 "$cache/kgo.test" -test.v -test.timeout 14m -test.parallel 4 \
    -test.run "$regex") \
  > "$work/kgo.log" 2>&1
rc=$?
set -e
echo "kgo.test exited $rc after $((SECONDS - start)) s"

failed=0
passed=0
check() { # name
  local name="$1" line
  line="$(grep -E "^--- (PASS|FAIL|SKIP): $name \(" "$work/kgo.log" | tail -1 || true)"
  if [[ "$line" == "--- PASS:"* ]]; then
    passed=$((passed + 1)); echo "PASS $name ${line##* }"
  else
    failed=$((failed + 1)); echo "FAIL $name: ${line:-no result}"
    # its last output lines: go test -v heads each stretch of a test's output "=== NAME X"
    awk -v t="$name" '/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
      /^(--- |PASS|FAIL|ok )/ { cur = ""; next }
      /^ / && (cur == t || index(cur, t "/") == 1) { print "    " $0 }' "$work/kgo.log" | tail -15
  fi
}
if [[ -n "${FRANZ_GO_TESTS:-}" ]]; then
  mapfile -t ran < <(sed -n -E 's/^--- (PASS|FAIL|SKIP): ([A-Za-z0-9_]+) .*/\2/p' "$work/kgo.log")
  for name in "${ran[@]}"; do check "$name"; done
else
  for name in "${allowed[@]}"; do check "$name"; done
fi
if (( rc != 0 && failed == 0 )); then
  echo "kgo.test exited $rc although every test passed; its last lines:"
  tail -20 "$work/kgo.log" | sed 's/^/    /'
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
(( failed == 0 ))
