#!/usr/bin/env python3
"""Writes the realistic AdmissionReview bodies the admission benchmark posts.

mutate-task.json: a kelos Task CREATE of about 5 KB (a real prompt, credentials, podOverrides),
labelled with a spawner that has 8 hooks. validate-taskspawner.json: a TaskSpawner with 8 hooks.
(admission.sh derives validate-task.json from the mutate response: the Task as the API server
sends it to the validating webhook, annotation included.) task.json: a labelled kelos Task of
2.7 KB as a client sends it (admission-e2e.sh creates copies of it through the API server).
"""
import json, sys, os

out = sys.argv[1]
ns = sys.argv[2]
prompt = ("Fix the following GitHub issue and open a PR with the fix. Keep the change minimal, add a "
          "regression test, and explain the root cause in the PR description.\n\n") * 8
prompt += "Issue #1234: Crash when the config file is empty\n\n" + ("Stack trace line\n" * 75)

def hook(i):
    return {"name": f"hook-{i}", "phases": ["Succeeded", "Failed"],
            "webhook": {"url": f"https://hooks{i}.example.com/services/kelos/notify",
                        "secretRef": {"name": f"hook-{i}-headers"},
                        "signingSecretRef": {"name": f"hook-{i}-signing", "key": "secret"},
                        "format": ["Generic", "CloudEvents", "Slack"][i % 3]}}

task = {
    "apiVersion": "kelos.dev/v1alpha2", "kind": "Task",
    "metadata": {"name": "bench-spawner-1234", "namespace": ns, "uid": "5f1c2b7e-8d1a-4c9b-9a51-0a8f1b2c3d4e",
                 "labels": {"kelos.dev/taskspawner": "bench-spawner", "app.kubernetes.io/managed-by": "kelos",
                            "kelos.dev/issue": "1234"},
                 "annotations": {"kelos.dev/source-url": "https://github.com/example/repo/issues/1234"},
                 "ownerReferences": [{"apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
                                      "name": "bench-spawner", "uid": "0a1b2c3d-0000-4000-8000-000000000001",
                                      "controller": True, "blockOwnerDeletion": True}]},
    "spec": {"type": "claude-code", "model": "claude-sonnet-4", "prompt": prompt, "branch": "kelos/fix-1234",
             "credentials": {"type": "oauth", "secretRef": {"name": "claude-oauth-token"}},
             "workspaceRef": {"name": "my-workspace"}, "ttlSecondsAfterFinished": 3600,
             "podOverrides": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                            "limits": {"cpu": "2", "memory": "4Gi"}},
                              "env": [{"name": f"EXTRA_{i}", "value": "x" * 20} for i in range(10)]}},
}
spawner = {
    "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
    "metadata": {"name": "bench-spawner", "namespace": ns, "uid": "0a1b2c3d-0000-4000-8000-000000000001"},
    "spec": {"when": {"githubIssues": {"labels": ["bug"], "state": "open", "pollInterval": "5m"}},
             "taskTemplate": {"type": "claude-code", "workspaceRef": {"name": "my-workspace"},
                              "credentials": {"type": "oauth", "secretRef": {"name": "claude-oauth-token"}},
                              "promptTemplate": "Fix issue #{{.Number}}: {{.Title}}\n\n{{.Body}}"},
             "maxConcurrency": 3, "onCompletion": {"hooks": [hook(i) for i in range(8)]}},
}

def review(kind, resource, obj, operation="CREATE"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "kelos.dev", "version": "v1alpha2", "kind": kind},
        "resource": {"group": "kelos.dev", "version": "v1alpha2", "resource": resource},
        "requestKind": {"group": "kelos.dev", "version": "v1alpha2", "kind": kind},
        "requestResource": {"group": "kelos.dev", "version": "v1alpha2", "resource": resource},
        "name": obj["metadata"]["name"], "namespace": ns, "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kelos-system:kelos-controller",
                     "uid": "014fbff9a07c", "groups": ["system:serviceaccounts", "system:authenticated"]},
        "object": obj, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}

def sized_task(size):
    """The benchmark Task as a client writes it (no uid, no owner), its prompt cut to `size` bytes."""
    t = json.loads(json.dumps(task))
    del t["metadata"]["uid"], t["metadata"]["ownerReferences"]
    del t["spec"]["podOverrides"]
    t["spec"]["prompt"] = ""
    room = size - len(json.dumps(t, separators=(",", ":")))
    while len(json.dumps(prompt[:room])) - 2 > size - len(json.dumps(t, separators=(",", ":"))):
        room -= 1  # newlines take two bytes once escaped
    t["spec"]["prompt"] = prompt[:room]
    return t

os.makedirs(out, exist_ok=True)
json.dump(spawner, open(f"{out}/taskspawner.json", "w"), separators=(",", ":"))
text = json.dumps(sized_task(2700), separators=(",", ":"))
open(f"{out}/task.json", "w").write(text)
print(f"task.json: {len(text)} bytes", file=sys.stderr)
for name, body in [("mutate-task", review("Task", "tasks", task)),
                   ("validate-taskspawner", review("TaskSpawner", "taskspawners", spawner))]:
    # Compact, as the API server writes AdmissionReviews (no spaces after `:` and `,`).
    text = json.dumps(body, separators=(",", ":"))
    open(f"{out}/{name}.json", "w").write(text)
    print(f"{name}.json: {len(text)} bytes", file=sys.stderr)
