#!/usr/bin/env bash
# Prints the admission configuration for an admission server reached by URL (local runs, the
# demo, the e2e tests, bench/admission-e2e.sh): the chart's own webhook configurations and Task
# annotation policy, rendered with `helm template` and webhooks.url, so they are written once.
#
#   hack/webhook-configs.sh --url https://127.0.0.1:8443 --ca-file ca.crt [--name NAME]
#       [--dispatcher-identity USER] [--exclude-namespace NS]… [--only-namespace NS]…
#       [--namespace-label KEY=VALUE] [--task-guard ValidatingAdmissionPolicy|Webhook]
#
# --name names every object (default kelos-hooks); --dispatcher-identity is the user allowed to
# change kelos.dev/webhook-* annotations (pass the admission server's --dispatcher-identity);
# --only-namespace and --namespace-label limit everything to those namespaces, or to namespaces
# with that label (tests share one API server);
# --task-guard picks who enforces the Task annotation rules (chart value webhooks.tasks.guard).
set -euo pipefail
log_tag=webhook-configs
source "$(dirname "$0")/lib.sh"

url= ca= name=kelos-hooks guard=ValidatingAdmissionPolicy label=
identity=system:serviceaccount:kelos-hooks:kelos-hooks-dispatcher
exclude=(kube-system) only=()
while (($#)); do
  case $1 in
    --url) url=$2; shift 2 ;;
    --ca-file) ca=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --dispatcher-identity) identity=$2; shift 2 ;;
    --exclude-namespace) exclude+=("$2"); shift 2 ;;
    --only-namespace) only+=("$2"); shift 2 ;;
    --namespace-label) label=$2; shift 2 ;;
    --task-guard) guard=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ -n $url && -f $ca ]] || die "--url and --ca-file are required"
[[ -z $label || $label == *=* ]] || die "--namespace-label takes KEY=VALUE"
helm="$("$repo_root/hack/tools.sh")/helm"

# Values as JSON (label keys hold dots, which --set would split on).
only=$(IFS=,; echo "${only[*]}")
values=$(python3 - "$url" "$(base64 -w0 "$ca")" "$name" "$identity" "$guard" "$label" "$only" "${exclude[@]}" <<'PY'
import json, sys
url, bundle, name, identity, guard, label, only, *exclude = sys.argv[1:]
webhooks = {"url": url, "caBundle": bundle, "excludeNamespaces": exclude, "tasks": {"guard": guard}}
selector = webhooks["namespaceSelector"] = {}
if label:
    key, value = label.split("=", 1)
    selector["matchLabels"] = {key: value}
if only:
    selector["matchExpressions"] = [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": only.split(",")}]
print(json.dumps({"fullnameOverride": name, "admission": {"dispatcherIdentity": identity},
                  "webhooks": webhooks}))
PY
)
templates=(--show-only templates/webhooks.yaml)
[[ $guard == ValidatingAdmissionPolicy ]] && templates+=(--show-only templates/task-annotations-policy.yaml)
# The release namespace is always excluded by the chart; name one that local runs do not use.
"$helm" template "$name" "$repo_root/charts/kelos-hooks" --namespace kelos-hooks \
  --values <(echo "$values") "${templates[@]}"
