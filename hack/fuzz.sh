#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every target in fuzz/, one after the other.
#
#   hack/fuzz.sh [SECONDS]     SECONDS per target (default 60)
#
# Seeds the corpora (fuzz/seed.py), builds the targets (nightly), runs each for SECONDS, then
# minimises its corpus (`cargo fuzz cmin`) and prints per target: executions, coverage (edges:
# libFuzzer's final `cov:`), corpus size and crashes. A crash leaves its input in
# fuzz/artifacts/<target>/; fix it and keep the input in fuzz/regressions/<target>/, which
# `cargo test` replays with the corpus on stable. Exits 1 when any target crashed.
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_SANITIZER (default none: the code is
# unsafe-free, so no AddressSanitizer, about twice the executions; `address` to use it),
# FUZZ_JOBS_NICE (default 10: other work on the machine comes first).
set -euo pipefail
log_tag=fuzz
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "usage: hack/fuzz.sh [SECONDS per target]"
sanitizer=${FUZZ_SANITIZER:-none}
nice=(nice -n "${FUZZ_JOBS_NICE:-10}")
cargo +nightly --version >/dev/null 2>&1 || die "the nightly toolchain is missing: rustup toolchain install nightly"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz from crates.io (once per machine)"
  cargo install --locked cargo-fuzz >&2 || die "cargo-fuzz could not be installed"
fi

python3 fuzz/seed.py >&2
log "build (sanitizer: $sanitizer)"
"${nice[@]}" cargo +nightly fuzz build -s "$sanitizer" >&2
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"

mkdir -p fuzz/logs
summary=fuzz/logs/summary.md
{
  echo "| target | seconds | executions | exec/s | coverage (edges) | corpus after cmin | crashes |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
} >"$summary"
crashed=0
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t artifacts=fuzz/artifacts/$t run_log=fuzz/logs/$t.log
  mkdir -p "$corpus" "$artifacts"
  extra=()
  [[ -d fuzz/regressions/$t ]] && extra+=("fuzz/regressions/$t")
  before=$(find "$artifacts" -type f | wc -l)
  log "$t: ${seconds}s"
  # libFuzzer writes new inputs to the first directory and only reads the others.
  "${nice[@]}" cargo +nightly fuzz run -s "$sanitizer" "$t" "$corpus" "${extra[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$run_log" 2>&1 || true
  crashes=$(($(find "$artifacts" -type f | wc -l) - before))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$run_log" | tail -1 | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$run_log" | tail -1 | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$run_log" | tail -1 | grep -o '[0-9]*$' || true)
  if ((crashes > 0)); then
    crashed=1
    log "$t: CRASH, input(s) in $artifacts (log: $run_log)"
  else
    "${nice[@]}" cargo +nightly fuzz cmin -s "$sanitizer" "$t" "$corpus" >>"$run_log" 2>&1 ||
      log "$t: cmin failed (log: $run_log)"
  fi
  size=$(find "$corpus" -type f | wc -l)
  echo "| $t | $seconds | ${execs:-?} | ${rate:-?} | ${cov:-?} | $size | $crashes |" >>"$summary"
done
cat "$summary"
log "table in $summary; per-target logs in fuzz/logs/"
exit "$crashed"
