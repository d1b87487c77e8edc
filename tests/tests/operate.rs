//! Operating hooks day to day, end to end on the real API server: a test notification asked for
//! with the TaskSpawner annotation and with `kelos-hooks-dispatcher send-test`, the `status`
//! view, hook health Events on the spawner, and a redelivery that RBAC allows for a user with the
//! verb `redeliver` (the admission server stamping who asked, the chart's Task guard checking the
//! verb) and refuses for one without.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use kelos_hooks_shared::annotations::{REDELIVER, REDELIVER_BY, REPORT_PHASE, SPAWNER_LABEL, TEST};
use kelos_hooks_shared::api::{Hook, OnCompletion, Phase, Task, TaskSpawner, TaskSpawnerSpec};
use kelos_hooks_shared::deliveries::HookState;
use kelos_hooks_tests::admission_local::Server;
use kelos_hooks_tests::dispatcher::Dispatcher;
use kelos_hooks_tests::helm::helm_command;
use kelos_hooks_tests::impersonate::write_impersonating_kubeconfig;
use kelos_hooks_tests::kubectl::{kubectl, kubectl_apply};
use kelos_hooks_tests::receiver::{Receiver, Reply};
use kelos_hooks_tests::tasks::deliveries;
use kelos_hooks_tests::{Cluster, bin, cluster, tasks, workspace_root};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);
const ALLOW: &str = "127.0.0.0/8";

// ---------------------------------------------------------------------------------------------
// Objects and waits

async fn create_spawner(
    client: &kube::Client,
    ns: &str,
    name: &str,
    hooks: Vec<Hook>,
) -> Result<()> {
    let mut ts = TaskSpawner::new(
        name,
        TaskSpawnerSpec {
            on_completion: Some(OnCompletion { hooks }),
            rest: Default::default(),
        },
    );
    ts.metadata.namespace = Some(ns.into());
    Api::<TaskSpawner>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ts)
        .await?;
    Ok(())
}

async fn annotate_spawner(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<()> {
    let body = json!({"metadata": {"annotations": {key: value}}});
    Api::<TaskSpawner>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(())
}

/// A Task of `spawner` carrying the snapshot of `hooks`, completed Succeeded just now.
async fn completed_task(api: &Api<Task>, name: &str, spawner: &str, hooks: &[Hook]) -> Result<()> {
    tasks::create_task(api, name, Some(hooks), Some(spawner)).await?;
    tasks::complete(api, name, Phase::Succeeded, Duration::ZERO).await
}

/// Waits until the Task is reported for Succeeded and `check` holds; the Task.
async fn wait_task(
    api: &Api<Task>,
    name: &str,
    d: &Dispatcher,
    check: impl Fn(&Task) -> bool,
) -> Result<Task> {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = api.get(name).await?;
        let reported = t
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPORT_PHASE))
            .is_some_and(|p| p == "Succeeded");
        if reported && check(&t) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "Task {name} not as expected after {WAIT:?}: {:?}\n{}",
                t.metadata.annotations,
                d.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an Event about `object` with `reason` whose note contains `note`; its note.
async fn wait_event(
    client: &kube::Client,
    ns: &str,
    object: &str,
    reason: &str,
    note: &str,
) -> Result<String> {
    let events = tasks::wait_event(client, ns, object, reason, note).await?;
    Ok(events
        .into_iter()
        .find(|e| e.reason == reason && e.note.contains(note))
        .map(|e| e.note)
        .unwrap_or_default())
}

/// `kelos-hooks-dispatcher ARGS…` against the test cluster: exit code and stdout.
async fn dispatcher_cli(c: &Cluster, args: &[&str]) -> Result<(i32, String)> {
    let out = tokio::process::Command::new(bin("kelos-hooks-dispatcher"))
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code().unwrap_or(-1), format!("{stdout}{stderr}")))
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn test_send_by_annotation_and_cli_status_view_and_health_events() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("op-test").await?;
    let rx = Receiver::start().await?;
    rx.script("/bad", std::iter::repeat_n(Reply::Status(503), 64));
    let ok = tasks::hook("ok", rx.url("/ok?token=in-url"));
    let mut bad = tasks::hook("bad", rx.url("/bad"));
    bad.phases = Some(vec![Phase::Failed]);
    create_spawner(&client, &ns, "issues", vec![ok.clone(), bad.clone()]).await?;
    let ca = rx.ca_file().to_owned();
    let mut d = Dispatcher::start(c, &ns, &ca, ALLOW, "op-1", &["--max-attempts", "3"]).await?;

    // 1. The annotation: one test per hook (whatever its phases), with the test type.
    annotate_spawner(&client, &ns, "issues", TEST, "1").await?;
    let got = rx.wait_for("/ok", 1, WAIT).await?;
    let body = got[0].json();
    assert_eq!(body["type"], "kelos.task.test", "{body}");
    assert_eq!(body["task"]["spawner"], "issues");
    assert_eq!(body["task"]["uid"], "00000000-0000-0000-0000-000000000000");
    let first_id = got[0].header("webhook-id").unwrap().to_owned();
    assert!(
        first_id.starts_with("test_") && first_id.ends_with("_ok"),
        "{first_id}"
    );
    assert_eq!(body["id"], first_id.as_str());
    rx.wait_for("/bad", 1, WAIT).await?;
    wait_event(&client, &ns, "issues", "WebhookTestDelivered", "HTTP 200").await?;
    let failed = wait_event(&client, &ns, "issues", "WebhookTestFailed", "HTTP 503").await?;
    assert!(failed.contains("hook bad"), "{failed}");
    // Answered values are recorded on the dispatcher's Lease, not on the spawner.
    let ledger = Api::<Lease>::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + WAIT;
    loop {
        let l = ledger.get_opt("dispatcher-tests").await?;
        let text = l
            .and_then(|l| l.metadata.annotations)
            .and_then(|a| a.get("kelos.dev/webhook-tests-answered").cloned())
            .unwrap_or_default();
        if text.contains(&format!("\"{ns}/issues\":\"1\"")) {
            break;
        }
        ensure!(Instant::now() < deadline, "ledger: {text:?}\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. A restarted dispatcher does not answer "1" again; a new value is answered once.
    d.restart().await?;
    annotate_spawner(&client, &ns, "issues", TEST, "2").await?;
    let got = rx.wait_for("/ok", 2, WAIT).await?;
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids[0], first_id);
    assert_ne!(ids[1], first_id, "a new value is a new message");
    wait_event(&client, &ns, "issues", "WebhookTestDelivered", "HTTP 200").await?;
    ensure!(
        rx.requests_to("/ok").len() == 2,
        "value 1 answered twice: {:?}",
        rx.requests_to("/ok")
            .iter()
            .map(|r| r.header("webhook-id").map(str::to_owned))
            .collect::<Vec<_>>()
    );

    // 3. The CLI: the receiver's answer printed, exit 0 when all accepted, 1 otherwise.
    let ca_arg = ca.display().to_string();
    let base = [
        "send-test",
        "-n",
        &ns,
        "--spawner",
        "issues",
        "--allow-cidr",
        ALLOW,
        "--ca-file",
        &ca_arg,
    ];
    let (code, out) = dispatcher_cli(c, &[&base[..], &["--hook", "ok"]].concat()).await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("hook ok") && out.contains("HTTP 200") && !out.contains("in-url"),
        "{out}"
    );
    let (code, out) = dispatcher_cli(c, &base).await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL hook bad") && out.contains("HTTP 503"),
        "{out}"
    );
    let (code, out) = dispatcher_cli(c, &[&base[..], &["--hook", "nope"]].concat()).await?;
    assert_eq!(code, 2, "{out}");
    // Without --allow-cidr the test obeys the SSRF rules like a delivery.
    let (code, out) = dispatcher_cli(
        c,
        &[
            "send-test",
            "-n",
            &ns,
            "--spawner",
            "issues",
            "--hook",
            "ok",
            "--ca-file",
            &ca_arg,
        ],
    )
    .await?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("127.0.0.0/8"), "{out}");

    // 4. Health: a hook failing 3 attempts in a row is announced once on the spawner, its
    // recovery too; the status view shows the Tasks and the hook's health.
    rx.script("/ok", std::iter::repeat_n(Reply::Status(500), 3));
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    completed_task(&api, "t1", "issues", &[ok.clone(), bad.clone()]).await?;
    wait_task(&api, "t1", &d, |t| {
        deliveries(t).state("ok") == HookState::Failed
    })
    .await?;
    let note = wait_event(&client, &ns, "issues", "WebhookFailing", "hook ok").await?;
    assert!(note.contains("HTTP 500"), "{note}");
    let (code, out) = dispatcher_cli(c, &["status", "-n", &ns, "--spawner", "issues"]).await?;
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("t1 "))
        .context(out.clone())?;
    assert!(
        line.contains("ok") && line.contains("Failed") && line.contains("500"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("issues") && l.contains("Failing")),
        "{out}"
    );
    completed_task(&api, "t2", "issues", &[ok.clone(), bad]).await?;
    wait_task(&api, "t2", &d, |t| {
        deliveries(t).state("ok") == HookState::Delivered
    })
    .await?;
    wait_event(
        &client,
        &ns,
        "issues",
        "WebhookRecovered",
        "hook ok recovered",
    )
    .await?;
    let (_, out) = dispatcher_cli(c, &["status", "-n", &ns]).await?;
    assert!(
        out.lines()
            .any(|l| l.starts_with("issues") && l.contains("ok") && l.contains("Healthy")),
        "{out}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redelivery: the admission server (requester stamp) and the chart's Task guard registered for
// this test's namespace, the dispatcher running as its ServiceAccount.

/// Our admission server for namespaces labelled `kelos-hooks.dev/test=<label>`, registered; the
/// manifests registered (to delete them again).
/// `guard` is the chart's `webhooks.tasks.guard`: who enforces the Task annotation rules.
async fn start_admission(
    c: &Cluster,
    label: &str,
    dispatcher: &str,
    guard: &str,
) -> Result<(Server, String)> {
    let server = Server::start_as(c, label, dispatcher, &["--allow-cidr", ALLOW]).await?;
    let selector = format!("kelos-hooks.dev/test={label}");
    let manifests = server
        .webhook_configs(&[
            "--name",
            label,
            "--dispatcher-identity",
            dispatcher,
            "--namespace-label",
            &selector,
            "--task-guard",
            guard,
        ])
        .await?;
    let applied = kubectl(c, &["apply", "-f", "-"], Some(&manifests)).await?;
    ensure!(applied.ok, "{}", applied.stderr);
    Ok((server, manifests))
}

/// `kubectl annotate task NAME KEY=VALUE… --as USER` (server dry run when `dry`).
async fn annotate_as(
    c: &Cluster,
    ns: &str,
    task: &str,
    user: &str,
    pairs: &[String],
    dry: bool,
) -> Result<kelos_hooks_tests::kubectl::Output> {
    let mut args: Vec<String> = vec![
        "annotate".into(),
        "--overwrite".into(),
        "-n".into(),
        ns.into(),
    ];
    args.push(format!("tasks.kelos.dev/{task}"));
    args.extend(pairs.iter().cloned());
    args.push(format!("--as={user}"));
    if dry {
        args.extend(["--dry-run=server".into(), "-o".into(), "json".into()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kubectl(c, &refs, None).await
}

/// The chart's default guard: the ValidatingAdmissionPolicy asks the authorizer in-process.
#[tokio::test]
async fn redelivery_is_allowed_with_the_rbac_verb_refused_without_and_names_who_asked() -> Result<()>
{
    redelivery_case("ValidatingAdmissionPolicy", "op-redeliver").await
}

/// `webhooks.tasks.guard=Webhook` (clusters before 1.30): /validate/tasks asks a
/// SubjectAccessReview.
#[tokio::test]
async fn redelivery_under_the_webhook_guard_asks_a_subject_access_review() -> Result<()> {
    redelivery_case("Webhook", "op-redeliver-wh").await
}

async fn redelivery_case(guard: &str, prefix: &str) -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let label = format!("{prefix}-{}", std::process::id());
    let ns = c.namespace(&label).await?;
    let sa = "kelos-hooks-dispatcher";
    let dispatcher = format!("system:serviceaccount:{ns}:{sa}");

    // The dispatcher runs as its ServiceAccount (the guard lets that identity write delivery
    // state); its least-privilege RBAC is chart_rbac_run.rs's business, here it may do anything.
    let kubeconfig = tempfile::NamedTempFile::new()?;
    write_impersonating_kubeconfig(c.kubeconfig(), &ns, sa, kubeconfig.path())?;
    let binding = format!("{ns}-dispatcher-admin");
    // Users: both may edit Tasks; only alice holds the chart's redeliver ClusterRole.
    let mut helm = tokio::process::Command::from(helm_command(c, "operate"));
    helm.args(["template", &ns])
        .arg(workspace_root().join("charts/kelos-hooks"))
        .args([
            "--namespace",
            &ns,
            "--show-only",
            "templates/redeliver-rbac.yaml",
        ]);
    let role_yaml = kelos_hooks_tests::helm::run(helm, "helm template redeliver-rbac").await?;
    let role_name = format!("{ns}-kelos-hooks-redeliver");
    ensure!(role_yaml.contains(&role_name), "{role_yaml}");
    let applied = kubectl(c, &["apply", "-f", "-"], Some(&role_yaml)).await?;
    ensure!(applied.ok, "{}", applied.stderr);
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": binding},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "task-editor"},
         "rules": [{"apiGroups": ["kelos.dev"], "resources": ["tasks"], "verbs": ["get", "list", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "task-editor"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "task-editor"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                      {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "redeliver"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]},
    ]});
    let out = kubectl_apply(c, &ns, &rbac, &[]).await?;
    ensure!(out.ok, "{}", out.stderr);
    let (admission, manifests) = start_admission(c, &label, &dispatcher, guard).await?;
    let result = redeliver_scenario(c, &client, &ns, kubeconfig.path()).await;
    let result = result.map_err(|e| anyhow::anyhow!("{e:#}\nadmission log:\n{}", admission.log()));
    let _ = kubectl(
        c,
        &["delete", "--ignore-not-found", "-f", "-"],
        Some(&manifests),
    )
    .await;
    let _ = kubectl(
        c,
        &[
            "delete",
            "--ignore-not-found",
            "clusterrolebinding",
            &binding,
            "clusterrole",
            &role_name,
        ],
        None,
    )
    .await;
    result
}

async fn redeliver_scenario(
    c: &Cluster,
    client: &kube::Client,
    ns: &str,
    kubeconfig: &std::path::Path,
) -> Result<()> {
    let rx = Receiver::start().await?;
    rx.script("/flaky", std::iter::repeat_n(Reply::Status(500), 3));
    let ok = tasks::hook("ok", rx.url("/ok"));
    let flaky = tasks::hook("flaky", rx.url("/flaky"));
    create_spawner(client, ns, "issues", vec![ok.clone(), flaky.clone()]).await?;
    let d = Dispatcher::start_as(
        kubeconfig,
        ns,
        rx.ca_file(),
        ALLOW,
        "op-r",
        &["--max-attempts", "3"],
    )
    .await?;
    let api: Api<Task> = Api::namespaced(client.clone(), ns);

    // Wait until the guard is in force: bob's dry-run request is refused for the verb.
    let probe = "probe";
    api.create(
        &PostParams::default(),
        &tasks::task(probe, None, None, Some("issues")),
    )
    .await?;
    let ask = vec![format!("{REDELIVER}=*")];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = annotate_as(c, ns, probe, "bob", &ask, true).await?;
        if !out.ok && out.stderr.contains("redeliver") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "guard not in force: {} {}",
            out.stdout,
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A Task whose flaky hook gave up after 3 attempts (the spawner hears it is failing).
    completed_task(&api, "t1", "issues", &[ok.clone(), flaky.clone()]).await?;
    let t = wait_task(&api, "t1", &d, |t| {
        deliveries(t).state("flaky") == HookState::Failed
    })
    .await?;
    assert_eq!(deliveries(&t).get("flaky").unwrap().attempts, 3);
    wait_event(client, ns, "issues", "WebhookFailing", "hook flaky").await?;
    let first = rx.requests_to("/flaky");
    assert_eq!(first.len(), 3);
    let id = first[0].header("webhook-id").unwrap().to_owned();

    // bob has no verb: refused, and the message says what is missing.
    let out = annotate_as(c, ns, "t1", "bob", &[format!("{REDELIVER}=flaky")], false).await?;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("\"bob\"") && out.stderr.contains("verb \"redeliver\""),
        "{}",
        out.stderr
    );
    // alice has it; a requester she writes herself is replaced by who she is.
    let out = annotate_as(
        c,
        ns,
        "t1",
        "alice",
        &[
            format!("{REDELIVER}=flaky"),
            format!("{REDELIVER_BY}=mallory"),
        ],
        false,
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    let t = wait_task(&api, "t1", &d, |t| {
        deliveries(t).state("flaky") == HookState::Delivered
            && !t
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .contains_key(REDELIVER)
    })
    .await?;
    let ann = t.metadata.annotations.clone().unwrap();
    assert!(!ann.contains_key(REDELIVER_BY), "{ann:?}");
    let dl = deliveries(&t);
    assert_eq!(
        dl.get("flaky").unwrap().attempts,
        1,
        "a fresh budget: {dl:?}"
    );
    assert_eq!(dl.get("ok").unwrap().attempts, 1, "ok untouched: {dl:?}");
    let again = rx.requests_to("/flaky");
    assert_eq!(again.len(), 4);
    assert_eq!(
        again[3].header("webhook-id"),
        Some(id.as_str()),
        "same webhook-id"
    );
    assert_eq!(
        rx.requests_to("/ok").len(),
        1,
        "only the named hook is sent again"
    );
    let note = wait_event(
        client,
        ns,
        "t1",
        "WebhookRedeliveryRequested",
        "requested by alice",
    )
    .await?;
    assert!(
        note.contains("flaky") && !note.contains("mallory"),
        "{note}"
    );
    wait_event(client, ns, "issues", "WebhookRecovered", "hook flaky").await?;
    // The Task's label is what the status view filters by.
    assert_eq!(
        t.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SPAWNER_LABEL))
            .map(String::as_str),
        Some("issues")
    );
    Ok(())
}
