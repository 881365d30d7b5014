#!/usr/bin/env bash
# A bounded fuzz run for CI: each fuzz target for FUZZ_SECONDS (default 45 s) from its
# seeds and kept regressions. Installs cargo-fuzz into ~/.cache/fleetgate/tools when it
# is missing and builds into ~/.cache/fleetgate/fuzz-target, so a second run only fuzzes.
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/: fix it, and
# keep the input in fuzz/regressions/<target>/ (tests/offline/fuzz_regressions.rs replays them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/tools
target=${FLEETGATE_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetgate/fuzz-target}
seconds=${FUZZ_SECONDS:-45}
cargo_fuzz_version=0.13.2
export PATH="$tools/bin:$PATH"

log() { echo "fuzz-ci: $*" >&2; }

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  log "installing cargo-fuzz $cargo_fuzz_version into $tools"
  cargo install --locked --quiet --root "$tools" "cargo-fuzz@$cargo_fuzz_version"
fi
rustup run nightly rustc --version >/dev/null 2>&1 || {
  log "the nightly toolchain is required (rustup toolchain install nightly)"
  exit 1
}

cd "$root/fuzz"
for fuzz_target in parse_validate structured; do
  corpus=$(mktemp -d)
  # Seeds and regressions are read-only inputs; new corpus entries go to the scratch dir.
  inputs=("$corpus" "$root/fuzz/seeds")
  [ -d "$root/fuzz/regressions/$fuzz_target" ] && inputs+=("$root/fuzz/regressions/$fuzz_target")
  log "$fuzz_target: building"
  cargo +nightly fuzz build --target-dir "$target" "$fuzz_target" 2>&1 | tail -n 3 >&2
  log "$fuzz_target: fuzzing for ${seconds}s"
  set +e
  cargo +nightly fuzz run --target-dir "$target" "$fuzz_target" "${inputs[@]}" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss|==|SUMMARY|Failing input|.*panicked)' >&2
  status=${PIPESTATUS[0]}
  set -e
  rm -rf "$corpus"
  if [ "$status" -ne 0 ]; then
    log "$fuzz_target: FAILED (input kept in fuzz/artifacts/$fuzz_target/)"
    exit 1
  fi
done
log "no crash"
