#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (content-named files,
as libFuzzer names its own, so re-seeding adds nothing twice).

Seeds: the JSON fixtures (shared/testdata, the admission benchmark's objects from
bench/make_reviews.py) and the kelos examples (../shared/kelos-examples, or $KELOS_EXAMPLES),
each TaskSpawner given an onCompletion block, as the reviews, annotations and YAML files each
target reads. Run by hack/fuzz.sh: seeds only empty corpora (SEED_ALL=1: every corpus).
"""
import hashlib, json, os, subprocess, sys, tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
EXAMPLES = os.environ.get("KELOS_EXAMPLES", os.path.join(ROOT, "..", "shared", "kelos-examples"))
NS, SPAWNER = "team-a", "my-spawner"  # the spawner the fuzzed server caches (admission fixtures)
KELOS = "system:serviceaccount:kelos-system:kelos-controller"
DISPATCHER = "system:serviceaccount:kelos-hooks:kelos-hooks-dispatcher"
count = {}
FORCE = os.environ.get("SEED_ALL") == "1"


fresh = {}  # per target: whether its corpus was empty at start (only those are seeded)


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    if target not in fresh:
        fresh[target] = FORCE or not (os.path.isdir(d) and os.listdir(d))
    if not fresh[target]:
        return  # cmin decided what this corpus keeps; SEED_ALL=1 adds the seeds again
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        open(path, "wb").write(data)
        count[target] = count.get(target, 0) + 1


def compact(v):
    return json.dumps(v, separators=(",", ":"))


def on_completion(i):
    """An onCompletion block: every field of the contract across the examples."""
    hooks = [{"name": "notify-team", "phases": ["Succeeded", "Failed"],
              "webhook": {"url": f"https://hooks{i}.example.com/kelos/notify",
                          "secretRef": {"name": "team-hook-headers"},
                          "signingSecretRef": {"name": "team-hook-signing", "key": "secret"},
                          "format": ["Generic", "CloudEvents", "Slack"][i % 3]}}]
    if i % 2:
        hooks.append({"name": "audit", "phases": ["Failed"],
                      "webhook": {"url": "https://[2606:4700::1111]:8443/in?x=1"}})
    return {"hooks": hooks}


def review(kind, op, obj, old=None, user="alice", version="v1alpha2"):
    plural = "tasks" if kind == "Task" else "taskspawners"
    gvk = {"group": "kelos.dev", "version": version, "kind": kind}
    return compact({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": gvk, "requestKind": gvk,
        "resource": {"group": "kelos.dev", "version": version, "resource": plural},
        "name": obj["metadata"].get("name", ""), "namespace": NS, "operation": op,
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": False}})


def spawner_seeds(doc, i):
    """A TaskSpawner (with hooks) as YAML, reviews of both TaskSpawner endpoints, its snapshot."""
    doc = json.loads(json.dumps(doc))
    doc.setdefault("metadata", {})["namespace"] = NS
    doc.setdefault("spec", {})["onCompletion"] = on_completion(i)
    put("validate_yaml", yaml.safe_dump(doc, sort_keys=False))
    put("snapshot", compact(doc["spec"]["onCompletion"]))
    put("validate_taskspawners", review("TaskSpawner", "CREATE", doc))
    without = json.loads(json.dumps(doc))
    del without["spec"]["onCompletion"]
    put("validate_taskspawners", review("TaskSpawner", "UPDATE", doc, without))
    # kelos's controller rewriting the spawner without onCompletion: the mutation restores it.
    put("mutate_taskspawners", review("TaskSpawner", "UPDATE", without, doc, user=KELOS))
    put("mutate_taskspawners", review("TaskSpawner", "UPDATE", without, doc, version="v1alpha1"))
    put("mutate_taskspawners", review("TaskSpawner", "CREATE", doc))


def task_seeds(doc, i):
    """A Task spawned by the cached spawner: its CREATE, and the dispatcher's and a user's edits."""
    doc = json.loads(json.dumps(doc))
    meta = doc.setdefault("metadata", {})
    meta["namespace"] = NS
    meta.setdefault("labels", {})["kelos.dev/taskspawner"] = SPAWNER if i % 2 == 0 else "broken-spawner"
    put("mutate_tasks", review("Task", "CREATE", doc, user=KELOS))
    put("validate_tasks", review("Task", "CREATE", doc, user=KELOS))
    snap = compact(on_completion(i))
    stamped = json.loads(json.dumps(doc))
    stamped["metadata"].setdefault("annotations", {})["kelos.dev/on-completion"] = snap
    put("mutate_tasks", review("Task", "CREATE", stamped, user=KELOS))
    put("validate_tasks", review("Task", "CREATE", stamped, user=KELOS))
    delivered = json.loads(json.dumps(stamped))
    delivered["metadata"]["annotations"]["kelos.dev/webhook-deliveries"] = DELIVERIES[i % len(DELIVERIES)]
    delivered["metadata"]["annotations"]["kelos.dev/webhook-report-phase"] = "Succeeded"
    put("validate_tasks", review("Task", "UPDATE", delivered, stamped, user=DISPATCHER))
    put("validate_tasks", review("Task", "UPDATE", delivered, stamped, user="alice"))
    forged = json.loads(json.dumps(stamped))
    forged["metadata"]["annotations"]["kelos.dev/on-completion"] = '{"hooks":[]}'
    put("validate_tasks", review("Task", "UPDATE", forged, stamped, user="alice"))


DELIVERIES = [
    compact({"phase": "Succeeded", "hooks": {"notify-team": {
        "state": "Delivered", "attempts": 1, "lastStatus": 200, "firstAttemptAt": "2026-01-02T03:04:05Z",
        "updatedAt": "2026-01-02T03:04:05Z"}}}),
    compact({"phase": "Failed", "hooks": {
        "notify-team": {"state": "Retrying", "attempts": 3, "lastStatus": 503, "lastError": "HTTP 503",
                        "nextAttemptAt": "2026-01-02T03:05:00.123456789Z",
                        "firstAttemptAt": "2026-01-02T03:04:05+01:00", "updatedAt": "2026-01-02T03:04:50Z"},
        "audit": {"state": "Failed", "attempts": 1, "lastStatus": 400, "lastError": "HTTP 400: bad request",
                  "updatedAt": "2026-01-02T03:04:06Z"},
        "later": {"state": "Pending", "updatedAt": "2026-01-02T03:04:06Z"},
        "old": {"state": "Skipped", "attempts": 0, "lastError": "the Task finished before --max-age",
                "updatedAt": "2026-01-02T03:04:06Z"}}}),
    compact({"phase": "Succeeded"}),
]

URLS = [
    "https://hooks.example.com/kelos/notify", "https://hooks.example.com", "https://h.example.com:8443/x?a=1#f",
    "https://hooks.example.com/x?token=abcdef&api-key=1", "http://hooks.example.com/x", "HTTPS://hooks.example.com/",
    "https:hooks.example.com", "https:///hooks.example.com", "https://user:pass@hooks.example.com/",
    "https://@hooks.example.com/", "https://127.0.0.1/", "https://2130706433/", "https://0x7f.1/", "https://0177.0.0.1/",
    "https://10.1.2.3:443/", "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:8.8.8.8]/",
    "https://[fd00::1]/", "https://[2606:4700::1111]/", "https://8.8.8.8/", "https://169.254.169.254/latest",
    "https://localhost/", "https://a.LOCALHOST./", "https://xn--bcher-kva.example/", "https://bücher.example/",
    "https://h.example.com:0/", "https://h.example.com:65535/", "//hooks.example.com/x", "/relative", "", " ",
    "https://h.example.com/a b", "https://h.example.com\\@evil.example.com/", "https://[::]/", "https://0.0.0.0/",
    "https://100.64.0.1/", "https://hooks.example.com./", "https://-bad-.example.com/", "https://a--b.example/",
]

RETRY_AFTER = ["120", " 7 ", "0", "-5", "18446744073709551615", "18446744073709551616", "soon", "",
               "Wed, 21 Oct 2015 07:28:00 GMT", "Thu, 01 Jan 2099 00:00:00 +0000", "Sun, 06 Nov 1994 08:49:37 GMT",
               "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "1.5", "Fri, 31 Dec 9999 23:59:59 -2359"]


def main():
    for i, f in enumerate(sorted(os.listdir(os.path.join(ROOT, "shared", "testdata")))):
        if f.endswith(".json"):
            task_seeds(json.load(open(os.path.join(ROOT, "shared", "testdata", f))), i)
    with tempfile.TemporaryDirectory() as bench:
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_reviews.py"), bench, NS],
                       check=True, stderr=subprocess.DEVNULL)
        spawner_seeds(json.load(open(os.path.join(bench, "taskspawner.json"))), 0)
        task_seeds(json.load(open(os.path.join(bench, "task.json"))), 0)
    if not os.path.isdir(EXAMPLES):
        sys.exit(f"seed.py: no kelos examples at {EXAMPLES} (set KELOS_EXAMPLES)")
    for i, f in enumerate(sorted(os.listdir(EXAMPLES))):
        if not f.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(open(os.path.join(EXAMPLES, f))):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "TaskSpawner":
                spawner_seeds(doc, i)
            elif doc.get("kind") == "Task":
                task_seeds(doc, i)
    # validate -f also reads lists, JSON and non-TaskSpawner documents.
    put("validate_yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: kelos.dev/v1alpha2\n  kind: TaskSpawner\n"
        "  metadata: {name: y}\n  spec: {onCompletion: {hooks: [{name: a, webhook: {url: 'ftp://x'}}]}}\n")
    put("validate_yaml", "anchors: &a [1, 2]\nref: *a\nmerge: {<<: {k: v}}\n")
    for d in DELIVERIES:
        put("deliveries", d)
    for u in URLS:
        put("url", u)
    for r in RETRY_AFTER:
        put("retry_after", r)
    put("snapshot", '[{"name":"notify","webhook":{"url":"https://h.example.com/x"}}]')  # kelos's own format
    put("snapshot", '{"hooks":[{"name":"a","webhook":{"url":"http://10.0.0.1/","format":"Teams"}}]}')
    put("snapshot", "null")
    for target, n in sorted(count.items()):
        print(f"seed.py: {target}: {n} new seed(s)")


main()
