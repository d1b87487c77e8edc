//! The Helm chart (`charts/kelos-hooks`) against the real API server: lint, every meaningful
//! values combination rendered and applied with a server-side dry run, install and upgrade, the
//! values schema, the CRDs kept equal to the generated ones, and least-privilege RBAC checked by
//! impersonating the chart's service accounts.
//!
//! Webhook configurations are cluster-scoped and this API server is shared with concurrently
//! running tests: every real install scopes its webhooks to a namespace label no namespace
//! carries, so a registered webhook (whose Service has no pods here) never intercepts anyone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use futures::FutureExt;
use kelos_hooks_tests::helm::{helm_command, output_text as text, run};
use kelos_hooks_tests::{Cluster, cluster, workspace_root};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// `--set` scoping installed webhooks to a namespace label no namespace has: they match nothing.
const WEBHOOKS_MATCH_NO_NAMESPACE: &str =
    "webhooks.namespaceSelector.matchLabels.kelos-hooks\\.dev/test=chart-matches-no-namespace";

// ---------------------------------------------------------------------------------------------
// helm, kubectl and YAML helpers

fn chart_dir() -> PathBuf {
    workspace_root().join("charts/kelos-hooks")
}

/// helm with the test cluster's kubeconfig and its own cache/config dirs (nothing from $HOME).
fn helm(c: &Cluster) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(helm_command(c, "chart"));
    cmd.kill_on_drop(true);
    cmd
}

/// `--set` arguments for each `key=value`.
fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| ["--set".to_string(), (*s).to_string()])
        .collect()
}

/// `helm template`, as text; fails when helm does.
async fn template(c: &Cluster, release: &str, ns: &str, sets: &[&str]) -> Result<String> {
    let mut cmd = helm(c);
    cmd.args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", ns])
        .args(set_args(sets));
    run(cmd, &format!("helm template {sets:?}")).await
}

/// The non-empty YAML documents of a stream, as JSON.
fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"))
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", names(docs)))
}

fn names(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Feeds `yaml` to a kubectl command on stdin.
async fn kubectl_stdin(c: &Cluster, cmd_args: &[&str], yaml: &str) -> Result<String> {
    let mut cmd = c.kubectl();
    cmd.args(cmd_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(yaml.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    ensure!(
        out.status.success(),
        "kubectl {cmd_args:?} failed:\n{}",
        text(&out)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Every rendered object through the API server's admission and validation, persisting nothing.
async fn server_dry_run(c: &Cluster, yaml: &str) -> Result<String> {
    let out = kubectl_stdin(
        c,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=kelos-hooks-chart-test",
            "-f",
            "-",
        ],
        yaml,
    )
    .await?;
    ensure!(
        out.contains("(server dry run)"),
        "unexpected kubectl output: {out}"
    );
    Ok(out)
}

/// Minimal stand-ins for the cert-manager and Prometheus Operator CRDs (any content accepted), so
/// the API server can dry-run and store the chart's Issuers, Certificates and ServiceMonitor.
async fn install_stand_in_crds(c: &Cluster) -> Result<()> {
    let crd = |group: &str, kind: &str, plural: &str| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}"), "labels": {"kelos-hooks.dev/test": "chart-stand-in"}},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        })
    };
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        crd("cert-manager.io", "Issuer", "issuers"),
        crd("cert-manager.io", "Certificate", "certificates"),
        crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
        crd("monitoring.coreos.com", "PrometheusRule", "prometheusrules"),
    ]});
    kubectl_stdin(
        c,
        &[
            "apply",
            "--server-side",
            "--field-manager=kelos-hooks-chart-test",
            "-f",
            "-",
        ],
        &list.to_string(),
    )
    .await?;
    let mut wait = c.kubectl();
    wait.args(["wait", "--for=condition=Established", "--timeout=60s"])
        .args([
            "crd/issuers.cert-manager.io",
            "crd/certificates.cert-manager.io",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ]);
    run(wait, "kubectl wait for the stand-in CRDs").await?;
    Ok(())
}

/// `kubectl auth can-i VERB RESOURCE -n NS --as USER` → allowed?
async fn can_i(
    c: &Cluster,
    user: &str,
    verb: &str,
    resource: &str,
    ns: Option<&str>,
) -> Result<bool> {
    let mut cmd = c.kubectl();
    cmd.args(["auth", "can-i", verb, resource, "--as", user]);
    if let Some(ns) = ns {
        cmd.args(["--namespace", ns]);
    }
    let out = cmd.output().await?;
    match (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim(),
    ) {
        (Some(0), "yes") => Ok(true),
        (Some(1), "no") => Ok(false),
        _ => bail!("kubectl auth can-i {verb} {resource}: {}", text(&out)),
    }
}

/// Asserts a table of (verb, resource, namespace, expected) for one user; reports every mismatch.
async fn assert_access(
    c: &Cluster,
    user: &str,
    table: &[(&str, &str, Option<&str>, bool)],
) -> Result<()> {
    let mut wrong = Vec::new();
    for &(verb, resource, ns, expected) in table {
        let got = can_i(c, user, verb, resource, ns).await?;
        if got != expected {
            wrong.push(format!(
                "{verb} {resource} in {ns:?}: expected {expected}, got {got}"
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "RBAC of {user} is wrong:\n  {}",
        wrong.join("\n  ")
    );
    Ok(())
}

async fn helm_install(c: &Cluster, release: &str, ns: &str, sets: &[&str]) -> Result<String> {
    let mut cmd = helm(c);
    cmd.args(["install", release])
        .arg(chart_dir())
        .args(["--namespace", ns])
        .args(set_args(sets));
    run(cmd, &format!("helm install {release}")).await
}

/// Awaits `body`, then uninstalls the release even when `body` failed or panicked, so a failing
/// test leaves no webhook configuration or ClusterRole behind on the shared API server.
async fn then_uninstall(
    c: &Cluster,
    release: &str,
    ns: &str,
    body: impl Future<Output = Result<()>>,
) -> Result<()> {
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let uninstalled = helm_uninstall(c, release, ns).await;
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(result) => result.and(uninstalled),
    }
}

/// `--no-hooks`: no Job controller runs on this API server, so helm would wait for the
/// post-delete Job (the CRD extension's removal) forever; crd_coexist.rs runs that Job's command.
async fn helm_uninstall(c: &Cluster, release: &str, ns: &str) -> Result<()> {
    let mut cmd = helm(c);
    cmd.args(["uninstall", release, "--namespace", ns, "--no-hooks"]);
    run(cmd, &format!("helm uninstall {release}"))
        .await
        .map(drop)
}

/// `kubectl get … -o json`.
async fn get_json(c: &Cluster, what: &[&str]) -> Result<Value> {
    let mut cmd = c.kubectl();
    cmd.arg("get").args(what).args(["-o", "json"]);
    Ok(serde_json::from_str(
        &run(cmd, &format!("kubectl get {what:?}")).await?,
    )?)
}

// ---------------------------------------------------------------------------------------------
// lint and schema

#[tokio::test]
async fn chart_lints_strictly_for_every_mode() -> Result<()> {
    let c = cluster().await?;
    for sets in [
        &[][..],
        &["certificates.mode=cert-manager"][..],
        &[
            "crds.install=true",
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
        ][..],
        &[
            "webhooks.enabled=false",
            "secrets.namespaces={a,b}",
            "rbac.create=false",
        ][..],
        &["webhooks.tasks.guard=Webhook"][..],
    ] {
        let mut cmd = helm(c);
        cmd.args(["lint", "--strict"])
            .arg(chart_dir())
            .args(set_args(sets));
        let out = run(cmd, &format!("helm lint --strict {sets:?}")).await?;
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn values_schema_rejects_bad_values() -> Result<()> {
    let c = cluster().await?;
    let cases = [
        ("admission.replicas=two", "/admission/replicas"),
        ("certificates.mode=both", "/certificates/mode"),
        ("webhooks.timeoutSeconds=31", "/webhooks/timeoutSeconds"),
        (
            "webhooks.tasks.mutate.failurePolicy=Sometimes",
            "/webhooks/tasks/mutate/failurePolicy",
        ),
        ("dispatcher.maxAge=forever", "/dispatcher/maxAge"),
        ("allowCidrs={not-a-cidr}", "/allowCidrs/0"),
        ("admision.replicas=1", "admision"),
        (
            "secrets.namespaces={Bad_Namespace}",
            "/secrets/namespaces/0",
        ),
        ("logFormat=xml", "/logFormat"),
        ("webhooks.tasks.guard=CEL", "/webhooks/tasks/guard"),
        ("webhooks.url=http://127.0.0.1:8443", "/webhooks/url"),
    ];
    for (set, expect) in cases {
        let mut cmd = helm(c);
        cmd.args(["template", "schema"])
            .arg(chart_dir())
            .args(["--set", set]);
        let out = cmd.output().await?;
        let msg = text(&out);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(
            msg.contains("values don't meet the specifications of the schema"),
            "{set}: {msg}"
        );
        assert!(msg.contains(expect), "{set}: expected {expect:?} in {msg}");
    }
    // The good counterparts render.
    template(
        c,
        "schema",
        "default",
        &[
            "admission.replicas=3",
            "allowCidrs={10.0.0.0/8,fd00::/8}",
            "dispatcher.maxAge=30m",
        ],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CRDs: the chart's copy is the generated one

fn crd_file(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> PathBuf {
    chart_dir()
        .join("crds-templates")
        .join(format!("{}.yaml", crd.metadata.name.as_deref().unwrap()))
}

/// Set KELOS_HOOKS_BLESS_CHART_CRDS=1 to rewrite the chart's CRD files from the Rust types.
#[tokio::test]
async fn chart_crds_equal_the_generated_ones() -> Result<()> {
    let generated = kelos_hooks_shared::crd::all();
    if std::env::var_os("KELOS_HOOKS_BLESS_CHART_CRDS").is_some() {
        for crd in &generated {
            let header = "# Generated from the Rust types (kelos-hooks-admission crds); do not edit.\n\
                          # Refresh: KELOS_HOOKS_BLESS_CHART_CRDS=1 cargo test -p kelos-hooks-tests --test chart\n";
            std::fs::write(
                crd_file(crd),
                format!("{header}{}", serde_saphyr::to_string(crd)?),
            )?;
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("crds-templates"))?
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), generated.len(), "one file per CRD: {files:?}");
    for crd in &generated {
        let path = crd_file(crd);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let in_chart: Value = serde_saphyr::from_str(&text)?;
        assert_eq!(
            in_chart,
            serde_json::to_value(crd)?,
            "{} differs from the generated CRD; run with KELOS_HOOKS_BLESS_CHART_CRDS=1",
            path.display()
        );
    }

    // Rendered only when asked, unchanged but for labels and the keep annotation.
    let c = cluster().await?;
    let ns = c.namespace("chart-crds").await?;
    assert!(
        of_kind(
            &docs(&template(c, &ns, &ns, &[]).await?),
            "CustomResourceDefinition"
        )
        .is_empty()
    );
    let yaml = template(c, &ns, &ns, &["crds.install=true"]).await?;
    let rendered = docs(&yaml);
    let crds = of_kind(&rendered, "CustomResourceDefinition");
    assert_eq!(crds.len(), generated.len());
    for crd in &generated {
        let mut want = serde_json::to_value(crd)?;
        let got = one(
            &rendered,
            "CustomResourceDefinition",
            crd.metadata.name.as_deref().unwrap(),
        );
        assert_eq!(
            got["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        assert_eq!(
            got["metadata"]["labels"]["app.kubernetes.io/instance"],
            json!(ns)
        );
        want["metadata"]["labels"] = got["metadata"]["labels"].clone();
        want["metadata"]["annotations"] = got["metadata"]["annotations"].clone();
        assert_eq!(*got, want, "rendered CRD differs from the generated one");
    }
    let keep_off = docs(&template(c, &ns, &ns, &["crds.install=true", "crds.keep=false"]).await?);
    assert!(
        of_kind(&keep_off, "CustomResourceDefinition")
            .iter()
            .all(|d| d["metadata"]["annotations"].is_null())
    );
    // The installed (generated) CRDs accept the chart's copy: same owner-neutral content.
    server_dry_run(c, &yaml).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// rendering: each values combination, checked and dry-run on the server

#[tokio::test]
async fn default_values_render_secure_objects_the_server_accepts() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("chart-defaults").await?;
    let yaml = template(c, "kh", &ns, &["allowCidrs={10.1.0.0/16,fd00::/8}"]).await?;
    let d = docs(&yaml);

    // Self-managed certificates: nothing generated at template time, no TLS Secret mounted.
    assert!(
        of_kind(&d, "Secret").is_empty(),
        "the chart renders no Secret"
    );
    let objects = serde_json::to_string(&d)?;
    assert!(
        !objects.contains("BEGIN CERTIFICATE") && !objects.contains("caBundle"),
        "no certificate material"
    );
    assert!(of_kind(&d, "Certificate").is_empty() && of_kind(&d, "Issuer").is_empty());

    let admission = one(&d, "Deployment", "kh-kelos-hooks-admission");
    let dispatcher = one(&d, "Deployment", "kh-kelos-hooks-dispatcher");
    assert_eq!(admission["spec"]["replicas"], 2);
    assert_eq!(dispatcher["spec"]["replicas"], 2);
    let a = args(admission);
    for want in [
        "serve",
        "--listen=0.0.0.0:8443",
        "--metrics-listen=0.0.0.0:8080",
        "--tls-cert-file=/tls/tls.crt",
        "--tls-key-file=/tls/tls.key",
        "--allow-cidr=10.1.0.0/16",
        "--allow-cidr=fd00::/8",
        &format!("--dispatcher-identity=system:serviceaccount:{ns}:kh-kelos-hooks-dispatcher"),
        "--log-format=json",
        "--self-managed-certs",
        "--cert-secret=kh-kelos-hooks-admission-tls",
        "--service-name=kh-kelos-hooks-admission",
        "--validating-webhook-config=kh-kelos-hooks",
        "--mutating-webhook-config=kh-kelos-hooks",
    ] {
        assert!(
            a.iter().any(|x| x == want),
            "admission args lack {want}: {a:?}"
        );
    }
    let volumes = &admission["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes[0]["emptyDir"].is_object() && volumes[0]["secret"].is_null(),
        "{volumes}"
    );
    let p = args(dispatcher);
    for want in [
        "run",
        "--metrics-listen=0.0.0.0:8081",
        "--allow-cidr=10.1.0.0/16",
        "--allow-cidr=fd00::/8",
        "--request-timeout=10s",
        "--max-attempts=8",
        "--max-age=1h",
        "--lease-name=kh-kelos-hooks-dispatcher",
        "--lease-namespace=$(POD_NAMESPACE)",
        "--log-format=json",
    ] {
        assert!(
            p.iter().any(|x| x == want),
            "dispatcher args lack {want}: {p:?}"
        );
    }
    assert!(
        !p.iter().any(|x| x.starts_with("--ca-file")),
        "no --ca-file unless configured"
    );
    let env = &container(dispatcher)["env"];
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env[1]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    for dep in [admission, dispatcher] {
        let pod = &dep["spec"]["template"]["spec"];
        let sc = &container(dep)["securityContext"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(
            container(dep)["livenessProbe"]["httpGet"]["path"],
            "/healthz"
        );
        assert_eq!(
            container(dep)["readinessProbe"]["httpGet"]["path"],
            "/readyz"
        );
        assert!(container(dep)["resources"]["requests"]["memory"].is_string());
        let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0];
        assert_eq!(
            anti["podAffinityTerm"]["topologyKey"],
            "kubernetes.io/hostname"
        );
    }
    let pdb = one(&d, "PodDisruptionBudget", "kh-kelos-hooks-admission");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let svc = one(&d, "Service", "kh-kelos-hooks-admission");
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"})
    );
    assert_eq!(
        one(&d, "Service", "kh-kelos-hooks-dispatcher-metrics")["spec"]["ports"][0]["port"],
        8081
    );

    // Webhook configurations: scope, selectors, policies, and no caBundle from the chart.
    let vwc = one(&d, "ValidatingWebhookConfiguration", "kh-kelos-hooks");
    let mwc = one(&d, "MutatingWebhookConfiguration", "kh-kelos-hooks");
    let excluded = json!([{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ns, "kube-system"]}]);
    let spawner_label =
        json!({"matchExpressions": [{"key": "kelos.dev/taskspawner", "operator": "Exists"}]});
    let by_name = |cfg: &Value, name: &str| -> Value {
        cfg["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap()
    };
    let ts = by_name(vwc, "validate-taskspawners.hooks.kelos.dev");
    let mt = by_name(mwc, "mutate-tasks.hooks.kelos.dev");
    // The Task annotation rules are a ValidatingAdmissionPolicy by default: one webhook call per
    // Task CREATE (mutation), none per Task UPDATE.
    assert_eq!(
        vwc["webhooks"].as_array().map(Vec::len),
        Some(1),
        "no Task validating webhooks by default: {vwc}"
    );
    let check_webhook = |w: &Value, path: &str, resource: &str, ops: Value, policy: &str| {
        assert_eq!(
            w["clientConfig"]["service"],
            json!({"name": "kh-kelos-hooks-admission", "namespace": ns, "path": path, "port": 443})
        );
        assert!(w["clientConfig"]["caBundle"].is_null());
        assert_eq!(w["failurePolicy"], policy, "{path}");
        assert_eq!(w["sideEffects"], "None");
        assert_eq!(w["timeoutSeconds"], 5);
        assert_eq!(w["matchPolicy"], "Equivalent");
        assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(w["namespaceSelector"]["matchExpressions"], excluded);
        let rule = &w["rules"][0];
        assert_eq!(rule["apiGroups"], json!(["kelos.dev"]));
        assert_eq!(rule["apiVersions"], json!(["*"]));
        assert_eq!(rule["resources"], json!([resource]));
        assert_eq!(rule["operations"], ops);
        if resource == "tasks" {
            assert_eq!(w["objectSelector"], spawner_label, "{path}");
        } else {
            assert!(
                w["objectSelector"].is_null(),
                "every TaskSpawner is validated"
            );
        }
    };
    check_webhook(
        &ts,
        "/validate/taskspawners",
        "taskspawners",
        json!(["CREATE", "UPDATE"]),
        "Fail",
    );
    check_webhook(&mt, "/mutate/tasks", "tasks", json!(["CREATE"]), "Ignore");
    let policy = one(
        &d,
        "ValidatingAdmissionPolicy",
        "kh-kelos-hooks-task-annotations",
    );
    let binding = one(
        &d,
        "ValidatingAdmissionPolicyBinding",
        "kh-kelos-hooks-task-annotations",
    );
    let constraints = &policy["spec"]["matchConstraints"];
    assert_eq!(
        constraints["resourceRules"],
        json!([{"apiGroups": ["kelos.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                "resources": ["tasks"]}])
    );
    assert_eq!(constraints["matchPolicy"], "Equivalent");
    let dispatcher_rule = policy["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap().to_owned())
        .find(|e| e.contains("username"))
        .unwrap();
    assert!(
        dispatcher_rule.contains(&format!(
            r#"request.userInfo.username == "system:serviceaccount:{ns}:kh-kelos-hooks-dispatcher""#
        )),
        "{dispatcher_rule}"
    );
    assert_eq!(
        binding["spec"]["policyName"],
        "kh-kelos-hooks-task-annotations"
    );
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    let matched = &binding["spec"]["matchResources"];
    assert_eq!(matched["namespaceSelector"]["matchExpressions"], excluded);
    assert_eq!(matched["objectSelector"], spawner_label);

    // guard=Webhook (before Kubernetes 1.30): the rules as the two Task validating webhooks;
    // Task CREATE fails open (an outage never blocks kelos), UPDATE fails closed.
    let yaml_by_webhook = template(c, "kh", &ns, &["webhooks.tasks.guard=Webhook"]).await?;
    let by_webhook = docs(&yaml_by_webhook);
    assert!(of_kind(&by_webhook, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&by_webhook, "ValidatingAdmissionPolicyBinding").is_empty());
    let vwc_by_webhook = one(
        &by_webhook,
        "ValidatingWebhookConfiguration",
        "kh-kelos-hooks",
    );
    let vtc = by_name(vwc_by_webhook, "validate-task-creates.hooks.kelos.dev");
    let vtu = by_name(vwc_by_webhook, "validate-task-updates.hooks.kelos.dev");
    check_webhook(
        &vtc,
        "/validate/tasks",
        "tasks",
        json!(["CREATE"]),
        "Ignore",
    );
    check_webhook(&vtu, "/validate/tasks", "tasks", json!(["UPDATE"]), "Fail");
    server_dry_run(c, &yaml_by_webhook).await?;
    assert_eq!(mt["reinvocationPolicy"], "Never");
    // TaskSpawner UPDATEs that cannot express onCompletion: exact versions, Fail like validation.
    let mts = by_name(mwc, "mutate-taskspawners.hooks.kelos.dev");
    assert_eq!(
        mts["clientConfig"]["service"],
        json!({"name": "kh-kelos-hooks-admission", "namespace": ns, "path": "/mutate/taskspawners", "port": 443})
    );
    assert_eq!(mts["failurePolicy"], "Fail");
    assert_eq!(mts["matchPolicy"], "Exact");
    assert_eq!(mts["reinvocationPolicy"], "Never");
    assert_eq!(mts["namespaceSelector"]["matchExpressions"], excluded);
    assert_eq!(
        mts["rules"],
        json!([
            {"operations": ["UPDATE"], "apiGroups": ["kelos.dev"], "apiVersions": ["v1alpha2"],
             "resources": ["taskspawners"], "scope": "Namespaced"},
            {"operations": ["UPDATE"], "apiGroups": ["kelos.dev"], "apiVersions": ["v1alpha1"],
             "resources": ["taskspawners", "taskspawners/status"], "scope": "Namespaced"},
        ])
    );
    // The CRD extension is on by default, with its post-delete removal.
    let admission_args = args(one(&d, "Deployment", "kh-kelos-hooks-admission"));
    assert!(
        admission_args.contains(&"--extend-kelos-crd".to_owned()),
        "{admission_args:?}"
    );
    assert!(admission_args.contains(
        &"--kelos-identity=system:serviceaccount:kelos-system:kelos-controller,system:serviceaccount:*:kelos-spawner".to_owned()
    ));
    let remove = one(&d, "Job", "kh-kelos-hooks-crd-extension-remove");
    assert_eq!(
        remove["metadata"]["annotations"]["helm.sh/hook"],
        "post-delete"
    );
    assert_eq!(
        container(remove)["args"],
        json!(["crd-extension", "remove", "--settle=30s"])
    );
    let remove_role = one(&d, "ClusterRole", "kh-kelos-hooks-crd-extension-remove");
    assert_eq!(
        remove_role["rules"],
        json!([{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                "resourceNames": ["taskspawners.kelos.dev"], "verbs": ["get", "patch"]}])
    );
    assert!(
        vwc["metadata"]["annotations"].is_null() && mwc["metadata"]["annotations"].is_null(),
        "no CA injection"
    );

    server_dry_run(c, &yaml).await?;
    Ok(())
}

#[tokio::test]
async fn cert_manager_mode_injects_the_ca_and_leaves_certificates_to_cert_manager() -> Result<()> {
    let c = cluster().await?;
    install_stand_in_crds(c).await?;
    let ns = c.namespace("chart-certmanager").await?;
    let yaml = template(c, "kh", &ns, &["certificates.mode=cert-manager"]).await?;
    let d = docs(&yaml);

    // selfSigned Issuer → CA Certificate → CA Issuer → serving Certificate.
    assert_eq!(
        one(&d, "Issuer", "kh-kelos-hooks-selfsigned")["spec"]["selfSigned"],
        json!({})
    );
    let ca = one(&d, "Certificate", "kh-kelos-hooks-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "kh-kelos-hooks-selfsigned");
    assert_eq!(
        one(&d, "Issuer", "kh-kelos-hooks-ca")["spec"]["ca"]["secretName"],
        "kh-kelos-hooks-ca"
    );
    let serving = one(&d, "Certificate", "kh-kelos-hooks-admission");
    assert_eq!(
        serving["spec"]["secretName"],
        "kh-kelos-hooks-admission-tls"
    );
    assert_eq!(serving["spec"]["issuerRef"]["name"], "kh-kelos-hooks-ca");
    let dns = serving["spec"]["dnsNames"].as_array().unwrap();
    assert!(
        dns.contains(&json!(format!("kh-kelos-hooks-admission.{ns}.svc"))),
        "{dns:?}"
    );

    let inject =
        json!({"cert-manager.io/inject-ca-from": format!("{ns}/kh-kelos-hooks-admission")});
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let cfg = one(&d, kind, "kh-kelos-hooks");
        assert_eq!(cfg["metadata"]["annotations"], inject, "{kind}");
        assert!(
            cfg["webhooks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["clientConfig"]["caBundle"].is_null())
        );
    }
    // The server serves the mounted Secret and owns no caBundle: no flag, no RBAC for it.
    let admission = one(&d, "Deployment", "kh-kelos-hooks-admission");
    let a = args(admission);
    assert!(
        !a.iter().any(|x| x.starts_with("--self-managed-certs")
            || x.starts_with("--validating-webhook-config")),
        "{a:?}"
    );
    let volumes = &admission["spec"]["template"]["spec"]["volumes"];
    assert_eq!(
        volumes[0]["secret"]["secretName"],
        "kh-kelos-hooks-admission-tls"
    );
    assert_eq!(container(admission)["volumeMounts"][0]["readOnly"], true);
    assert!(
        of_kind(&d, "Role")
            .iter()
            .all(|r| r["metadata"]["name"] != "kh-kelos-hooks-admission-certs")
    );
    assert!(
        !yaml.contains("mutatingwebhookconfigurations"),
        "no RBAC on webhook configurations"
    );
    server_dry_run(c, &yaml).await?;

    // An existing issuer replaces the self-signed chain.
    let own = docs(
        &template(
            c,
            "kh",
            &ns,
            &[
                "certificates.mode=cert-manager",
                "certificates.certManager.issuerRef.name=corp-ca",
                "certificates.certManager.issuerRef.kind=ClusterIssuer",
            ],
        )
        .await?,
    );
    assert!(of_kind(&own, "Issuer").is_empty());
    let serving = one(&own, "Certificate", "kh-kelos-hooks-admission");
    assert_eq!(
        serving["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    Ok(())
}

#[tokio::test]
async fn monitoring_network_policy_and_limited_secrets_render_and_apply() -> Result<()> {
    let c = cluster().await?;
    install_stand_in_crds(c).await?;
    let ns = c.namespace("chart-extras").await?;
    let team_a = c.namespace("chart-team-a").await?;
    let team_b = c.namespace("chart-team-b").await?;
    let namespaces = format!("secrets.namespaces={{{team_a},{team_b}}}");
    let yaml = template(
        c,
        "kh",
        &ns,
        &[
            "serviceMonitor.enabled=true",
            "serviceMonitor.labels.release=prom",
            "networkPolicy.enabled=true",
            "dispatcher.extraCA.configMap=receiver-ca",
            "webhooks.timeoutSeconds=3",
            "webhooks.excludeNamespaces={kube-system,kube-public}",
            "webhooks.taskSpawners.failurePolicy=Ignore",
            &namespaces,
        ],
    )
    .await?;
    let d = docs(&yaml);

    let sm = one(&d, "ServiceMonitor", "kh-kelos-hooks");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    // Both metrics Services carry the selected labels and a "metrics" port.
    for svc in of_kind(&d, "Service") {
        for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&svc["metadata"]["labels"][k], v);
        }
        assert!(
            svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "metrics")
        );
    }
    let np = of_kind(&d, "NetworkPolicy");
    assert_eq!(np.len(), 2);
    assert_eq!(
        one(&d, "NetworkPolicy", "kh-kelos-hooks-admission")["spec"]["ingress"][0]["ports"][0]["port"],
        "https"
    );

    // Secrets: one RoleBinding per listed namespace, no cluster-wide binding.
    let bindings = of_kind(&d, "RoleBinding");
    let secret_bindings: Vec<_> = bindings
        .iter()
        .filter(|b| b["roleRef"]["name"] == "kh-kelos-hooks-dispatcher-secrets")
        .collect();
    let mut bound: Vec<_> = secret_bindings
        .iter()
        .map(|b| b["metadata"]["namespace"].as_str().unwrap())
        .collect();
    bound.sort();
    assert_eq!(bound, [team_a.as_str(), team_b.as_str()]);
    assert!(
        of_kind(&d, "ClusterRoleBinding")
            .iter()
            .all(|b| b["metadata"]["name"] != "kh-kelos-hooks-dispatcher-secrets")
    );

    // Values reach the webhook configuration and the dispatcher.
    let vwc = one(&d, "ValidatingWebhookConfiguration", "kh-kelos-hooks");
    assert_eq!(vwc["webhooks"][0]["timeoutSeconds"], 3);
    assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(
        vwc["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!([ns, "kube-system", "kube-public"])
    );
    let dispatcher = one(&d, "Deployment", "kh-kelos-hooks-dispatcher");
    assert!(args(dispatcher).contains(&"--ca-file=/etc/kelos-hooks/ca/ca.crt".to_string()));
    assert_eq!(
        dispatcher["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        "receiver-ca"
    );

    server_dry_run(c, &yaml).await?;

    // With webhooks off the chart registers nothing and the admission server gets no config to patch.
    let off = template(c, "kh", &ns, &["webhooks.enabled=false"]).await?;
    let d = docs(&off);
    assert!(
        of_kind(&d, "ValidatingWebhookConfiguration").is_empty()
            && of_kind(&d, "MutatingWebhookConfiguration").is_empty()
    );
    assert!(
        !args(one(&d, "Deployment", "kh-kelos-hooks-admission"))
            .iter()
            .any(|a| a.starts_with("--validating-webhook-config"))
    );
    assert!(!off.contains("webhookconfigurations"));
    server_dry_run(c, &off).await?;
    Ok(())
}

/// The operator features (issue 11): alerts, dashboard, the redelivery role, the requester stamp
/// and the Task guard's RBAC check, rendered and accepted by the API server.
#[tokio::test]
async fn alerts_dashboard_and_redelivery_render_and_apply() -> Result<()> {
    let c = cluster().await?;
    install_stand_in_crds(c).await?;
    let ns = c.namespace("chart-operate").await?;
    let yaml = template(
        c,
        "kh",
        &ns,
        &[
            "prometheusRule.enabled=true",
            "prometheusRule.labels.release=prom",
            "prometheusRule.alertLabels.team=platform",
            "grafanaDashboard.enabled=true",
            "grafanaDashboard.annotations.grafana_folder=kelos",
        ],
    )
    .await?;
    let d = docs(&yaml);

    // Alerts: the ones docs/operations.md suggests plus hook health, scoped to the release.
    let rule = one(&d, "PrometheusRule", "kh-kelos-hooks");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "KelosHooksDeliveriesFailed",
            "KelosHooksHookFailing",
            "KelosHooksNoLeader",
            "KelosHooksAdmissionCRDProblem",
            "KelosHooksDispatcherCRDNotOK",
            "KelosHooksAdmissionDenials"
        ]
    );
    for r in rules {
        let expr = r["expr"].as_str().unwrap();
        assert!(expr.contains(&format!("namespace=\"{ns}\"")), "{expr}");
        assert_eq!(r["labels"]["team"], "platform", "{r}");
        assert!(r["annotations"]["summary"].is_string(), "{r}");
    }
    assert!(
        rules[0]["expr"]
            .as_str()
            .unwrap()
            .contains(r#"outcome="failed""#)
    );
    assert!(
        rules[0]["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("{{ $value | humanize }}"),
        "Prometheus templates survive Helm: {}",
        rules[0]["annotations"]["description"]
    );

    // Dashboard: the sidecar's label, valid JSON, every panel querying a metric we export.
    let cm = one(&d, "ConfigMap", "kh-kelos-hooks-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "kelos");
    let dash: Value = serde_json::from_str(cm["data"]["kelos-hooks.json"].as_str().unwrap())?;
    assert_eq!(dash["uid"], "kelos-hooks");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{}", panels.len());
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            assert!(t["expr"].as_str().unwrap().contains("kelos_hooks_"), "{t}");
        }
    }

    // Redelivery: the verb, aggregated to edit and admin.
    let role = one(&d, "ClusterRole", "kh-kelos-hooks-redeliver");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["kelos.dev"], "resources": ["tasks"], "verbs": ["redeliver"]}])
    );
    let labels = &role["metadata"]["labels"];
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    // The requester stamp: only Task UPDATEs that set or change the request call the server.
    let mwc = one(&d, "MutatingWebhookConfiguration", "kh-kelos-hooks");
    let stamp = mwc["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "stamp-task-redeliveries.hooks.kelos.dev")
        .expect("the stamp webhook");
    assert_eq!(stamp["rules"][0]["operations"], json!(["UPDATE"]));
    assert_eq!(stamp["failurePolicy"], "Fail");
    assert!(
        stamp["clientConfig"]["service"]["path"] == "/mutate/tasks/redeliver",
        "{}",
        stamp["clientConfig"]
    );
    let conditions = stamp["matchConditions"].as_array().unwrap();
    assert!(
        conditions[0]["expression"]
            .as_str()
            .unwrap()
            .contains("kelos.dev/webhook-redeliver")
    );
    assert!(
        conditions[1]["expression"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "system:serviceaccount:{ns}:kh-kelos-hooks-dispatcher"
            ))
    );
    // The guard asks the authorizer for the verb and checks the stamp.
    let vap = one(
        &d,
        "ValidatingAdmissionPolicy",
        "kh-kelos-hooks-task-annotations",
    );
    let text = vap.to_string();
    assert!(text.contains("check('redeliver')"), "{text}");
    assert!(text.contains("kelos.dev/webhook-redeliver-by"), "{text}");
    // The dispatcher records answered test requests on its own second Lease.
    let leader_role = one(&d, "Role", "kh-kelos-hooks-dispatcher-leader-election");
    assert_eq!(
        leader_role["rules"][0]["resourceNames"],
        json!([
            "kh-kelos-hooks-dispatcher",
            "kh-kelos-hooks-dispatcher-tests"
        ])
    );
    server_dry_run(c, &yaml).await?;

    // Off by default; the role can be left out.
    let plain = docs(&template(c, "kh", &ns, &["redelivery.clusterRole=false"]).await?);
    assert!(of_kind(&plain, "PrometheusRule").is_empty());
    assert!(
        of_kind(&plain, "ConfigMap")
            .iter()
            .all(|c| c["metadata"]["labels"]["grafana_dashboard"].is_null())
    );
    assert!(
        of_kind(&plain, "ClusterRole")
            .iter()
            .all(|r| r["metadata"]["name"] != "kh-kelos-hooks-redeliver")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// install, upgrade, RBAC

#[tokio::test]
async fn install_then_upgrade_keeps_the_patched_ca_bundle() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("chart-install").await?;
    let release = ns.clone();
    let fullname = format!("{release}-kelos-hooks");
    helm_install(c, &release, &ns, &[WEBHOOKS_MATCH_NO_NAMESPACE]).await?;
    let body = async {
        let deploys = get_json(c, &["deployments", "-n", &ns]).await?;
        let mut found: Vec<(String, i64)> = deploys["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["metadata"]["name"].as_str().unwrap().to_string(),
                    d["spec"]["replicas"].as_i64().unwrap(),
                )
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                (format!("{fullname}-admission"), 2),
                (format!("{fullname}-dispatcher"), 2)
            ]
        );
        for kind in ["service", "serviceaccount", "poddisruptionbudget"] {
            get_json(c, &[kind, &format!("{fullname}-admission"), "-n", &ns]).await?;
        }
        let vwc = get_json(c, &["validatingwebhookconfiguration", &fullname]).await?;
        assert_eq!(vwc["webhooks"].as_array().unwrap().len(), 1);
        let policy = format!("{fullname}-task-annotations");
        get_json(c, &["validatingadmissionpolicy", &policy]).await?;
        let binding = get_json(c, &["validatingadmissionpolicybinding", &policy]).await?;
        assert_eq!(
            binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["kelos-hooks.dev/test"],
            "chart-matches-no-namespace"
        );
        assert_eq!(
            vwc["webhooks"][0]["namespaceSelector"]["matchLabels"]["kelos-hooks.dev/test"],
            "chart-matches-no-namespace"
        );

        // What the self-managed admission server does at start: patch caBundle of both configurations,
        // here through its own service account's permissions.
        let admission_sa = format!("system:serviceaccount:{ns}:{fullname}-admission");
        let ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
        for (kind, count) in [
            ("validatingwebhookconfiguration", 1),
            // TaskSpawner UPDATEs, Task CREATEs, redelivery requests (the requester stamp)
            ("mutatingwebhookconfiguration", 3),
        ] {
            let ops: Vec<Value> = (0..count)
                .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": ca}))
                .collect();
            let mut cmd = c.kubectl();
            cmd.args([
                "patch",
                kind,
                &fullname,
                "--type=json",
                "-p",
                &Value::Array(ops).to_string(),
                "--as",
                &admission_sa,
            ]);
            run(
                cmd,
                &format!("patch {kind} caBundle as the admission service account"),
            )
            .await?;
        }

        let mut cmd = helm(c);
        cmd.args(["upgrade", &release])
            .arg(chart_dir())
            .args(["--namespace", &ns])
            .args(set_args(&[
                WEBHOOKS_MATCH_NO_NAMESPACE,
                "admission.replicas=3",
                "dispatcher.maxAttempts=3",
                "webhooks.timeoutSeconds=7",
            ]));
        run(cmd, "helm upgrade").await?;

        let mut cmd = helm(c);
        cmd.args(["list", "--namespace", &ns, "-o", "json"]);
        let list: Value = serde_json::from_str(&run(cmd, "helm list").await?)?;
        assert!(
            list[0]["revision"] == json!(2) || list[0]["revision"] == json!("2"),
            "{list}"
        );
        assert_eq!(list[0]["status"], "deployed");

        let admission = get_json(
            c,
            &["deployment", &format!("{fullname}-admission"), "-n", &ns],
        )
        .await?;
        assert_eq!(admission["spec"]["replicas"], 3);
        let dispatcher = get_json(
            c,
            &["deployment", &format!("{fullname}-dispatcher"), "-n", &ns],
        )
        .await?;
        assert!(
            args(&dispatcher).contains(&"--max-attempts=3".to_string()),
            "{:?}",
            args(&dispatcher)
        );
        for kind in [
            "validatingwebhookconfiguration",
            "mutatingwebhookconfiguration",
        ] {
            let cfg = get_json(c, &[kind, &fullname]).await?;
            for w in cfg["webhooks"].as_array().unwrap() {
                assert_eq!(w["timeoutSeconds"], 7, "{kind}: upgrade applied");
                assert_eq!(
                    w["clientConfig"]["caBundle"], ca,
                    "{kind}: the upgrade must not drop the server's caBundle"
                );
            }
        }

        Ok::<(), anyhow::Error>(())
    };
    then_uninstall(c, &release, &ns, body).await?;
    let policy = format!("{fullname}-task-annotations");
    let mut cmd = c.kubectl();
    cmd.args([
        "get",
        &format!("validatingwebhookconfiguration/{fullname}"),
        &format!("validatingadmissionpolicy/{policy}"),
        &format!("validatingadmissionpolicybinding/{policy}"),
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    assert_eq!(
        run(cmd, "kubectl get").await?.trim(),
        "",
        "uninstall removes the webhook configuration and the policy"
    );
    Ok(())
}

#[tokio::test]
async fn rbac_allows_what_each_component_needs_and_nothing_more() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("chart-rbac").await?;
    let other = c.namespace("chart-rbac-other").await?;
    let release = ns.clone();
    let fullname = format!("{release}-kelos-hooks");
    helm_install(c, &release, &ns, &[WEBHOOKS_MATCH_NO_NAMESPACE]).await?;
    let body = async {
        let other_ns = Some(other.as_str());
        let own_ns = Some(ns.as_str());

        let dispatcher = format!("system:serviceaccount:{ns}:{fullname}-dispatcher");
        let lease = format!("leases.coordination.k8s.io/{fullname}-dispatcher");
        let config =
            format!("validatingwebhookconfigurations.admissionregistration.k8s.io/{fullname}");
        let mconfig =
            format!("mutatingwebhookconfigurations.admissionregistration.k8s.io/{fullname}");
        assert_access(
            c,
            &dispatcher,
            &[
                ("watch", "tasks.kelos.dev", other_ns, true),
                ("list", "tasks.kelos.dev", other_ns, true),
                ("patch", "tasks.kelos.dev", other_ns, true),
                ("update", "tasks.kelos.dev", other_ns, false),
                ("delete", "tasks.kelos.dev", other_ns, false),
                ("create", "tasks.kelos.dev", other_ns, false),
                ("watch", "taskspawners.kelos.dev", other_ns, true),
                ("patch", "taskspawners.kelos.dev", other_ns, false),
                ("get", "secrets", other_ns, true),
                ("list", "secrets", other_ns, false),
                ("watch", "secrets", other_ns, false),
                ("create", "secrets", own_ns, false),
                ("create", "events.events.k8s.io", other_ns, true),
                ("patch", "events.events.k8s.io", other_ns, true),
                ("delete", "events.events.k8s.io", other_ns, false),
                ("get", &lease, own_ns, true),
                ("update", &lease, own_ns, true),
                ("create", "leases.coordination.k8s.io", own_ns, true),
                ("delete", &lease, own_ns, false),
                (
                    "get",
                    "leases.coordination.k8s.io/someone-elses",
                    own_ns,
                    false,
                ),
                ("update", &lease, other_ns, false),
                ("create", "leases.coordination.k8s.io", other_ns, false),
                (
                    "get",
                    "customresourcedefinitions.apiextensions.k8s.io/taskspawners.kelos.dev",
                    None,
                    true,
                ),
                (
                    "get",
                    "customresourcedefinitions.apiextensions.k8s.io/other.example.com",
                    None,
                    false,
                ),
                (
                    "create",
                    "validatingwebhookconfigurations.admissionregistration.k8s.io",
                    None,
                    false,
                ),
                ("patch", &config, None, false),
                ("get", "pods", own_ns, false),
            ],
        )
        .await?;

        let admission = format!("system:serviceaccount:{ns}:{fullname}-admission");
        let own_secret = format!("secrets/{fullname}-admission-tls");
        assert_access(
            c,
            &admission,
            &[
                ("list", "taskspawners.kelos.dev", other_ns, true),
                ("watch", "taskspawners.kelos.dev", other_ns, true),
                ("get", "taskspawners.kelos.dev", other_ns, true),
                ("update", "taskspawners.kelos.dev", other_ns, false),
                ("get", "tasks.kelos.dev", other_ns, false),
                (
                    "get",
                    "customresourcedefinitions.apiextensions.k8s.io/taskspawners.kelos.dev",
                    None,
                    true,
                ),
                (
                    "update",
                    "customresourcedefinitions.apiextensions.k8s.io/taskspawners.kelos.dev",
                    None,
                    false,
                ),
                (
                    "patch",
                    "customresourcedefinitions.apiextensions.k8s.io/taskspawners.kelos.dev",
                    None,
                    true,
                ),
                (
                    "patch",
                    "customresourcedefinitions.apiextensions.k8s.io/tasks.kelos.dev",
                    None,
                    false,
                ),
                ("create", "events.events.k8s.io", other_ns, true),
                // Self-managed certificates: its own Secret only.
                ("get", &own_secret, own_ns, true),
                ("update", &own_secret, own_ns, true),
                ("create", "secrets", own_ns, true),
                ("delete", &own_secret, own_ns, false),
                ("get", "secrets/another-secret", own_ns, false),
                ("list", "secrets", own_ns, false),
                ("get", &own_secret, other_ns, false),
                ("create", "secrets", other_ns, false),
                ("get", &config, None, true),
                ("patch", &config, None, true),
                ("patch", &mconfig, None, true),
                ("delete", &config, None, false),
                ("update", &config, None, false),
                (
                    "patch",
                    "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses",
                    None,
                    false,
                ),
                (
                    "create",
                    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                    None,
                    false,
                ),
                ("get", &lease, own_ns, false),
            ],
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    };
    then_uninstall(c, &release, &ns, body).await?;
    Ok(())
}

#[tokio::test]
async fn rbac_narrows_with_cert_manager_and_listed_secret_namespaces() -> Result<()> {
    let c = cluster().await?;
    install_stand_in_crds(c).await?;
    let ns = c.namespace("chart-rbac-narrow").await?;
    let team = c.namespace("chart-rbac-team").await?;
    let other = c.namespace("chart-rbac-elsewhere").await?;
    let release = ns.clone();
    let fullname = format!("{release}-kelos-hooks");
    let namespaces = format!("secrets.namespaces={{{team}}}");
    helm_install(
        c,
        &release,
        &ns,
        &[
            WEBHOOKS_MATCH_NO_NAMESPACE,
            "certificates.mode=cert-manager",
            &namespaces,
        ],
    )
    .await?;
    let body = async {
        let certificate = get_json(
            c,
            &[
                "certificates.cert-manager.io",
                &format!("{fullname}-admission"),
                "-n",
                &ns,
            ],
        )
        .await?;
        assert_eq!(
            certificate["spec"]["secretName"],
            format!("{fullname}-admission-tls")
        );

        let dispatcher = format!("system:serviceaccount:{ns}:{fullname}-dispatcher");
        assert_access(
            c,
            &dispatcher,
            &[
                ("get", "secrets", Some(team.as_str()), true),
                ("get", "secrets", Some(other.as_str()), false),
                ("get", "secrets", Some(ns.as_str()), false),
                ("list", "secrets", Some(team.as_str()), false),
                ("patch", "tasks.kelos.dev", Some(other.as_str()), true),
            ],
        )
        .await?;
        let admission = format!("system:serviceaccount:{ns}:{fullname}-admission");
        assert_access(
            c,
            &admission,
            &[
                (
                    "get",
                    &format!("secrets/{fullname}-admission-tls"),
                    Some(ns.as_str()),
                    false,
                ),
                ("create", "secrets", Some(ns.as_str()), false),
                (
                    "patch",
                    &format!(
                        "validatingwebhookconfigurations.admissionregistration.k8s.io/{fullname}"
                    ),
                    None,
                    false,
                ),
                ("list", "taskspawners.kelos.dev", Some(other.as_str()), true),
            ],
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    };
    then_uninstall(c, &release, &ns, body).await?;
    Ok(())
}

/// kelos (or another release) owns the CRDs already: `crds.install=true` must not take them over.
#[tokio::test]
async fn crds_install_refuses_to_adopt_crds_it_does_not_own() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("chart-crd-owner").await?;
    let mut cmd = helm(c);
    cmd.args(["install", &ns])
        .arg(chart_dir())
        .args(["--namespace", &ns])
        .args(set_args(&[
            WEBHOOKS_MATCH_NO_NAMESPACE,
            "crds.install=true",
        ]));
    let out = cmd.output().await?;
    let msg = text(&out);
    assert!(
        !out.status.success(),
        "helm adopted CRDs it does not own:\n{msg}"
    );
    assert!(
        msg.contains(".kelos.dev\" in namespace \"\" exists and cannot be imported"),
        "{msg}"
    );
    let crd = get_json(c, &["crd", "taskspawners.kelos.dev"]).await?;
    assert!(
        crd["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(),
        "CRD left untouched"
    );
    let _ = helm_uninstall(c, &ns, &ns).await;
    Ok(())
}
