#!/usr/bin/env bash
# Checks configs/fwd.service without a running systemd:
#  1. `systemd-analyze verify` prints nothing and succeeds (ExecStart pointed at the built binary),
#     and does complain about a copy with a misspelled directive (so the check can fail);
#  2. the unit's CapabilityBoundingSet is enough: fwd, run as an unprivileged user holding only
#     those capabilities (as DynamicUser= + AmbientCapabilities= give it), forwards a ping across
#     the netns testbed; and each of them is needed: without any one of them fwd refuses to start.
#   scripts/test-service.sh [--skip-build]
# Needs root (namespaces, AF_XDP), systemd (systemd-analyze), util-linux (setpriv).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-service.sh: needs root" >&2; exit 1; }
if [ "${1:-}" != --skip-build ]; then cargo build --release -q -p fwd; fi
FWD=$(realpath "${CARGO_TARGET_DIR:-target}/release/fwd")
unit=configs/fwd.service

prefix=fsv$$-
work=$(mktemp -d /tmp/fwd-service.XXXXXX)
fwd_pid=""
cleanup() {
    [ -n "$fwd_pid" ] && kill -KILL "$fwd_pid" 2>/dev/null || true
    scripts/testbed.sh down --prefix "$prefix"
    rm -rf "$work"
}
trap cleanup EXIT

echo "== systemd-analyze verify $unit"
sed "s#/usr/bin/fwd#$FWD#g" "$unit" > "$work/fwd.service"
out=$(systemd-analyze verify --man=no "$work/fwd.service" 2>&1) || {
    echo "$out" >&2; echo "FAIL: systemd-analyze verify failed" >&2; exit 1; }
[ -z "$out" ] || { echo "$out" >&2; echo "FAIL: systemd-analyze verify is not clean" >&2; exit 1; }
sed 's/^ProtectSystem=/ProtectSystm=/' "$work/fwd.service" > "$work/bad.service"
bad=$(systemd-analyze verify --man=no "$work/bad.service" 2>&1 || true)
grep -q "Unknown key 'ProtectSystm'" <<<"$bad" || {
    echo "$bad" >&2; echo "FAIL: a misspelled directive went unnoticed" >&2; exit 1; }
grep -q '^Type=notify$' "$unit" || { echo "FAIL: the unit is not Type=notify" >&2; exit 1; }
grep -q '^ExecReload=/usr/bin/fwd reload ' "$unit" || { echo "FAIL: ExecReload is not fwd reload" >&2; exit 1; }

# The capabilities named by the unit, as setpriv spells them (cap_net_admin -> net_admin).
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr 'A-Z' 'a-z' | sed 's/cap_//g')
[ -n "$caps" ] || { echo "FAIL: no CapabilityBoundingSet in $unit" >&2; exit 1; }
ambient=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr 'A-Z' 'a-z' | sed 's/cap_//g')
[ "$ambient" = "$caps" ] || { echo "FAIL: AmbientCapabilities differs from CapabilityBoundingSet" >&2; exit 1; }
echo "== capabilities: $caps"

scripts/testbed.sh up --prefix "$prefix"
C=${prefix}client; F=${prefix}fw
chmod 755 "$work"
mkdir "$work/run" && chown 65534:65534 "$work/run"
# UMEM = 4 x ring_size x 2 KiB per queue pair: 4 MiB here, under this machine's 8 MiB
# RLIMIT_MEMLOCK (the unit sets LimitMEMLOCK=infinity instead).
cat > "$work/fwd.toml" <<TOML
[ports.a]
interface = "fw-c"
mode = "copy"
[ports.b]
interface = "fw-s"
mode = "copy"
[workers]
cores = [0]
ring_size = 512
[stats]
listen = "127.0.0.1:9900"
log_interval_s = 0
[control]
socket = "$work/run/control.sock"
[log]
level = "warn"
TOML

# Runs fwd as nobody with exactly the capabilities in $1 (comma list, may be empty).
start_fwd() {
    local set=$1 spec="-all"
    for c in ${set//,/ }; do spec+=",+$c"; done
    ip netns exec "$F" setpriv --reuid=65534 --regid=65534 --clear-groups \
        --inh-caps="$spec" --ambient-caps="$spec" --bounding-set="$spec" --no-new-privs \
        "$FWD" run --config "$work/fwd.toml" >"$work/fwd.log" 2>&1 &
    fwd_pid=$!
}
stop_fwd() {
    kill -TERM "$fwd_pid" 2>/dev/null || true
    wait "$fwd_pid" 2>/dev/null || true
    fwd_pid=""
}

full=$(tr ' ' ',' <<<"$caps")
start_fwd "$full"
crossed=0
for _ in $(seq 20); do
    kill -0 "$fwd_pid" 2>/dev/null || break
    if ip netns exec "$C" ping -c 1 -W 1 -q 198.18.0.2 >/dev/null 2>&1; then crossed=1; break; fi
    sleep 0.5
done
if [ "$crossed" != 1 ]; then
    cat "$work/fwd.log" >&2
    echo "FAIL: fwd with only {$caps} did not forward a ping" >&2; exit 1
fi
grep -q "^CapEff:.*0000000000000000" "/proc/$fwd_pid/status" && {
    echo "FAIL: fwd ran without effective capabilities yet forwarded: the test is not testing" >&2; exit 1; }
echo "ok: fwd as uid 65534 with {$caps} forwards"
stop_fwd

for drop in $caps; do
    rest=$(tr ' ' '\n' <<<"$caps" | grep -vx "$drop" | paste -sd, -)
    start_fwd "$rest"
    exited=0
    for _ in $(seq 50); do
        kill -0 "$fwd_pid" 2>/dev/null || { exited=1; break; }
        sleep 0.1
    done
    if [ "$exited" != 1 ]; then
        cat "$work/fwd.log" >&2
        echo "FAIL: fwd without $drop still runs: the capability set is not minimal" >&2; exit 1
    fi
    rc=0; wait "$fwd_pid" || rc=$?
    fwd_pid=""
    [ "$rc" != 0 ] || { echo "FAIL: fwd without $drop exited 0" >&2; exit 1; }
    echo "ok: without $drop fwd refuses to start (exit $rc): $(head -c 200 "$work/fwd.log" | tr '\n' ' ')"
done
echo "service unit: all checks passed"
