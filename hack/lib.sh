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
