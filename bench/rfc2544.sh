#!/usr/bin/env bash
# RFC 2544 throughput on the netns testbed, CSIT style: for each frame size the highest rate
# with zero loss (NDR) and with at most 0.5 % loss (PDR), for fwd, dpdk-testpmd (io over two
# net_af_xdp vdevs: the no-firewall poll-mode baseline) and a Linux bridge side by side, plus
# round-trip latency percentiles at the NDR (at 90 % of the PDR when no rate was loss-free).
#
# The search: one trial at the generator's full speed gives the upper bound; then each trial
# halves whichever of the NDR or PDR intervals is wider (relative), and every trial narrows
# both (a loss-free trial raises both lower bounds, a trial above 0.5 % lowers both upper
# bounds): a small MLRsearch. Rates are what left the generator (C0 tx_packets), loss is that
# minus what reached the server (S0 rx_packets); trafgen's pacing is approximate, so the bounds
# move by the measured offered rate, not the target. Latency: 300 pings 5 ms apart through the
# DUT while the load runs (round trip: both directions cross the DUT, plus the endpoints'
# stacks).
#
# usage: bench/rfc2544.sh [--sizes "64 128 512 1518"] [--duts "fwd testpmd bridge"]
#                         [--duration S] [--trials N] [--prefix P] [--skip-build]
# Ends with exactly one line:
#   RESULT fwd_64_ndr_pps=.. fwd_64_pdr_pps=.. fwd_64_mfr_pps=.. fwd_64_p50_us=.. fwd_64_p99_us=..
#          ... (every DUT x size; mfr: what was delivered at the generator's full speed)
# Needs root, trafgen (netsniff-ng), dpdk-testpmd (dpdk-dev): scripts/install-deps.sh --bench.
# On veth this measures the kernel's copy-mode AF_XDP path, not fwd's own logic (bench/pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes="64 128 512 1518"
duts="fwd testpmd bridge"
duration=2
trials=7
prefix=fwdr-
build=1
pdr_loss_ppm=5000   # 0.5 %
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) sizes=$2; shift 2 ;;
        --duts) duts=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --trials) trials=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --skip-build) build=0; shift ;;
        *) echo "rfc2544.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "rfc2544.sh: needs root" >&2; exit 1; }
for s in $sizes; do
    [ "$s" -ge 64 ] && [ "$s" -le 1518 ] || { echo "rfc2544.sh: frame size $s not in 64..1518" >&2; exit 2; }
done
for d in $duts; do
    case "$d" in fwd|testpmd|bridge) ;; *) echo "rfc2544.sh: unknown DUT $d" >&2; exit 2 ;; esac
done

# shellcheck source=bench/testbed-lib.sh
. bench/testbed-lib.sh
case " $duts " in *" testpmd "*) tb_require testpmd ;; *) tb_require ;; esac
target=${CARGO_TARGET_DIR:-target}
if [ "$build" = 1 ]; then cargo build --release -q -p fwd; fi
FWD=$(realpath "$target/release/fwd")
work=$(mktemp -d /tmp/fwd-rfc2544.XXXXXX)
trap tb_cleanup EXIT
tb_up 1

# search CFG -> "ndr pdr mfr p50 p90 p99 trials" (mfr: delivered at full offered load)
search() {
    local cfg=$1 offered delivered loss
    read -r offered delivered loss < <(tb_trial "$cfg" 0 "$duration")
    echo "    max: offered $offered pps, delivered $delivered, loss ${loss} ppm" >&2
    local mfr=$delivered
    local ndr_lo=0 ndr_hi=$offered pdr_lo=0 pdr_hi=$offered
    if [ "$loss" = 0 ]; then ndr_lo=$offered; fi
    if [ "$loss" -le "$pdr_loss_ppm" ]; then pdr_lo=$offered; fi
    local n=1
    while [ "$n" -lt "$trials" ]; do
        # the wider interval (relative to its upper bound) gets the next trial
        local which rate
        which=$(awk -v a=$ndr_lo -v b=$ndr_hi -v c=$pdr_lo -v d=$pdr_hi \
            'BEGIN { w1 = (b > 0) ? (b - a) / b : 0; w2 = (d > 0) ? (d - c) / d : 0;
                     print (w1 >= w2) ? "ndr" : "pdr" }')
        if [ "$which" = ndr ]; then rate=$(( (ndr_lo + ndr_hi) / 2 )); else rate=$(( (pdr_lo + pdr_hi) / 2 )); fi
        [ "$rate" -ge 1000 ] || break
        # stop when both intervals are within 2 %
        if awk -v a=$ndr_lo -v b=$ndr_hi -v c=$pdr_lo -v d=$pdr_hi \
            'BEGIN { exit !((b - a) <= 0.02 * b && (d - c) <= 0.02 * d) }'; then break; fi
        read -r offered delivered loss < <(tb_trial "$cfg" "$rate" "$duration")
        n=$((n + 1))
        echo "    trial $n ($which): target $rate, offered $offered, delivered $delivered, loss $loss ppm" >&2
        if [ "$loss" = 0 ]; then
            [ "$offered" -gt "$ndr_lo" ] && ndr_lo=$offered
            [ "$offered" -gt "$pdr_lo" ] && pdr_lo=$offered
        elif [ "$loss" -le "$pdr_loss_ppm" ]; then
            [ "$offered" -lt "$ndr_hi" ] && ndr_hi=$offered
            [ "$offered" -gt "$pdr_lo" ] && pdr_lo=$offered
        else
            [ "$offered" -lt "$ndr_hi" ] && ndr_hi=$offered
            [ "$offered" -lt "$pdr_hi" ] && pdr_hi=$offered
        fi
        # a lower bound above an upper one (noise): the upper bound moves up
        [ "$ndr_lo" -gt "$ndr_hi" ] && ndr_hi=$ndr_lo
        [ "$pdr_lo" -gt "$pdr_hi" ] && pdr_hi=$pdr_lo
    done
    local lat_rate=$ndr_lo
    [ "$lat_rate" -gt 0 ] || lat_rate=$((pdr_lo * 9 / 10))
    local p50 p90 p99
    read -r p50 p90 p99 < <(tb_latency "$cfg" "$lat_rate")
    echo "$ndr_lo $pdr_lo $mfr $p50 $p90 $p99 $n"
}

result="RESULT"
table="| DUT | frame | NDR pps | PDR pps (0.5 %) | delivered at full load pps | RTT p50 / p90 / p99 us | trials |"$'\n'"|---|---|---|---|---|---|---|"
for dut in $duts; do
    dut_start "$dut" 1 1
    for size in $sizes; do
        echo "== $dut, $size-byte frames" >&2
        tb_gen_cfg "$size" "$work/udp$size.cfg"
        read -r ndr pdr mfr p50 p90 p99 n < <(search "$work/udp$size.cfg")
        echo "   NDR $ndr pps, PDR $pdr pps, at full load $mfr pps, RTT p50 $p50 us p90 $p90 us p99 $p99 us" >&2
        table+=$'\n'"| $dut | $size | $ndr | $pdr | $mfr | $p50 / $p90 / $p99 | $n |"
        result+=" ${dut}_${size}_ndr_pps=$ndr ${dut}_${size}_pdr_pps=$pdr ${dut}_${size}_mfr_pps=$mfr"
        result+=" ${dut}_${size}_p50_us=$p50 ${dut}_${size}_p99_us=$p99"
    done
    dut_stop "$dut"
done
echo "$table"
echo "$result"
