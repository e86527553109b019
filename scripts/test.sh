#!/usr/bin/env bash
# Runs every test of fwd: formatting, lints, unit/property/differential tests, and the end-to-end
# tests on network-namespace testbeds. Needs root (network namespaces, AF_XDP, iptables oracle).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "error: scripts/test.sh must run as root (network namespaces, AF_XDP, iptables-legacy)" >&2
  exit 1
fi

scripts/install-deps.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test"
# --test-threads=2: the machine has 2 cores; end-to-end tests build their own namespaces.
cargo test --workspace --release -- --test-threads=2
echo "== example configs: fwd check in a throw-away namespace with the testbed's interface names"
fwd=${CARGO_TARGET_DIR:-target}/release/fwd
ns=fwd-test-configs-$$
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns add "$ns"
ip -n "$ns" link add fw-c type veth peer name fw-s
ip -n "$ns" link add eth1 type veth peer name eth2   # configs/appliance.toml (the package's)
for c in configs/*.toml; do
  ip netns exec "$ns" "$fwd" check --config "$c"
done
"$fwd" rules print configs/stateful.v4 >/dev/null
"$fwd" rules print --family ipv6 configs/stateful.v6 >/dev/null
"$fwd" rules print configs/appliance.rules.v4 >/dev/null
"$fwd" rules print --family ipv6 configs/appliance.rules.v6 >/dev/null
echo "== service unit: systemd-analyze verify, the capability set on the testbed"
scripts/test-service.sh --skip-build
echo "== Debian package: build (cargo deb), dpkg -i into a throw-away root, fwd check, fwd run"
scripts/test-package.sh
echo "== /metrics: promtool check metrics, the Grafana dashboard's queries"
scripts/test-metrics.sh --skip-build
echo "== benchmark traffic kit: TRex profiles in trex-stl-sim, captures through fwd replay"
scripts/test-traffic.sh --skip-build
echo "== testbed benchmarks: rfc2544.sh and scale.sh reach their RESULT lines (smoke, not figures)"
scripts/test-bench.sh --skip-build
echo "== benchmark scripts: syntax"
for f in $(find bench scripts -name '*.sh'); do bash -n "$f"; done
echo "all tests passed"
