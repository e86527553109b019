#!/usr/bin/env bash
# Forwarding throughput on the netns testbed: 64-byte UDP from trafgen into the client veth,
# delivered packets counted at the server veth (S0 rx_packets delta / seconds), alternating
#   fwd (AF_XDP, this repo)  |  dpdk-testpmd io over two net_af_xdp vdevs  |  a Linux bridge
# in the fw namespace. Ends with exactly one line:
#   RESULT fwd_pps=X testpmd_pps=Y bridge_pps=Z ratio=X/Y
#
# usage: bench/forward.sh [--duration S] [--runs N] [--queues Q] [--workers W] [--prefix P]
#                         [--busy-poll] [--skip-build]
# Needs root, trafgen (netsniff-ng), dpdk-testpmd (dpdk-dev), iproute2, ethtool.
# On veth these numbers measure the kernel's copy-mode AF_XDP cost, not fwd's own logic.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
runs=3
queues=1
workers=1
prefix=fwdb-
build=1
busy_poll=false
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --queues) queues=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --skip-build) build=0; shift ;;
        --busy-poll) busy_poll=true; shift ;;
        *) echo "forward.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "forward.sh: needs root" >&2; exit 1; }
ncpu=$(nproc)
if [ "$workers" -gt "$queues" ]; then echo "forward.sh: --workers must be <= --queues" >&2; exit 2; fi

target=${CARGO_TARGET_DIR:-target}
if [ "$build" = 1 ]; then cargo build --release -q -p fwd; fi
FWD=$(realpath "$target/release/fwd")

C=${prefix}client; F=${prefix}fw; S=${prefix}server
work=$(mktemp -d /tmp/fwd-bench.XXXXXX)
fwd_pid=""; pmd_pid=""; gen_pid=""
cleanup() {
    for p in $gen_pid $pmd_pid $fwd_pid; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in $gen_pid $pmd_pid $fwd_pid; do kill -KILL "$p" 2>/dev/null || true; done
    ip -n "$F" link del br0 2>/dev/null || true
    scripts/testbed.sh down --prefix "$prefix"
    rm -rf "$work"
}
trap cleanup EXIT

scripts/testbed.sh up --queues "$queues" --prefix "$prefix"
smac=$(ip -n "$S" -br link show S0 | awk '{print $3}')
cmac=$(ip -n "$C" -br link show C0 | awk '{print $3}')
hex() { echo "$1" | sed 's/^/0x/; s/:/, 0x/g'; }
# 60 bytes + FCS = a 64-byte frame: Ethernet, IPv4 198.18.0.1 -> 198.18.0.2, UDP 9 -> 9.
cat > "$work/udp64.cfg" <<CFG
{
  $(hex "$smac"), $(hex "$cmac"), c16(0x0800),
  0x45, 0x00, c16(46), c16(1), c16(0x4000), 64, 17, csumip(14, 33),
  198, 18, 0, 1, 198, 18, 0, 2,
  c16(9), c16(9), c16(26), c16(0),
  fill(0x00, 18)
}
CFG
# The server must not answer with ICMP port unreachable for every packet.
ip netns exec "$S" sysctl -qw net.ipv4.icmp_ratelimit=1000000

cores="1"; [ "$workers" -ge 2 ] && cores="0, 1"
cat > "$work/fwd.toml" <<TOML
[ports.a]
interface = "fw-c"
mode = "copy"
queues = $queues
[ports.b]
interface = "fw-s"
mode = "copy"
queues = $queues
[workers]
cores = [$cores]
idle_sleep_us = 0
busy_poll = $busy_poll
[stats]
listen = "127.0.0.1:9900"
log_interval_s = 0
[control]
socket = "$work/ctl.sock"
[log]
level = "warn"
TOML

gen_procs=1
[ "$queues" -ge 2 ] && gen_procs=$(( queues < ncpu ? queues : ncpu ))

rx_server() { ip netns exec "$S" cat /sys/class/net/S0/statistics/rx_packets; }

# Runs the generator, returns delivered pps over $duration seconds after a 1 s warm-up.
measure() {
    setsid ip netns exec "$C" trafgen -Q --no-sock-mem -P "$gen_procs" -C -i "$work/udp64.cfg" -o C0 \
        >/dev/null 2>&1 &
    gen_pid=$!
    sleep 1
    local a b
    a=$(rx_server)
    sleep "$duration"
    b=$(rx_server)
    kill -TERM -- "-$gen_pid" 2>/dev/null || true
    wait "$gen_pid" 2>/dev/null || true
    kill -KILL -- "-$gen_pid" 2>/dev/null || true
    gen_pid=""
    sleep 0.3
    echo $(( (b - a) / duration ))
}

run_fwd() {
    ip netns exec "$F" "$FWD" --config "$work/fwd.toml" 2>"$work/fwd.log" &
    fwd_pid=$!
    for _ in $(seq 100); do
        "$FWD" stats --socket "$work/ctl.sock" >/dev/null 2>&1 && break
        sleep 0.1
    done
    "$FWD" stats --socket "$work/ctl.sock" >/dev/null || { cat "$work/fwd.log" >&2; exit 1; }
    measure
    kill -TERM "$fwd_pid"; wait "$fwd_pid" || true; fwd_pid=""
}

run_testpmd() {
    (sleep $((duration + 40))) | ip netns exec "$F" stdbuf -oL dpdk-testpmd -l 0,1 --no-huge -m 512 --no-pci \
        --file-prefix "fwdbench$$" --log-level=3 \
        --vdev net_af_xdp0,iface=fw-c --vdev net_af_xdp1,iface=fw-s \
        -- --forward-mode=io --auto-start --total-num-mbufs=16384 >"$work/testpmd.log" 2>&1 &
    pmd_pid=$(pgrep -n -f "file-prefix fwdbench$$" || true)
    for _ in $(seq 300); do
        grep -q "Press enter to exit" "$work/testpmd.log" 2>/dev/null && break
        sleep 0.1
    done
    pmd_pid=$(pgrep -f "file-prefix fwdbench$$" | head -1 || true)
    grep -q "Press enter to exit" "$work/testpmd.log" || { cat "$work/testpmd.log" >&2; exit 1; }
    measure
    [ -n "$pmd_pid" ] && kill -TERM "$pmd_pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -n "$pmd_pid" ] && kill -0 "$pmd_pid" 2>/dev/null || break; sleep 0.1; done
    pmd_pid=""
    # testpmd's libxdp program must not outlive it (fwd refuses to replace a program).
    ip -n "$F" link set dev fw-c xdp off 2>/dev/null || true
    ip -n "$F" link set dev fw-s xdp off 2>/dev/null || true
    sleep 0.5
}

run_bridge() {
    ip -n "$F" link add br0 type bridge
    ip -n "$F" link set fw-c master br0
    ip -n "$F" link set fw-s master br0
    ip -n "$F" link set br0 up
    sleep 0.5
    measure
    ip -n "$F" link del br0
}

declare -a R_FWD R_PMD R_BR
for i in $(seq "$runs"); do
    R_FWD+=("$(run_fwd)")
    R_PMD+=("$(run_testpmd)")
    R_BR+=("$(run_bridge)")
    echo "run $i: fwd ${R_FWD[-1]} pps, testpmd ${R_PMD[-1]} pps, bridge ${R_BR[-1]} pps" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
f=$(median "${R_FWD[@]}"); p=$(median "${R_PMD[@]}"); b=$(median "${R_BR[@]}")
echo "| forwarder | runs (pps) | median pps |"
echo "|---|---|---|"
echo "| fwd ($workers worker(s), $queues queue(s), busy_poll=$busy_poll) | ${R_FWD[*]} | $f |"
echo "| dpdk-testpmd io (net_af_xdp) | ${R_PMD[*]} | $p |"
echo "| Linux bridge | ${R_BR[*]} | $b |"
ratio=$(awk -v a="$f" -v b="$p" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "0" }')
echo "RESULT fwd_pps=$f testpmd_pps=$p bridge_pps=$b ratio=$ratio"
