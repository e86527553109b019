#!/usr/bin/env bash
# bench/pipeline/run.sh [RULES TRACE]: the whole data plane in memory (one worker, 64-byte
# frames; see src/main.rs for the scenarios), and dpdk-test-acl (rte_acl, classification only,
# best of its algorithms) on the same ClassBench rules and trace in the same run, both on one
# CPU. Default: the 10K acl1 set. Ends with one RESULT line. pipeline-bench's ns and cycles are
# on-CPU time of its thread (/proc/thread-self/schedstat), so a loaded machine does not inflate
# them; wall_ns_per_pkt is printed next to them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RULES=$(realpath "${1:-$ROOT/../shared/data/classbench/acl1_10000}")
TRACE=$(realpath "${2:-$ROOT/../shared/data/classbench/acl1_10000_trace}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p pipeline-bench)
BIN=$CARGO_TARGET_DIR/release/pipeline-bench
CPU=${BENCH_CPU:-0}

OUT=$(taskset -c "$CPU" "$BIN" "$RULES" "$TRACE" 2>&1)
echo "$OUT"
get() { echo "$OUT" | sed -n "s/^.*\b$1=\([^ ]*\).*$/\1/p" | head -1; }
EST=$(get established_snat_cycles)
NEW=$(get new_flows_cycles)
NEW_MPPS=$(get new_flows_mpps)
EST_MPPS=$(get established_snat_mpps)
MIX_MPPS=$(get mix_3est_1new_mpps)
MISM=$(get mismatches)
NEW_WALL=$(echo "$OUT" | sed -n 's/^scenario=new_flows.*wall_ns_per_pkt=\([0-9.]*\).*$/\1/p')
NORULES=$(echo "$OUT" | sed -n 's/^scenario=established_norules.*cycles_per_pkt=\([0-9]*\).*$/\1/p')

BEST=0
BEST_ALG=none
for ALG in ${RTE_ALGS:-scalar sse avx2 avx512x16 avx512x32}; do
    LOG=$( (cd "$(dirname "$RULES")" && dpdk-test-acl --no-huge -m 2048 --no-pci -l "$CPU" \
        --force-max-simd-bitwidth=512 -- --rulesf="$RULES" --tracef="$TRACE" --rulenum=200000 \
        --tracenum=2000000 --iter=10 --verbose=0 --alg="$ALG") 2>&1 || true)
    PPS=$(echo "$LOG" | sed -n 's/^search_ip5tuples.* \([0-9.]*\) pkt\/sec.*$/\1/p' | head -1)
    if [ -z "$PPS" ]; then
        echo "rte_acl alg=$ALG failed:"
        echo "$LOG" | tail -3
        continue
    fi
    MPPS=$(awk -v p="$PPS" 'BEGIN { printf "%.2f", p / 1e6 }')
    echo "rte_acl alg=$ALG mpps=$MPPS"
    if awk -v a="$MPPS" -v b="$BEST" 'BEGIN { exit !(a > b) }'; then
        BEST=$MPPS
        BEST_ALG=$ALG
    fi
done
RATIO=$(awk -v a="$NEW_MPPS" -v b="$BEST" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }')
# rte_acl times itself by the wall clock: compare it with the wall-clock rate of new flows too
RATIO_WALL=$(awk -v w="$NEW_WALL" -v b="$BEST" 'BEGIN { if (b > 0 && w > 0) printf "%.3f", (1e3 / w) / b; else print "nan" }')
echo "RESULT path=appliance set=$(basename "$RULES") established_norules_cycles=$NORULES established_snat_cycles=$EST established_snat_mpps=$EST_MPPS new_flows_cycles=$NEW new_flows_mpps=$NEW_MPPS mix_mpps=$MIX_MPPS rte_acl_mpps=$BEST rte_acl_alg=$BEST_ALG new_vs_rte_acl=$RATIO new_vs_rte_acl_wall=$RATIO_WALL mismatches=$MISM targets: established<=100 new<=500 cycles"
