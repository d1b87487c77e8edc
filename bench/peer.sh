#!/usr/bin/env bash
# Peer benchmark (issue 15): kelos's own onCompletion (kelos PR #1240, ../shared/kelos-pr1240-src:
# its kelos-controller, CRDs and a long-running kelos-spawner that delivers) against upstream kelos
# (../shared/kelos-src) with our admission server and dispatcher — the same workload, the same
# HTTPS receiver, on ONE control plane: one etcd + kube-apiserver for the whole run, audited with
# bench/audit-policy.yaml (Metadata level). The peer runs first and is then taken off completely
# (kelos-controller and its spawners stopped, its namespaces, CRDs, ClusterRoles and webhook
# configurations deleted and waited for: Kelos::uninstall, which checks that the cluster-scoped
# objects are back to what they were); then upstream kelos + ours run on the same processes.
# Each system's API requests are counted from the one audit log within its own time window. Driver: tests/examples/peer_bench.rs (its header says
# what is measured). Prints one Markdown table with ratios (peer ÷ ours).
#
# The peer refuses loopback and private addresses and has no allowlist, so the receiver lives on a
# test host of its own: a network namespace behind a veth pair, 203.0.113.2 (TEST-NET-3, never
# routed), named in /etc/hosts for the run; our binaries get --allow-cidr 203.0.113.0/24, the
# peer's Go TLS trusts the receiver's CA through SSL_CERT_FILE. Needs root. Everything it adds
# (namespace, veth, the /etc/hosts line) is removed on exit.
#
# Bounded: each system's run (its teardown included) is cut at 15 minutes (about 6 here: starting the control plane and
# kelos, 112 Tasks, a minute of a failing hook and the wait for its retries).
#
#   bench/peer.sh [--debug] [STEADY [BURST]]   defaults: release builds, 60 steady + 40 burst Tasks
set -euo pipefail
log_tag=bench
source "$(dirname "$0")/../hack/lib.sh"
cd "$repo_root"

profile=release
[[ ${1:-} == --debug ]] && { profile=debug; shift; }
steady=${1:-60} burst=${2:-40}
[[ $(id -u) == 0 ]] || die "needs root: it makes a network namespace, a veth pair and an /etc/hosts entry"
for tool in ip getconf; do command -v $tool >/dev/null || die "$tool is missing"; done

peer_src=$(cd ../shared/kelos-pr1240-src && pwd) || die "../shared/kelos-pr1240-src is missing"
hack/tools.sh >/dev/null || die "the control-plane tools or kelos could not be built"
hack/tools.sh --kelos "$peer_src" >/dev/null || die "kelos PR #1240 could not be built"
log "building $profile binaries"
flags=(); [[ $profile == release ]] && flags=(--release)
cargo build "${flags[@]}" --quiet -p kelos-hooks-admission -p kelos-hooks-dispatcher
cargo build "${flags[@]}" --quiet -p kelos-hooks-tests --example peer_bench
cargo build --quiet --bin kelos-hooks-certs # hack/cluster-up.sh
target=${CARGO_TARGET_DIR:-$repo_root/target}
export KELOS_HOOKS_BIN_DIR=$target/$profile

netns=kelos-peer-$$ vh=kph$$ vr=kpr$$
export PEER_NETNS=$netns PEER_HOST=receiver.kelos-peer.test PEER_ADDR=203.0.113.2:8443
export KELOS_HOOKS_AUDIT_POLICY=$repo_root/bench/audit-policy.yaml
work=$(mktemp -d)
export PEER_CERT_DIR=$work/certs
mark="# kelos-peer-bench $$"
cleanup() {
  if grep -q "$mark" /etc/hosts; then
    grep -v "$mark" /etc/hosts >"$work/hosts" || true
    cat "$work/hosts" >/etc/hosts # in place: /etc/hosts may be a bind mount
  fi
  [[ -f $work/cluster/apiserver.pid ]] && hack/cluster-down.sh --dir "$work/cluster" >/dev/null 2>&1
  ip link del "$vh" 2>/dev/null || true
  ip netns del "$netns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$netns"
ip link add "$vh" type veth peer name "$vr"
ip link set "$vr" netns "$netns"
ip addr add 203.0.113.1/24 dev "$vh" && ip link set "$vh" up
ip -n "$netns" addr add 203.0.113.2/24 dev "$vr"
ip -n "$netns" link set "$vr" up && ip -n "$netns" link set lo up
echo "203.0.113.2 $PEER_HOST $mark" >>/etc/hosts
log "receiver host $PEER_HOST = 203.0.113.2 in network namespace $netns (veth $vh)"

out=$repo_root/.run/peer-bench
mkdir -p "$out"
log "one control plane for both systems"
hack/cluster-up.sh --dir "$work/cluster" --audit-policy bench/audit-policy.yaml >/dev/null ||
  die "the control plane did not start"
export KELOS_HOOKS_KELOS_CLUSTER_DIR=$work/cluster
for system in peer ours; do
  log "peer_bench run $system ($steady steady + $burst burst Tasks)"
  nice -n 10 timeout 900 "$KELOS_HOOKS_BIN_DIR/examples/peer_bench" run "$system" "$out/$system.json" \
    "$steady" "$burst" 2>&1 | tee "$out/$system.log" | grep -v '^phase 1: ' || die "the $system run failed (log: $out/$system.log)"
done
cp "$work/cluster/audit.log" "$out/audit.log"
log "both systems ran on kube-apiserver pid $(cat "$work/cluster/apiserver.pid"); audit log: $out/audit.log"
"$KELOS_HOOKS_BIN_DIR/examples/peer_bench" table "$out/peer.json" "$out/ours.json"
printf '\n%s builds; machine: %s cores, %s; %s; load average at the end: %s\n' "$profile" "$(nproc)" \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(cut -d' ' -f1-3 /proc/loadavg)"
