#!/usr/bin/env bash
# kelos benchmark (issue 13) on the real kelos of tests/src/kelos (kelos-controller and
# kelos-spawner built from ../shared/kelos-src, its own control plane, our release binaries):
# - over N Tasks completed by kelos: kelos's terminal Task status → delivery at the receiver
#   (p50/p99), and the Job's terminal status → delivery;
# - the added latency of our webhooks on kelos's Task creation: kelos-spawner --one-shot creating
#   BATCH Tasks with and without our webhooks registered, alternately, in the same run, plus the
#   API server's own histogram of our Task CREATE webhook.
# Bounded: about 3 minutes here (most of it starting the control plane and kelos). Lines starting
# RESULT are the figures for BENCHMARKS.md.
#
#   bench/kelos.sh [N [ROUNDS [BATCH]]]      defaults: 60 Tasks, 3 rounds of 50 Tasks
set -euo pipefail
log_tag=bench
source "$(dirname "$0")/../hack/lib.sh"
cd "$repo_root"

n=${1:-60} rounds=${2:-3} batch=${3:-50}
hack/tools.sh >/dev/null || die "the control-plane tools or kelos could not be built"
log "building release binaries"
cargo build --release --quiet -p kelos-hooks-admission -p kelos-hooks-dispatcher
cargo build --release --quiet -p kelos-hooks-tests --example kelos_bench
cargo build --quiet --bin kelos-hooks-certs # hack/cluster-up.sh
export KELOS_HOOKS_BIN_DIR=${CARGO_TARGET_DIR:-$repo_root/target}/release

log "kelos_bench all $n $rounds $batch"
timeout 600 "$KELOS_HOOKS_BIN_DIR/examples/kelos_bench" all "$n" "$rounds" "$batch"
printf 'machine: %s cores, %s; %s\n' "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
