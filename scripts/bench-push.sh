#!/usr/bin/env bash
# Push throughput against the registry's own single-PUT rate (release build):
#   scripts/bench-push.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source scripts/lib.sh
bench_setup pushbench
cd scripts && python3 bench_push.py --kiln ../target/release/kiln --registry "$REG_ADDR" --work "$BENCH_WORK" --runs "$runs"
