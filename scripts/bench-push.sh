#!/usr/bin/env bash
# Push throughput against the registry's own single-PUT rate (release build):
#   scripts/bench-push.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/setup-host.sh >/dev/null
cargo build --release --quiet
source scripts/lib.sh
work=$(mktemp -d /tmp/kiln-pushbench.XXXXXX)
chmod 755 "$work"
trap 'kiln_cleanup; rm -rf "$work"' EXIT
start_registry "$work/registry"
fixtures/base-images/make-busybox.sh "$REG_ADDR" "$work/base" >/dev/null
cd scripts && python3 bench_push.py --kiln ../target/release/kiln --registry "$REG_ADDR" --work "$work" --runs "$runs"
