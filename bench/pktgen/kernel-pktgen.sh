#!/usr/bin/env bash
# The Linux kernel's packet generator (pktgen, CONFIG_NET_PKTGEN: `modprobe pktgen`) as a third
# generator for fwd, sending the profiles of bench/traffic/fwd_traffic.py out of DEV:
#   kernel-pktgen.sh DEV PROFILE [--dst-mac MAC] [--threads N] [--seconds S] [--rate PPS]
# PROFILE: udp64 | imix | flows (kernel pktgen sends UDP only: no tcp_cps, use TRex for that).
# Prints one line: RESULT profile=P sent_pkts=N sent_pps=X (what pktgen reports; count what
# crossed fwd at the receiving side, e.g. its rx_packets or fwd stats).
# Not run by the tests: the development kernel has no pktgen. Needs root.
set -euo pipefail
dev=${1:?usage: kernel-pktgen.sh DEV PROFILE [--dst-mac MAC] [--threads N] [--seconds S] [--rate PPS]}
profile=${2:?profile: udp64, imix or flows}
shift 2
dst_mac=02:00:00:00:00:02
threads=1
seconds=10
rate=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dst-mac) dst_mac=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        *) echo "kernel-pktgen.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$profile" in udp64|imix|flows) ;; *) echo "kernel-pktgen.sh: profile $profile: udp64, imix or flows" >&2; exit 2 ;; esac
[ -d /proc/net/pktgen ] || modprobe pktgen 2>/dev/null || true
[ -d /proc/net/pktgen ] || { echo "kernel-pktgen.sh: no /proc/net/pktgen (CONFIG_NET_PKTGEN)" >&2; exit 1; }

pg() { echo "$2" > "/proc/net/pktgen/$1"; }
pg pgctrl reset
for t in $(seq 0 $((threads - 1))); do
    name="$dev@$t"
    pg "kpktgend_$t" rem_device_all
    pg "kpktgend_$t" "add_device $name"
    pg "$name" "count 0"
    pg "$name" "clone_skb 1000"
    pg "$name" "burst 32"
    pg "$name" "queue_map_min $t"
    pg "$name" "queue_map_max $t"
    pg "$name" "dst_mac $dst_mac"
    pg "$name" "src_min 198.18.0.1"
    pg "$name" "src_max 198.18.0.1"
    pg "$name" "dst 198.19.0.1"
    pg "$name" "udp_src_min 1025"
    pg "$name" "udp_src_max 1025"
    pg "$name" "udp_dst_min 9"
    pg "$name" "udp_dst_max 9"
    # pkt_size excludes the FCS, like fwd_traffic's sizes
    pg "$name" "pkt_size 60"
    [ "$rate" != 0 ] && pg "$name" "ratep $((rate / threads))"
    case "$profile" in
        imix) pg "$name" "imix_weights 60,7 590,4 1514,1" ;;
        flows)
            # 1024 client addresses x 64 source ports = 65536 flows, as flows.py (random
            # picks: every thread walks the whole set, RSS spreads them over the queues)
            pg "$name" "src_min 198.18.0.1"
            pg "$name" "src_max 198.18.4.0"
            pg "$name" "udp_src_min 1024"
            pg "$name" "udp_src_max 1087"
            pg "$name" "flag IPSRC_RND"
            pg "$name" "flag UDPSRC_RND"
            pg "$name" "flows 65536"
            pg "$name" "flowlen 8"
            ;;
    esac
done
( sleep "$seconds"; echo stop > /proc/net/pktgen/pgctrl ) &
echo start > /proc/net/pktgen/pgctrl || true
wait
sent=0
for t in $(seq 0 $((threads - 1))); do
    n=$(sed -n 's/.*pkts-sofar: \([0-9]*\).*/\1/p' "/proc/net/pktgen/$dev@$t" | head -1)
    sent=$((sent + ${n:-0}))
done
echo "RESULT profile=$profile sent_pkts=$sent sent_pps=$((sent / seconds))"
