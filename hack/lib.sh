# Helpers sourced by the hack/ scripts.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%s] %s\n' "${log_tag:-hack}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A TCP port nobody listens on now (the kernel picks it; a tiny race is acceptable for tests).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Builds the workspace binary NAME (debug) if needed and prints its path.
workspace_bin() {
  local name=$1 target=${CARGO_TARGET_DIR:-$repo_root/target}
  (cd "$repo_root" && cargo build -q --bin "$name" >&2) || die "cargo build --bin $name failed"
  echo "$target/debug/$name"
}

# Runs the probe (the arguments) every 0.2 s up to TRIES times while the process in PIDFILE lives:
#   wait_healthy TRIES PIDFILE PROBE ARGS…   → 0 once the probe succeeds
wait_healthy() {
  local tries=$1 pidfile=$2; shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
    sleep 0.2
  done
  "$@" >/dev/null 2>&1
}

# Probes of hack/cluster-up.sh's control plane: etcd on PORT; the API server of DIR on PORT.
etcd_healthy() { curl -fsS "http://127.0.0.1:$1/health"; }
apiserver_ready() {
  curl -fsS --cacert "$1/pki/ca.crt" --cert "$1/pki/admin.crt" --key "$1/pki/admin.key" \
    "https://127.0.0.1:$2/readyz"
}

# The PID recorded in FILE if that process still runs a command line containing EXPECT (never
# act on a recycled PID that is not ours); nothing otherwise.
our_pid() {
  local file=$1 expect=$2 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  [[ -n $pid ]] && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$expect"* ]] && echo "$pid"
  return 0
}
