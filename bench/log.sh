#!/usr/bin/env bash
# Fjord log benchmark: prints the disk's sequential write limit (dd, O_DIRECT), then runs
# crates/fjord-log/examples/log_bench.rs in release mode on the same file system.
# Usage: bench/log.sh [DIR]   (DIR defaults to a temp dir under ./target)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-$(pwd)/target/log-bench}"
mkdir -p "$dir"
cargo build --release -p fjord-log --example log_bench
echo "== disk sequential write limit (dd 1 GiB, oflag=direct) =="
dd if=/dev/zero of="$dir/dd.tmp" bs=1M count=1024 oflag=direct 2>&1 | tail -n 1
rm -f "$dir/dd.tmp"
echo "== fjord-log =="
"${CARGO_TARGET_DIR:-target}/release/examples/log_bench" "$dir/run"
