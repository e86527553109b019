#!/usr/bin/env bash
# Checks the benchmark traffic kit of bench/traffic/ without a traffic generator:
#  1. the TRex STL profiles load in TRex's own stateless simulator (PyPI lbr-trex-client,
#     installed here when missing) and send what fwd_traffic.py defines (check_profiles.py);
#  2. write_capture.py's pcapng and pcap files read back with tcpdump (an independent reader);
#  3. fwd replay runs each profile's pcapng through the stateful example ruleset: everything
#     crosses; the tcp_cps capture with the ports swapped (connections opened from the server
#     side) is dropped whole;
#  4. send_capture.py plays the tcp_cps capture into the live netns testbed through fwd: every
#     SYN reaches the server side and every SYN-ACK the client side; swapped, none does.
#   scripts/test-traffic.sh [--skip-build]
set -euo pipefail
cd "$(dirname "$0")/.."
LBR_TREX_CLIENT_VERSION=3.4.0
if [ "${1:-}" != --skip-build ]; then cargo build --release -q -p fwd; fi
FWD=$(realpath "${CARGO_TARGET_DIR:-target}/release/fwd")
# TRex's client in a virtual environment of its own (kept between runs): it pins old scapy
# and pyzmq copies that must not meet the system's Python packages.
venv=${XDG_CACHE_HOME:-$HOME/.cache}/fwd-trex-venv
if ! "$venv/bin/python3" -c "import lbr_trex_client" 2>/dev/null; then
    echo "installing lbr-trex-client $LBR_TREX_CLIENT_VERSION into $venv (TRex's client and simulator)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install -q "lbr-trex-client==$LBR_TREX_CLIENT_VERSION"
fi
work=$(mktemp -d /tmp/fwd-test-traffic.XXXXXX)
prefix=ftt$$-
fwd_pid=""
cleanup() {
    [ -n "$fwd_pid" ] && kill -TERM "$fwd_pid" 2>/dev/null && wait "$fwd_pid" 2>/dev/null || true
    scripts/testbed.sh down --prefix "$prefix"
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== TRex profiles in trex-stl-sim"
"$venv/bin/python3" bench/traffic/check_profiles.py

echo "== captures: written, read back by tcpdump, replayed through fwd"
n=2000
for p in udp64 imix flows tcp_cps; do
    python3 bench/traffic/write_capture.py "$p" "$work/$p.pcapng" --count $n --flows 500 >/dev/null
    got=$(tcpdump -nr "$work/$p.pcapng" 2>/dev/null | wc -l)
    [ "$got" = $n ] || fail "tcpdump reads $got of $n frames in $p.pcapng"
    sum=$("$FWD" replay --config configs/testbed-firewall.toml --in "$work/$p.pcapng" --out "$work/$p.out.pcapng")
    [ "$sum" = "$n packets: $n forwarded, 0 replies, 0 dropped" ] || fail "$p: $sum"
    out=$(tcpdump -nr "$work/$p.out.pcapng" 2>/dev/null | wc -l)
    [ "$out" = $n ] || fail "$p: fwd replay wrote $out of $n frames"
    echo "ok: $p: $sum"
done
# the flows capture holds 500 distinct flows, the tcp_cps one 500 connections (4 frames each)
flows=$(tcpdump -nr "$work/flows.pcapng" 2>/dev/null | awk '{print $3}' | sort -u | wc -l)
[ "$flows" = 500 ] || fail "flows.pcapng has $flows distinct sources, not 500"
syns=$(tcpdump -nr "$work/tcp_cps.pcapng" 'tcp[tcpflags] == tcp-syn' 2>/dev/null | wc -l)
[ "$syns" = 500 ] || fail "tcp_cps.pcapng has $syns SYNs, not 500"
python3 bench/traffic/write_capture.py tcp_cps "$work/rev.pcapng" --count $n --swap-ports >/dev/null
sum=$("$FWD" replay --config configs/testbed-firewall.toml --in "$work/rev.pcapng" --out "$work/rev.out.pcapng")
[ "$sum" = "$n packets: 0 forwarded, 0 replies, $n dropped" ] || fail "swapped tcp_cps: $sum"
echo "ok: tcp_cps opened from the server side: $sum"
# a pcap of one direction, for pktgen-DPDK; refused for a two-sided profile
python3 bench/traffic/write_capture.py imix "$work/imix.pcap" --format pcap --count 1200 >/dev/null
got=$(tcpdump -nr "$work/imix.pcap" 2>/dev/null | wc -l)
[ "$got" = 1200 ] || fail "tcpdump reads $got of 1200 frames in imix.pcap"
if python3 bench/traffic/write_capture.py tcp_cps "$work/x.pcap" --format pcap 2>/dev/null; then
    fail "a two-sided pcap was written"
fi

echo "== the tcp_cps capture through fwd on the live testbed"
scripts/testbed.sh up --prefix "$prefix"
sed "s#^socket = .*#socket = \"$work/ctl.sock\"#" configs/testbed-firewall.toml > "$work/fwd.toml"
cp configs/stateful.v4 configs/stateful.v6 "$work/"
ip netns exec "${prefix}fw" "$FWD" --config "$work/fwd.toml" 2>"$work/fwd.log" &
fwd_pid=$!
for _ in $(seq 100); do "$FWD" stats --socket "$work/ctl.sock" >/dev/null 2>&1 && break; sleep 0.1; done
"$FWD" stats --socket "$work/ctl.sock" >/dev/null || { cat "$work/fwd.log" >&2; fail "fwd did not start"; }
python3 bench/traffic/write_capture.py tcp_cps "$work/live.pcapng" --count 400 --flows 100 >/dev/null
python3 bench/traffic/write_capture.py tcp_cps "$work/live-rev.pcapng" --count 400 --flows 100 --swap-ports >/dev/null
# plays CAPTURE, prints "SYNs received by the server side, SYN-ACKs received by the client side"
live() {
    ip netns exec "${prefix}server" timeout 4 tcpdump -Q in -ni S0 -w "$work/s.pcap" tcp 2>/dev/null &
    local ts=$!
    ip netns exec "${prefix}client" timeout 4 tcpdump -Q in -ni C0 -w "$work/c.pcap" tcp 2>/dev/null &
    local tc=$!
    sleep 1
    python3 bench/traffic/send_capture.py "$1" --prefix "$prefix" >/dev/null
    wait $ts $tc || true
    echo "$(tcpdump -nr "$work/s.pcap" 'tcp[tcpflags] == tcp-syn and dst port 80' 2>/dev/null | wc -l)" \
         "$(tcpdump -nr "$work/c.pcap" 'tcp[tcpflags] == tcp-syn|tcp-ack and src port 80' 2>/dev/null | wc -l)"
}
read -r syn synack < <(live "$work/live.pcapng")
[ "$syn" = 100 ] && [ "$synack" = 100 ] || fail "live tcp_cps: $syn of 100 SYNs, $synack of 100 SYN-ACKs crossed"
echo "ok: live: 100 SYNs to the server side, 100 SYN-ACKs back"
read -r syn synack < <(live "$work/live-rev.pcapng")
[ "$syn" = 0 ] && [ "$synack" = 0 ] || fail "live tcp_cps swapped: $syn SYNs, $synack SYN-ACKs crossed"
echo "ok: live, opened from the server side: nothing crossed"
echo "traffic kit: all checks passed"
