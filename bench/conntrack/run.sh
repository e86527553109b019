#!/bin/sh
# Conntrack table vs a dashmap table, one core, 1M and 10M entries.
# Needs about 4 GB of free memory for the 10M run. Usage: bench/conntrack/run.sh [entries...]
set -e
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p bench-conntrack
exec taskset -c "${BENCH_CPU:-1}" "$CARGO_TARGET_DIR/release/bench-conntrack" "$@"
