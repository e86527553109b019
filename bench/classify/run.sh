#!/usr/bin/env bash
# bench/classify/run.sh RULES TRACE: the classifier benchmark on one ClassBench rule set and its
# trace, against DPDK's rte_acl (dpdk-test-acl, every algorithm it has here; the best one counts)
# on the same files in the same run, both on CPU 0. Ends with one RESULT line.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 RULES TRACE" >&2
    exit 2
fi
RULES=$(realpath "$1")
TRACE=$(realpath "$2")
NAME=$(basename "$RULES")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p classify-bench)
BIN=$CARGO_TARGET_DIR/release/classify-bench
CPU=${BENCH_CPU:-0}

OUT=$(taskset -c "$CPU" /usr/bin/time -f 'time_max_rss_kib=%M' "$BIN" "$RULES" "$TRACE" "$NAME" 2>&1)
echo "$OUT"
get() { echo "$OUT" | sed -n "s/^.*\b$1=\([^ ]*\).*$/\1/p" | head -1; }
N=$(get rules)
FWD=$(get fwd_mpps)
BUILD=$(get build_ms)
BYTES=$(get bytes)
MISM=$(get mismatches)

# rte_acl: all algorithms for the small sets; at 100K rules each run rebuilds for ~40 s and
# 1 GB, so only the two AVX-512 ones (always the fastest here)
if [ "$N" -lt 50000 ]; then
    ALGS="scalar sse avx2 avx512x16 avx512x32"
    MEM=2048
else
    ALGS=${RTE_ALGS_BIG:-"avx512x16 avx512x32"}
    MEM=16384
fi
BEST=0
BEST_ALG=none
for ALG in $ALGS; do
    LOG=$( (cd "$(dirname "$RULES")" && /usr/bin/time -f 'rte_max_rss_kib=%M wall_s=%e' \
        dpdk-test-acl --no-huge -m $MEM --no-pci -l "$CPU" --force-max-simd-bitwidth=512 -- \
        --rulesf="$RULES" --tracef="$TRACE" --rulenum=200000 --tracenum=2000000 \
        --iter=10 --verbose=0 --alg="$ALG") 2>&1 || true)
    PPS=$(echo "$LOG" | sed -n 's/^search_ip5tuples.* \([0-9.]*\) pkt\/sec.*$/\1/p' | head -1)
    RSS=$(echo "$LOG" | sed -n 's/^.*rte_max_rss_kib=\([0-9]*\) wall_s=\([0-9.]*\).*$/\1 kib, \2 s/p')
    if [ -z "$PPS" ]; then
        echo "rte_acl alg=$ALG failed:"
        echo "$LOG" | tail -5
        continue
    fi
    MPPS=$(awk -v p="$PPS" 'BEGIN { printf "%.2f", p / 1e6 }')
    echo "rte_acl alg=$ALG mpps=$MPPS (max rss $RSS incl. build)"
    if awk -v a="$MPPS" -v b="$BEST" 'BEGIN { exit !(a > b) }'; then
        BEST=$MPPS
        BEST_ALG=$ALG
    fi
done
# the machine may be shared: the best algorithm again (5 times; twice for the 100K sets, whose
# build takes up to a minute), keeping its best rate, as the fwd side keeps its best pass
if [ "$N" -lt 50000 ]; then REPEATS=${RTE_REPEATS:-5}; else REPEATS=${RTE_REPEATS:-2}; fi
for _ in $(seq "$REPEATS"); do
    [ "$BEST_ALG" = none ] && break
    LOG=$( (cd "$(dirname "$RULES")" && dpdk-test-acl --no-huge -m $MEM --no-pci -l "$CPU" \
        --force-max-simd-bitwidth=512 -- --rulesf="$RULES" --tracef="$TRACE" --rulenum=200000 \
        --tracenum=2000000 --iter=10 --verbose=0 --alg="$BEST_ALG") 2>&1 || true)
    PPS=$(echo "$LOG" | sed -n 's/^search_ip5tuples.* \([0-9.]*\) pkt\/sec.*$/\1/p' | head -1)
    MPPS=$(awk -v p="${PPS:-0}" 'BEGIN { printf "%.2f", p / 1e6 }')
    echo "rte_acl alg=$BEST_ALG mpps=$MPPS (repeat)"
    if awk -v a="$MPPS" -v b="$BEST" 'BEGIN { exit !(a > b) }'; then
        BEST=$MPPS
    fi
done
RATIO=$(awk -v a="$FWD" -v b="$BEST" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
echo "rte_acl best alg=$BEST_ALG"
echo "RESULT set=$NAME rules=$N fwd_mpps=$FWD rte_acl_mpps=$BEST ratio=$RATIO build_ms=$BUILD bytes=$BYTES mismatches=$MISM"
