#!/usr/bin/env bash
# Smoke test of the testbed benchmarks (not a measurement: a second per trial, shared cores):
# bench/rfc2544.sh (fwd and the kernel bridge, 64 and 1518 bytes) and bench/scale.sh (1 worker)
# must run to their RESULT line, with every key present and forwarding seen (delivered pps > 0;
# not NDR/PDR, which a busy machine may push to 0).
# dpdk-testpmd is left out here (dpdk-dev is installed only with install-deps.sh --bench).
#   scripts/test-bench.sh [--skip-build]
set -euo pipefail
cd "$(dirname "$0")/.."
skip=()
[ "${1:-}" = --skip-build ] && skip=(--skip-build)
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$(bench/rfc2544.sh "${skip[@]}" --sizes "64 1518" --duts "fwd bridge" --duration 1 --trials 3 \
      --prefix "ftb$$-" 2>/dev/null | tail -1)
echo "$out"
[[ "$out" == "RESULT "* ]] || fail "rfc2544.sh printed no RESULT line"
for dut in fwd bridge; do
    for size in 64 1518; do
        for k in ndr_pps pdr_pps mfr_pps p50_us p99_us; do
            grep -qE "(^| )${dut}_${size}_${k}=[0-9]+( |$)" <<<"$out" || fail "rfc2544.sh: no ${dut}_${size}_${k}"
        done
        mfr=$(sed -nE "s/.*${dut}_${size}_mfr_pps=([0-9]+).*/\1/p" <<<"$out")
        [ "$mfr" -gt 0 ] || fail "rfc2544.sh: $dut forwarded nothing at $size bytes"
    done
done

out=$(bench/scale.sh "${skip[@]}" --max-workers 1 --duration 1 --runs 1 --prefix "fts$$-" 2>/dev/null | tail -1)
echo "$out"
[[ "$out" =~ ^RESULT\ cores=[0-9]+\ w1_pps=([0-9]+)\ scaling=[0-9.]+$ ]] || fail "scale.sh: RESULT line: $out"
[ "${BASH_REMATCH[1]}" -gt 0 ] || fail "scale.sh: nothing crossed fwd with 1 worker"
# a bad option is refused, not ignored
if bench/scale.sh --skip-build --max-workers 0 2>/dev/null; then fail "scale.sh accepted --max-workers 0"; fi
if bench/rfc2544.sh --skip-build --sizes 63 2>/dev/null; then fail "rfc2544.sh accepted a 63-byte frame"; fi
echo "benchmarks: RESULT lines ok"
