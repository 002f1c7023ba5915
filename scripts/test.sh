#!/usr/bin/env bash
# Runs every Fjord test: formatting and lints, the Rust unit and integration tests, then
# the real-client suites in compat/ (each installs what it needs: Python clients from
# PyPI, kcat from Debian's packages, the Java client, Kafka Connect and Kafka Streams from
# Maven Central, librdkafka's test suite built from the rdkafka-sys source, franz-go's tests
# from the Go module proxy), then the seeded simulations and the short fault-injection runs
# (chaos/, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# One full run builds everything once; incremental caches would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Each step says when it starts, so a slow run shows where its time went.
step() { printf '== %s (at %dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test"
cargo test --workspace
# The CLI's integration tests built the fjord binary the client suites use; a separate
# `cargo build` would compile tokio and its dependents a second time, without the features
# the tests enable, for the same program.
export FJORD_BIN="$PWD/target/debug/fjord"
if [[ ! -x "$FJORD_BIN" ]]; then
  step "build the fjord binary for the client suites"
  cargo build --bin fjord
fi
step "real-client suites"
bash compat/run-all.sh
step "simulations"
# Optimized, on both cores: building them takes less time than the debug build would
# take to run them.
bash scripts/simulate --seeds 500 --release --jobs 2
step "chaos: checker tests, then one short run per fault type"
bash chaos/run-tests.sh
bash chaos/ci.sh
step "done"
