//! Bad-input hardening on the real control plane, one test per item: the dispatcher applies every
//! URL rule at delivery; no error, warning, log line or Event echoes a credential; admission
//! warnings are capped; a body over the limit gets 413 over HTTP/2 as over HTTP/1.1; TaskSpawner
//! UPDATE ratchets when the operator narrowed `--allow-cidr`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use kelos_hooks_shared::annotations::{DELIVERIES, ON_COMPLETION};
use kelos_hooks_shared::api::{Phase, SecretRef, Task};
use kelos_hooks_shared::deliveries::HookState;
use kelos_hooks_tests::admission_local::Server;
use kelos_hooks_tests::admission_server::{Http, post_over};
use kelos_hooks_tests::dispatcher::Dispatcher;
use kelos_hooks_tests::kubectl::kubectl_apply;
use kelos_hooks_tests::receiver::{Receiver, Reply};
use kelos_hooks_tests::tasks::{
    self, complete, create_secret, deliveries, spawner_manifest, wait_event, wait_report_phase,
};
use kelos_hooks_tests::{Cluster, cluster};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// Credentials planted in URLs, Secrets and annotations; none may come out anywhere.
/// How long a delivery may take to be reported.
const DELIVERY_WAIT: Duration = Duration::from_secs(45);
const PASSWORD: &str = "hunter2-pw";
const QUERY_TOKEN: &str = "t0ps3cret-q";
const HEADER_VALUE: &str = "s3cr3t-h3ader-v4lue";

/// The notes of every Event regarding `task` in `ns`.
async fn event_notes(c: &Cluster, ns: &str, task: &str) -> Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client().await?, ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(task))
        .filter_map(|e| e.note)
        .collect())
}

/// Fails when `text` (named `what`) holds any planted credential.
fn assert_no_credential(what: &str, text: &str) {
    for secret in [PASSWORD, QUERY_TOKEN, HEADER_VALUE] {
        assert!(!text.contains(secret), "{what} echoes {secret:?}:\n{text}");
    }
}

/// `url` with user-info `user:PASSWORD@` after its `https://`.
fn with_userinfo(url: &str) -> String {
    url.replacen("https://", &format!("https://user:{PASSWORD}@"), 1)
}

/// (a) Hooks on a Task the validating webhook never saw (created directly, as before the
/// webhooks were registered or with the guard off): every URL rule applies at delivery, each
/// failing hook is Failed with a Warning Event saying why, nothing is sent for it, and the other
/// hooks of the Task are delivered.
#[tokio::test]
async fn delivery_applies_every_url_rule_to_hooks_admission_never_saw() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("hard-url").await?;
    let rx = Receiver::start().await?;
    let d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.1/32", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);

    let hooks = [
        tasks::hook("creds", with_userinfo(&rx.url("/creds"))),
        tasks::hook("plain", rx.url("/plain").replacen("https://", "http://", 1)),
        tasks::hook("zero-port", "https://hooks.example.com:0/x".into()),
        tasks::hook("ok", rx.url(&format!("/ok?token={QUERY_TOKEN}"))),
    ];
    api.create(
        &PostParams::default(),
        &tasks::task("before-webhooks", None, Some(&hooks), None),
    )
    .await?;
    complete(&api, "before-webhooks", Phase::Succeeded, Duration::ZERO).await?;
    let task = wait_report_phase(
        &api,
        "before-webhooks",
        Phase::Succeeded,
        DELIVERY_WAIT,
        || d.logs(),
    )
    .await?;

    let rec = deliveries(&task);
    assert_eq!(rec.state("ok"), HookState::Delivered, "{rec:?}");
    for (hook, why) in [
        ("creds", "must not contain credentials"),
        ("plain", "must use https, not http"),
        ("zero-port", "port 0"),
    ] {
        let h = rec.get(hook).unwrap();
        assert_eq!(h.state, HookState::Failed, "{hook}: {h:?}");
        assert_eq!(h.attempts, 1, "{hook}: a refusal is final at once");
        let err = h.last_error.clone().unwrap_or_default();
        assert!(err.contains(why), "{hook}: {err}");
        let ev = wait_event(&client, &ns, "before-webhooks", "WebhookFailed", why).await?;
        assert!(
            ev.iter().any(|e| e.type_ == "Warning"
                && e.reason == "WebhookFailed"
                && e.note.contains(why)),
            "{hook}: {ev:?}"
        );
    }
    assert!(rx.requests_to("/creds").is_empty() && rx.requests_to("/plain").is_empty());
    assert_eq!(rx.requests_to("/ok").len(), 1);

    let annotations = serde_json::to_string(&task.metadata.annotations)?;
    let recorded = task.metadata.annotations.as_ref().unwrap()[DELIVERIES].clone();
    assert_no_credential("the deliveries annotation", &recorded);
    assert!(
        annotations.contains(PASSWORD),
        "the snapshot keeps the URL as written"
    );
    for note in event_notes(c, &ns, "before-webhooks").await? {
        assert_no_credential("an Event", &note);
    }
    assert_no_credential(
        "the dispatcher log",
        &std::fs::read_to_string(d.log_path())?,
    );
    Ok(())
}

/// (b) Credentials the dispatcher meets in other places stay out of Events, annotations and logs:
/// an unreadable snapshot quoting a URL with user-info and a query token, and a receiver that
/// echoes the Secret headers it got in its error answer.
#[tokio::test]
async fn no_event_annotation_or_log_echoes_a_credential() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("hard-redact").await?;
    let rx = Receiver::start().await?;
    rx.script("/echo", [Reply::EchoHeaders(400)]);
    create_secret(&client, &ns, "team", &[("X-Team-Auth", HEADER_VALUE)]).await?;
    let d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.1/32", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);

    // serde quotes the value of a field of the wrong type.
    let mut unreadable = tasks::task("unreadable", None, None, None);
    let quoted = format!("https://u:{PASSWORD}@h.example/x?token={QUERY_TOKEN}");
    unreadable.metadata.annotations = Some(
        [(
            ON_COMPLETION.to_owned(),
            json!({"hooks": quoted}).to_string(),
        )]
        .into(),
    );
    api.create(&PostParams::default(), &unreadable).await?;
    complete(&api, "unreadable", Phase::Failed, Duration::ZERO).await?;
    let ev = wait_event(
        &client,
        &ns,
        "unreadable",
        "InvalidOnCompletion",
        "not valid",
    )
    .await?;
    assert!(
        ev.iter()
            .any(|e| e.type_ == "Warning" && e.note.contains("https://h.example")),
        "{ev:?}"
    );

    let mut echo = tasks::hook("echo", rx.url("/echo"));
    echo.webhook.secret_ref = Some(SecretRef {
        name: "team".into(),
    });
    api.create(
        &PostParams::default(),
        &tasks::task("echoed", None, Some(&[echo]), None),
    )
    .await?;
    complete(&api, "echoed", Phase::Succeeded, Duration::ZERO).await?;
    let task =
        wait_report_phase(&api, "echoed", Phase::Succeeded, DELIVERY_WAIT, || d.logs()).await?;
    let got = rx.requests_to("/echo");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("x-team-auth"),
        Some(HEADER_VALUE),
        "the header was sent"
    );
    let rec = deliveries(&task);
    assert_eq!(rec.state("echo"), HookState::Failed, "{rec:?}");
    let ev = wait_event(&client, &ns, "echoed", "WebhookFailed", "HTTP 400").await?;
    assert!(
        ev.iter()
            .any(|e| e.note.contains("x-team-auth: <redacted>")),
        "the receiver's answer is quoted, redacted: {ev:?}"
    );

    for name in ["unreadable", "echoed"] {
        for note in event_notes(c, &ns, name).await? {
            assert_no_credential("an Event", &note);
        }
    }
    assert_no_credential(
        "the deliveries annotation",
        &task.metadata.annotations.as_ref().unwrap()[DELIVERIES],
    );
    assert_no_credential(
        "the dispatcher log",
        &std::fs::read_to_string(d.log_path())?,
    );
    Ok(())
}

/// (b) The admission side: a TaskSpawner whose hook URL carries user-info and a query token is
/// refused (by our CEL or our webhook) without echoing either, and the server logs neither.
#[tokio::test]
async fn admission_denials_and_logs_never_echo_a_credential() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) = Server::registered(c, "hard-adm-redact", &[], "Webhook").await?;
    let url = format!("https://user:{PASSWORD}@hooks.example.com/x?token={QUERY_TOKEN}");
    let bad = json!({"hooks": [{"name": "a", "webhook": {"url": url}}]});
    for extra in [&[][..], &["--dry-run=server"][..]] {
        let out = kubectl_apply(c, &ns, &spawner_manifest("leaky", bad.clone()), extra).await?;
        assert!(!out.ok, "{}", out.stderr);
        assert!(out.stderr.contains("credentials"), "{}", out.stderr);
        assert_no_credential("kubectl's output", &format!("{}{}", out.stdout, out.stderr));
    }
    // The same URL pasted into `format` by mistake is not quoted back either.
    let odd = json!({"hooks": [{"name": "a", "webhook": {"url": "https://h.example.com/x", "format": url}}]});
    let out = kubectl_apply(c, &ns, &spawner_manifest("odd", odd), &[]).await?;
    assert!(
        !out.ok && out.stderr.contains("unknown format"),
        "{}",
        out.stderr
    );
    assert_no_credential("kubectl's output", &out.stderr);
    assert_no_credential("the admission server log", &server.log());
    server.unregister(c).await?;
    Ok(())
}

/// `Warning:` lines of kubectl's stderr.
fn warning_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("Warning: "))
        .collect()
}

/// (c) A spawner with 30 pieces of advice gets 16 warnings: 15 of them, then how many more were
/// left out, each short enough for the API server to pass on intact.
#[tokio::test]
async fn admission_warnings_are_capped_with_how_many_were_left_out() -> Result<()> {
    let c = cluster().await?;
    let (mut server, ns) = Server::registered(c, "hard-warnings", &[], "Webhook").await?;
    let query = [
        "token",
        "access_token",
        "key",
        "api_key",
        "secret",
        "password",
        "sig",
        "auth",
        "code",
    ]
    .map(|p| format!("{p}=1"))
    .join("&");
    let hooks: Vec<Value> = (0..3)
        .map(|i| {
            json!({"name": format!("h{i}"),
                   "webhook": {"url": format!("https://hooks.example.com/{i}?{query}#frag"),
                               "signingSecretRef": {"name": "sig", "key": "secret"}}})
        })
        .collect();
    let out = kubectl_apply(
        c,
        &ns,
        &spawner_manifest("chatty", json!({"hooks": hooks})),
        &[],
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    let warnings = warning_lines(&out.stderr);
    assert_eq!(warnings.len(), 16, "{}", out.stderr);
    assert!(
        warnings[15].starts_with("Warning: 15 more warnings left out"),
        "{}",
        out.stderr
    );
    assert!(
        warnings[..15]
            .iter()
            .all(|w| w.contains("spec.onCompletion.hooks[") && w.chars().count() <= 256 + 9),
        "{}",
        out.stderr
    );
    server.unregister(c).await?;
    Ok(())
}

/// (d) A review body over the limit is answered 413 with a JSON error over HTTP/2 (as the API
/// server calls webhooks) as over HTTP/1.1, with no stream reset; the connection's server keeps
/// serving.
#[tokio::test]
async fn a_body_over_the_limit_gets_413_over_http2_as_over_http1() -> Result<()> {
    let c = cluster().await?;
    let server = Server::start(c, "hard-413", &[]).await?;
    let ca = server.ca.cert_pem();
    let too_big = vec![b' '; 4 * 1024 * 1024];
    for http in [Http::Two, Http::One] {
        let (status, body) = post_over(
            http,
            server.port,
            ca.as_bytes(),
            "/validate/taskspawners",
            too_big.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{http:?}: {e:#}"))?;
        assert_eq!(status, 413, "{http:?}: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body)?;
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("limit")),
            "{http:?}: {v}"
        );
        // A malformed body of allowed size is still a 400 with a JSON error.
        let (status, body) = post_over(
            http,
            server.port,
            ca.as_bytes(),
            "/validate/taskspawners",
            b"{".to_vec(),
        )
        .await?;
        assert_eq!(status, 400, "{http:?}");
        serde_json::from_slice::<Value>(&body)?;
    }
    let (code, _) = server.probe("/readyz").await?;
    assert_eq!(code, 200);
    Ok(())
}

/// What kubectl printed after the webhook's "denied the request" (empty when it did not deny).
fn denial_of(stderr: &str) -> &str {
    stderr
        .split_once("denied the request")
        .map_or("", |(_, d)| d)
}

/// Waits until the restarted server refuses a new hook on `url` (dry run): the narrowed policy
/// is in effect.
async fn wait_refused(c: &Cluster, ns: &str, url: &str, server: &Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = spawner_manifest(
        "probe",
        json!({"hooks": [{"name": "a", "webhook": {"url": url}}]}),
    );
    loop {
        let out = kubectl_apply(c, ns, &probe, &["--dry-run=server"]).await?;
        if !out.ok && out.stderr.contains("blocked") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{url} still accepted after 30s: {}\n{}",
                out.stderr,
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (e) The operator narrows `--allow-cidr`: an unrelated edit of a spawner whose stored hook now
/// breaks it passes with a warning; changing that hook, or adding a hook breaking it, is refused.
#[tokio::test]
async fn unrelated_edits_pass_with_warnings_after_allow_cidr_was_narrowed() -> Result<()> {
    let c = cluster().await?;
    let wide = ["--allow-cidr", "192.168.0.0/16"];
    let (mut server, ns) = Server::registered(c, "hard-ratchet", &wide, "Webhook").await?;
    let internal = json!({"name": "internal", "webhook": {"url": "https://192.168.1.3/hook"}});
    let mut s = spawner_manifest("team", json!({"hooks": [internal]}));
    let out = kubectl_apply(c, &ns, &s, &[]).await?;
    ensure!(out.ok, "allowed at first: {}", out.stderr);

    server.restart_with(c, &[]).await?;
    wait_refused(c, &ns, "https://192.168.9.9/x", &server).await?;

    // Unrelated edit: passes, the stored hook comes back as a warning.
    s["spec"]["when"]["cron"]["schedule"] = json!("30 * * * *");
    let out = kubectl_apply(c, &ns, &s, &[]).await?;
    assert!(out.ok, "unrelated edit refused: {}", out.stderr);
    let warnings = warning_lines(&out.stderr);
    assert!(
        warnings.iter().any(|w| w.contains("unchanged since stored")
            && w.contains("spec.onCompletion.hooks[0].webhook.url")
            && w.contains("192.168.0.0/16")),
        "{}",
        out.stderr
    );
    let stored = kelos_hooks_tests::admission_local::dynamic(c, &ns, "TaskSpawner")
        .await?
        .get("team")
        .await?;
    assert_eq!(
        stored.data["spec"]["when"]["cron"]["schedule"],
        "30 * * * *"
    );

    // Adding a public hook keeps the unchanged one allowed.
    let public = json!({"name": "public", "webhook": {"url": "https://hooks.example.com/x"}});
    s["spec"]["onCompletion"]["hooks"] = json!([internal, public]);
    let out = kubectl_apply(c, &ns, &s, &[]).await?;
    assert!(out.ok, "{}", out.stderr);

    // Changing the hook, or adding one like it: every rule applies.
    let mut changed = s.clone();
    changed["spec"]["onCompletion"]["hooks"][0]["webhook"]["url"] =
        json!("https://192.168.1.4/hook");
    let out = kubectl_apply(c, &ns, &changed, &[]).await?;
    assert!(!out.ok, "changed hook allowed: {}", out.stderr);
    let denial = denial_of(&out.stderr);
    assert!(denial.contains("hooks[0].webhook.url"), "{}", out.stderr);
    let mut added = s.clone();
    added["spec"]["onCompletion"]["hooks"][1]["webhook"]["url"] = json!("https://192.168.7.7/x");
    let out = kubectl_apply(c, &ns, &added, &[]).await?;
    assert!(!out.ok, "new blocked hook allowed: {}", out.stderr);
    let denial = denial_of(&out.stderr);
    assert!(
        denial.contains("hooks[1].webhook.url") && !denial.contains("hooks[0]"),
        "only the new hook is refused: {}",
        out.stderr
    );
    server.unregister(c).await?;
    Ok(())
}
