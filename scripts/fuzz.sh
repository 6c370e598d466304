#!/usr/bin/env bash
# make fuzz: every cargo-fuzz target of fuzz/ for FUZZ_SECONDS each
# (default 600), on nightly Rust with AddressSanitizer, then a summary of
# the executions and of any crash.
#
#   scripts/fuzz.sh [TARGET...]      # all targets when none is named
#
# Installs what is missing: the nightly toolchain (rustup) and cargo-fuzz
# (from crates.io). Corpora grow in target/fuzz/corpus/TARGET, starting
# from the seeds in fuzz/seeds/TARGET; a crash is written to
# target/fuzz/artifacts/TARGET/ and fails the run. A crash found becomes a
# regression test of the crate it is in (make test), with the input.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${FUZZ_SECONDS:-600}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked

cd "$repo/fuzz"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build --target-dir "$repo/target/fuzz"

summary="${FUZZ_SUMMARY:-$repo/target/fuzz/summary.txt}"
: > "$summary"
failed=0
for target in "${targets[@]}"; do
  corpus="$repo/target/fuzz/corpus/$target"
  artifacts="$repo/target/fuzz/artifacts/$target"
  log="$repo/target/fuzz/$target.log"
  mkdir -p "$corpus" "$artifacts"
  echo "fuzz: $target for ${seconds}s"
  if cargo +nightly fuzz run --target-dir "$repo/target/fuzz" "$target" "$corpus" "seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" > "$log" 2>&1; then
    outcome="no crash"
  else
    outcome="CRASH (see $log and $artifacts)"
    failed=1
  fi
  runs="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 || true)"
  printf '%-12s %s; %s; corpus %s inputs\n' "$target" "${runs:-no summary}" "$outcome" \
    "$(find "$corpus" -type f | wc -l)" | tee -a "$summary"
done
echo "fuzz summary (also in $summary):"
cat "$summary"
exit "$failed"
