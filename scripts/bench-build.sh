#!/usr/bin/env bash
# Whole-build timings against a real loopback registry (release build):
#   scripts/bench-build.sh [RUNS]      (default 5)
# Reports medians of: the E2E context cold (empty data dir), warm (same
# context again), a handler change (one source file edited, rebuilt and
# pushed), and the cost of one RUN step as root and as an unprivileged user
# (20 `RUN` steps vs none, skipPush so that only step execution is measured);
# then the templates' cross-compile shape built cold for one platform and for
# linux/amd64 + linux/arm64, and one RUN step of the foreign platform under
# qemu emulation (when a binfmt_misc handler is registered).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source scripts/lib.sh
bench_setup benchmark
python3 scripts/bench_build.py --kiln target/release/kiln --registry "$REG_ADDR" --work "$BENCH_WORK" --runs "$runs"
