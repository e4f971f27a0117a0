#!/usr/bin/env bash
# The full reliability runs behind docs/reliability.md, on the same test
# bench as the suite (real registries, release build):
#   scripts/reliability.sh [load|crash|disk|hostile|input|fuzz|all]   (default all)
# load:    200 builds from 8 clients against --max-inflight 4 (KILN_LOAD_BUILDS)
# crash:   20 kill -9 rounds at random moments (KILN_CRASH_ROUNDS, KILN_CRASH_SEED)
# disk:    a 48 MiB tmpfs data dir filled by a RUN, then grown
# hostile: the hostile request corpus
# input:   symlink chains, 100,000-LABEL Dockerfiles, 8 unsigned 400 MB bodies, a loud build
# fuzz:    every libFuzzer target for FUZZ_SECONDS (default 300) each
# Prints the FIGURE lines; the suite runs reduced versions of load and crash.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
export KILN_LOAD_BUILDS=${KILN_LOAD_BUILDS:-200} KILN_CRASH_ROUNDS=${KILN_CRASH_ROUNDS:-20}
run_test() {  # run_test TEST-FILE FILTER
  bash scripts/test.sh --release --test "$1" -- --nocapture --test-threads 1 "$2" 2>&1 | tee "/tmp/kiln-reliability-$2.log" |
    grep -oE "(FIGURE|round [0-9]+:|crash test seed|test result|[a-z0-9-]+: [0-9]{3} in ).*" || true
  grep -q "test result: ok" "/tmp/kiln-reliability-$2.log"
}
case $what in
  load) run_test reliability load_ ;;
  crash) run_test reliability kill_9 ;;
  disk) run_test reliability a_full_disk ;;
  hostile) run_test hostile_requests hostile ;;
  input) run_test hostile_input _ ;;
  fuzz) scripts/fuzz.sh "${FUZZ_SECONDS:-300}" ;;
  all)
    for w in hostile input load crash disk fuzz; do "$0" "$w"; done ;;
  *) echo "usage: $0 [load|crash|disk|hostile|input|fuzz|all]" >&2; exit 2 ;;
esac
