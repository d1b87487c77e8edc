#!/usr/bin/env bash
# Builds both binaries statically (what the images would contain) and checks that they run:
# no dynamic loader, --version, the offline commands, and name resolution through /etc/hosts.
# The Dockerfile builds for x86_64-unknown-linux-musl; where that target cannot be installed
# (rustup's download host unreachable), this builds glibc +crt-static binaries instead.
#
#   hack/static-check.sh        (several minutes: a release build; run by hand, not in CI)
set -euo pipefail
log_tag=static
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "$target not installed: building glibc static-pie binaries instead"
  target=x86_64-unknown-linux-gnu
  export RUSTFLAGS="-C target-feature=+crt-static"
fi
cargo build --release --quiet --target "$target" --target-dir target/static \
  -p kelos-hooks-admission -p kelos-hooks-dispatcher
out=target/static/$target/release
for b in kelos-hooks-admission kelos-hooks-dispatcher; do
  file "$out/$b" | grep -q 'statically linked\|static-pie linked' || die "$b is not static: $(file "$out/$b")"
  "$out/$b" --version
done
"$out/kelos-hooks-admission" validate -f "$repo_root/../shared/kelos-examples/03-taskspawner-github-issues--taskspawner.yaml"
"$out/kelos-hooks-admission" crds | grep -q 'kind: CustomResourceDefinition' || die "crds printed nothing"
"$out/kelos-hooks-dispatcher" check-url https://localhost:8443/x --allow-cidr 127.0.0.0/8
if "$out/kelos-hooks-dispatcher" check-url https://localhost:8443/x; then die "localhost was allowed"; fi
log "static binaries OK: $(du -h "$out/kelos-hooks-admission" "$out/kelos-hooks-dispatcher" | awk '{print $2" "$1}' | xargs)"
