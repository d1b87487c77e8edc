#!/usr/bin/env bash
# The local demo (README's main job), on a fresh machine: builds the tools and the workspace,
# starts a real control plane on 127.0.0.1, installs the CRDs, applies kelos example objects with
# an onCompletion block, moves a Task to Succeeded as the kelos controller would, and cleans up.
#
#   hack/demo.sh            run the demo and stop everything it started
#   hack/demo.sh --keep     leave the control plane running (stop: hack/cluster-down.sh --dir .run/demo)
set -euo pipefail
log_tag=demo
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

keep=0
[[ ${1:-} == --keep ]] && keep=1
dir=$repo_root/.run/demo
t0=$SECONDS
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building the control-plane tools (cached per machine) and the workspace"
hack/tools.sh >/dev/null
cargo build --workspace --bins --quiet && cargo build -p kelos-hooks-shared --example print_crds --quiet

[[ -f $dir/apiserver.pid ]] && hack/cluster-down.sh --dir "$dir"
((keep)) || trap 'hack/cluster-down.sh --dir "$dir"' EXIT
step "starting etcd + kube-apiserver on 127.0.0.1"
kubeconfig=$(hack/cluster-up.sh --dir "$dir")
kubectl() { "$(cat "$dir/tools")/kubectl" --kubeconfig "$kubeconfig" "$@"; }
kubectl version

step "installing the TaskSpawner and Task CRDs generated from the Rust types"
target/debug/examples/print_crds | kubectl apply --server-side -f -
kubectl wait --for condition=Established crd/taskspawners.kelos.dev crd/tasks.kelos.dev --timeout 30s

step "applying a kelos TaskSpawner (shared/kelos-examples/03) with an onCompletion block"
kubectl create namespace demo
kubectl -n demo apply -f - <<'YAML'
apiVersion: kelos.dev/v1alpha2
kind: TaskSpawner
metadata:
  name: fix-bugs
spec:
  when:
    githubIssues:
      labels: [bug]
      state: open
      pollInterval: 5m
  taskTemplate:
    type: claude-code
    workspaceRef: {name: my-workspace}
    credentials: {type: oauth, secretRef: {name: claude-oauth-token}}
    promptTemplate: "Fix issue #{{.Number}}: {{.Title}}"
  maxConcurrency: 3
  onCompletion:
    hooks:
    - name: notify-team
      phases: [Succeeded, Failed]
      webhook:
        url: https://hooks.example.com/kelos
        signingSecretRef: {name: team-hook-signing, key: secret}
YAML
kubectl -n demo get taskspawner fix-bugs -o jsonpath='{.spec.onCompletion}{"\n"}'

step "creating a Task as the kelos controller would, then marking it Succeeded"
kubectl -n demo apply -f - <<'YAML'
apiVersion: kelos.dev/v1alpha2
kind: Task
metadata:
  name: fix-bugs-42
  labels: {kelos.dev/taskspawner: fix-bugs}
spec:
  type: claude-code
  prompt: "Fix issue #42"
  credentials: {type: oauth, secretRef: {name: claude-oauth-token}}
YAML
kubectl -n demo patch task fix-bugs-42 --subresource status --type merge -p \
  '{"status":{"phase":"Succeeded","message":"PR opened","completionTime":"'"$(date -u +%FT%TZ)"'","outputs":["https://github.com/example/repo/pull/42"]}}'
kubectl -n demo get tasks -o wide

step "done in $((SECONDS - t0))s"
