#!/usr/bin/env bash
# Prints the Validating and Mutating webhook configurations for an admission server reached by URL
# (local runs and the demo; the chart renders its own for in-cluster Services).
#
#   hack/webhook-configs.sh --url https://127.0.0.1:8443 --ca-file ca.crt [--name NAME] [--exclude-namespace NS]…
#                           [--only-namespace NS]…   (match only these namespaces; tests sharing a cluster)
set -euo pipefail
log_tag=webhook-configs
source "$(dirname "$0")/lib.sh"

url= ca= name=kelos-hooks exclude=(kube-system) only=()
while (($#)); do
  case $1 in
    --url) url=$2; shift 2 ;;
    --ca-file) ca=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --exclude-namespace) exclude+=("$2"); shift 2 ;;
    --only-namespace) only+=("$2"); shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ -n $url && -f $ca ]] || die "--url and --ca-file are required"
bundle=$(base64 -w0 "$ca")
excluded=$(printf '"%s",' "${exclude[@]}"); excluded="[${excluded%,}]"
namespaces="{key: kubernetes.io/metadata.name, operator: NotIn, values: $excluded}"
if ((${#only[@]})); then
  included=$(printf '"%s",' "${only[@]}")
  namespaces+=", {key: kubernetes.io/metadata.name, operator: In, values: [${included%,}]}"
fi

# webhook NAME PATH RESOURCE OPERATIONS FAILURE-POLICY [objectSelector [rules [matchPolicy]]]
webhook() {
  local rules=${7:-"[{apiGroups: [kelos.dev], apiVersions: [\"*\"], resources: [$3], operations: $4, scope: Namespaced}]"}
  cat <<YAML
- name: $1
  clientConfig: {url: "$url$2", caBundle: "$bundle"}
  rules: $rules
  matchPolicy: ${8:-Equivalent}
  namespaceSelector: {matchExpressions: [$namespaces]}
  objectSelector: ${6:-{\}}
  failurePolicy: $5
  sideEffects: None
  timeoutSeconds: 5
  admissionReviewVersions: [v1]
YAML
}
spawner_label='{matchExpressions: [{key: kelos.dev/taskspawner, operator: Exists}]}'
# TaskSpawner UPDATEs that cannot express onCompletion: v1alpha2 (kelos's own writes) and
# v1alpha1 (spec and status), matched exactly (see the chart's webhooks.yaml).
keep_hooks_rules='[{apiGroups: [kelos.dev], apiVersions: [v1alpha2], resources: [taskspawners], operations: [UPDATE], scope: Namespaced}, {apiGroups: [kelos.dev], apiVersions: [v1alpha1], resources: [taskspawners, taskspawners/status], operations: [UPDATE], scope: Namespaced}]'

cat <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: $name}
webhooks:
$(webhook taskspawners.validate.kelos-hooks.dev /validate/taskspawners taskspawners '[CREATE, UPDATE]' Fail)
$(webhook tasks-create.validate.kelos-hooks.dev /validate/tasks tasks '[CREATE]' Ignore "$spawner_label")
$(webhook tasks-update.validate.kelos-hooks.dev /validate/tasks tasks '[UPDATE]' Fail "$spawner_label")
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: $name}
webhooks:
$(webhook taskspawners.mutate.kelos-hooks.dev /mutate/taskspawners taskspawners '[UPDATE]' Fail '{}' "$keep_hooks_rules" Exact)
$(webhook tasks.mutate.kelos-hooks.dev /mutate/tasks tasks '[CREATE]' Ignore "$spawner_label" | sed 's/^  admissionReviewVersions/  reinvocationPolicy: Never\n  admissionReviewVersions/')
YAML
