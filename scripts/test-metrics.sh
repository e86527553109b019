#!/usr/bin/env bash
# Checks fwd's Prometheus exposition and the Grafana dashboard that plots it:
#  1. fwd runs the stateful example on the netns testbed, traffic crosses (and some is dropped);
#     its /metrics and `fwd stats --prometheus` pass `promtool check metrics` with nothing to
#     say (Prometheus' own naming linter), and a copy with a misnamed counter does not;
#  2. configs/grafana-fwd.json parses (jq), every panel has a query, and every metric it
#     queries is one that fwd exposes (so a renamed metric breaks this test, not a dashboard).
#   scripts/test-metrics.sh [--skip-build]
# Needs root, promtool (Debian package prometheus), jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-metrics.sh: needs root" >&2; exit 1; }
if [ "${1:-}" != --skip-build ]; then cargo build --release -q -p fwd; fi
FWD=$(realpath "${CARGO_TARGET_DIR:-target}/release/fwd")
prefix=fmt$$-
work=$(mktemp -d /tmp/fwd-test-metrics.XXXXXX)
fwd_pid=""
cleanup() {
    [ -n "$fwd_pid" ] && kill -TERM "$fwd_pid" 2>/dev/null && wait "$fwd_pid" 2>/dev/null || true
    scripts/testbed.sh down --prefix "$prefix"
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

scripts/testbed.sh up --prefix "$prefix"
C=${prefix}client; F=${prefix}fw
sed "s#^socket = .*#socket = \"$work/ctl.sock\"#" configs/testbed-firewall.toml > "$work/fwd.toml"
cp configs/stateful.v4 configs/stateful.v6 "$work/"
ip netns exec "$F" "$FWD" --config "$work/fwd.toml" 2>"$work/fwd.log" &
fwd_pid=$!
for _ in $(seq 100); do
    "$FWD" stats --socket "$work/ctl.sock" >/dev/null 2>&1 && break
    kill -0 "$fwd_pid" 2>/dev/null || break
    sleep 0.1
done
"$FWD" stats --socket "$work/ctl.sock" >/dev/null || { cat "$work/fwd.log" >&2; fail "fwd did not start"; }
ip netns exec "$C" ping -c 3 -i 0.2 -q 198.18.0.2 >/dev/null || fail "no ping through fwd"
# tcp to port 22 is REJECTed by the example rules: a reply and a rule counter
ip netns exec "$C" timeout 2 bash -c 'echo > /dev/tcp/198.18.0.2/22' 2>/dev/null || true

echo "== promtool check metrics"
ip netns exec "$F" curl -sf "http://127.0.0.1:9900/metrics" > "$work/metrics.txt" || fail "no /metrics"
grep -q '^fwd_rx_packets_total{port="a"} [1-9]' "$work/metrics.txt" || fail "/metrics shows no traffic"
"$FWD" stats --socket "$work/ctl.sock" --prometheus > "$work/stats.txt"
for f in metrics.txt stats.txt; do
    out=$(promtool check metrics < "$work/$f" 2>&1) || fail "promtool on $f: $out"
    [ -z "$out" ] || fail "promtool has remarks on $f: $out"
    echo "ok: $f ($(grep -c '^# TYPE' "$work/$f") metric families) is clean"
done
sed 's/fwd_rx_packets_total/fwd_rx_packets/g' "$work/metrics.txt" > "$work/bad.txt"
bad=$(promtool check metrics < "$work/bad.txt" 2>&1 || true)
grep -q "fwd_rx_packets" <<<"$bad" || fail "promtool did not flag a counter without _total: $bad"

echo "== configs/grafana-fwd.json"
dash=configs/grafana-fwd.json
jq -e '.panels | length > 0' "$dash" >/dev/null || fail "$dash has no panels"
jq -e '[.panels[] | (.targets | length) > 0] | all' "$dash" >/dev/null || fail "a panel without a query"
exposed=$(grep -v '^#' "$work/metrics.txt" | sed 's/[{ ].*//' | sort -u)
queried=$(jq -r '.panels[].targets[].expr' "$dash" | grep -o 'fwd_[a-z_]*' | sort -u)
[ -n "$queried" ] || fail "$dash queries no fwd metric"
for m in $queried; do
    grep -qx "$m" <<<"$exposed" || fail "$dash queries $m, which fwd does not expose"
done
echo "ok: $(wc -w <<<"$queried") metrics queried by the dashboard, all exposed"
echo "metrics: all checks passed"
