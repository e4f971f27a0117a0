#!/usr/bin/env bash
# kiln against BuildKit (Debian's docker.io: dockerd 20.10 with its built-in
# BuildKit) and buildah, side by side in one run, on function-shaped
# contexts built from Debian packages (release build, loopback registry):
#   scripts/bench-peers.sh [RUNS] [--install-peers] [extra bench_peers.py args]
# RUNS defaults to 5. Peers that are not installed are left out of the table;
# --install-peers installs docker.io and buildah first (../shared/tools.md §7).
# The Debian base (debootstrap minbase) is kept in /var/tmp/kiln-bench-debian.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
if [ "${1:-}" = --install-peers ]; then
  shift
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io buildah runc >/dev/null
fi
source scripts/lib.sh
bench_setup peers
fixtures/base-images/make-debian.sh "$REG_ADDR" /var/tmp/kiln-bench-debian >/dev/null
python3 scripts/bench_peers.py --kiln target/release/kiln --registry "$REG_ADDR" --work "$BENCH_WORK" --runs "$runs" "$@"
