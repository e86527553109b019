#!/usr/bin/env bash
# bench/classify/all.sh [DATA_DIR]: run.sh on all nine ClassBench sets; the RESULT lines at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${1:-$HERE/../../../shared/data/classbench}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for SIZE in 1000 10000 100000; do
    for SET in acl1 fw1 ipc1; do
        echo "=== ${SET}_$SIZE"
        "$HERE/run.sh" "$DATA/${SET}_$SIZE" "$DATA/${SET}_${SIZE}_trace" | tee -a "$LOG"
    done
done
echo "=== summary"
grep '^RESULT' "$LOG"
