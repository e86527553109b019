#!/usr/bin/env bash
# Installs what building, testing and running fwd need on a fresh Debian machine. Idempotent.
#   scripts/install-deps.sh          build + test + demo dependencies
#   scripts/install-deps.sh --bench  also the benchmark comparisons (dpdk-dev, trafgen, perf)
set -euo pipefail

pkgs=(
  # building xsk-rs (libxdp-sys with its vendored libbpf, bindgen)
  build-essential pkg-config libelf-dev zlib1g-dev clang libclang-dev m4
  # the testbed and the end-to-end tests
  iproute2 ethtool iputils-ping iperf3 socat netcat-openbsd tcpdump curl
  procps diffutils   # kill and sysctl (called as programs by the tests), cmp
  # the oracles: iptables-legacy for the rules differential test, conntrack for the listing format
  iptables conntrack
  # crates/sync's interop tests: the real conntrackd on the other end of the sync link
  conntrackd
  # configs/fwd.service: systemd-analyze verify (no running systemd needed), setpriv
  systemd util-linux
  # the Debian package (scripts/package.sh, test-package.sh): dpkg-shlibdeps, man to read the pages
  dpkg-dev man-db
  # the benchmark traffic kit (scripts/test-traffic.sh): python3 with venv for TRex's client
  python3 python3-venv
  # trafgen: the generator of bench/rfc2544.sh and bench/scale.sh (scripts/test-bench.sh)
  netsniff-ng
  # /metrics checked by Prometheus' own linter, the Grafana dashboard by jq (test-metrics.sh)
  prometheus jq
)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(dpdk-dev netsniff-ng linux-perf bridge-utils)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
