#!/usr/bin/env bash
# The chaos soak, run by hand (not by CI): a control plane of its own on 127.0.0.1, two
# dispatcher replicas, a misbehaving receiver, ≥1,000 Tasks, SIGKILLs of the leader and of the
# kube-apiserver and etcd while deliveries are in flight; then every check of
# tests/examples/soak/ and a figures table. Bounded: --deadline (default 20m) inside, and a hard
# `timeout` around it. Runs under `nice -n 10` (machines are shared).
#
#   hack/soak.sh [ARGS…]      ARGS go to the driver, e.g. --tasks 200 --kills 10 (see --help)
set -euo pipefail
log_tag=soak
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,8p' "$0"; exec_help=1; fi
hack/tools.sh >/dev/null || die "the control-plane tools could not be built"
log "build (debug): the binaries and the soak driver"
cargo build -q --bin kelos-hooks-dispatcher --bin kelos-hooks-certs
cargo build -q -p kelos-hooks-tests --example soak
target=${CARGO_TARGET_DIR:-$repo_root/target}
[[ -n ${exec_help:-} ]] && exec "$target/debug/examples/soak" --help

dir=$repo_root/.run/soak-$$
cleanup() { hack/cluster-down.sh --dir "$dir"; }
trap cleanup EXIT
kubeconfig=$(hack/cluster-up.sh --dir "$dir" --watch-pid $$) || die "the control plane could not be started"
export KELOS_HOOKS_CLUSTER_DIR=$dir KELOS_HOOKS_KUBECONFIG=$kubeconfig
log "driver: soak $* (logs: $dir, dispatcher logs in ${TMPDIR:-/tmp})"
t0=$SECONDS
export RUST_LIB_BACKTRACE=0 # the driver's errors are messages, not crashes
status=0
timeout 30m nice -n 10 "$target/debug/examples/soak" "$@" 2>&1 | tee "$dir/soak.log" || status=$?
log "soak finished in $((SECONDS - t0))s with status $status (log: $dir/soak.log)"
exit "$status"
