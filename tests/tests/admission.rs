//! The admission server on a real API server, registered as local runs do (the chart's
//! configurations rendered for a URL + caBundle by hack/webhook-configs.sh): kubectl applies
//! refused with field paths, Task annotations injected and guarded (by the chart's
//! ValidatingAdmissionPolicy by default, by the /validate/tasks webhook with guard=Webhook),
//! certificate rotation without restart, what still works and what is refused when the server is
//! gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kelos_hooks_certs::{Ca, San, write_pair};
use kelos_hooks_shared::annotations::{ON_COMPLETION, REPORT_PHASE, encode_snapshot};
use kelos_hooks_shared::api::OnCompletion;
use kelos_hooks_tests::admission_server::{
    admission_serve, probe, served_cert, server_log, spawn_logged, wait_ready,
};
use kelos_hooks_tests::kubectl::{kubectl, kubectl_apply};
use kelos_hooks_tests::tasks::spawner_manifest;
use kelos_hooks_tests::{Cluster, cluster, free_port, workspace_root};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const DAY: Duration = Duration::from_secs(86_400);
/// How the API server words a denial by the chart's ValidatingAdmissionPolicy, and by a webhook.
const POLICY_DENIAL: &str = "ValidatingAdmissionPolicy";
const WEBHOOK_DENIAL: &str = "admission webhook";
/// `webhooks.tasks.guard` values: the chart's default, and the one for clusters before 1.30.
const BY_POLICY: &str = "ValidatingAdmissionPolicy";
const BY_WEBHOOK: &str = "Webhook";

/// A running `kelos-hooks-admission serve` with its own CA, certificate files and webhook
/// configurations scoped to namespaces labelled `kelos-hooks.dev/test=<label>`.
struct Server {
    child: Option<Child>,
    port: u16,
    probe_port: u16,
    dir: tempfile::TempDir,
    ca: Ca,
    label: String,
    dispatcher: String,
    /// The manifests registered, to delete them again.
    registered: Option<String>,
}

fn unique_label(test: &str) -> String {
    format!("adm-{}-{test}", std::process::id())
}

fn issue(ca: &Ca) -> kelos_hooks_certs::Issued {
    ca.issue_server(
        "kelos-hooks-admission",
        &[San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        DAY,
    )
    .unwrap()
}

impl Server {
    async fn start(c: &Cluster, test: &str, extra: &[&str]) -> Result<Server> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let ca = Ca::generate(&format!("kelos-hooks-e2e-{test}"), DAY)?;
        write_pair(dir.path(), "tls", &issue(&ca))?;
        let label = unique_label(test);
        let dispatcher = format!("system:serviceaccount:{label}:kelos-hooks-dispatcher");
        let (port, probe_port) = (free_port(), free_port());
        let mut cmd = admission_serve(c, port, probe_port, dir.path());
        cmd.args([
            "--cert-reload-interval",
            "200ms",
            "--shutdown-delay",
            "1s",
            "--drain-timeout",
            "5s",
        ])
        .args(["--dispatcher-identity", &dispatcher])
        .args(extra);
        let child = spawn_logged(cmd, dir.path())?;
        let mut server = Server {
            child: Some(child),
            port,
            probe_port,
            dir,
            ca,
            label,
            dispatcher,
            registered: None,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    fn log(&self) -> String {
        server_log(self.dir.path())
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    async fn probe(&self, path: &str) -> Result<(u16, String)> {
        probe(self.probe_port, path).await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let dir = self.dir.path().to_owned();
        wait_ready(&mut self.child, self.probe_port, || server_log(&dir)).await
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Registers the chart's admission configuration for this server, as local runs do
    /// (`hack/webhook-configs.sh`), limited to namespaces labelled with this test's label.
    /// `guard` is the chart's `webhooks.tasks.guard`: who enforces the Task annotation rules.
    async fn register_with(&mut self, c: &Cluster, guard: &str) -> Result<()> {
        let ca_file = self.dir.path().join("ca.crt");
        std::fs::write(&ca_file, self.ca.cert_pem())?;
        let out = Command::new("bash")
            .arg(workspace_root().join("hack/webhook-configs.sh"))
            .args(["--url", &self.url(""), "--ca-file"])
            .arg(&ca_file)
            .args([
                "--name",
                &self.label,
                "--dispatcher-identity",
                &self.dispatcher,
            ])
            .args([
                "--namespace-label",
                &format!("kelos-hooks.dev/test={}", self.label),
            ])
            .args(["--task-guard", guard])
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "hack/webhook-configs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifests = String::from_utf8(out.stdout)?;
        let applied = kubectl(c, &["apply", "-f", "-"], Some(&manifests)).await?;
        ensure!(applied.ok, "{}", applied.stderr);
        self.registered = Some(manifests);
        Ok(())
    }

    /// A started server (flags `extra`) registered with `guard` and in effect in a fresh
    /// namespace carrying the test's label; that namespace.
    async fn registered(
        c: &Cluster,
        test: &str,
        extra: &[&str],
        guard: &str,
    ) -> Result<(Server, String)> {
        let mut server = Server::start(c, test, extra).await?;
        let ns = c.namespace(&server.label).await?;
        server.register_with(c, guard).await?;
        server.wait_effective(c, &ns).await?;
        Ok((server, ns))
    }

    /// Waits until the API server applies what was registered (it picks configurations up
    /// asynchronously): the TaskSpawner webhook, the mutating webhook and the Task annotation
    /// rules (policy or webhook), each seen refusing or rewriting a dry-run probe.
    async fn wait_effective(&self, c: &Cluster, ns: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe_spawner = spawner_manifest(
            "probe",
            json!({"hooks": [{"name": "a", "webhook": {"url": "https://10.0.0.1/x"}}]}),
        );
        let tasks = dynamic(c, ns, "Task").await?;
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let forged_snapshot: DynamicObject = serde_json::from_value(task(
            "probe-task",
            Some("no-such-spawner"),
            json!({ON_COMPLETION: "forged"}),
        ))?;
        let forged_delivery: DynamicObject = serde_json::from_value(task(
            "probe-task",
            Some("no-such-spawner"),
            json!({REPORT_PHASE: "Succeeded"}),
        ))?;
        let (mut spawners, mut mutation) = (false, false);
        loop {
            if !spawners {
                let out = kubectl_apply(c, ns, &probe_spawner, &["--dry-run=server"]).await?;
                spawners = !out.ok && out.stderr.contains("denied the request");
            }
            if spawners && !mutation {
                mutation = tasks
                    .create(&dry_run, &forged_snapshot)
                    .await
                    .is_ok_and(|t| {
                        t.metadata
                            .annotations
                            .is_none_or(|a| !a.contains_key(ON_COMPLETION))
                    });
            }
            if mutation
                && tasks
                    .create(&dry_run, &forged_delivery)
                    .await
                    .is_err_and(|e| e.to_string().contains("may only be changed"))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "admission configuration not effective within 30s (spawner webhook {spawners}, \
                     mutation {mutation}):\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM (graceful shutdown).
    async fn terminate(&self) -> Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .context("not running")?;
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        Ok(())
    }

    async fn wait_exit(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Ok(tokio::time::timeout(Duration::from_secs(20), child.wait()).await??)
    }

    /// Lets a test user and the dispatcher identity edit Tasks in `ns`; the test user's name.
    async fn task_editors(&self, c: &Cluster, ns: &str) -> Result<String> {
        let someone = format!("someone-{}", self.label);
        let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "task-editor"},
             "rules": [{"apiGroups": ["kelos.dev"], "resources": ["tasks"],
                        "verbs": ["get", "list", "create", "patch", "update"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "task-editor"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "task-editor"},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": someone},
                          {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": self.dispatcher}]},
        ]});
        let out = kubectl_apply(c, ns, &rbac, &[]).await?;
        ensure!(out.ok, "{}", out.stderr);
        Ok(someone)
    }

    async fn unregister(&mut self, c: &Cluster) -> Result<()> {
        if let Some(manifests) = self.registered.take() {
            let out = kubectl(c, &["delete", "-f", "-"], Some(&manifests)).await?;
            ensure!(out.ok, "{}", out.stderr);
        }
        Ok(())
    }
}

fn pem_der(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

fn task(name: &str, spawner: Option<&str>, annotations: Value) -> Value {
    let mut t = json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "Task",
        "metadata": {"name": name, "labels": {"app": "e2e"}},
        "spec": {"type": "claude-code", "prompt": "Fix it.",
                 "credentials": {"type": "api-key", "secretRef": {"name": "k"}}}
    });
    if let Some(s) = spawner {
        t["metadata"]["labels"]["kelos.dev/taskspawner"] = json!(s);
    }
    if !annotations.is_null() {
        t["metadata"]["annotations"] = annotations;
    }
    t
}

async fn dynamic(c: &Cluster, ns: &str, kind: &str) -> Result<Api<DynamicObject>> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("kelos.dev", "v1alpha2", kind));
    Ok(Api::namespaced_with(c.client().await?, ns, &ar))
}

async fn annotation(c: &Cluster, ns: &str, task_name: &str) -> Result<Option<String>> {
    let t = dynamic(c, ns, "Task").await?.get(task_name).await?;
    Ok(t.metadata
        .annotations
        .and_then(|mut a| a.remove(ON_COMPLETION)))
}

fn good_hooks() -> Value {
    json!({"hooks": [
        {"name": "notify-team", "phases": ["Succeeded", "Failed"],
         "webhook": {"url": "https://hooks.example.com/kelos", "signingSecretRef": {"name": "sig", "key": "secret"}}},
        {"name": "slack", "phases": ["Failed"],
         "webhook": {"url": "https://hooks.slack.example/services/T0/B0", "secretRef": {"name": "h"}, "format": "Slack"}},
    ]})
}

fn snapshot_of(hooks: &Value) -> String {
    let oc: OnCompletion = serde_json::from_value(hooks.clone()).unwrap();
    encode_snapshot(&oc.hooks)
}

fn hook(name: &str, url: &str) -> Value {
    json!({"name": name, "webhook": {"url": url, "signingSecretRef": {"name": "sig", "key": "secret"}}})
}

#[tokio::test]
async fn taskspawner_rules_are_enforced_at_apply_time() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) =
        Server::registered(c, "ts", &["--allow-cidr", "192.168.0.0/16"], BY_POLICY).await?;

    // Rules only the webhook knows (the CRD schema cannot express them), one manifest each.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "blocked IP literal",
            json!({"hooks": [hook("a", "https://10.1.2.3/x")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "loopback",
            json!({"hooks": [hook("a", "https://127.0.0.1:8443/x")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "metadata address",
            json!({"hooks": [hook("a", "https://169.254.169.254/x")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "IPv4-mapped IPv6",
            json!({"hooks": [hook("a", "https://[::ffff:10.0.0.1]/x")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "hex IPv4",
            json!({"hooks": [hook("a", "https://0x7f000001/x")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
    ];
    for (what, oc, path) in &cases {
        let out = kubectl_apply(c, &ns, &spawner_manifest("bad", oc.clone()), &[]).await?;
        assert!(!out.ok, "{what}: apply should fail; stdout {}", out.stdout);
        assert!(
            out.stderr.contains("denied the request"),
            "{what}: not our webhook: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(path),
            "{what}: {path} not named in: {}",
            out.stderr
        );
    }
    // Rules the CRD schema also carries: refused either way, and kubectl names the field.
    let schema_cases: Vec<(&str, Value, &str)> = vec![
        (
            "http",
            json!({"hooks": [hook("a", "http://hooks.example.com/x")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "nine hooks",
            json!({"hooks": (0..9).map(|i| hook(&format!("h{i}"), "https://a.example.com")).collect::<Vec<_>>()}),
            "spec.onCompletion.hooks",
        ),
        (
            "bad phase",
            json!({"hooks": [{"name": "a", "phases": ["Running"], "webhook": {"url": "https://a.example.com"}}]}),
            "spec.onCompletion.hooks[0].phases[0]",
        ),
        (
            "bad name",
            json!({"hooks": [hook("Not_A_Label", "https://a.example.com")]}),
            "spec.onCompletion.hooks[0].name",
        ),
        (
            "user info",
            json!({"hooks": [hook("a", "https://user:pw@a.example.com")]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "duplicate names",
            json!({"hooks": [hook("a", "https://a.example.com"), hook("a", "https://b.example.com")]}),
            "spec.onCompletion.hooks[1]",
        ),
        (
            "duplicate phases",
            json!({"hooks": [{"name": "a", "phases": ["Failed", "Failed"],
            "webhook": {"url": "https://a.example.com", "signingSecretRef": {"name": "s", "key": "k"}}}]}),
            "spec.onCompletion.hooks[0].phases",
        ),
        (
            "missing url",
            json!({"hooks": [{"name": "a", "webhook": {}}]}),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
    ];
    for (what, oc, path) in &schema_cases {
        let out = kubectl_apply(c, &ns, &spawner_manifest("bad", oc.clone()), &[]).await?;
        assert!(!out.ok, "{what}: apply should fail");
        assert!(
            out.stderr.contains(path),
            "{what}: {path} not named in: {}",
            out.stderr
        );
    }

    // Every violation at once, each with its path; a server-side dry run is judged the same.
    let many = json!({"hooks": [hook("a", "https://10.0.0.1/x"), hook("b", "https://172.16.0.1/y"),
                                hook("c", "https://[fd00::1]/z")]});
    for extra in [&[][..], &["--dry-run=server"][..]] {
        let out = kubectl_apply(c, &ns, &spawner_manifest("many", many.clone()), extra).await?;
        assert!(!out.ok);
        for path in [
            "hooks[0].webhook.url",
            "hooks[1].webhook.url",
            "hooks[2].webhook.url",
        ] {
            assert!(
                out.stderr.contains(path),
                "{path} missing ({extra:?}): {}",
                out.stderr
            );
        }
    }

    // Valid: created, stored as written.
    let out = kubectl_apply(c, &ns, &spawner_manifest("good", good_hooks()), &[]).await?;
    assert!(out.ok, "valid spawner refused: {}", out.stderr);
    let stored = dynamic(c, &ns, "TaskSpawner").await?.get("good").await?;
    assert_eq!(stored.data["spec"]["onCompletion"], good_hooks());

    // --allow-cidr opens a blocked range deliberately.
    let out = kubectl_apply(
        c,
        &ns,
        &spawner_manifest(
            "allowed",
            json!({"hooks": [hook("a", "https://192.168.1.10/x")]}),
        ),
        &[],
    )
    .await?;
    assert!(out.ok, "allow-listed address refused: {}", out.stderr);

    // Legal but unwise: created, with kubectl's Warning line.
    let token = json!({"hooks": [hook("a", "https://hooks.example.com/x?token=s3cr3t-value")]});
    let out = kubectl_apply(c, &ns, &spawner_manifest("warned", token), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Warning: spec.onCompletion.hooks[0].webhook.url"),
        "no kubectl warning: {}",
        out.stderr
    );
    // UPDATE is judged too.
    let out = kubectl_apply(
        c,
        &ns,
        &spawner_manifest(
            "good",
            json!({"hooks": [hook("a", "http://x.example.com")]}),
        ),
        &[],
    )
    .await?;
    assert!(
        !out.ok && out.stderr.contains("hooks[0].webhook.url"),
        "{}",
        out.stderr
    );

    let (code, metrics) = server.probe("/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"admission_requests_total{endpoint="validate-taskspawners",operation="CREATE",allowed="false"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("kelos_hooks_taskspawner_cache_synced 1"),
        "{metrics}"
    );
    server.unregister(c).await?;
    Ok(())
}

#[tokio::test]
async fn tasks_get_the_spawner_hooks_and_cannot_tamper_with_them() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) = Server::registered(c, "task", &[], BY_POLICY).await?;
    let other = c.namespace(&format!("{}-x", server.label)).await?;
    let tasks = dynamic(c, &ns, "Task").await?;

    for n in [&ns, &other] {
        let out = kubectl_apply(c, n, &spawner_manifest("sp", good_hooks()), &[]).await?;
        assert!(out.ok, "{}", out.stderr);
        let out = kubectl_apply(c, n, &spawner_manifest("plain", Value::Null), &[]).await?;
        assert!(out.ok, "{}", out.stderr);
    }
    let expected = snapshot_of(&good_hooks());
    let forged = snapshot_of(&json!({"hooks": [hook("evil", "https://evil.example.com/steal")]}));

    // Labelled Task: annotation = the spawner's hooks.
    let out = kubectl_apply(c, &ns, &task("t1", Some("sp"), Value::Null), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        annotation(c, &ns, "t1").await?.as_deref(),
        Some(expected.as_str())
    );
    // Forged annotation: overwritten.
    let out = kubectl_apply(
        c,
        &ns,
        &task(
            "t2",
            Some("sp"),
            json!({ON_COMPLETION: forged, "keep": "me"}),
        ),
        &[],
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        annotation(c, &ns, "t2").await?.as_deref(),
        Some(expected.as_str())
    );
    let t2 = tasks.get("t2").await?;
    assert_eq!(t2.metadata.annotations.as_ref().unwrap()["keep"], "me");
    // Spawner without hooks: a forged annotation is removed.
    let out = kubectl_apply(
        c,
        &ns,
        &task("t3", Some("plain"), json!({ON_COMPLETION: forged})),
        &[],
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(annotation(c, &ns, "t3").await?, None);
    // A spawner and its Task created together (cache may not know the spawner yet).
    let both = json!({"apiVersion": "v1", "kind": "List", "items": [
        spawner_manifest("fresh", json!({"hooks": [hook("f", "https://fresh.example.com/x")]})),
        task("t4", Some("fresh"), Value::Null),
    ]});
    let out = kubectl_apply(c, &ns, &both, &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        annotation(c, &ns, "t4").await?,
        Some(snapshot_of(
            &json!({"hooks": [hook("f", "https://fresh.example.com/x")]})
        ))
    );
    // Unlabelled Task and a Task in a namespace outside the selector: untouched.
    let out = kubectl_apply(
        c,
        &ns,
        &task("t5", None, json!({ON_COMPLETION: forged})),
        &[],
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        annotation(c, &ns, "t5").await?.as_deref(),
        Some(forged.as_str())
    );
    let out = kubectl_apply(
        c,
        &other,
        &task("t6", Some("sp"), json!({ON_COMPLETION: forged})),
        &[],
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        annotation(c, &other, "t6").await?.as_deref(),
        Some(forged.as_str())
    );
    let out = kubectl_apply(c, &other, &task("t7", Some("sp"), Value::Null), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(annotation(c, &other, "t7").await?, None);

    annotation_rules_hold(c, &server, &ns, &expected, &forged, POLICY_DENIAL).await?;

    let (_, metrics) = server.probe("/metrics").await?;
    assert!(
        metrics.contains(
            r#"admission_requests_total{endpoint="mutate-tasks",operation="CREATE",allowed="true"}"#
        ),
        "{metrics}"
    );
    assert!(
        !server.log().contains("s3cr3t"),
        "server log leaked a secret"
    );
    server.unregister(c).await?;
    Ok(())
}

/// The Task annotation rules on a real API server, whichever mechanism enforces them: Task `t1`
/// in `ns` (labelled, created with the `expected` snapshot) can't have its snapshot changed or
/// removed, nor its delivery annotations touched by anyone but the dispatcher identity, which may;
/// a labelled Task can't be created with delivery state either; other edits pass.
async fn annotation_rules_hold(
    c: &Cluster,
    server: &Server,
    ns: &str,
    expected: &str,
    forged: &str,
    enforcer: &str,
) -> Result<()> {
    // Editing the snapshot later: denied (change and removal).
    let out = kubectl(
        c,
        &[
            "annotate",
            "-n",
            ns,
            "task",
            "t1",
            &format!("{ON_COMPLETION}={forged}"),
            "--overwrite",
        ],
        None,
    )
    .await?;
    assert!(!out.ok, "snapshot edit allowed");
    assert!(
        out.stderr.contains("immutable") && out.stderr.contains(enforcer),
        "{}",
        out.stderr
    );
    let out = kubectl(
        c,
        &[
            "annotate",
            "-n",
            ns,
            "task",
            "t1",
            &format!("{ON_COMPLETION}-"),
        ],
        None,
    )
    .await?;
    assert!(
        !out.ok && out.stderr.contains("immutable"),
        "{}",
        out.stderr
    );
    assert_eq!(annotation(c, ns, "t1").await?.as_deref(), Some(expected));

    // Delivery annotations: only the dispatcher identity. Both users may edit Tasks (RBAC).
    let someone = server.task_editors(c, ns).await?;
    let deliveries = r#"kelos.dev/webhook-deliveries={"notify-team":{"state":"Delivered"}}"#;
    let as_someone = format!("--as={someone}");
    let out = kubectl(
        c,
        &[&as_someone, "annotate", "-n", ns, "task", "t1", "note=ok"],
        None,
    )
    .await?;
    assert!(out.ok, "RBAC for the test user is missing: {}", out.stderr);
    let out = kubectl(
        c,
        &[
            &as_someone,
            "annotate",
            "-n",
            ns,
            "task",
            "t1",
            deliveries,
            "--overwrite",
        ],
        None,
    )
    .await?;
    assert!(!out.ok, "non-dispatcher changed delivery state");
    assert!(
        out.stderr.contains("kelos.dev/webhook-deliveries"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&server.dispatcher), "{}", out.stderr);
    let as_dispatcher = format!("--as={}", server.dispatcher);
    let out = kubectl(
        c,
        &[
            &as_dispatcher,
            "annotate",
            "-n",
            ns,
            "task",
            "t1",
            deliveries,
            "--overwrite",
        ],
        None,
    )
    .await?;
    assert!(out.ok, "dispatcher refused: {}", out.stderr);
    let out = kubectl(
        c,
        &[
            &as_someone,
            "annotate",
            "-n",
            ns,
            "task",
            "t1",
            "kelos.dev/webhook-deliveries-",
        ],
        None,
    )
    .await?;
    assert!(!out.ok, "non-dispatcher removed delivery state");
    let out = kubectl(
        c,
        &[
            &as_dispatcher,
            "annotate",
            "-n",
            ns,
            "task",
            "t1",
            "kelos.dev/webhook-report-phase=Succeeded",
        ],
        None,
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);

    // Created with delivery state: only the dispatcher may.
    let with_state = task("t9", Some("sp"), json!({REPORT_PHASE: "Succeeded"}));
    let out = kubectl(
        c,
        &[&as_someone, "create", "-n", ns, "-f", "-"],
        Some(&with_state.to_string()),
    )
    .await?;
    assert!(
        !out.ok
            && out
                .stderr
                .contains("may only be changed by the kelos-hooks dispatcher"),
        "forged delivery state at creation: {}",
        out.stderr
    );
    Ok(())
}

/// `webhooks.tasks.guard=Webhook` (clusters before Kubernetes 1.30): the same rules, enforced by
/// the admission server's /validate/tasks.
#[tokio::test]
async fn task_annotation_rules_hold_with_the_webhook_guard_too() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) = Server::registered(c, "guard", &[], BY_WEBHOOK).await?;
    let out = kubectl_apply(c, &ns, &spawner_manifest("sp", good_hooks()), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_apply(c, &ns, &task("t1", Some("sp"), Value::Null), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let expected = snapshot_of(&good_hooks());
    assert_eq!(annotation(c, &ns, "t1").await?, Some(expected.clone()));
    let forged = snapshot_of(&json!({"hooks": [hook("evil", "https://evil.example.com/steal")]}));
    annotation_rules_hold(c, &server, &ns, &expected, &forged, WEBHOOK_DENIAL).await?;
    server.unregister(c).await?;
    Ok(())
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) = Server::registered(c, "rot", &[], BY_POLICY).await?;

    let first = pem_der(&std::fs::read_to_string(server.cert_path())?);
    assert_eq!(
        served_cert(server.port, server.ca.cert_pem().as_bytes()).await?,
        first
    );

    // Same CA (the registered caBundle stays valid), new key and serial.
    let next = issue(&server.ca);
    write_pair(server.dir.path(), "tls", &next)?;
    let second = pem_der(&next.cert_pem);
    assert_ne!(first, second);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if served_cert(server.port, server.ca.cert_pem().as_bytes()).await? == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 15s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API server keeps calling the webhook successfully with the new certificate.
    let out = kubectl_apply(
        c,
        &ns,
        &spawner_manifest("bad", json!({"hooks": [hook("a", "https://10.0.0.1/x")]})),
        &[],
    )
    .await?;
    assert!(
        !out.ok && out.stderr.contains("denied the request"),
        "{}",
        out.stderr
    );
    let out = kubectl_apply(c, &ns, &spawner_manifest("good", good_hooks()), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_apply(c, &ns, &task("t", Some("good"), Value::Null), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        annotation(c, &ns, "t").await?,
        Some(snapshot_of(&good_hooks()))
    );
    let (_, metrics) = server.probe("/metrics").await?;
    assert!(
        metrics.contains(r#"tls_cert_reloads_total{result="success"} 2"#),
        "{metrics}"
    );
    server.unregister(c).await?;
    Ok(())
}

#[tokio::test]
async fn stopped_server_fails_closed_for_spawners_and_open_for_tasks() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) = Server::registered(c, "down", &[], BY_POLICY).await?;
    let out = kubectl_apply(c, &ns, &spawner_manifest("sp", good_hooks()), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_apply(c, &ns, &task("before", Some("sp"), Value::Null), &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let someone = server.task_editors(c, &ns).await?;

    // Graceful shutdown: not ready first (during --shutdown-delay), then exit 0.
    server.terminate().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, body) = server.probe("/readyz").await?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    let status = server.wait_exit().await?;
    assert!(status.success(), "exit status {status}:\n{}", server.log());

    let out = kubectl_apply(c, &ns, &spawner_manifest("after", good_hooks()), &[]).await?;
    assert!(
        !out.ok,
        "TaskSpawner admitted without the validating webhook"
    );
    assert!(
        out.stderr.contains("failed calling webhook"),
        "{}",
        out.stderr
    );
    let out = kubectl_apply(c, &ns, &task("t", Some("sp"), Value::Null), &[]).await?;
    assert!(
        out.ok,
        "Task creation blocked by a stopped webhook: {}",
        out.stderr
    );
    assert_eq!(
        annotation(c, &ns, "t").await?,
        None,
        "no webhook, no snapshot (the dispatcher falls back)"
    );

    // Task updates never wait on the admission server: the policy runs in the API server. Edits
    // that leave our annotations alone pass (kelos's finalizers and labels, anyone's notes)...
    let as_someone = format!("--as={someone}");
    let edit = json!({"metadata": {"finalizers": ["kelos.dev/cleanup"], "labels": {"phase": "x"},
                                   "annotations": {"note": "hi"}}});
    let out = kubectl(
        c,
        &[
            &as_someone,
            "patch",
            "-n",
            &ns,
            "task",
            "before",
            "--type=merge",
            "-p",
            &edit.to_string(),
        ],
        None,
    )
    .await?;
    assert!(
        out.ok,
        "Task update blocked by a stopped admission server: {}",
        out.stderr
    );
    let before = dynamic(c, &ns, "Task").await?.get("before").await?;
    assert_eq!(
        before.metadata.finalizers,
        Some(vec!["kelos.dev/cleanup".to_owned()])
    );
    // ...while the snapshot and delivery state stay guarded.
    let out = kubectl(
        c,
        &[
            "annotate",
            "-n",
            &ns,
            "task",
            "before",
            &format!("{ON_COMPLETION}-"),
        ],
        None,
    )
    .await?;
    assert!(
        !out.ok && out.stderr.contains("immutable"),
        "{}",
        out.stderr
    );
    let phase = format!("{REPORT_PHASE}=Succeeded");
    let out = kubectl(
        c,
        &[&as_someone, "annotate", "-n", &ns, "task", "before", &phase],
        None,
    )
    .await?;
    assert!(
        !out.ok && out.stderr.contains("may only be changed"),
        "{}",
        out.stderr
    );
    let as_dispatcher = format!("--as={}", server.dispatcher);
    let out = kubectl(
        c,
        &[
            &as_dispatcher,
            "annotate",
            "-n",
            &ns,
            "task",
            "before",
            &phase,
        ],
        None,
    )
    .await?;
    assert!(
        out.ok,
        "dispatcher refused with the admission server stopped: {}",
        out.stderr
    );
    // The finalizer must not keep the namespace from going away.
    let out = kubectl(
        c,
        &[
            "patch",
            "-n",
            &ns,
            "task",
            "before",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    server.unregister(c).await?;
    Ok(())
}
