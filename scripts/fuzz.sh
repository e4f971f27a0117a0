#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/fuzz_targets, harnesses in
# src/api/fuzzing.rs) for SECONDS each, starting from the seed corpus in
# fuzz/corpus/<target> plus the regressions; new inputs go to
# fuzz/corpus-work/<target> (not committed), crashes to fuzz/artifacts/<target>.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default 60 s, every target)
# Needs the nightly toolchain (rustup) and cargo-fuzz (installed if missing).
# A crash: minimise it (cargo +nightly fuzz tmin TARGET FILE), fix the bug,
# and copy the input to fuzz/regressions/<target>/ so tests/fuzz_regressions.rs
# keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
rustup toolchain list | grep -q '^nightly' || { echo "fuzz.sh: needs the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build --fuzz-dir fuzz
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
  echo "== $t: ${seconds}s"
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus-work/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" 2>&1 | tee "fuzz/artifacts/$t.log" | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|thread .* panicked)"; then
    failed+=("$t")
  fi
  grep -q "stat::number_of_executed_units" "fuzz/artifacts/$t.log" || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes or errors in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: every target ran ${seconds}s without a crash"
