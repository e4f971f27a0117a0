#!/usr/bin/env bash
# Whole-build timings against a real loopback registry (release build):
#   scripts/bench-build.sh [RUNS]      (default 5)
# Reports medians of: the E2E context cold (empty data dir), warm (same
# context again), a handler change (one source file edited, rebuilt and
# pushed), and the cost of one RUN step as root and as an unprivileged user
# (20 `RUN` steps vs none, skipPush so that only step execution is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/setup-host.sh >/dev/null
cargo build --release --quiet
source scripts/lib.sh
work=$(mktemp -d /tmp/kiln-benchmark.XXXXXX)
chmod 755 "$work"
trap 'kiln_cleanup; rm -rf "$work"' EXIT
start_registry "$work/registry"
fixtures/base-images/make-busybox.sh "$REG_ADDR" "$work/base" >/dev/null
python3 scripts/bench_build.py --kiln target/release/kiln --registry "$REG_ADDR" --work "$work" --runs "$runs"
