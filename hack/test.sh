#!/usr/bin/env bash
# Every test: lints, unit tests, and the end-to-end tests against a real kube-apiserver + etcd.
# Builds the control-plane tools first when the per-machine cache is empty (see hack/tools.sh).
#
#   hack/test.sh                 everything (what CI runs)
#   hack/test.sh -- ARGS…        pass ARGS to `cargo test` (e.g. -- -p kelos-hooks-tests foundation)
set -euo pipefail
log_tag=test
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

# The whole run shows what passing tests printed too: the real-kelos tests log the kelos commit
# and how each Task reached its terminal phase.
cargo_args=(--workspace -- --show-output)
[[ ${1:-} == -- ]] && { shift; cargo_args=("$@"); }

t0=$SECONDS
log "control-plane tools"
hack/tools.sh >/dev/null || die "the control-plane tools could not be built: end-to-end tests cannot run"
log "lint: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "build"
cargo build --workspace --bins --tests --quiet

dir=$repo_root/.run/test-cluster-$$
cleanup() { hack/cluster-down.sh --dir "$dir"; }
trap cleanup EXIT
log "starting the control plane"
kubeconfig=$(hack/cluster-up.sh --dir "$dir" --watch-pid $$) || die "the control plane could not be started"
export KELOS_HOOKS_CLUSTER_DIR=$dir KELOS_HOOKS_KUBECONFIG=$kubeconfig
"$(cat "$dir/tools")/kubectl" --kubeconfig "$kubeconfig" version

log "cargo test ${cargo_args[*]}"
cargo test "${cargo_args[@]}" 2>&1 | tee "$dir/cargo-test.log"
log "all tests passed in $((SECONDS - t0))s"
