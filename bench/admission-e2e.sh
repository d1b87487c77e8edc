#!/usr/bin/env bash
# What users feel of the admission server: the latency of a Task CREATE and of a TaskSpawner
# CREATE (a `kubectl apply` of a new spawner) through a real kube-apiserver, with the admission
# configuration
#   none      nothing registered (the baseline)
#   two-call  webhooks.tasks.guard=Webhook: TaskSpawner webhook, Task mutation, Task validation
#             (two webhook calls per Task CREATE; the setup before the ValidatingAdmissionPolicy)
#   one-call  the chart's default: TaskSpawner webhook, Task mutation, and the Task annotation
#             rules as a ValidatingAdmissionPolicy (one webhook call per Task CREATE)
# alternating in every round, at 1 and at 200 requests/s, from one client with keep-alive
# (admission/examples/apply_latency.rs). Prints p50/p99 per configuration and the difference to
# none, and how many calls reached the admission server per request (from its /metrics).
#
#   bench/admission-e2e.sh [--rounds 2] [--slow-tasks 40] [--slow-spawners 15]
#                          [--fast-tasks 1000] [--fast-spawners 200]
#
# The defaults take 10–12 minutes on 2 cores: at 1/s each request costs a second, so the slow
# counts are small (their p99 is close to the maximum of 80 Tasks / 30 TaskSpawners). After each
# 200/s run the API server gets a few seconds to settle before the next configuration.
set -euo pipefail
log_tag=bench-e2e
source "$(dirname "$0")/../hack/lib.sh"
cd "$repo_root"

rounds=2 slow_tasks=40 slow_spawners=15 fast_tasks=1000 fast_spawners=200
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --slow-tasks) slow_tasks=$2; shift 2 ;;
    --slow-spawners) slow_spawners=$2; shift 2 ;;
    --fast-tasks) fast_tasks=$2; shift 2 ;;
    --fast-spawners) fast_spawners=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done

hack/tools.sh >/dev/null
log "building release binaries and the latency client"
cargo build --release --quiet -p kelos-hooks-admission -p kelos-hooks-certs --bins
cargo build --release --quiet -p kelos-hooks-admission --example apply_latency
bin=$repo_root/target/release
source bench/admission-common.sh
dir=$repo_root/.run/bench-admission-e2e
rm -rf "$dir"; mkdir -p "$dir/lat"
trap bench_cleanup EXIT
bench_cluster_up
bench_admission_start
export KUBECONFIG=$kubeconfig

for guard in Webhook ValidatingAdmissionPolicy; do
  hack/webhook-configs.sh --url "$url" --ca-file "$dir/pki/ca.crt" --name bench --task-guard "$guard" \
    >"$dir/config-$guard.yaml"
done
cp "$dir/config-Webhook.yaml" "$dir/config-two-call.yaml"
cp "$dir/config-ValidatingAdmissionPolicy.yaml" "$dir/config-one-call.yaml"

# Calls the admission server answered so far, per endpoint: "mutate validate-tasks validate-taskspawners".
calls() {
  curl -fsS "http://127.0.0.1:$mport/metrics" | python3 -c '
import re, sys
n = {"mutate-tasks": 0, "validate-tasks": 0, "validate-taskspawners": 0}
for line in sys.stdin:
    m = re.match(r"kelos_hooks_admission_requests_total\{endpoint=\"([a-z-]+)\".* (\d+)$", line)
    if m: n[m.group(1)] += int(m.group(2))
print(n["mutate-tasks"], n["validate-tasks"], n["validate-taskspawners"])'
}

probe_task() { # ANNOTATIONS-JSON -> the dry-run create's stored object, or the error
  python3 -c 'import json, sys; t = json.load(open(sys.argv[1])); t["metadata"]["name"] = "probe"
t["metadata"]["annotations"] = json.loads(sys.argv[2]); print(json.dumps(t))' "$dir/bodies/task.json" "$1" |
    kubectl -n bench create --dry-run=server -o json -f - 2>&1 || true
}

# Switches to configuration $1 and waits until the API server applies it, each part seen in
# action: the TaskSpawner webhook refusing a blocked address, the mutation adding the snapshot,
# the Task rules refusing forged delivery state, and Task validation reaching the server or not.
use_config() {
  kubectl delete --ignore-not-found -f "$dir/config-two-call.yaml" >/dev/null 2>&1 || true
  kubectl delete --ignore-not-found -f "$dir/config-one-call.yaml" >/dev/null 2>&1 || true
  [[ $1 == none ]] || kubectl apply -f "$dir/config-$1.yaml" >/dev/null
  local want_hooks=true want_validate=0 deadline=$((SECONDS + 60))
  [[ $1 == none ]] && want_hooks=false
  [[ $1 == two-call ]] && want_validate=1
  while ((SECONDS < deadline)); do
    local spawner refused mutated forged before after
    spawner=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); s["metadata"]["name"] = "probe"
s["spec"]["onCompletion"] = {"hooks": [{"name": "a", "webhook": {"url": "https://10.0.0.1/x"}}]}; print(json.dumps(s))' \
      "$dir/bodies/taskspawner.json")
    refused=false; kubectl apply --dry-run=server -f - <<<"$spawner" >/dev/null 2>&1 || refused=true
    read -r _ before _ < <(calls)
    mutated=false; probe_task '{}' | grep -q 'kelos.dev/on-completion' && mutated=true
    read -r _ after _ < <(calls)
    forged=false; probe_task '{"kelos.dev/webhook-report-phase": "Succeeded"}' | grep -q 'may only be changed' && forged=true
    if [[ $refused == "$want_hooks" && $mutated == "$want_hooks" && $forged == "$want_hooks" &&
          $((after - before)) == "$want_validate" ]]; then
      sleep 2 # let every API server watch catch up, not just the one that answered
      return
    fi
    sleep 0.5
  done
  die "configuration $1 not in effect after 60s (spawner refused $refused, mutated $mutated, forged refused $forged, validate calls $((after - before)))"
}

# run RATE OBJECT CONFIG ROUND COUNT: one measured run; appends its summary to $dir/summary.
run() {
  local rate=$1 object=$2 config=$3 round=$4 count=$5 template=task.json c0 c1
  [[ $object == spawners ]] && template=taskspawner.json
  read -r -a c0 < <(calls)
  local summary
  summary=$("$bin/examples/apply_latency" "$object" --namespace bench --template "$dir/bodies/$template" \
    --rate "$rate" --count "$count" --prefix "$object-$config-$rate-$round" \
    --out "$dir/lat/$rate-$object-$config-$round.txt")
  read -r -a c1 < <(calls)
  local per=$((count + 5)) ratios # + the warm-up requests
  ratios=$(awk -v n="$per" -v a="$((c1[0] - c0[0]))" -v b="$((c1[1] - c0[1]))" -v c="$((c1[2] - c0[2]))" \
    'BEGIN { printf "%.2f/%.2f/%.2f", a / n, b / n, c / n }')
  echo "$rate $object $config $round $summary calls=$ratios" | tee -a "$dir/summary" >&2
  [[ $rate == 1 ]] || sleep 10 # let the API server, etcd and the cache settle after a burst
}

started=$SECONDS
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rate in 1 200; do
  for round in $(seq "$rounds"); do
    # Tasks for every configuration, then TaskSpawners: a burst of new spawners keeps the API
    # server and the admission server's cache (which validates each one) busy after it ends.
    for object in tasks spawners; do
      case $rate-$object in
        1-tasks) count=$slow_tasks ;; 1-spawners) count=$slow_spawners ;;
        *-tasks) count=$fast_tasks ;; *) count=$fast_spawners ;;
      esac
      for config in none two-call one-call; do
        use_config "$config"
        run "$rate" "$object" "$config" "$round" "$count"
      done
    done
  done
done
log "measured in $((SECONDS - started))s; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$dir" <<'PY'
import collections, glob, os, re, sys
d = sys.argv[1]
samples = collections.defaultdict(list)
p50s = collections.defaultdict(list)
calls = {}
failed = collections.Counter()
def pct(xs, p):
    xs = sorted(xs); return xs[max(1, -(-len(xs) * p // 100)) - 1] / 1000
for f in sorted(glob.glob(f"{d}/lat/*.txt")):
    rate, obj, config, _ = re.match(r"(\d+)-(\w+)-(none|two-call|one-call)-(\d+)\.txt", os.path.basename(f)).groups()
    xs = [int(x) for x in open(f).read().split()]
    samples[(obj, int(rate), config)] += xs
    p50s[(obj, int(rate), config)].append(pct(xs, 50))
for line in open(f"{d}/summary"):
    rate, obj, config, _, *rest = line.split()
    fields = dict(t.split("=", 1) for t in rest)
    calls[(obj, int(rate), config)] = fields["calls"]
    failed[(obj, int(rate), config)] += int(fields["failed"])
print("\n| request | rate | configuration | n (failed) | p50 ms | p99 ms | p50 − none | p99 − none | p50 per round | admission calls per request (mutate / validate-tasks / validate-taskspawners) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for obj, name in [("tasks", "Task CREATE (2.7 KB)"), ("spawners", "TaskSpawner CREATE (8 hooks)")]:
    for rate in (1, 200):
        base = samples[(obj, rate, "none")]
        for config in ("none", "two-call", "one-call"):
            xs = samples[(obj, rate, config)]
            d50 = pct(xs, 50) - pct(base, 50); d99 = pct(xs, 99) - pct(base, 99)
            delta = lambda v: "—" if config == "none" else f"{v:+.2f}"
            print(f"| {name} | {rate}/s | {config} | {len(xs)} ({failed[(obj, rate, config)]}) | {pct(xs, 50):.2f} | {pct(xs, 99):.2f} | "
                  f"{delta(d50)} | {delta(d99)} | {' / '.join(f'{v:.2f}' for v in p50s[(obj, rate, config)])} | "
                  f"{calls.get((obj, rate, config), '?')} |")
PY
bench_machine
