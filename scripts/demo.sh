#!/usr/bin/env bash
# fwd's main job on a fresh machine: install what is needed, build, bring up the
# client/fw/server testbed, run fwd in the fw namespace, send real traffic (ping, IPv6 ping,
# TCP with iperf3 and a checksummed file transfer, UDP), show the counters before and after,
# stop fwd, and tear everything down (also on failure).
#
#   sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (network namespaces, XDP)" >&2; exit 1; }

# Build: clang libclang-dev libelf-dev m4 zlib1g-dev pkg-config make gcc (xsk-rs/libxdp-sys).
# Run: libelf1 zlib1g iproute2 ethtool. Demo traffic: iputils-ping iperf3 socat curl.
pkgs="clang libclang-dev libelf-dev m4 zlib1g-dev pkg-config make gcc libelf1 zlib1g
      iproute2 ethtool iputils-ping iperf3 socat curl"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
command -v cargo >/dev/null || { echo "demo.sh: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }

echo "== building fwd (release)"
cargo build --release -q -p fwd
FWD=$(realpath "${CARGO_TARGET_DIR:-target}/release/fwd")

P=fwd-
CONFIG=configs/testbed.toml
work=$(mktemp -d /tmp/fwd-demo.XXXXXX)
fwd_pid=""
cleanup() {
    [ -n "$fwd_pid" ] && kill -TERM "$fwd_pid" 2>/dev/null && wait "$fwd_pid" 2>/dev/null || true
    scripts/testbed.sh down --prefix "$P"
    rm -rf "$work"
}
trap cleanup EXIT
C="ip netns exec ${P}client"
S="ip netns exec ${P}server"

echo "== testbed up: ${P}client (198.18.0.1, 2001:2::1) -- fw-c [${P}fw] fw-s -- ${P}server (198.18.0.2, 2001:2::2)"
scripts/testbed.sh up --prefix "$P"
"$FWD" check --config "$CONFIG" >/dev/null 2>&1 || ip netns exec ${P}fw "$FWD" check --config "$CONFIG"

echo "== without fwd nothing crosses:"
if $C ping -c 1 -W 1 198.18.0.2 >/dev/null; then echo "unexpected: ping crossed" >&2; exit 1; fi
echo "   ping 198.18.0.2: no answer (as expected)"

echo "== starting fwd in ${P}fw"
ip netns exec ${P}fw "$FWD" --config "$CONFIG" 2>"$work/fwd.log" &
fwd_pid=$!
# fwd answers "starting" (exit 1) until every queue's socket is bound and the workers poll;
# then `fwd stats` says "ready: yes" and the first frame crosses.
for _ in $(seq 200); do
    "$FWD" stats --config "$CONFIG" 2>/dev/null | grep -q '^ready: yes' && break
    kill -0 "$fwd_pid" 2>/dev/null || break
    sleep 0.05
done
"$FWD" stats --config "$CONFIG" | grep -q '^ready: yes' || { cat "$work/fwd.log"; exit 1; }
echo "   fwd is ready; the first ping must be answered at once:"
$C ping -c 1 -W 1 198.18.0.2 >/dev/null || { echo "first ping after readiness unanswered" >&2; exit 1; }
echo "   first ping answered"
ip -n ${P}fw link show | grep -E "^[0-9]|prog/xdp"

echo "== counters before (fwd stats):"
"$FWD" stats --config "$CONFIG"

echo "== ping, IPv6 ping"
$C ping -c 5 -i 0.2 198.18.0.2
$C ping -6 -c 3 -i 0.2 2001:2::2

echo "== TCP: iperf3 for 3 s"
$S iperf3 -s -1 -D --pidfile "$work/iperf3.pid"
sleep 0.5
$C iperf3 -c 198.18.0.2 -t 3
echo "== TCP: 20 MB file, sha256 compared"
head -c 20000000 /dev/urandom > "$work/send.bin"
$S socat -u TCP-LISTEN:5001,reuseaddr "OPEN:$work/recv.bin,creat,trunc" &
srv=$!
sleep 0.3
$C socat -u "OPEN:$work/send.bin" TCP:198.18.0.2:5001,retry=20,interval=0.1
wait $srv
a=$(sha256sum < "$work/send.bin"); b=$(sha256sum < "$work/recv.bin")
[ "$a" = "$b" ] && echo "   sha256 equal: ${a%% *}" || { echo "sha256 differ" >&2; exit 1; }

echo "== UDP: iperf3 -u 50 Mbit/s for 3 s"
$S iperf3 -s -1 -D --pidfile "$work/iperf3u.pid"
sleep 0.5
$C iperf3 -u -b 50M -c 198.18.0.2 -t 3

echo "== counters after (fwd stats):"
"$FWD" stats --config "$CONFIG"
echo "== /metrics (curl inside ${P}fw):"
ip netns exec ${P}fw curl -s http://127.0.0.1:9900/metrics | grep -E '^fwd_(rx|tx)_packets|^fwd_burst_seconds'

echo "== stopping fwd (SIGTERM)"
kill -TERM "$fwd_pid"; wait "$fwd_pid"; fwd_pid=""
tail -n 4 "$work/fwd.log"
if ip -n ${P}fw link show | grep -q xdp; then echo "XDP program left attached" >&2; exit 1; fi
echo "   no XDP program attached any more"
if $C ping -c 1 -W 1 198.18.0.2 >/dev/null; then echo "unexpected: ping crossed" >&2; exit 1; fi
echo "   ping 198.18.0.2: no answer after fwd stopped"
echo "== demo done"
