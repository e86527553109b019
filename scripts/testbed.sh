#!/usr/bin/env bash
# The client/fw/server network-namespace testbed of ../shared/TESTBED.md.
#
#   scripts/testbed.sh up   [--queues N] [--prefix P]
#   scripts/testbed.sh down [--prefix P]
#
# Namespaces ${P}client, ${P}fw, ${P}server (default prefix "fwd-"). Links:
#   ${P}client: C0 198.18.0.1/24 2001:2::1/64  <-veth->  fw-c (in ${P}fw, no address)
#   ${P}server: S0 198.18.0.2/24 2001:2::2/64  <-veth->  fw-s (in ${P}fw, no address)
# Equal rx/tx queue counts on both ends of each veth; TX checksum offload off on the endpoints
# (AF_XDP forwards raw bytes, so a partial checksum would reach the peer unfinished).
# `up` is idempotent (it rebuilds), `down` removes everything and ignores what is missing.
set -euo pipefail

cmd=${1:-}
shift || true
queues=1
prefix=fwd-
while [ $# -gt 0 ]; do
    case "$1" in
        --queues) queues=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        *) echo "testbed.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
C=${prefix}client
F=${prefix}fw
S=${prefix}server

down() {
    for ns in "$C" "$F" "$S"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

up() {
    down
    ip netns add "$C"
    ip netns add "$F"
    ip netns add "$S"
    ip link add C0 numtxqueues "$queues" numrxqueues "$queues" netns "$C" type veth \
        peer name fw-c numtxqueues "$queues" numrxqueues "$queues" netns "$F"
    ip link add S0 numtxqueues "$queues" numrxqueues "$queues" netns "$S" type veth \
        peer name fw-s numtxqueues "$queues" numrxqueues "$queues" netns "$F"
    # The fw side is a transparent bump: no addresses, no IPv6 autoconf, no DAD.
    ip netns exec "$F" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    for ns in "$C" "$S"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    done
    ip -n "$C" addr add 198.18.0.1/24 dev C0
    ip -n "$C" addr add 2001:2::1/64 dev C0 nodad
    ip -n "$S" addr add 198.18.0.2/24 dev S0
    ip -n "$S" addr add 2001:2::2/64 dev S0 nodad
    for ns in "$C" "$F" "$S"; do ip -n "$ns" link set lo up; done
    ip -n "$C" link set C0 up
    ip -n "$S" link set S0 up
    ip -n "$F" link set fw-c up
    ip -n "$F" link set fw-s up
    ip netns exec "$C" ethtool -K C0 tx off >/dev/null
    ip netns exec "$S" ethtool -K S0 tx off >/dev/null
    # Native XDP on veth wants GRO-free, fully-queued ends; these are harmless where not needed.
    ip netns exec "$F" ethtool -K fw-c gro off >/dev/null 2>&1 || true
    ip netns exec "$F" ethtool -K fw-s gro off >/dev/null 2>&1 || true
}

case "$cmd" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down [--queues N] [--prefix P]" >&2; exit 2 ;;
esac
