#!/usr/bin/env bash
# Builds the control-plane tools (kube-apiserver, kubectl, etcd, helm) from Go modules into a
# per-machine cache keyed by version, and prints the directory that holds them. Also builds
# kelos-controller and kelos-spawner from the kelos source beside the repository
# (../shared/kelos-src), keyed by the upstream commit its SOURCE.md names.
#
#   hack/tools.sh               build what is missing, print the control-plane bin directory
#   hack/tools.sh --check       exit 1 (and say what) if anything is missing, build nothing
#   hack/tools.sh --kelos [SRC] build kelos from SRC (default ../shared/kelos-src) if missing,
#                               print the directory holding kelos-controller and kelos-spawner
#
# The cache lives in $KELOS_HOOKS_CACHE (default ~/.cache/kelos-hooks). A fresh machine builds
# everything (many minutes on 2 cores; kelos about 95 s); later runs find the binaries and return
# at once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v4.3.1
cache=${KELOS_HOOKS_CACHE:-$HOME/.cache/kelos-hooks}
bin="$cache/tools/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[tools] %s\n' "$*" >&2; }

default_kelos_src=$(cd "$here/../.." && pwd)/shared/kelos-src

# The upstream commit a kelos source snapshot was taken at: the first "commit <hex>" of its
# SOURCE.md (e.g. "commit 77d9ad8e"), so the cache key follows the snapshot, not a copy of it.
kelos_commit() {
  local src=$1 commit
  [[ -f $src/SOURCE.md ]] || { log "$src/SOURCE.md is missing: not a kelos source snapshot"; return 1; }
  commit=$(grep -oE -m1 'commit [0-9a-f]{7,40}' "$src/SOURCE.md" | cut -d' ' -f2)
  [[ -n $commit ]] || { log "$src/SOURCE.md names no 'commit <hex>'"; return 1; }
  echo "$commit"
}

# Where kelos-controller and kelos-spawner of the snapshot SRC live in the cache.
kelos_bin() { local commit; commit=$(kelos_commit "$1") || return 1; echo "$cache/kelos/$commit"; }

kelos_built() { [[ -x $1/kelos-controller && -x $1/kelos-spawner ]]; }

need=()
[[ -x $bin/kube-apiserver && -x $bin/kubectl ]] || need+=(kube)
[[ -x $bin/etcd ]] || need+=(etcd)
[[ -x $bin/helm ]] || need+=(helm)

mode=tools kelos_src=$default_kelos_src
case ${1:-} in
  --check) mode=check ;;
  --kelos) mode=kelos; kelos_src=$(cd "${2:-$default_kelos_src}" && pwd) ;;
  "") ;;
  *) log "unknown argument $1 (see the header of $0)"; exit 2 ;;
esac
kelos_out=$(kelos_bin "$kelos_src") || exit 1
kelos_built "$kelos_out" || need+=("kelos@$(basename "$kelos_out")")

if [[ $mode == check ]]; then
  ((${#need[@]} == 0)) || { log "missing in $cache: ${need[*]} (run hack/tools.sh)"; exit 1; }
  log "kelos $(basename "$kelos_out") in $kelos_out"
  echo "$bin"; exit 0
fi

mkdir -p "$bin"
lock="$cache/tools/.lock"
exec 9>"$lock"
flock 9 # concurrent callers (parallel tests, CI steps) build once

build_kube() {
  local major minor ld pkg
  major=${KUBE_VERSION#v}; major=${major%%.*}
  minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
  ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kube-apiserver and kubectl $KUBE_VERSION (cold: tens of minutes on 2 cores)"
  (cd "$here/tools/kube" && go build -trimpath -ldflags "-s -w$ld" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  log "building etcd $ETCD_VERSION"
  (cd "$here/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  log "building helm $HELM_VERSION"
  local ld="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  GOBIN="$bin" go install -trimpath -ldflags "$ld" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

# build_kelos SRC OUT: kelos-controller and kelos-spawner of the snapshot SRC into OUT. The snapshot
# is read-only and not on the module proxy; its dependencies are (fetched on first use).
build_kelos() {
  local src=$1 out=$2 tmp
  log "building kelos-controller and kelos-spawner $(basename "$out") from $src (about 95 s cold)"
  tmp=$(mktemp -d "$(dirname "$out")/.build.XXXXXX") && chmod 755 "$tmp"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$tmp/" ./cmd/kelos-controller ./cmd/kelos-spawner) ||
    { rm -rf "$tmp"; return 1; }
  rm -rf "$out" && mv "$tmp" "$out" # all or nothing: a half-built directory never looks complete
}

start=$SECONDS
if [[ $mode == tools ]]; then
  [[ -x $bin/kube-apiserver && -x $bin/kubectl ]] || build_kube
  [[ -x $bin/etcd ]] || build_etcd
  [[ -x $bin/helm ]] || build_helm
fi
mkdir -p "$(dirname "$kelos_out")"
kelos_built "$kelos_out" || build_kelos "$kelos_src" "$kelos_out"
((SECONDS - start > 1)) && log "tools ready in $((SECONDS - start))s"
"$kelos_out/kelos-controller" --help >/dev/null 2>&1 || { log "kelos-controller in $kelos_out does not run"; exit 1; }
if [[ $mode == kelos ]]; then echo "$kelos_out"; exit 0; fi
"$bin/kube-apiserver" --version >/dev/null || { log "kube-apiserver in $bin does not run"; exit 1; }
echo "$bin"
