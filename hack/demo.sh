#!/usr/bin/env bash
# The local demo (README's main job), on a fresh machine: builds the tools and the workspace,
# starts a real control plane on 127.0.0.1, installs the CRDs, applies kelos example objects with
# an onCompletion block, moves a Task to Succeeded through its status; then the same with real
# kelos (kelos-controller and kelos-spawner built from ../shared/kelos-src, installed from
# kelos's chart, on a control plane of their own: tests/examples/kelos_demo.rs); cleans up.
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
hack/tools.sh --kelos >/dev/null
cargo build --workspace --bins --quiet
cargo build --quiet -p kelos-hooks-tests --example kelos_demo

[[ -f $dir/apiserver.pid ]] && hack/cluster-down.sh --dir "$dir"
stop_all() {
  local p
  for p in admission dispatcher receiver; do
    [[ -f $dir/$p.pid ]] && { kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; }
    rm -f "$dir/$p.pid"
  done
  hack/cluster-down.sh --dir "$dir"
}
((keep)) || trap stop_all EXIT
step "starting etcd + kube-apiserver on 127.0.0.1"
kubeconfig=$(hack/cluster-up.sh --dir "$dir")
kubectl() { "$(cat "$dir/tools")/kubectl" --kubeconfig "$kubeconfig" "$@"; }
kubectl version

step "installing the TaskSpawner and Task CRDs generated from the Rust types"
target/debug/kelos-hooks-admission crds | kubectl apply --server-side -f -
kubectl wait --for condition=Established crd/taskspawners.kelos.dev crd/tasks.kelos.dev --timeout 30s

step "starting the admission server (rustls, certificate from kelos-hooks-certs) and registering its webhooks"
certs=target/debug/kelos-hooks-certs
"$certs" ca --out "$dir/demo-pki" --cn kelos-hooks-demo-ca --force >/dev/null
"$certs" serving --ca-dir "$dir/demo-pki" --out "$dir/demo-pki" --name admission --san 127.0.0.1 >/dev/null
adm_port=$(free_port); adm_probe=$(free_port)
KUBECONFIG=$kubeconfig target/debug/kelos-hooks-admission serve \
  --listen "127.0.0.1:$adm_port" --metrics-listen "127.0.0.1:$adm_probe" \
  --tls-cert-file "$dir/demo-pki/admission.crt" --tls-key-file "$dir/demo-pki/admission.key" \
  --dispatcher-identity kelos-hooks-dispatcher --allow-cidr 127.0.0.1/32 \
  >"$dir/admission.log" 2>&1 &
echo $! >"$dir/admission.pid"
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$adm_probe/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$adm_probe/readyz"; echo
hack/webhook-configs.sh --url "https://127.0.0.1:$adm_port" --ca-file "$dir/demo-pki/ca.crt" \
  --name kelos-hooks-demo --dispatcher-identity kelos-hooks-dispatcher | kubectl apply -f -
kubectl create namespace demo
# The API server picks up new webhook configurations asynchronously: wait until one answers.
for _ in $(seq 50); do
  kubectl -n demo apply --dry-run=server -f - >/dev/null 2>&1 <<'YAML' || break
apiVersion: kelos.dev/v1alpha2
kind: TaskSpawner
metadata: {name: probe}
spec: {onCompletion: {hooks: [{name: a, webhook: {url: "https://10.0.0.1/"}}]}}
YAML
  sleep 0.2
done

step "a TaskSpawner with bad hooks is refused at apply time, every problem named"
if kubectl -n demo apply -f - <<'YAML'; then die "the bad TaskSpawner was accepted"; fi
apiVersion: kelos.dev/v1alpha2
kind: TaskSpawner
metadata:
  name: bad-hooks
spec:
  taskTemplate: {type: claude-code}
  onCompletion:
    hooks:
    - name: metadata
      webhook: {url: "https://169.254.169.254/latest/meta-data?token=abc"}
    - name: internal
      webhook: {url: "https://0x0a000005/hook"}
    - name: mapped
      webhook: {url: "https://[::ffff:192.168.1.1]/hook"}
    - name: typo-template
      webhook:
        url: https://dash.example.com/kelos
        format: Template
        template: {body: '{"text": {{ task.nme | tojson }}}'}
YAML

step "starting a local HTTPS receiver (hack/receiver.py verifies signatures on its own)"
rx_port=$(free_port)
"$certs" serving --ca-dir "$dir/demo-pki" --out "$dir/demo-pki" --name receiver --san 127.0.0.1 >/dev/null
signing_key="whsec_$(head -c 24 /dev/urandom | base64)"
kubectl -n demo create secret generic team-hook-signing --from-literal=secret="$signing_key"
kubectl -n demo create secret generic team-hook-headers --from-literal=Authorization="Bearer demo-token"
kubectl -n demo create secret generic pagerduty --from-literal=routing-key=demo0routing0key000000000000000
# One notification per hook of the spawner below: Generic, PagerDuty, MSTeams, Discord, Template.
python3 hack/receiver.py --port "$rx_port" --cert "$dir/demo-pki/receiver.crt" \
  --key "$dir/demo-pki/receiver.key" --secret "$signing_key" --count 5 --timeout 120 \
  >"$dir/receiver.log" 2>&1 &
echo $! >"$dir/receiver.pid"

step "applying a kelos TaskSpawner (shared/kelos-examples/03) with an onCompletion block"
sed "s|https://hooks.example.com/|https://127.0.0.1:$rx_port/|" <<'YAML' | kubectl -n demo apply -f -
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
    # The receiver formats (README "Receiver formats"); each one signed so hack/receiver.py verifies it.
    - name: pagerduty
      webhook:
        url: https://hooks.example.com/pagerduty
        signingSecretRef: {name: team-hook-signing, key: secret}
        format: PagerDuty
        # A demo Task succeeds: ask for a trigger then too (by default only Failed pages).
        pagerDuty: {routingKeySecretRef: {name: pagerduty, key: routing-key}, triggerOnSucceeded: true}
    - name: teams
      webhook: {url: "https://hooks.example.com/teams", signingSecretRef: {name: team-hook-signing, key: secret}, format: MSTeams}
    - name: discord
      webhook: {url: "https://hooks.example.com/discord", signingSecretRef: {name: team-hook-signing, key: secret}, format: Discord}
    - name: dashboard
      webhook:
        url: https://hooks.example.com/dashboard
        signingSecretRef: {name: team-hook-signing, key: secret}
        format: Template
        template:
          body: '{"title": {{ ("Task " ~ task.name ~ " " ~ task.phase) | tojson }}, "links": {{ task.outputs | tojson }}}'
YAML

step "a Task created as the kelos controller would gets the spawner's hooks injected"
kubectl -n demo apply -f - <<'YAML'
apiVersion: kelos.dev/v1alpha2
kind: Task
metadata:
  name: fix-bugs-42
  labels: {kelos.dev/taskspawner: fix-bugs}
  annotations: {kelos.dev/on-completion: '{"hooks":[{"name":"forged","webhook":{"url":"https://evil.example"}}]}'}
spec:
  type: claude-code
  prompt: "Fix issue #42"
  credentials: {type: oauth, secretRef: {name: claude-oauth-token}}
YAML
annotation=$(kubectl -n demo get task fix-bugs-42 -o jsonpath='{.metadata.annotations.kelos\.dev/on-completion}')
echo "kelos.dev/on-completion: $annotation"
[[ $annotation == *notify-team* && $annotation != *forged* ]] || die "the annotation was not injected"

step "starting the dispatcher (its own identity: only it may write delivery state)"
"$certs" client --ca-dir "$dir/pki" --out "$dir/pki" --name dispatcher --cn kelos-hooks-dispatcher \
  --org system:masters >/dev/null
sed -e "s|client-certificate-data: .*|client-certificate-data: $(base64 -w0 "$dir/pki/dispatcher.crt")|" \
    -e "s|client-key-data: .*|client-key-data: $(base64 -w0 "$dir/pki/dispatcher.key")|" \
    "$kubeconfig" >"$dir/dispatcher.kubeconfig"
disp_probe=$(free_port)
KUBECONFIG=$dir/dispatcher.kubeconfig target/debug/kelos-hooks-dispatcher run \
  --allow-cidr 127.0.0.1/32 --ca-file "$dir/demo-pki/ca.crt" --metrics-listen "127.0.0.1:$disp_probe" \
  --lease-namespace demo >"$dir/dispatcher.log" 2>&1 &
echo $! >"$dir/dispatcher.pid"
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$disp_probe/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$disp_probe/readyz"; echo
target/debug/kelos-hooks-dispatcher check-url "https://127.0.0.1:$rx_port/kelos" --allow-cidr 127.0.0.1/32
target/debug/kelos-hooks-dispatcher check-url "https://169.254.169.254/latest" || true

step "marking the Task Succeeded through the status subresource, as the kelos controller does"
kubectl -n demo patch task fix-bugs-42 --subresource status --type merge -p \
  '{"status":{"phase":"Succeeded","message":"PR opened","completionTime":"'"$(date -u +%FT%TZ)"'","outputs":["https://github.com/example/repo/pull/42"]}}'

step "the receiver got one notification per format and verified each signature"
rx_pid=$(cat "$dir/receiver.pid")
for _ in $(seq 300); do kill -0 "$rx_pid" 2>/dev/null || break; sleep 0.1; done
cat "$dir/receiver.log"
wait "$rx_pid" || die "the receiver did not get a verified notification (see $dir/receiver.log, $dir/dispatcher.log)"
for _ in $(seq 50); do
  [[ -n $(kubectl -n demo get task fix-bugs-42 -o jsonpath='{.metadata.annotations.kelos\.dev/webhook-report-phase}') ]] && break
  sleep 0.1
done
echo "kelos.dev/webhook-deliveries: $(kubectl -n demo get task fix-bugs-42 -o jsonpath='{.metadata.annotations.kelos\.dev/webhook-deliveries}')"
kubectl -n demo get tasks -o wide
kubectl -n demo get events --field-selector involvedObject.name=fix-bugs-42

step "the same on real kelos: kelos-controller and kelos-spawner, our chart's webhooks, a control plane of their own"
# Not under the first control plane: kelos installs its own CRDs (two versions, conversion webhook).
env -u KELOS_HOOKS_CLUSTER_DIR -u KELOS_HOOKS_KUBECONFIG target/debug/examples/kelos_demo \
  || die "the real-kelos part of the demo failed (output above)"

step "done in $((SECONDS - t0))s"
