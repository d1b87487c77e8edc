//! The receiver formats end to end (issue 12): a real API server, the real dispatcher, the local
//! HTTPS receiver. One Failed Task reaches a PagerDuty, an MSTeams, a Discord and a Template hook;
//! a template that cannot render for that Task fails its hook with a Warning Event and sends
//! nothing; a PagerDuty event re-sent after a dispatcher SIGKILL carries the same `dedup_key`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::Result;
use kelos_hooks_shared::api::{
    Format, Hook, PagerDutyOptions, Phase, SecretKeyRef, Task, TemplateOptions,
};
use kelos_hooks_shared::deliveries::HookState;
use kelos_hooks_tests::cluster;
use kelos_hooks_tests::dispatcher::Dispatcher;
use kelos_hooks_tests::receiver::{Receiver, Recorded, Reply};
use kelos_hooks_tests::tasks::{
    self, complete, create_secret, create_task, deliveries, wait_event, wait_report_phase,
};
use kube::api::Api;
use serde_json::json;

/// How long a delivery may take to be reported.
const WAIT: Duration = Duration::from_secs(45);
const ROUTING_KEY: &str = "e2e0routing0key0000000000000000a";

fn with_format(name: &str, url: String, format: Format) -> Hook {
    let mut hook = tasks::hook(name, url);
    hook.webhook.format = Some(format);
    hook
}

fn pager_duty(name: &str, url: String) -> Hook {
    let mut hook = with_format(name, url, Format::PagerDuty);
    hook.webhook.pager_duty = Some(PagerDutyOptions {
        routing_key_secret_ref: SecretKeyRef {
            name: "pagerduty".into(),
            key: "routing-key".into(),
        },
        trigger_on_succeeded: false,
    });
    hook
}

fn template(name: &str, url: String, body: &str, content_type: Option<&str>) -> Hook {
    let mut hook = with_format(name, url, Format::Template);
    hook.webhook.template = Some(TemplateOptions {
        body: body.into(),
        content_type: content_type.map(Into::into),
    });
    hook
}

/// The one request to `path`, printed (the note records one real body of each format).
fn only(rx: &Receiver, path: &str) -> Recorded {
    let got = rx.requests_to(path);
    assert_eq!(got.len(), 1, "{path}: {got:?}");
    let r = got.into_iter().next().unwrap();
    println!(
        "{path} ({}): {}",
        r.header("content-type").unwrap_or_default(),
        String::from_utf8_lossy(&r.body)
    );
    r
}

#[tokio::test]
async fn a_failed_task_reaches_every_new_format() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("fmt-all").await?;
    let rx = Receiver::start().await?;
    create_secret(&client, &ns, "pagerduty", &[("routing-key", ROUTING_KEY)]).await?;
    let hooks = [
        pager_duty("pagerduty", rx.url("/pagerduty")),
        with_format("teams", rx.url("/teams"), Format::MsTeams),
        with_format("discord", rx.url("/discord"), Format::Discord),
        template(
            "dashboard",
            rx.url("/dashboard"),
            r#"{"title": {{ ("Task " ~ task.name ~ " " ~ task.phase) | tojson }}, "pr": {{ task.results.pr | tojson }}, "cost": {{ task.usage.costUSD | tojson }}, "id": {{ id | tojson }}}"#,
            None,
        ),
        // Renders `{"pr": oops}` for this Task: not JSON, so nothing may be sent.
        template(
            "broken",
            rx.url("/broken"),
            r#"{"pr": {{ task.results.missing | default("oops") }}}"#,
            None,
        ),
    ];
    let d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let t = create_task(&api, "bad", Some(&hooks), Some("issues")).await?;
    complete(&api, "bad", Phase::Failed, Duration::ZERO).await?;
    let done = wait_report_phase(&api, "bad", Phase::Failed, WAIT, || d.logs()).await?;
    let state = deliveries(&done);
    for name in ["pagerduty", "teams", "discord", "dashboard"] {
        assert_eq!(state.state(name), HookState::Delivered, "{name}: {state:?}");
    }
    assert_eq!(state.state("broken"), HookState::Failed, "{state:?}");
    let id = |hook: &str| format!("{}_Failed_{hook}", t.metadata.uid.clone().unwrap());

    let pd = only(&rx, "/pagerduty");
    let v = pd.json();
    assert_eq!(v["routing_key"], ROUTING_KEY);
    assert_eq!(v["event_action"], "trigger");
    assert_eq!(v["dedup_key"], id("pagerduty").as_str());
    assert_eq!(pd.header("webhook-id"), Some(id("pagerduty").as_str()));
    assert_eq!(v["payload"]["severity"], "error");
    assert_eq!(v["payload"]["source"], format!("{ns}/bad"));
    assert_eq!(
        v["payload"]["summary"],
        format!("kelos Task {ns}/bad failed: agent failed")
    );
    assert_eq!(v["payload"]["custom_details"]["results"]["pr"], "7");
    assert_eq!(
        v["links"][0]["href"],
        "https://github.com/kelos-dev/demo/pull/7"
    );
    assert!(!pd.header("webhook-id").unwrap().is_empty());
    assert!(
        !rx.url("/pagerduty").contains(ROUTING_KEY),
        "the key travels in the body only"
    );

    let teams = only(&rx, "/teams").json();
    assert_eq!(teams["type"], "message");
    let card = &teams["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["text"], "Task bad failed");
    assert_eq!(card["content"]["body"][0]["color"], "attention");

    let discord = only(&rx, "/discord").json();
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
    assert_eq!(discord["embeds"][0]["title"], "Task bad failed");
    assert_eq!(discord["embeds"][0]["color"], 0xE7_4C_3C);
    assert_eq!(
        discord["embeds"][0]["url"],
        "https://github.com/kelos-dev/demo/pull/7"
    );

    let dash = only(&rx, "/dashboard");
    assert_eq!(dash.header("content-type"), Some("application/json"));
    assert_eq!(
        dash.json(),
        json!({"title": "Task bad Failed", "pr": "7", "cost": "0.42", "id": id("dashboard")})
    );

    assert!(
        rx.requests_to("/broken").is_empty(),
        "a failed render sends nothing"
    );
    let events = wait_event(&client, &ns, "bad", "WebhookFailed", "not valid JSON").await?;
    assert!(
        events.iter().any(|e| e.type_ == "Warning"
            && e.note.contains("broken")
            && e.note.contains("not valid JSON")),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test]
async fn pagerduty_skips_succeeded_tasks_unless_asked() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("fmt-pd-ok").await?;
    let rx = Receiver::start().await?;
    create_secret(&client, &ns, "pagerduty", &[("routing-key", ROUTING_KEY)]).await?;
    let mut asked = pager_duty("asked", rx.url("/asked"));
    asked
        .webhook
        .pager_duty
        .as_mut()
        .unwrap()
        .trigger_on_succeeded = true;
    let hooks = [pager_duty("quiet", rx.url("/quiet")), asked];
    let d = Dispatcher::start(c, &ns, rx.ca_file(), "127.0.0.0/8", "a", &[]).await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    create_task(&api, "ok", Some(&hooks), None).await?;
    complete(&api, "ok", Phase::Succeeded, Duration::ZERO).await?;
    let done = wait_report_phase(&api, "ok", Phase::Succeeded, WAIT, || d.logs()).await?;
    assert_eq!(deliveries(&done).state("asked"), HookState::Delivered);
    let v = only(&rx, "/asked").json();
    assert_eq!(v["payload"]["severity"], "info");
    assert!(
        rx.requests_to("/quiet").is_empty(),
        "a success is no incident"
    );
    Ok(())
}

#[tokio::test]
async fn a_pagerduty_resend_after_sigkill_carries_the_same_dedup_key() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("fmt-pd-kill").await?;
    let rx = Receiver::start().await?;
    create_secret(&client, &ns, "pagerduty", &[("routing-key", ROUTING_KEY)]).await?;
    // The first attempt never gets an answer: the kill lands while it is in flight.
    rx.script("/pd", [Reply::Hang]);
    let mut d = Dispatcher::start(
        c,
        &ns,
        rx.ca_file(),
        "127.0.0.0/8",
        "a",
        &["--request-timeout", "30s"],
    )
    .await?;
    let api: Api<Task> = Api::namespaced(client.clone(), &ns);
    let t = create_task(&api, "bad", Some(&[pager_duty("pd", rx.url("/pd"))]), None).await?;
    complete(&api, "bad", Phase::Failed, Duration::ZERO).await?;
    rx.wait_for("/pd", 1, WAIT).await?;
    d.restart().await?; // SIGKILL, then a fresh process that replays from the annotations
    let done = wait_report_phase(&api, "bad", Phase::Failed, WAIT, || d.logs()).await?;
    assert_eq!(deliveries(&done).state("pd"), HookState::Delivered);
    let sent = rx.requests_to("/pd");
    assert!(sent.len() >= 2, "re-sent after the kill: {sent:?}");
    let id = format!("{}_Failed_pd", t.metadata.uid.clone().unwrap());
    for r in &sent {
        assert_eq!(r.header("webhook-id"), Some(id.as_str()));
        assert_eq!(
            r.json()["dedup_key"],
            id.as_str(),
            "one incident, however often sent"
        );
    }
    assert_eq!(sent[0].body, sent[1].body, "the re-send is the same event");
    println!(
        "{} PagerDuty requests across the SIGKILL, dedup_key {id} each time",
        sent.len()
    );
    Ok(())
}
