//! The admission server on a real API server, registered as local runs do (the chart's
//! configurations rendered for a URL + caBundle by hack/webhook-configs.sh): kubectl applies
//! refused with field paths, Task annotations injected and guarded (by the chart's
//! ValidatingAdmissionPolicy by default, by the /validate/tasks webhook with guard=Webhook),
//! certificate rotation without restart, what still works and what is refused when the server is
//! gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::Result;
use kelos_hooks_certs::write_pair;
use kelos_hooks_shared::annotations::{ON_COMPLETION, REPORT_PHASE, encode_snapshot};
use kelos_hooks_shared::api::OnCompletion;
use kelos_hooks_tests::admission_local::{BY_POLICY, BY_WEBHOOK, Server, dynamic, issue, task};
use kelos_hooks_tests::admission_server::served_cert;
use kelos_hooks_tests::kubectl::{kubectl, kubectl_apply};
use kelos_hooks_tests::tasks::spawner_manifest;
use kelos_hooks_tests::{Cluster, cluster};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

/// How the API server words a denial by the chart's ValidatingAdmissionPolicy, and by a webhook.
const POLICY_DENIAL: &str = "ValidatingAdmissionPolicy";
const WEBHOOK_DENIAL: &str = "admission webhook";

fn pem_der(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
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
