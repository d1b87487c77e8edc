#!/usr/bin/env bash
# Starts a real control plane (etcd + kube-apiserver) as local processes on 127.0.0.1 and prints
# the admin kubeconfig path. Several can run at once: each has its own directory and ports.
#
#   hack/cluster-up.sh [--dir DIR] [--watch-pid PID] [--audit-policy FILE]
#
#   --dir DIR            state directory (certs, etcd data, logs, pid files); default .run/cluster
#   --watch-pid PID      stop this control plane by itself when process PID exits (for test runs)
#   --audit-policy FILE  audit the API server with this policy into DIR/audit.log (default: no
#                        audit log); also from $KELOS_HOOKS_AUDIT_POLICY
#
# Stop it with hack/cluster-down.sh --dir DIR (kills exactly the PIDs this script started).
# The exact etcd and kube-apiserver command lines are kept in DIR/{etcd,apiserver}.cmd (with the
# ports in DIR/ports) so that hack/cluster-restart.sh can restart either on the same ports and data.
set -euo pipefail
log_tag=cluster-up
source "$(dirname "$0")/lib.sh"

dir=$repo_root/.run/cluster
watch_pid=
audit_policy=${KELOS_HOOKS_AUDIT_POLICY:-}
while (($#)); do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --watch-pid) watch_pid=$2; shift 2 ;;
    --audit-policy) audit_policy=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[[ -f $dir/apiserver.pid ]] && kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null &&
  die "a control plane already runs from $dir (hack/cluster-down.sh --dir $dir)"

tools=$("$repo_root/hack/tools.sh") || die "could not build the control-plane tools (see above)"
certs=$(workspace_bin kelos-hooks-certs)

# PKI: a CA, the API server's serving cert, an admin client cert, service-account keys.
pki=$dir/pki
mkdir -p "$pki"
if [[ ! -f $pki/ca.crt ]]; then
  "$certs" ca --out "$pki" --cn kelos-hooks-test-ca >/dev/null
  "$certs" serving --ca-dir "$pki" --out "$pki" --name apiserver --cn kube-apiserver \
    --san 127.0.0.1 --san localhost --san kubernetes --san kubernetes.default \
    --san kubernetes.default.svc --san 10.0.0.1 >/dev/null
  "$certs" client --ca-dir "$pki" --out "$pki" --name admin --cn kelos-hooks-admin --org system:masters >/dev/null
  "$certs" keypair --out "$pki" --name sa >/dev/null
fi

audit=()
if [[ -n $audit_policy ]]; then
  [[ -f $audit_policy ]] || die "audit policy $audit_policy does not exist"
  audit=(--audit-policy-file "$(cd "$(dirname "$audit_policy")" && pwd)/$(basename "$audit_policy")"
    --audit-log-path "$dir/audit.log" --audit-log-format json --audit-log-mode blocking)
  rm -f "$dir/audit.log"
fi

etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
rm -rf "$dir/etcd-data"
printf 'etcd=%s\npeer=%s\napiserver=%s\n' "$etcd_port" "$peer_port" "$api_port" >"$dir/ports"

start() { # name, then the command; records the PID and the command line (for cluster-restart.sh)
  local name=$1; shift
  printf '%q ' "$@" >"$dir/$name.cmd"
  nohup "$@" >"$dir/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

fail() {
  log "ERROR: $*"
  for f in etcd apiserver; do
    [[ -f $dir/$f.log ]] && { log "--- last lines of $dir/$f.log"; tail -n 25 "$dir/$f.log" >&2; }
  done
  "$repo_root/hack/cluster-down.sh" --dir "$dir" || true
  exit 1
}

start etcd "$tools/etcd" --name kelos-hooks --data-dir "$dir/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "kelos-hooks=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn

wait_healthy 100 "$dir/etcd.pid" etcd_healthy "$etcd_port" || fail "etcd did not become healthy"

start apiserver "$tools/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
  --authorization-mode RBAC --disable-admission-plugins ServiceAccount \
  --enable-priority-and-fairness=false --profiling=false "${audit[@]}"

cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: kelos-hooks
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/admin.crt")
    client-key-data: $(base64 -w0 "$pki/admin.key")
contexts:
- name: kelos-hooks
  context: {cluster: kelos-hooks, user: admin}
current-context: kelos-hooks
KC

wait_healthy 300 "$dir/apiserver.pid" apiserver_ready "$dir" "$api_port" ||
  fail "kube-apiserver was not ready within 60s"

if [[ -n $watch_pid ]]; then
  # A watchdog that stops this control plane once the watched process is gone.
  nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" --dir "$3"' _ \
    "$watch_pid" "$repo_root/hack/cluster-down.sh" "$dir" >/dev/null 2>&1 </dev/null &
  echo $! >"$dir/watchdog.pid"
fi
echo "$tools" >"$dir/tools"
log "control plane $("$tools/kubectl" --kubeconfig "$dir/kubeconfig" version -o json 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') ready at https://127.0.0.1:$api_port"
echo "$dir/kubeconfig"
