//! kelos-hooks' schema inside the API server, with no admission webhook registered:
//! - the CEL rules of the generated CRD answer with the admission server's wording and field
//!   paths, never a raw regex, never a URL's password;
//! - on kelos's own TaskSpawner CRD (from the kelos source snapshot, applied by a forced
//!   server-side apply as `kelos install` applies it), `serve --extend-kelos-crd` adds
//!   `spec.onCompletion`, puts it back after every replay of kelos's CRD (readyz, an Event and a
//!   metric say so), owns nothing of the CRD but the atomic `spec.versions`, and the chart's
//!   post-delete hook command, run with exactly the hook's RBAC, takes it out again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kelos_hooks_certs::{Ca, San, write_pair};
use kelos_hooks_shared::crd::{on_completion_schema, v1alpha1_refusal_schema};
use kelos_hooks_tests::admission_server::{
    admission_serve, probe, server_log, spawn_logged, wait_ready,
};
use kelos_hooks_tests::impersonate::{client_from, write_impersonating_kubeconfig};
use kelos_hooks_tests::kubectl::kubectl;
use kelos_hooks_tests::tasks::spawner_manifest;
use kelos_hooks_tests::{Cluster, bin, cluster, free_port, workspace_root};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use tokio::process::Child;

const CRD: &str = "taskspawners.kelos.dev";

// ---------------------------------------------------------------------------------------------
// CEL: what a user reads when the API server answers before the webhook

/// A TaskSpawner (valid for kelos's schema, both versions) with `hooks`.
fn spawner_with(name: &str, hooks: Value) -> String {
    spawner_manifest(name, json!({"hooks": hooks})).to_string()
}

fn hook(name: &str, webhook: Value) -> Value {
    json!({"name": name, "webhook": webhook})
}

/// (what is wrong, hooks, what the API server must say, what the webhook's rules say).
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let url = |u: &str| json!({"url": u});
    vec![
        (
            "duplicate name",
            json!([
                hook("a", url("https://h.example.com/1")),
                hook("a", url("https://h.example.com/2"))
            ]),
            "spec.onCompletion.hooks[1].name: duplicate name \"a\", already used by hooks[0]; hook names must be unique",
            "spec.onCompletion.hooks[1].name: duplicate name \"a\", already used by hooks[0]; hook names must be unique",
        ),
        (
            "plain http with a password",
            json!([hook("a", url("http://user:hunter2@h.example.com/x"))]),
            "spec.onCompletion.hooks[0].webhook.url: Invalid value: must use https",
            "spec.onCompletion.hooks[0].webhook.url: must use https",
        ),
        (
            "a password in an https URL",
            json!([hook("a", url("https://user:hunter2@h.example.com/x"))]),
            "spec.onCompletion.hooks[0].webhook.url: Invalid value: must not contain credentials; put them in secretRef",
            "spec.onCompletion.hooks[0].webhook.url: must not contain credentials; put them in secretRef",
        ),
        (
            "upper-case scheme",
            json!([hook("a", url("HTTPS://h.example.com/x"))]),
            "webhook.url: Invalid value: must start with https:// (lowercase) followed directly by the host",
            "webhook.url: must start with https:// (lowercase) followed directly by the host",
        ),
        (
            "no scheme",
            json!([hook("a", url("hooks.example.com/x"))]),
            "webhook.url: Invalid value: must be an absolute URL such as https://hooks.example.com/path",
            "webhook.url: must be an absolute URL such as https://hooks.example.com/path",
        ),
        (
            "a space",
            json!([hook("a", url("https://h.example.com/a b"))]),
            "webhook.url: Invalid value: must not contain spaces, line breaks or control characters",
            "webhook.url: must not contain spaces, line breaks or control characters",
        ),
        (
            "no host",
            json!([hook("a", url("https:///x"))]),
            "webhook.url: Invalid value: must start with https:// (lowercase) followed directly by the host",
            "webhook.url: must start with https:// (lowercase) followed directly by the host",
        ),
        (
            "bad hook name",
            json!([hook("Notify_Team", url("https://h.example.com/x"))]),
            "spec.onCompletion.hooks[0].name: Invalid value: \"Notify_Team\": is not a DNS-1123 label",
            "\"Notify_Team\" is not a DNS-1123 label",
        ),
        (
            "unknown phase",
            json!([{"name": "a", "phases": ["Succeded"], "webhook": url("https://h.example.com/x")}]),
            "spec.onCompletion.hooks[0].phases[0]: Invalid value: \"Succeded\": unknown phase; allowed: Succeeded, Failed",
            "spec.onCompletion.hooks[0].phases[0]: unknown phase \"Succeded\"; allowed: Succeeded, Failed",
        ),
        (
            "duplicate phase",
            json!([{"name": "a", "phases": ["Failed", "Failed"], "webhook": url("https://h.example.com/x")}]),
            "spec.onCompletion.hooks[0].phases: Invalid value: duplicate phase \"Failed\", already at phases[0]; list each phase once",
            "spec.onCompletion.hooks[0].phases[1]: duplicate phase \"Failed\", already at phases[0]; list each phase once",
        ),
        (
            "no phases",
            json!([{"name": "a", "phases": [], "webhook": url("https://h.example.com/x")}]),
            "spec.onCompletion.hooks[0].phases: Invalid value: must not be empty; list some of Succeeded, Failed, or omit phases to fire on both",
            "spec.onCompletion.hooks[0].phases: must not be empty; list some of Succeeded, Failed, or omit phases to fire on both",
        ),
        (
            "unknown format",
            json!([hook(
                "a",
                json!({"url": "https://h.example.com/x", "format": "Teams"})
            )]),
            "spec.onCompletion.hooks[0].webhook.format: Invalid value: unknown format; allowed: Generic, CloudEvents, Slack, PagerDuty, MSTeams, Discord, Template (default Generic)",
            "spec.onCompletion.hooks[0].webhook.format: unknown format \"Teams\"; allowed: Generic, CloudEvents, Slack, PagerDuty, MSTeams, Discord, Template (default Generic)",
        ),
        (
            "PagerDuty without its routing key",
            json!([hook(
                "a",
                json!({"url": "https://events.pagerduty.com/v2/enqueue", "format": "PagerDuty"})
            )]),
            "spec.onCompletion.hooks[0].webhook.pagerDuty: Invalid value: required with format PagerDuty; set pagerDuty.routingKeySecretRef",
            "spec.onCompletion.hooks[0].webhook.pagerDuty: required with format PagerDuty; set pagerDuty.routingKeySecretRef",
        ),
        (
            "template on another format",
            json!([hook(
                "a",
                json!({"url": "https://h.example.com/x", "template": {"body": "x"}})
            )]),
            "spec.onCompletion.hooks[0].webhook.template: Invalid value: only for format Template",
            "spec.onCompletion.hooks[0].webhook.template: only for format Template",
        ),
        (
            "bad Secret name and key",
            json!([hook(
                "a",
                json!({"url": "https://h.example.com/x", "secretRef": {"name": "Bad_Name"},
                                     "signingSecretRef": {"name": "s", "key": "..k"}})
            )]),
            "spec.onCompletion.hooks[0].webhook.secretRef.name: Invalid value: \"Bad_Name\": is not a valid Secret name",
            "spec.onCompletion.hooks[0].webhook.secretRef.name: \"Bad_Name\" is not a valid Secret name",
        ),
        (
            "nine hooks",
            Value::Array(
                (0..9)
                    .map(|i| hook(&format!("h{i}"), url(&format!("https://h.example.com/{i}"))))
                    .collect(),
            ),
            "spec.onCompletion.hooks: Invalid value: must have at most 8 hooks, has 9; remove 1 or fan out from one receiver",
            "spec.onCompletion.hooks: must have at most 8 hooks, has 9; remove 1 or fan out from one receiver",
        ),
    ]
}

/// With no admission webhook for the namespace, the API server alone refuses each bad
/// TaskSpawner with our wording; the offline validator (the webhook's rules) says the same.
#[tokio::test]
async fn cel_rules_answer_with_our_wording_when_no_webhook_runs() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("crd-cel").await?;
    let dir = tempfile::tempdir()?;
    let mut wrong = Vec::new();
    for (i, (what, hooks, api_says, webhook_says)) in cases().into_iter().enumerate() {
        let manifest = spawner_with(&format!("bad-{i}"), hooks);
        let out = kubectl(
            c,
            &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
            Some(&manifest),
        )
        .await?;
        if out.ok || !out.stderr.contains(api_says) {
            wrong.push(format!(
                "{what}: the API server said\n{}\n  expected: {api_says}",
                out.stderr
            ));
        }
        for leak in ["hunter2", "should match", "^https", "in body should"] {
            if out.stderr.contains(leak) {
                wrong.push(format!(
                    "{what}: the API server's answer contains {leak:?}:\n{}",
                    out.stderr
                ));
            }
        }
        let file = dir.path().join(format!("{i}.yaml"));
        std::fs::write(&file, &manifest)?;
        let offline = tokio::process::Command::new(bin("kelos-hooks-admission"))
            .arg("validate")
            .arg("-f")
            .arg(&file)
            .output()
            .await?;
        let said = String::from_utf8_lossy(&offline.stderr);
        if offline.status.success() || !said.contains(webhook_says) {
            wrong.push(format!(
                "{what}: the webhook's rules said\n{said}\n  expected: {webhook_says}"
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n\n"));

    // A valid spawner with every field is accepted as it is.
    let good = spawner_with(
        "good",
        json!([{"name": "a", "phases": ["Succeeded", "Failed"], "webhook": {
            "url": "https://hooks.example.com:8443/x?team=1", "format": "Slack",
            "secretRef": {"name": "team.headers"}, "signingSecretRef": {"name": "s", "key": "secret_1"}}},
               {"name": "b", "webhook": {"url": "https://[2001:db8::1]/x"}}]),
    );
    let out = kubectl(
        c,
        &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
        Some(&good),
    )
    .await?;
    ensure!(out.ok, "a valid TaskSpawner was refused: {}", out.stderr);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// kelos's own TaskSpawner CRD, extended and replayed

/// kelos's TaskSpawner CRD as `kelos install` applies it: the chart template without its Helm
/// lines (the optional keep annotation).
fn kelos_crd() -> Result<Value> {
    let path = workspace_root().join(
        "../shared/kelos-src/internal/manifests/charts/kelos/charts/kelos-crds/templates/taskspawner-crd.yaml",
    );
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: the kelos source snapshot must be there",
            path.display()
        )
    })?;
    let plain: String = text
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(serde_saphyr::from_str(&plain)?)
}

/// A forced server-side apply under kelos's field manager, as `kelos install` does.
async fn apply_as_kelos(api: &Api<CustomResourceDefinition>, crd: &Value) -> Result<()> {
    api.patch(
        CRD,
        &PatchParams::apply("kelos").force(),
        &Patch::Apply(crd),
    )
    .await
    .context("applying kelos's CRD as kelos does")?;
    let established = await_condition(api.clone(), CRD, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established).await??;
    Ok(())
}

fn on_completion(crd: &Value, version: &str) -> Value {
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == version)
        .map(|v| {
            v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["onCompletion"]
                .clone()
        })
        .unwrap_or(Value::Null)
}

async fn crd_json(api: &Api<CustomResourceDefinition>) -> Result<Value> {
    Ok(serde_json::to_value(api.get(CRD).await?)?)
}

/// Waits until `ok` holds for the CRD, or fails after 30 s showing `log`.
async fn wait_crd(
    api: &Api<CustomResourceDefinition>,
    what: &str,
    log: impl Fn() -> String,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crd_json(api).await?;
        if ok(&crd) {
            return Ok(crd);
        }
        if Instant::now() > deadline {
            bail!("{what} within 30s; server log:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admission server with `--extend-kelos-crd` on `c` (admin credentials; the chart's RBAC is
/// chart_rbac_run.rs's business), killed on drop.
struct Server {
    child: Option<Child>,
    probe_port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(c: &Cluster) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let day = Duration::from_secs(86400);
        let ca = Ca::generate("crd-coexist", day)?;
        let issued = ca.issue_server(
            "admission",
            &[San::Ip(std::net::Ipv4Addr::LOCALHOST.into())],
            day,
        )?;
        write_pair(dir.path(), "tls", &issued)?;
        let probe_port = free_port();
        let mut cmd = admission_serve(c, free_port(), probe_port, dir.path());
        cmd.args([
            "--extend-kelos-crd",
            "--shutdown-delay",
            "0s",
            "--drain-timeout",
            "1s",
        ]);
        let mut child = Some(spawn_logged(cmd, dir.path())?);
        let log_dir = dir.path().to_owned();
        wait_ready(&mut child, probe_port, || server_log(&log_dir)).await?;
        Ok(Server {
            child,
            probe_port,
            dir,
        })
    }

    fn log(&self) -> String {
        server_log(self.dir.path())
    }

    async fn metric(&self, line_start: &str) -> Result<String> {
        let (_, text) = probe(self.probe_port, "/metrics").await?;
        Ok(text
            .lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_default()
            .to_owned())
    }

    /// SIGTERM, then waits for the exit.
    async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await?;
            }
            tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
        }
        Ok(())
    }
}

/// Reasons and notes of the Events about the CRD.
async fn crd_events(c: &Cluster) -> Result<Vec<(String, String)>> {
    let out = kubectl(
        c,
        &["get", "events.events.k8s.io", "-A", "-o", "json"],
        None,
    )
    .await?;
    ensure!(out.ok, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == CRD)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

fn manager<'a>(crd: &'a Value, name: &str) -> Option<&'a Value> {
    crd["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|m| m["manager"] == name)
}

/// The chart's post-delete hook objects (ServiceAccount, ClusterRole, ClusterRoleBinding) applied
/// in `ns`, and a kubeconfig acting as that ServiceAccount.
async fn hook_identity(c: &Cluster, ns: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let mut helm =
        tokio::process::Command::from(kelos_hooks_tests::helm::helm_command(c, "crd-coexist"));
    helm.args(["template", "kh"])
        .arg(workspace_root().join("charts/kelos-hooks"))
        .args([
            "--namespace",
            ns,
            "--show-only",
            "templates/crd-extension-remove.yaml",
        ]);
    let rendered = kelos_hooks_tests::helm::run(helm, "helm template (hook)").await?;
    let rbac: Vec<String> = rendered
        .split("\n---")
        .filter(|d| !d.contains("kind: Job"))
        .map(str::to_owned)
        .collect();
    let out = kubectl(c, &["apply", "-f", "-"], Some(&rbac.join("\n---\n"))).await?;
    ensure!(out.ok, "applying the hook's RBAC: {}", out.stderr);
    let kubeconfig = dir.join("hook.kubeconfig");
    write_impersonating_kubeconfig(
        c.kubeconfig(),
        ns,
        "kh-kelos-hooks-crd-extension-remove",
        &kubeconfig,
    )?;
    Ok(kubeconfig)
}

#[tokio::test]
async fn kelos_crd_is_extended_restored_after_each_replay_and_cleaned_on_uninstall() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = Cluster::dedicated("crd-ext").await?;
    let client = c.client().await?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let kelos = kelos_crd()?;
    apply_as_kelos(&api, &kelos).await?;
    let pristine = crd_json(&api).await?;
    ensure!(
        on_completion(&pristine, "v1alpha2").is_null(),
        "kelos's CRD already declares onCompletion"
    );

    let mut server = Server::start(&c).await?;
    let ours = on_completion_schema();
    let extended = wait_crd(
        &api,
        "spec.onCompletion not added",
        || server.log(),
        |crd| {
            on_completion(crd, "v1alpha2") == ours
                && on_completion(crd, "v1alpha1") == v1alpha1_refusal_schema()
        },
    )
    .await?;
    // Ownership: ours is spec.versions alone (an atomic list moves whole to whoever writes it);
    // kelos keeps the rest of its CRD.
    let mine =
        manager(&extended, "kelos-hooks-admission").context("no managedFields entry of ours")?;
    assert_eq!(mine["operation"], "Update");
    assert_eq!(mine["fieldsV1"], json!({"f:spec": {"f:versions": {}}}));
    let theirs = manager(&extended, "kelos").context("kelos's entry is gone")?;
    for field in ["f:group", "f:names", "f:conversion", "f:scope"] {
        assert!(
            theirs["fieldsV1"]["f:spec"][field].is_object(),
            "kelos lost {field}: {theirs}"
        );
    }
    // Everything of kelos's schema is untouched.
    let mut without = extended.clone();
    for v in without["spec"]["versions"].as_array_mut().unwrap() {
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("onCompletion");
    }
    assert_eq!(without["spec"]["versions"], pristine["spec"]["versions"]);

    let readyz = probe(server.probe_port, "/readyz").await?;
    assert_eq!(readyz.0, 200, "{}", readyz.1);
    assert!(readyz.1.contains("restored"), "{}", readyz.1);
    assert_eq!(
        server
            .metric("kelos_hooks_crd_extension_patches_total{action=\"restored\"}")
            .await?,
        "kelos_hooks_crd_extension_patches_total{action=\"restored\"} 1"
    );
    assert_eq!(
        server.metric("kelos_hooks_crd_problem ").await?,
        "kelos_hooks_crd_problem 0"
    );

    // Hooks are kept now, and a v1alpha1 write of them is refused with a message saying why.
    let ns = c.namespace("crd-ext").await?;
    let stored = spawner_with(
        "s",
        json!([hook("a", json!({"url": "https://h.example.com/x"}))]),
    );
    let out = kubectl(&c, &["apply", "-n", &ns, "-f", "-"], Some(&stored)).await?;
    ensure!(out.ok, "{}", out.stderr);
    let v1 = stored
        .replace("kelos.dev/v1alpha2", "kelos.dev/v1alpha1")
        .replace("\"s\"", "\"s1\"");
    let out = kubectl(&c, &["apply", "-n", &ns, "-f", "-"], Some(&v1)).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "spec.onCompletion: Forbidden: kelos.dev/v1alpha1 cannot carry spec.onCompletion"
            ),
        "{}",
        out.stderr
    );

    // kelos re-applies its CRD (an install or upgrade): the property is gone, then back.
    let restores_before = crd_events(&c)
        .await?
        .iter()
        .filter(|e| e.0 == "OnCompletionRestored")
        .count();
    assert!(restores_before >= 1, "{:?}", crd_events(&c).await?);
    apply_as_kelos(&api, &kelos).await?;
    wait_crd(
        &api,
        "spec.onCompletion not restored after kelos's replay",
        || server.log(),
        |crd| on_completion(crd, "v1alpha2") == ours,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .metric("kelos_hooks_crd_extension_patches_total{action=\"restored\"}")
        .await?
        != "kelos_hooks_crd_extension_patches_total{action=\"restored\"} 2"
    {
        ensure!(
            Instant::now() < deadline,
            "restore not counted:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = crd_events(&c).await?;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "OnCompletionRestored"
                && note.contains("spec.versions last written by kelos (Apply)")),
        "{events:?}"
    );
    let spawner = kubectl(
        &c,
        &[
            "get",
            "taskspawners.v1alpha2.kelos.dev",
            "s",
            "-n",
            &ns,
            "-o",
            "json",
        ],
        None,
    )
    .await?;
    let spawner: Value = serde_json::from_str(&spawner.stdout)?;
    assert_eq!(
        spawner["spec"]["onCompletion"]["hooks"][0]["name"], "a",
        "{spawner}"
    );
    // No patch loop: the restored schema stays as it is.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        server
            .metric("kelos_hooks_crd_extension_patches_total{action=\"restored\"}")
            .await?,
        "kelos_hooks_crd_extension_patches_total{action=\"restored\"} 2"
    );
    assert_eq!(
        server
            .metric("kelos_hooks_crd_extension_patches_total{action=\"updated\"}")
            .await?,
        ""
    );

    // Uninstall: the server stops, then the post-delete hook's command, as the hook's
    // ServiceAccount with the chart's RBAC for it, takes our schema and our ownership out.
    server.stop().await?;
    let dir = tempfile::tempdir()?;
    let hook_ns = c.namespace("crd-ext-hook").await?;
    let kubeconfig = hook_identity(&c, &hook_ns, dir.path()).await?;
    let out = tokio::process::Command::new(bin("kelos-hooks-admission"))
        .args(["crd-extension", "remove", "--settle", "1s"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "crd-extension remove failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = crd_json(&api).await?;
    assert!(
        on_completion(&after, "v1alpha2").is_null() && on_completion(&after, "v1alpha1").is_null()
    );
    assert_eq!(after["spec"]["versions"], pristine["spec"]["versions"]);
    assert!(
        manager(&after, "kelos-hooks-admission").is_none(),
        "{}",
        after["metadata"]["managedFields"]
    );
    // The hook's identity can do nothing else with CRDs.
    let as_hook: Api<CustomResourceDefinition> = Api::all(client_from(&kubeconfig).await?);
    match as_hook.list(&Default::default()).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => bail!("the hook's identity may list CRDs: {other:?}"),
    }
    Ok(())
}
