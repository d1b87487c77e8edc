#!/usr/bin/env bash
# Builds the control-plane tools (kube-apiserver, kubectl, etcd, helm) from Go modules into a
# per-machine cache keyed by version, and prints the directory that holds them.
#
#   hack/tools.sh            build what is missing, print the bin directory
#   hack/tools.sh --check    exit 1 (and say what) if anything is missing, build nothing
#
# The cache lives in $KELOS_HOOKS_CACHE (default ~/.cache/kelos-hooks). A fresh machine builds
# everything (many minutes on 2 cores); later runs find the binaries and return at once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v4.3.1
cache=${KELOS_HOOKS_CACHE:-$HOME/.cache/kelos-hooks}
bin="$cache/tools/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { printf '[tools] %s\n' "$*" >&2; }

need=()
[[ -x $bin/kube-apiserver && -x $bin/kubectl ]] || need+=(kube)
[[ -x $bin/etcd ]] || need+=(etcd)
[[ -x $bin/helm ]] || need+=(helm)

if [[ ${1:-} == --check ]]; then
  ((${#need[@]} == 0)) || { log "missing in $bin: ${need[*]} (run hack/tools.sh)"; exit 1; }
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

start=$SECONDS
[[ -x $bin/kube-apiserver && -x $bin/kubectl ]] || build_kube
[[ -x $bin/etcd ]] || build_etcd
[[ -x $bin/helm ]] || build_helm
((SECONDS - start > 1)) && log "tools ready in $((SECONDS - start))s"
"$bin/kube-apiserver" --version >/dev/null || { log "kube-apiserver in $bin does not run"; exit 1; }
echo "$bin"
