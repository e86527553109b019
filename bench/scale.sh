#!/usr/bin/env bash
# Multi-core scaling of fwd on the netns testbed: workers 1, 2, 4, 8, ... up to the machine's
# cores (and the core count itself when it is not a power of two), queues per port = workers,
# the same 64-byte UDP profile each time, generated from as many trafgen processes as there
# are queues (each on its own CPU, so each fills its own veth queue: a veth's peer receives on
# the queue its sender transmitted on), as long as CPUs are left over for them. Delivered pps
# at the server, median of --runs. Runs unchanged on a many-core machine: the worker cores
# are the highest-numbered ones, the generators take the lowest.
#
# usage: bench/scale.sh [--max-workers N] [--duration S] [--runs N] [--prefix P] [--skip-build]
# Ends with exactly one line:
#   RESULT cores=C w1_pps=X w2_pps=Y w4_pps=Z ... scaling=Wmax/W1
# Needs root, trafgen (netsniff-ng). On a machine with fewer cores than 2 x workers, the
# generator and the workers share cores and the figures say more about the machine than fwd.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=5
runs=3
prefix=fwds-
build=1
max_workers=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
        --max-workers) max_workers=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --skip-build) build=0; shift ;;
        *) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "scale.sh: needs root" >&2; exit 1; }
ncpu=$(nproc)
[ "$max_workers" -ge 1 ] && [ "$max_workers" -le "$ncpu" ] || {
    echo "scale.sh: --max-workers must be within 1..$ncpu" >&2; exit 2; }

# shellcheck source=bench/testbed-lib.sh
. bench/testbed-lib.sh
tb_require
target=${CARGO_TARGET_DIR:-target}
if [ "$build" = 1 ]; then cargo build --release -q -p fwd; fi
FWD=$(realpath "$target/release/fwd")
work=$(mktemp -d /tmp/fwd-scale.XXXXXX)
trap tb_cleanup EXIT

counts=()
for ((w = 1; w <= max_workers; w *= 2)); do counts+=("$w"); done
[ "${counts[-1]}" = "$max_workers" ] || counts+=("$max_workers")

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

result="RESULT cores=$ncpu"
table="| workers = queues | generator processes | runs (delivered pps) | median pps |"$'\n'"|---|---|---|---|"
first=0 last=0
for w in "${counts[@]}"; do
    tb_up "$w"
    tb_gen_cfg 64 "$work/udp64.cfg"
    # generators on CPUs 0..P-1, workers on the top w CPUs; P = w when that leaves them apart
    procs=$w
    [ $((ncpu - w)) -ge 1 ] && [ "$procs" -gt $((ncpu - w)) ] && procs=$((ncpu - w))
    [ "$procs" -ge 1 ] || procs=1
    dut_start fwd "$w" "$w"
    samples=()
    for _ in $(seq "$runs"); do
        read -r _offered delivered _loss < <(tb_trial "$work/udp64.cfg" 0 "$duration" "$procs")
        samples+=("$delivered")
    done
    dut_stop fwd
    m=$(median "${samples[@]}")
    echo "workers $w, $procs generator(s): ${samples[*]} -> $m pps" >&2
    table+=$'\n'"| $w | $procs | ${samples[*]} | $m |"
    result+=" w${w}_pps=$m"
    [ "$first" = 0 ] && first=$m
    last=$m
done
scaling=$(awk -v a="$last" -v b="$first" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "0" }')
echo "$table"
echo "$result scaling=$scaling"
