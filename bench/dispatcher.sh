#!/usr/bin/env bash
# Dispatcher benchmark (issue 4), against a real control plane and a local HTTPS receiver:
# the receiver's ceiling (a plain client posting the same payloads, no Kubernetes), then 1,000 and
# 10,000 Tasks completed in one burst, 100 completions/s, and the dispatcher's RSS with 100,000
# Tasks in its watch cache. Each line starting RESULT is a figure for BENCHMARKS.md.
#
#   bench/dispatcher.sh [--quick]     --quick: 1,000-task burst and 10,000 cached Tasks only
set -euo pipefail
log_tag=bench
source "$(dirname "$0")/../hack/lib.sh"
cd "$repo_root"

quick=0
[[ ${1:-} == --quick ]] && quick=1
log "building release binaries"
cargo build --release --quiet -p kelos-hooks-dispatcher
cargo build --release --quiet -p kelos-hooks-tests --example dispatcher_bench
export DISPATCHER=$repo_root/target/release/kelos-hooks-dispatcher
driver=$repo_root/target/release/examples/dispatcher_bench

dir=$repo_root/.run/bench-dispatcher
rm -rf "$dir"
trap 'hack/cluster-down.sh --dir "$dir"' EXIT
hack/cluster-up.sh --dir "$dir" >/dev/null
export KELOS_HOOKS_CLUSTER_DIR=$dir

run() { log "dispatcher_bench $*"; "$driver" "$@"; }
run ceiling 10000
run burst 1000
if ((quick)); then
  run cache 10000
else
  run burst 10000
  run backlog 10000
  run rate 3000 100
  run cache 100000
fi
printf 'machine: %s cores, %s; %s\n' "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
