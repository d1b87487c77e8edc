//! The dispatcher end to end: a real API server, the real binary, a local HTTPS receiver.
//!
//! Each test has its own namespace, its own dispatcher process(es) watching only that namespace,
//! and its own receiver(s). Tasks are created with the `kelos.dev/on-completion` annotation
//! written directly (the admission server is not part of these tests) and completed through the
//! status subresource, as the kelos controller does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kelos_hooks_shared::annotations::REPORT_PHASE;
use kelos_hooks_shared::api::{
    Format, Hook, OnCompletion, Phase, SecretKeyRef, SecretRef, Task, TaskSpawner, TaskSpawnerSpec,
};
use kelos_hooks_shared::deliveries::HookState;
use kelos_hooks_tests::dispatcher::Dispatcher;
use kelos_hooks_tests::receiver::{Receiver, Recorded, Reply};
use kelos_hooks_tests::tasks::{
    self, SeenEvent, complete, create_secret, create_task, deliveries, wait_event,
    wait_report_phase,
};
use kelos_hooks_tests::{bin, cluster};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// Tasks, Secrets and what the API server records.

fn hook(name: &str, url: String, phases: Option<Vec<Phase>>, format: Option<Format>) -> Hook {
    let mut hook = tasks::hook(name, url);
    hook.phases = phases;
    hook.webhook.format = format;
    hook
}

fn uid(t: &Task) -> String {
    t.metadata.uid.clone().unwrap()
}

/// Standard Webhooks verification written independently of the dispatcher's code.
fn verify_signature(secret: &str, req: &Recorded) -> Result<()> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap())?;
    let id = req
        .header("webhook-id")
        .ok_or_else(|| anyhow!("no webhook-id"))?;
    let ts = req
        .header("webhook-timestamp")
        .ok_or_else(|| anyhow!("no webhook-timestamp"))?;
    let ts_num: i64 = ts.parse()?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    if (now - ts_num).abs() > 300 {
        bail!("timestamp {ts} too far from now {now}");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let header = req
        .header("webhook-signature")
        .ok_or_else(|| anyhow!("no webhook-signature"))?;
    if !header.split(' ').any(|s| s == expected) {
        bail!("signature {header} != {expected}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delivers_every_format_with_phase_filters_secret_headers_and_signatures() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-formats").await?;
    let rx = Receiver::start().await?;
    let signing = format!(
        "whsec_{}",
        STANDARD.encode(b"e2e signing key: 32 bytes long!!")
    );
    create_secret(&client, &ns, "signing", &[("secret", &signing)]).await?;
    create_secret(
        &client,
        &ns,
        "headers",
        &[
            ("Authorization", "Bearer e2e-token"),
            ("X-Team", "platform"),
            ("Webhook-Id", "forged"),
            ("content-type", "text/plain"),
        ],
    )
    .await?;
    let mut generic = hook("generic", rx.url("/generic?token=in-url"), None, None);
    generic.webhook.secret_ref = Some(SecretRef {
        name: "headers".into(),
    });
    generic.webhook.signing_secret_ref = Some(SecretKeyRef {
        name: "signing".into(),
        key: "secret".into(),
    });
    let mut cloud = hook(
        "cloud",
        rx.url("/cloud"),
        Some(vec![Phase::Succeeded]),
        Some(Format::CloudEvents),
    );
    cloud.webhook.signing_secret_ref = generic.webhook.signing_secret_ref.clone();
    let slack = hook(
        "slack",
        rx.url("/slack"),
        Some(vec![Phase::Failed]),
        Some(Format::Slack),
    );
    let hooks = [generic, cloud, slack];

    let d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let ok = create_task(&api, "ok", Some(&hooks), Some("issues")).await?;
    let bad = create_task(&api, "bad", Some(&hooks), None).await?;
    complete(&api, "ok", Phase::Succeeded, Duration::ZERO).await?;
    complete(&api, "bad", Phase::Failed, Duration::ZERO).await?;
    let ok_done = wait_report_phase(&api, "ok", Phase::Succeeded, WAIT, || d.logs()).await?;
    let bad_done = wait_report_phase(&api, "bad", Phase::Failed, WAIT, || d.logs()).await?;

    // Phase filters: generic fires on both, cloud on Succeeded only, slack on Failed only.
    let g = rx.requests_to("/generic");
    assert_eq!(g.len(), 2, "{g:?}");
    assert_eq!(rx.requests_to("/cloud").len(), 1);
    assert_eq!(rx.requests_to("/slack").len(), 1);
    let ids: HashSet<String> = g
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    let expected: HashSet<String> = [
        format!("{}_Succeeded_generic", uid(&ok)),
        format!("{}_Failed_generic", uid(&bad)),
    ]
    .into();
    assert_eq!(
        ids, expected,
        "webhook-id derived from UID, phase and hook; Secret cannot forge it"
    );

    for r in &g {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer e2e-token"));
        assert_eq!(r.header("x-team"), Some("platform"));
        assert_eq!(
            r.headers.iter().filter(|(n, _)| n == "webhook-id").count(),
            1
        );
        verify_signature(&signing, r)?;
        let body = r.json();
        assert_eq!(body["id"], r.header("webhook-id").unwrap());
        assert_eq!(body["hook"], "generic");
        let t = &body["task"];
        assert_eq!(t["namespace"], ns.as_str());
        assert_eq!(t["agentType"], "claude-code");
        assert_eq!(t["model"], "opus");
        assert_eq!(
            t["usage"],
            json!({"costUSD": "0.42", "inputTokens": 1200, "outputTokens": 340})
        );
        assert_eq!(t["outputs"][0], "https://github.com/kelos-dev/demo/pull/7");
        match t["name"].as_str() {
            Some("ok") => {
                assert_eq!(body["type"], "kelos.task.succeeded");
                assert_eq!(t["spawner"], "issues");
                assert_eq!(t["uid"], uid(&ok).as_str());
            }
            Some("bad") => {
                assert_eq!(body["type"], "kelos.task.failed");
                assert_eq!(t["spawner"], Value::Null);
                assert_eq!(t["phase"], "Failed");
            }
            other => panic!("unexpected task {other:?}"),
        }
    }
    let ce = &rx.requests_to("/cloud")[0];
    assert_eq!(
        ce.header("content-type"),
        Some("application/cloudevents+json")
    );
    verify_signature(&signing, ce)?;
    let ce_body = ce.json();
    assert_eq!(ce_body["specversion"], "1.0");
    assert_eq!(ce_body["id"], format!("{}_Succeeded_cloud", uid(&ok)));
    assert_eq!(ce_body["type"], "dev.kelos.task.succeeded");
    assert_eq!(
        ce_body["source"],
        format!("/apis/kelos.dev/v1alpha2/namespaces/{ns}/tasks/ok")
    );
    assert_eq!(ce_body["data"]["task"]["name"], "ok");
    assert!(ce.header("webhook-signature").is_some());
    let sl = &rx.requests_to("/slack")[0];
    assert!(
        sl.header("webhook-signature").is_none(),
        "no signing configured for slack"
    );
    let sl_body = sl.json();
    assert!(
        sl_body["text"]
            .as_str()
            .unwrap()
            .contains(&format!("{ns}/bad failed")),
        "{sl_body}"
    );
    assert!(sl_body["blocks"].as_array().unwrap().len() >= 3);

    // The record on the Task.
    let od = deliveries(&ok_done);
    assert_eq!(od.phase, Phase::Succeeded);
    assert_eq!(od.hooks.keys().collect::<Vec<_>>(), ["cloud", "generic"]);
    for h in od.hooks.values() {
        assert_eq!(
            (h.state, h.attempts, h.last_status),
            (HookState::Delivered, 1, Some(200))
        );
    }
    let bd = deliveries(&bad_done);
    assert_eq!(bd.phase, Phase::Failed);
    assert_eq!(bd.hooks.keys().collect::<Vec<_>>(), ["generic", "slack"]);

    let events = wait_event(&client, &ns, "ok", "WebhookHeadersIgnored", "").await?;
    let ignored = events
        .iter()
        .find(|e| e.reason == "WebhookHeadersIgnored")
        .unwrap();
    assert_eq!(ignored.type_, "Warning");
    assert!(
        ignored.note.contains("Webhook-Id") && ignored.note.contains("content-type"),
        "{ignored:?}"
    );
    let events = wait_event(&client, &ns, "ok", "WebhookDelivered", "").await?;
    for SeenEvent { note, .. } in &events {
        assert!(
            !note.contains("in-url") && !note.contains("/generic"),
            "URL path/query leaked: {note}"
        );
        assert!(!note.contains("e2e-token"), "secret leaked: {note}");
    }
    let (_, metrics) = d.get("/metrics").await?;
    assert!(
        metrics.contains("kelos_hooks_dispatcher_deliveries_total{outcome=\"delivered\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("kelos_hooks_dispatcher_leader 1"));
    assert!(
        !std::fs::read_to_string(d.log_path())?.contains("e2e-token"),
        "secret in logs"
    );
    Ok(())
}

#[tokio::test]
async fn retries_failures_redirects_and_timeouts() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-retry").await?;
    let rx = Receiver::start().await?;
    rx.script(
        "/flaky",
        [Reply::Status(500), Reply::Status(503), Reply::Status(200)],
    );
    rx.script("/rejected", [Reply::Status(400)]);
    rx.script("/moved", [Reply::Redirect(rx.url("/elsewhere"))]);
    rx.script("/slow", [Reply::Hang]);
    rx.script("/throttled", [Reply::RetryAfter(429, 1)]);
    rx.script("/down", std::iter::repeat_n(Reply::Status(503), 10));
    let hooks = [
        hook("flaky", rx.url("/flaky"), None, None),
        hook("rejected", rx.url("/rejected?token=s3cret"), None, None),
        hook("moved", rx.url("/moved"), None, None),
        hook("slow", rx.url("/slow"), None, None),
        hook("throttled", rx.url("/throttled"), None, None),
        hook("steady", rx.url("/steady"), None, None),
        hook("down", rx.url("/down"), None, None),
    ];
    let d = Dispatcher::start(
        c,
        &ns,
        rx.ca_file(),
        "127.0.0.0/8",
        "a",
        &["--max-attempts", "3"],
    )
    .await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let task = create_task(&api, "t", Some(&hooks), None).await?;
    complete(&api, "t", Phase::Succeeded, Duration::ZERO).await?;
    let done = wait_report_phase(&api, "t", Phase::Succeeded, WAIT, || d.logs()).await?;
    let dl = deliveries(&done);
    let state = |h: &str| {
        let r = dl.get(h).unwrap();
        (r.state, r.attempts, r.last_status)
    };
    assert_eq!(
        state("flaky"),
        (HookState::Delivered, 3, Some(200)),
        "{dl:?}"
    );
    assert_eq!(state("rejected"), (HookState::Failed, 1, Some(400)));
    assert_eq!(state("moved"), (HookState::Failed, 1, Some(302)));
    assert_eq!(state("slow"), (HookState::Delivered, 2, Some(200)));
    assert_eq!(state("throttled"), (HookState::Delivered, 2, Some(200)));
    assert_eq!(state("steady"), (HookState::Delivered, 1, Some(200)));
    assert!(dl.get("slow").unwrap().last_error.is_none());
    // Out of attempts (--max-attempts 3): Failed, with the reason.
    assert_eq!(state("down"), (HookState::Failed, 3, Some(503)));
    let why = dl
        .get("down")
        .unwrap()
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        why.contains("3 attempts") && why.contains("HTTP 503"),
        "{why}"
    );
    assert_eq!(rx.requests_to("/down").len(), 3);

    // Retries carry the same webhook-id.
    let flaky = rx.requests_to("/flaky");
    assert_eq!(flaky.len(), 3);
    let id = format!("{}_Succeeded_flaky", uid(&task));
    assert!(
        flaky
            .iter()
            .all(|r| r.header("webhook-id") == Some(id.as_str()))
    );
    // Final answers are not retried; redirects are not followed.
    assert_eq!(rx.requests_to("/rejected").len(), 1);
    assert_eq!(rx.requests_to("/moved").len(), 1);
    assert_eq!(
        rx.requests_to("/elsewhere").len(),
        0,
        "redirect must not be followed"
    );
    // A hung receiver times out (2s) and is retried.
    let slow = rx.requests_to("/slow");
    assert_eq!(slow.len(), 2);
    assert!(
        slow[1].at - slow[0].at >= Duration::from_secs(2),
        "timeout then retry"
    );
    // Retry-After: 1 honoured (backoff base is 200ms).
    let thr = rx.requests_to("/throttled");
    assert_eq!(thr.len(), 2);
    assert!(
        thr[1].at - thr[0].at >= Duration::from_millis(950),
        "{:?}",
        thr[1].at - thr[0].at
    );
    // Other hooks failing or retrying never re-send a delivered one.
    assert_eq!(rx.requests_to("/steady").len(), 1);

    let events = wait_event(&client, &ns, "t", "WebhookFailed", "hook rejected").await?;
    let failed: Vec<&SeenEvent> = events
        .iter()
        .filter(|e| e.reason == "WebhookFailed")
        .collect();
    assert!(failed.iter().all(|e| e.type_ == "Warning"));
    let rejected = failed
        .iter()
        .find(|e| e.note.contains("hook rejected"))
        .expect("rejected Event");
    assert!(rejected.note.contains("HTTP 400"), "{rejected:?}");
    assert!(
        rejected.note.contains(&format!("https://{}", rx.addr())),
        "{rejected:?}"
    );
    assert!(
        !rejected.note.contains("s3cret") && !rejected.note.contains("/rejected"),
        "URL not redacted: {rejected:?}"
    );
    wait_event(&client, &ns, "t", "WebhookRetrying", "").await?;
    let (_, metrics) = d.get("/metrics").await?;
    assert!(
        metrics.contains("kelos_hooks_dispatcher_deliveries_total{outcome=\"failed\"} 3"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn fallback_to_spawner_skips_old_tasks_and_blocks_private_addresses() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-fallback").await?;
    let rx = Receiver::start().await?;
    // A second receiver on 127.0.0.2, which the dispatcher's allowlist (127.0.0.1/32) leaves blocked.
    let canary = Receiver::start_on("127.0.0.2".parse()?).await?;

    let spawner = TaskSpawner::new(
        "issues",
        TaskSpawnerSpec {
            on_completion: Some(OnCompletion {
                hooks: vec![hook("from-spawner", rx.url("/fallback"), None, None)],
            }),
            ..Default::default()
        },
    );
    Api::<TaskSpawner>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &spawner)
        .await?;
    let d = Dispatcher::start(
        c,
        &ns,
        rx.ca_file(),
        "127.0.0.1/32",
        "a",
        &["--max-age", "1h"],
    )
    .await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);

    create_task(&api, "orphan", None, Some("issues")).await?;
    create_task(
        &api,
        "old",
        Some(&[hook("h", rx.url("/old"), None, None)]),
        None,
    )
    .await?;
    create_task(
        &api,
        "blocked",
        Some(&[hook("h", canary.url("/blocked"), None, None)]),
        None,
    )
    .await?;
    complete(&api, "orphan", Phase::Succeeded, Duration::ZERO).await?;
    complete(&api, "old", Phase::Succeeded, Duration::from_secs(2 * 3600)).await?;
    complete(&api, "blocked", Phase::Failed, Duration::ZERO).await?;

    let orphan = wait_report_phase(&api, "orphan", Phase::Succeeded, WAIT, || d.logs()).await?;
    assert_eq!(
        deliveries(&orphan).state("from-spawner"),
        HookState::Delivered
    );
    assert_eq!(rx.requests_to("/fallback").len(), 1);
    let ev = wait_event(&client, &ns, "orphan", "HooksFromSpawner", "").await?;
    assert!(
        ev.iter().any(|e| e.type_ == "Normal"
            && e.reason == "HooksFromSpawner"
            && e.note.contains("issues")),
        "{ev:?}"
    );

    let old = wait_report_phase(&api, "old", Phase::Succeeded, WAIT, || d.logs()).await?;
    let rec = deliveries(&old);
    assert_eq!(rec.state("h"), HookState::Skipped);
    assert_eq!(rec.get("h").unwrap().attempts, 0);
    assert!(
        rx.requests_to("/old").is_empty(),
        "old Tasks must not be sent"
    );
    wait_event(&client, &ns, "old", "WebhookSkipped", "").await?;

    let blocked = wait_report_phase(&api, "blocked", Phase::Failed, WAIT, || d.logs()).await?;
    let rec = deliveries(&blocked);
    let h = rec.get("h").unwrap();
    assert_eq!(h.state, HookState::Failed);
    let err = h.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("127.0.0.2") && err.contains("127.0.0.0/8"),
        "{err}"
    );
    assert_eq!(
        canary.connections(),
        0,
        "no connection may be made to a blocked address"
    );
    let ev = wait_event(&client, &ns, "blocked", "WebhookFailed", "blocked range").await?;
    assert!(
        ev.iter().any(|e| e.note.contains("blocked range")),
        "{ev:?}"
    );
    Ok(())
}

#[tokio::test]
async fn check_url_judges_like_a_delivery() -> Result<()> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin("kelos-hooks-dispatcher"))
            .arg("check-url")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["https://localhost:8443/hook?token=x"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(
            "blocked: the URL host localhost always means the local host and is refused: 127.0.0.1 is in blocked range 127.0.0.0/8"
        ),
        "{out}"
    );
    let (code, out) = run(&[
        "https://localhost:8443/hook?token=x",
        "--allow-cidr",
        "127.0.0.0/8",
    ]);
    // localhost is both loopbacks, judged as admission judges it: allowing it takes both.
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("::1 is in blocked range ::1/128"), "{out}");
    let (code, out) = run(&[
        "https://localhost:8443/hook?token=x",
        "--allow-cidr",
        "127.0.0.0/8",
        "--allow-cidr",
        "::1/128",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.trim()
            .starts_with("allowed: https://localhost:8443 -> 127.0.0.1"),
        "{out}"
    );
    assert!(!out.contains("token"), "{out}");
    let (code, out) = run(&["https://169.254.169.254/latest/meta-data"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("169.254.0.0/16"), "{out}");
    let (code, out) = run(&["http://example.com/"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("must use https, not http"), "{out}");
    let (code, _) = run(&["https://x.example/", "--allow-cidr", "nonsense"]);
    assert_eq!(code, Some(2));
    let (code, _) = run(&[]);
    assert_eq!(code, Some(2));
    Ok(())
}

fn pseudo_random(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % max
}

#[tokio::test]
async fn sigkill_at_random_points_loses_nothing_and_keeps_ids() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-kill").await?;
    let rx = Receiver::start().await?;
    // Slow answers and some 503s keep attempts in flight and retries pending when the kill lands.
    rx.set_default(Reply::Slow(Duration::from_millis(150), 200));
    let mut d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let n = 24;
    let mut expected: HashMap<String, String> = HashMap::new();
    for i in 0..n {
        let path = format!("/k{}", i % 3);
        if i % 4 == 0 {
            rx.script(&path, [Reply::Status(503)]);
        }
        let name = format!("t{i}");
        let t = create_task(
            &api,
            &name,
            Some(&[hook("h", rx.url(&path), None, None)]),
            None,
        )
        .await?;
        expected.insert(format!("{}_Succeeded_h", uid(&t)), name);
    }
    for i in 0..n {
        complete(&api, &format!("t{i}"), Phase::Succeeded, Duration::ZERO).await?;
        if i % 8 == 7 {
            tokio::time::sleep(Duration::from_millis(100 + pseudo_random(400))).await;
            d.restart().await?; // SIGKILL, then a fresh process
        }
    }
    for name in expected.values() {
        let t = wait_report_phase(&api, name, Phase::Succeeded, WAIT, || d.logs()).await?;
        assert_eq!(deliveries(&t).state("h"), HookState::Delivered, "{name}");
    }
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        let id = r.header("webhook-id").unwrap().to_owned();
        assert_eq!(r.json()["id"], id.as_str(), "body id = header id");
        assert!(expected.contains_key(&id), "unexpected id {id}");
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(per_id.len(), n, "every Task notified");
    let extra: usize = per_id.values().map(|c| c - 1).sum();
    println!(
        "{} requests for {n} deliveries ({extra} retries or re-sends after SIGKILL)",
        rx.requests().len()
    );
    Ok(())
}

#[tokio::test]
async fn two_replicas_send_once_and_fail_over() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-ha").await?;
    let rx = Receiver::start().await?;
    let mut a = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "replica-a", &[]).await?;
    let mut b = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "replica-b", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);

    let batch = |prefix: &'static str| {
        let api = api.clone();
        let rx_url = rx.url("/ha");
        async move {
            let mut names = Vec::new();
            for i in 0..5 {
                let name = format!("{prefix}{i}");
                create_task(
                    &api,
                    &name,
                    Some(&[hook("h", rx_url.clone(), None, None)]),
                    None,
                )
                .await?;
                complete(&api, &name, Phase::Succeeded, Duration::ZERO).await?;
                names.push(name);
            }
            Ok::<_, anyhow::Error>(names)
        }
    };
    for name in batch("one").await? {
        wait_report_phase(&api, &name, Phase::Succeeded, WAIT, || a.logs()).await?;
    }
    let holder = leases
        .get("dispatcher")
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    let (leader, survivor) = match holder.as_str() {
        "replica-a" => (&mut a, &mut b),
        "replica-b" => (&mut b, &mut a),
        other => bail!("unexpected Lease holder {other:?}"),
    };
    let (_, m) = survivor.get("/metrics").await?;
    assert!(
        m.contains("kelos_hooks_dispatcher_leader 0"),
        "follower must not lead: {m}"
    );
    leader.kill().await;
    let started = Instant::now();
    for name in batch("two").await? {
        wait_report_phase(&api, &name, Phase::Succeeded, WAIT, || survivor.logs()).await?;
    }
    println!(
        "failover: second batch delivered {:?} after the leader was killed",
        started.elapsed()
    );
    let holder = leases
        .get("dispatcher")
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert_ne!(holder, "", "a leader holds the Lease");
    let (_, m) = survivor.get("/metrics").await?;
    assert!(m.contains("kelos_hooks_dispatcher_leader 1"), "{m}");
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.requests_to("/ha") {
        *per_id
            .entry(r.header("webhook-id").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 10);
    assert!(
        per_id.values().all(|c| *c == 1),
        "nothing sent twice (no attempt was in flight at the kill): {per_id:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_in_flight_attempts_records_them_and_releases_the_lease() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-term").await?;
    let rx = Receiver::start().await?;
    rx.set_default(Reply::Slow(Duration::from_millis(1500), 200));
    let mut d = Dispatcher::start(
        c,
        &ns,
        rx.ca_file(),
        "127.0.0.0/8",
        "a",
        &["--shutdown-timeout", "10s"],
    )
    .await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    create_task(
        &api,
        "t",
        Some(&[hook("h", rx.url("/term"), None, None)]),
        None,
    )
    .await?;
    complete(&api, "t", Phase::Succeeded, Duration::ZERO).await?;
    rx.wait_for("/term", 1, WAIT).await?;
    // The attempt is in flight (the receiver answers after 1.5 s): SIGTERM now.
    let mut child = d.take_child().unwrap();
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    assert!(
        status.success(),
        "graceful exit expected, got {status}:\n{}",
        d.logs()
    );
    // The outcome was recorded before the process exited: nobody else is running.
    let t = api.get("t").await?;
    assert_eq!(
        t.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REPORT_PHASE))
            .map(String::as_str),
        Some("Succeeded")
    );
    let rec = deliveries(&t);
    assert_eq!(
        (rec.state("h"), rec.get("h").unwrap().attempts),
        (HookState::Delivered, 1)
    );
    assert_eq!(rx.requests_to("/term").len(), 1);
    let lease = Api::<Lease>::namespaced(client.clone(), &ns)
        .get("dispatcher")
        .await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        None,
        "Lease released for a fast failover"
    );
    Ok(())
}

#[tokio::test]
async fn losing_the_lease_stops_sending_and_cancels_in_flight_attempts() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-lease").await?;
    let rx = Receiver::start().await?;
    rx.set_default(Reply::Slow(Duration::from_secs(6), 200));
    let d = Dispatcher::start(
        c,
        &ns,
        rx.ca_file(),
        "127.0.0.0/8",
        "a",
        &["--request-timeout", "15s"],
    )
    .await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let t1 = create_task(
        &api,
        "t1",
        Some(&[hook("h", rx.url("/lease"), None, None)]),
        None,
    )
    .await?;
    complete(&api, "t1", Phase::Succeeded, Duration::ZERO).await?;
    rx.wait_for("/lease", 1, WAIT).await?;

    // Another holder takes the Lease (as if this replica had been partitioned away).
    let mut lease = leases.get("dispatcher").await?;
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        Timestamp::now(),
    ));
    spec.lease_duration_seconds = Some(6);
    leases
        .replace("dispatcher", &PostParams::default(), &lease)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d
        .get("/metrics")
        .await?
        .1
        .contains("kelos_hooks_dispatcher_leader 0")
    {
        assert!(
            Instant::now() < deadline,
            "did not step down:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A follower sends nothing new, and the cancelled attempt records nothing.
    create_task(
        &api,
        "t2",
        Some(&[hook("h", rx.url("/lease"), None, None)]),
        None,
    )
    .await?;
    complete(&api, "t2", Phase::Succeeded, Duration::ZERO).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rx.requests_to("/lease").len(),
        1,
        "no request while not leader"
    );
    assert_ne!(
        deliveries(&api.get("t1").await?).state("h"),
        HookState::Delivered,
        "cancelled attempt must not be recorded"
    );

    // The intruder never renews: once its Lease expires this replica leads again and finishes.
    wait_report_phase(&api, "t1", Phase::Succeeded, WAIT, || d.logs()).await?;
    wait_report_phase(&api, "t2", Phase::Succeeded, WAIT, || d.logs()).await?;
    let id1 = format!("{}_Succeeded_h", uid(&t1));
    let reqs = rx.requests_to("/lease");
    assert_eq!(
        reqs.len(),
        3,
        "t1 twice (the cancelled in-flight attempt, then again), t2 once"
    );
    assert_eq!(
        reqs.iter()
            .filter(|r| r.header("webhook-id") == Some(id1.as_str()))
            .count(),
        2,
        "same webhook-id on re-send"
    );
    Ok(())
}

#[tokio::test]
async fn a_rerun_to_another_phase_notifies_again_with_a_new_id() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-rerun").await?;
    let rx = Receiver::start().await?;
    let d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let t = create_task(
        &api,
        "t",
        Some(&[hook("h", rx.url("/rerun"), None, None)]),
        None,
    )
    .await?;
    complete(&api, "t", Phase::Failed, Duration::ZERO).await?;
    wait_report_phase(&api, "t", Phase::Failed, WAIT, || d.logs()).await?;
    complete(&api, "t", Phase::Succeeded, Duration::ZERO).await?;
    let done = wait_report_phase(&api, "t", Phase::Succeeded, WAIT, || d.logs()).await?;
    let rec = deliveries(&done);
    assert_eq!(
        rec.phase,
        Phase::Succeeded,
        "a new phase starts a new record"
    );
    assert_eq!(
        (rec.state("h"), rec.get("h").unwrap().attempts),
        (HookState::Delivered, 1)
    );
    let ids: Vec<String> = rx
        .requests_to("/rerun")
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            format!("{}_Failed_h", uid(&t)),
            format!("{}_Succeeded_h", uid(&t))
        ]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A Failed hook's Warning Event survives a refused publish and a SIGKILL.

/// A ValidatingAdmissionPolicy (and its binding) refusing every Event written in `ns`, the way a
/// restarting etcd or API server refuses them; waits until it is in force.
async fn block_events(client: &kube::Client, ns: &str) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let name = format!("block-events-{ns}");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "resourceRules": [{
                    "apiGroups": ["", "events.k8s.io"],
                    "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["events"],
                }],
            },
            "validations": [{"expression": "false", "message": "Events blocked by the test"}],
        },
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }))?;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    wait_events_allowed(client, ns, false).await
}

/// Removes what [`block_events`] created; waits until Events are accepted again.
async fn unblock_events(client: &kube::Client, ns: &str) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let name = format!("block-events-{ns}");
    let dp = kube::api::DeleteParams::default();
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(&name, &dp)
        .await?;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .delete(&name, &dp)
        .await?;
    wait_events_allowed(client, ns, true).await
}

/// Creates probe Events in `ns` until their creation is `allowed` (or not).
async fn wait_events_allowed(client: &kube::Client, ns: &str, allowed: bool) -> Result<()> {
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        let probe: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("probe-{i}")},
            "eventTime": MicroTime(Timestamp::now()),
            "reportingController": "kelos-hooks-tests/probe",
            "reportingInstance": "probe",
            "action": "Probe",
            "reason": "Probe",
            "type": "Normal",
            "note": "is Event creation blocked?",
            "regarding": {"apiVersion": "v1", "kind": "Namespace", "name": ns, "namespace": ns},
        }))?;
        let created = api.create(&PostParams::default(), &probe).await;
        let blocked =
            matches!(&created, Err(e) if e.to_string().contains("Events blocked by the test"));
        if created.is_ok() && allowed || blocked && !allowed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Event creation in {ns} still allowed={}: {created:?}",
                !allowed
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!("the probe loop only ends by returning")
}

#[tokio::test]
async fn a_failed_hooks_warning_event_survives_a_refused_publish_and_a_sigkill() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("disp-warn").await?;
    let rx = Receiver::start().await?;
    rx.script("/gone", std::iter::repeat_n(Reply::Status(410), 10));
    block_events(&client, &ns).await?;
    let mut a = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    create_task(
        &api,
        "t",
        Some(&[hook("gone", rx.url("/gone"), None, None)]),
        None,
    )
    .await?;
    complete(&api, "t", Phase::Succeeded, Duration::ZERO).await?;

    // The hook failed for good (410), but its Warning Event is refused: the Failed state must
    // not be written before the Event is.
    let deadline = Instant::now() + WAIT;
    while !a.logs().contains("could not publish Event; retrying") {
        if Instant::now() > deadline {
            bail!("no refused publish retried\n{}", a.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.requests_to("/gone").len(), 1);
    let t = api.get("t").await?;
    assert_ne!(
        deliveries(&t).state("gone"),
        HookState::Failed,
        "Failed written before its Warning Event\n{}",
        a.logs()
    );
    // Killed mid-publish; the block lifted; a new leader.
    a.kill().await;
    unblock_events(&client, &ns).await?;
    let b = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "b", &[]).await?;
    let done = wait_report_phase(&api, "t", Phase::Succeeded, WAIT, || b.logs()).await?;
    assert_eq!(deliveries(&done).state("gone"), HookState::Failed);
    let events = wait_event(&client, &ns, "t", "WebhookFailed", "hook gone").await?;
    let failed = events
        .iter()
        .find(|e| e.reason == "WebhookFailed")
        .expect("WebhookFailed Event");
    assert_eq!(failed.type_, "Warning");
    assert!(failed.note.contains("HTTP 410"), "{failed:?}");
    assert_eq!(failed.reporter, "kelos-hooks-dispatcher");
    // The price of never losing the Event: the attempt was repeated (same webhook-id).
    let sent = rx.requests_to("/gone");
    assert_eq!(sent.len(), 2, "one attempt per leader");
    assert_eq!(sent[0].header("webhook-id"), sent[1].header("webhook-id"));
    Ok(())
}
