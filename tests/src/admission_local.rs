//! A local `kelos-hooks-admission serve` registered with the test cluster as local runs register
//! it (the chart's configurations rendered for a URL + caBundle by hack/webhook-configs.sh),
//! scoped to namespaces labelled `kelos-hooks.dev/test=<label>`; and the kelos objects the
//! admission tests send it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kelos_hooks_certs::{Ca, San, write_pair};
use kelos_hooks_shared::annotations::{ON_COMPLETION, REPORT_PHASE};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::admission_server::{admission_serve, probe, server_log, spawn_logged, wait_ready};
use crate::kubectl::{kubectl, kubectl_apply};
use crate::tasks::spawner_manifest;
use crate::{Cluster, free_port, workspace_root};

/// `webhooks.tasks.guard` values: the chart's default, and the one for clusters before 1.30.
pub const BY_POLICY: &str = "ValidatingAdmissionPolicy";
/// See [`BY_POLICY`].
pub const BY_WEBHOOK: &str = "Webhook";

/// Lifetime of the test certificates.
pub const DAY: Duration = Duration::from_secs(86_400);
/// A running `kelos-hooks-admission serve` with its own CA, certificate files and webhook
/// configurations scoped to namespaces labelled `kelos-hooks.dev/test=<label>`.
pub struct Server {
    /// The process (`None` once stopped).
    pub child: Option<Child>,
    /// The webhook port on 127.0.0.1.
    pub port: u16,
    /// The probe and metrics port.
    pub probe_port: u16,
    /// Certificates, CA and `server.log`.
    pub dir: tempfile::TempDir,
    /// The CA that signed the serving certificate.
    pub ca: Ca,
    /// The test's namespace label value and configuration name.
    pub label: String,
    /// The dispatcher identity the server and configurations were given.
    pub dispatcher: String,
    /// The manifests registered, to delete them again.
    registered: Option<String>,
    /// The flags every (re)start passes (see [`Server::start_as`]).
    flags: Vec<String>,
}

/// A label unique to this test process and `test`.
pub fn unique_label(test: &str) -> String {
    format!("adm-{}-{test}", std::process::id())
}

/// A serving certificate for 127.0.0.1 from `ca`.
pub fn issue(ca: &Ca) -> kelos_hooks_certs::Issued {
    ca.issue_server(
        "kelos-hooks-admission",
        &[San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        DAY,
    )
    .unwrap()
}

impl Server {
    /// Starts a server with its own CA and certificate, quick reload/shutdown timings and the
    /// flags `extra` (this start only: [`Server::restart_with`] passes its own), the dispatcher
    /// identity a ServiceAccount of the test, and waits until ready.
    pub async fn start(c: &Cluster, test: &str, extra: &[&str]) -> Result<Server> {
        let dispatcher = format!(
            "system:serviceaccount:{}:kelos-hooks-dispatcher",
            unique_label(test)
        );
        let quick = [
            "--cert-reload-interval",
            "200ms",
            "--shutdown-delay",
            "1s",
            "--drain-timeout",
            "5s",
        ];
        Server::launch(c, test, &dispatcher, &quick, extra).await
    }

    /// Starts a server with its own CA and certificate, told `dispatcher` is the dispatcher's
    /// identity, with exactly the flags `flags` (on every restart too), and waits until ready.
    pub async fn start_as(
        c: &Cluster,
        test: &str,
        dispatcher: &str,
        flags: &[&str],
    ) -> Result<Server> {
        Server::launch(c, test, dispatcher, flags, &[]).await
    }

    /// `base` flags on every (re)start, `extra` on this one.
    async fn launch(
        c: &Cluster,
        test: &str,
        dispatcher: &str,
        base: &[&str],
        extra: &[&str],
    ) -> Result<Server> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let ca = Ca::generate(&format!("kelos-hooks-e2e-{test}"), DAY)?;
        write_pair(dir.path(), "tls", &issue(&ca))?;
        let mut server = Server {
            child: None,
            port: free_port(),
            probe_port: free_port(),
            dir,
            ca,
            label: unique_label(test),
            dispatcher: dispatcher.to_owned(),
            registered: None,
            flags: base.iter().map(|f| (*f).to_owned()).collect(),
        };
        server.spawn(c, extra)?;
        server.wait_ready().await?;
        Ok(server)
    }

    fn spawn(&mut self, c: &Cluster, extra: &[&str]) -> Result<()> {
        let mut cmd = admission_serve(c, self.port, self.probe_port, self.dir.path());
        cmd.args(&self.flags)
            .args(["--dispatcher-identity", &self.dispatcher])
            .args(extra);
        self.child = Some(spawn_logged(cmd, self.dir.path())?);
        Ok(())
    }

    /// SIGKILLs the server and starts it again on the same ports, certificate and registration
    /// with the flags `extra` instead (e.g. a narrower `--allow-cidr`), waiting until ready.
    pub async fn restart_with(&mut self, c: &Cluster, extra: &[&str]) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        self.spawn(c, extra)?;
        self.wait_ready().await
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        server_log(self.dir.path())
    }

    /// The serving certificate file.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    /// A `GET` on the probe port.
    pub async fn probe(&self, path: &str) -> Result<(u16, String)> {
        probe(self.probe_port, path).await
    }

    /// Waits for `/readyz`.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let dir = self.dir.path().to_owned();
        wait_ready(&mut self.child, self.probe_port, || server_log(&dir)).await
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The chart's admission configuration for this server as local runs render it
    /// (`hack/webhook-configs.sh --url … --ca-file …` and `args`), to `kubectl apply`.
    pub async fn webhook_configs(&self, args: &[&str]) -> Result<String> {
        let ca_file = self.dir.path().join("ca.crt");
        std::fs::write(&ca_file, self.ca.cert_pem())?;
        let out = Command::new("bash")
            .arg(workspace_root().join("hack/webhook-configs.sh"))
            .args(["--url", &self.url(""), "--ca-file"])
            .arg(&ca_file)
            .args(args)
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "hack/webhook-configs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Registers the chart's admission configuration for this server, limited to namespaces
    /// labelled with this test's label. `guard` is the chart's `webhooks.tasks.guard`: who
    /// enforces the Task annotation rules.
    pub async fn register_with(&mut self, c: &Cluster, guard: &str) -> Result<()> {
        let selector = format!("kelos-hooks.dev/test={}", self.label);
        let manifests = self
            .webhook_configs(&[
                "--name",
                &self.label,
                "--dispatcher-identity",
                &self.dispatcher,
                "--namespace-label",
                &selector,
                "--task-guard",
                guard,
            ])
            .await?;
        let applied = kubectl(c, &["apply", "-f", "-"], Some(&manifests)).await?;
        ensure!(applied.ok, "{}", applied.stderr);
        self.registered = Some(manifests);
        Ok(())
    }

    /// A started server (flags `extra`) registered with `guard` and in effect in a fresh
    /// namespace carrying the test's label; that namespace.
    pub async fn registered(
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
    pub async fn wait_effective(&self, c: &Cluster, ns: &str) -> Result<()> {
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
    pub async fn terminate(&self) -> Result<()> {
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

    /// Waits up to 20s for the process to exit.
    pub async fn wait_exit(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Ok(tokio::time::timeout(Duration::from_secs(20), child.wait()).await??)
    }

    /// Lets a test user and the dispatcher identity edit Tasks in `ns`; the test user's name.
    pub async fn task_editors(&self, c: &Cluster, ns: &str) -> Result<String> {
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

    /// Deletes what [`Server::register_with`] registered.
    pub async fn unregister(&mut self, c: &Cluster) -> Result<()> {
        if let Some(manifests) = self.registered.take() {
            let out = kubectl(c, &["delete", "-f", "-"], Some(&manifests)).await?;
            ensure!(out.ok, "{}", out.stderr);
        }
        Ok(())
    }
}

/// A kelos v1alpha2 Task `name` (labelled for `spawner`, when given) with `annotations`.
pub fn task(name: &str, spawner: Option<&str>, annotations: Value) -> Value {
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

/// The kelos.dev/v1alpha2 `kind` objects of `ns`.
pub async fn dynamic(c: &Cluster, ns: &str, kind: &str) -> Result<Api<DynamicObject>> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("kelos.dev", "v1alpha2", kind));
    Ok(Api::namespaced_with(c.client().await?, ns, &ar))
}
