#!/usr/bin/env bash
# Admission server benchmark (issue 3): TLS keep-alive load against the mutate and validate
# endpoints with realistic AdmissionReview bodies, beside the /ceiling baseline (same server stack:
# reads the body, returns a fixed allowed response without parsing) measured in the same run.
# /ceiling exists only in a build with the `bench-ceiling` feature, which this script makes.
#
#   bench/admission.sh [--duration 10s] [--rate 10000] [--rounds 3]
#
# Saturation figures are medians over --rounds rounds; each round measures the ceiling and the
# endpoint back to back with the same body, so both see the same machine state.
#
# Needs a control plane (started here, stopped at exit) because /readyz waits for the TaskSpawner
# cache. Installs wrk (Debian) and oha (crates.io) when missing. Prints a Markdown table.
set -euo pipefail
log_tag=bench
source "$(dirname "$0")/../hack/lib.sh"
cd "$repo_root"

duration=10s rate=10000 rounds=3
while (($#)); do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v oha >/dev/null || cargo install oha --locked --version 1.16.0
log "building release binaries (admission with the bench-ceiling feature)"
cargo build --release --quiet -p kelos-hooks-admission -p kelos-hooks-certs --features kelos-hooks-admission/bench-ceiling
bin=$repo_root/target/release

source bench/admission-common.sh
dir=$repo_root/.run/bench-admission
rm -rf "$dir"; mkdir -p "$dir"
trap bench_cleanup EXIT
bench_cluster_up
bench_admission_start

rss() { awk -v k="$1:" '$1==k {print $2/1024}' "/proc/$server_pid/status"; } # MiB
# A mutate request must produce a patch, or the benchmark measures the wrong path.
# Task validation sees what the API server sends after mutation: the Task with the patch applied.
# validate-task-uncached.json names a spawner the cache does not hold, so its snapshot is validated
# in full (the worst case: normally the annotation equals the cached snapshot, see BENCHMARKS.md).
curl -fsS -k -H 'content-type: application/json' --data-binary @"$dir/bodies/mutate-task.json" "$url/mutate/tasks" |
  python3 -c '
import base64, copy, json, sys
r = json.load(sys.stdin)["response"]
assert r["allowed"] and r.get("patch"), r
review = json.load(open(sys.argv[1]))
obj = review["request"]["object"]
for op in json.loads(base64.b64decode(r["patch"])):
    assert op["op"] == "add", op
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    target = obj
    for p in parents:
        target = target[p]
    target[last] = op["value"]
json.dump(review, open(sys.argv[2], "w"), separators=(",", ":"))
review["request"]["object"]["metadata"]["labels"]["kelos.dev/taskspawner"] = "not-cached"
json.dump(review, open(sys.argv[3], "w"), separators=(",", ":"))' "$dir/bodies/mutate-task.json" \
    "$dir/bodies/validate-task.json" "$dir/bodies/validate-task-uncached.json" ||
  die "mutate did not return a patch"
rss_idle=$(rss VmRSS)

wrk_run() { # endpoint body connections -> "rps p50_ms p99_ms"
  local threads=$(( $3 < 2 ? 1 : 2 ))
  BODY=$dir/bodies/$2 wrk -t"$threads" -c"$3" -d"$duration" --latency -s bench/post.lua "$url/$1" |
    python3 -c '
import re, sys
t = sys.stdin.read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def lat(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, t, re.M); return float(m.group(1)) * unit[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
assert not errs, "non-2xx responses: " + errs.group(1)
print(f"{rps:.0f} {lat(50):.3f} {lat(99):.3f}")'
}

# Each endpoint is compared with the ceiling posting the same body, measured just before it:
# bodies differ in size (3.4 to 7 KB) and reading them is part of the ceiling's cost. This machine
# is shared and noisy, so each pair is measured --rounds times; the table shows medians (the
# ratio column is the median of the per-round ratios).
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
printf '\n| endpoint | body | c | requests/s | ceiling, same body | vs ceiling (median of %s) | ratios per round | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|\n' "$rounds"
for c in 1 16 64; do
  for case in "mutate/tasks mutate-task.json" "validate/tasks validate-task.json" \
              "validate/tasks validate-task-uncached.json" "validate/taskspawners validate-taskspawner.json"; do
    set -- $case
    ceilings=() rpss=() ratios=() p50s=() p99s=()
    for _ in $(seq "$rounds"); do
      read -r ceiling _ _ < <(wrk_run ceiling "$2" "$c")
      read -r rps p50 p99 < <(wrk_run "$1" "$2" "$c")
      ceilings+=("$ceiling") rpss+=("$rps") p50s+=("$p50") p99s+=("$p99")
      ratios+=("$(python3 -c "print(round($rps / $ceiling * 100))")")
    done
    printf '| /%s | %s | %s | %.0f | %.0f | %.0f%% | %s | %.3f | %.3f |\n' "$1" "$2" "$c" \
      "$(median "${rpss[@]}")" "$(median "${ceilings[@]}")" "$(median "${ratios[@]}")" \
      "$(IFS=/; echo "${ratios[*]}")" "$(median "${p50s[@]}")" "$(median "${p99s[@]}")"
  done
done
rss_load=$(rss VmHWM)

printf '\n| fixed rate %s/s, %s | requests/s | success | p50 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|---|\n' "$rate" "$duration"
for case in "ceiling mutate-task.json" "mutate/tasks mutate-task.json" "validate/tasks validate-task.json" \
            "validate/taskspawners validate-taskspawner.json"; do
  set -- $case
  oha --no-tui --insecure -q "$rate" -z "$duration" -c 64 --latency-correction -m POST \
    -T application/json -D "$dir/bodies/$2" --output-format json "$url/$1" |
    python3 -c '
import json, sys
r = json.load(sys.stdin); s = r["summary"]; p = r["latencyPercentiles"]
print("| /%s | %.0f | %.4f | %.3f | %.3f | %.3f |" % (sys.argv[1], s["requestsPerSec"], s["successRate"],
      p["p50"] * 1e3, p["p99"] * 1e3, p["p99.9"] * 1e3))' "$1"
done
rss_load=$(rss VmHWM)
printf '\nRSS: idle %.1f MiB, peak under load (VmHWM) %.1f MiB\n' "$rss_idle" "$rss_load"
bench_machine
