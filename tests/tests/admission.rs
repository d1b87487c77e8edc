//! The admission server on a real API server: webhook configurations registered with url +
//! caBundle, kubectl applies refused with field paths, Task annotations injected and guarded,
//! certificate rotation without restart, fail-closed/fail-open when the server is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kelos_hooks_certs::{Ca, San, write_pair};
use kelos_hooks_shared::annotations::{ON_COMPLETION, encode_snapshot};
use kelos_hooks_shared::api::OnCompletion;
use kelos_hooks_tests::admission_server::{
    admission_serve, create_webhook_configs, delete_webhook_configs, probe, served_cert,
    server_log, spawn_logged, wait_ready,
};
use kelos_hooks_tests::kubectl::{kubectl, kubectl_apply};
use kelos_hooks_tests::{Cluster, cluster, free_port};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const DAY: Duration = Duration::from_secs(86_400);

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
    registered: bool,
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
            registered: false,
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

    fn webhook(&self, name: &str, path: &str, resource: &str, ops: &[&str], policy: &str) -> Value {
        let mut w = json!({
            "name": name,
            "clientConfig": {
                "url": self.url(path),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(self.ca.cert_pem()),
            },
            "rules": [{"apiGroups": ["kelos.dev"], "apiVersions": ["v1alpha2"], "resources": [resource],
                       "operations": ops, "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [
                {"key": "kelos-hooks.dev/test", "operator": "In", "values": [self.label]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]},
            ]},
            "failurePolicy": policy,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        });
        if resource == "tasks" {
            w["objectSelector"] = json!({"matchExpressions": [{"key": "kelos.dev/taskspawner", "operator": "Exists"}]});
        }
        w
    }

    /// Registers the validating and mutating configurations (named after the unique label).
    async fn register(&mut self, c: &Cluster) -> Result<()> {
        let client = c.client().await?;
        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": self.label},
            "webhooks": [
                self.webhook("taskspawners.validate.kelos-hooks.dev", "/validate/taskspawners", "taskspawners",
                             &["CREATE", "UPDATE"], "Fail"),
                // CREATE fails open (a webhook outage must not block kelos creating Tasks);
                // UPDATE fails closed (nobody tampers with the snapshot or delivery state meanwhile).
                self.webhook("tasks-create.validate.kelos-hooks.dev", "/validate/tasks", "tasks", &["CREATE"], "Ignore"),
                self.webhook("tasks-update.validate.kelos-hooks.dev", "/validate/tasks", "tasks", &["UPDATE"], "Fail"),
            ]
        }))?;
        let mut mutating = self.webhook(
            "tasks.mutate.kelos-hooks.dev",
            "/mutate/tasks",
            "tasks",
            &["CREATE"],
            "Ignore",
        );
        mutating["reinvocationPolicy"] = json!("Never");
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(
            json!({"metadata": {"name": self.label}, "webhooks": [mutating]}),
        )?;
        create_webhook_configs(client, &validating, &mutating).await?;
        self.registered = true;
        Ok(())
    }

    /// Waits until the API server calls both configurations (they are picked up asynchronously).
    async fn wait_effective(&self, c: &Cluster, ns: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe_spawner = spawner(
            "probe",
            json!({"hooks": [{"name": "a", "webhook": {"url": "https://10.0.0.1/x"}}]}),
        );
        let tasks = dynamic(c, ns, "Task").await?;
        let mut spawner_api_seen = false;
        loop {
            if !spawner_api_seen {
                let out = kubectl_apply(c, ns, &probe_spawner, &["--dry-run=server"]).await?;
                spawner_api_seen = !out.ok && out.stderr.contains("denied the request");
            }
            if spawner_api_seen {
                let t: DynamicObject = serde_json::from_value(task(
                    "probe-task",
                    Some("no-such-spawner"),
                    json!({ON_COMPLETION: "forged"}),
                ))?;
                let pp = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                if let Ok(created) = tasks.create(&pp, &t).await
                    && created
                        .metadata
                        .annotations
                        .as_ref()
                        .is_none_or(|a| !a.contains_key(ON_COMPLETION))
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("webhooks not effective within 30s:\n{}", self.log());
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

    async fn unregister(&mut self, c: &Cluster) -> Result<()> {
        if self.registered {
            delete_webhook_configs(c.client().await?, &self.label).await?;
            self.registered = false;
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

fn spawner(name: &str, on_completion: Value) -> Value {
    let mut s = json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
        "metadata": {"name": name},
        "spec": {"when": {"cron": {"schedule": "0 * * * *"}},
                 "taskTemplate": {"type": "claude-code",
                                  "credentials": {"type": "api-key", "secretRef": {"name": "k"}}}}
    });
    if !on_completion.is_null() {
        s["spec"]["onCompletion"] = on_completion;
    }
    s
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
    let mut server = Server::start(c, "ts", &["--allow-cidr", "192.168.0.0/16"]).await?;
    let ns = c.namespace(&server.label).await?;
    server.register(c).await?;
    server.wait_effective(c, &ns).await?;

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
        let out = kubectl_apply(c, &ns, &spawner("bad", oc.clone()), &[]).await?;
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
        let out = kubectl_apply(c, &ns, &spawner("bad", oc.clone()), &[]).await?;
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
        let out = kubectl_apply(c, &ns, &spawner("many", many.clone()), extra).await?;
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
    let out = kubectl_apply(c, &ns, &spawner("good", good_hooks()), &[]).await?;
    assert!(out.ok, "valid spawner refused: {}", out.stderr);
    let stored = dynamic(c, &ns, "TaskSpawner").await?.get("good").await?;
    assert_eq!(stored.data["spec"]["onCompletion"], good_hooks());

    // --allow-cidr opens a blocked range deliberately.
    let out = kubectl_apply(
        c,
        &ns,
        &spawner(
            "allowed",
            json!({"hooks": [hook("a", "https://192.168.1.10/x")]}),
        ),
        &[],
    )
    .await?;
    assert!(out.ok, "allow-listed address refused: {}", out.stderr);

    // Legal but unwise: created, with kubectl's Warning line.
    let token = json!({"hooks": [hook("a", "https://hooks.example.com/x?token=s3cr3t-value")]});
    let out = kubectl_apply(c, &ns, &spawner("warned", token), &[]).await?;
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
        &spawner(
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
    let mut server = Server::start(c, "task", &[]).await?;
    let ns = c.namespace(&server.label).await?;
    let other = c.namespace(&format!("{}-x", server.label)).await?;
    server.register(c).await?;
    server.wait_effective(c, &ns).await?;
    let tasks = dynamic(c, &ns, "Task").await?;

    for n in [&ns, &other] {
        let out = kubectl_apply(c, n, &spawner("sp", good_hooks()), &[]).await?;
        assert!(out.ok, "{}", out.stderr);
        let out = kubectl_apply(c, n, &spawner("plain", Value::Null), &[]).await?;
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
        spawner("fresh", json!({"hooks": [hook("f", "https://fresh.example.com/x")]})),
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

    // Editing the snapshot later: denied (change and removal).
    let out = kubectl(
        c,
        &[
            "annotate",
            "-n",
            &ns,
            "task",
            "t1",
            &format!("{ON_COMPLETION}={forged}"),
            "--overwrite",
        ],
        None,
    )
    .await?;
    assert!(!out.ok, "snapshot edit allowed");
    assert!(out.stderr.contains("immutable"), "{}", out.stderr);
    let out = kubectl(
        c,
        &[
            "annotate",
            "-n",
            &ns,
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
    assert_eq!(
        annotation(c, &ns, "t1").await?.as_deref(),
        Some(expected.as_str())
    );

    // Delivery annotations: only the dispatcher identity. Both users may patch Tasks (RBAC).
    let someone = format!("someone-{}", server.label);
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "task-editor"},
         "rules": [{"apiGroups": ["kelos.dev"], "resources": ["tasks"], "verbs": ["get", "list", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "task-editor"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "task-editor"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": someone},
                      {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": server.dispatcher}]},
    ]});
    let out = kubectl_apply(c, &ns, &rbac, &[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let deliveries = r#"kelos.dev/webhook-deliveries={"notify-team":{"state":"Delivered"}}"#;
    let as_someone = format!("--as={someone}");
    let out = kubectl(
        c,
        &[&as_someone, "annotate", "-n", &ns, "task", "t1", "note=ok"],
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
            &ns,
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
            &ns,
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
            &ns,
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
            &ns,
            "task",
            "t1",
            "kelos.dev/webhook-report-phase=Succeeded",
        ],
        None,
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);

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

#[tokio::test]
async fn rotated_certificate_is_served_without_restart() -> Result<()> {
    let c = cluster().await?;
    let mut server = Server::start(c, "rot", &[]).await?;
    let ns = c.namespace(&server.label).await?;
    server.register(c).await?;
    server.wait_effective(c, &ns).await?;

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
        &spawner("bad", json!({"hooks": [hook("a", "https://10.0.0.1/x")]})),
        &[],
    )
    .await?;
    assert!(
        !out.ok && out.stderr.contains("denied the request"),
        "{}",
        out.stderr
    );
    let out = kubectl_apply(c, &ns, &spawner("good", good_hooks()), &[]).await?;
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
    let mut server = Server::start(c, "down", &[]).await?;
    let ns = c.namespace(&server.label).await?;
    server.register(c).await?;
    server.wait_effective(c, &ns).await?;
    let out = kubectl_apply(c, &ns, &spawner("sp", good_hooks()), &[]).await?;
    assert!(out.ok, "{}", out.stderr);

    // Graceful shutdown: not ready first (during --shutdown-delay), then exit 0.
    server.terminate().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, body) = server.probe("/readyz").await?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    let status = server.wait_exit().await?;
    assert!(status.success(), "exit status {status}:\n{}", server.log());

    let out = kubectl_apply(c, &ns, &spawner("after", good_hooks()), &[]).await?;
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
    server.unregister(c).await?;
    Ok(())
}
