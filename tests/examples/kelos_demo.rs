//! The demo's real-kelos part (run by `hack/demo.sh`): kelos-controller and kelos-spawner built
//! from ../shared/kelos-src, installed from kelos's own chart on a control plane of this process,
//! next to our admission server and dispatcher (the chart's webhooks, pointed at local processes).
//!
//! A cron TaskSpawner with an `onCompletion` hook → kelos's controller adds its finalizer (a full
//! Update by types that lack the field: the hook is kept) → `kelos-spawner --one-shot` creates two
//! Tasks → our mutating webhook injects the hook snapshot → each Task's Job ends as the Job
//! controller would write it → kelos sets Succeeded / Failed → our dispatcher delivers, shown as
//! the receiver got it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kelos_hooks_shared::annotations;
use kelos_hooks_shared::api::Phase;
use kelos_hooks_tests::kelos::{AddOn, AgentRun, cron_spawner, kelos};
use kelos_hooks_tests::receiver::Receiver;
use serde_json::json;

fn step(what: &str) {
    println!("\n==> {what}");
}

#[tokio::main]
async fn main() -> Result<()> {
    step(
        "installing kelos from its chart (CRDs in two versions, conversion webhook) and starting kelos-controller",
    );
    let k = kelos().await?;
    println!("kelos {} from {}", k.commit(), k.source().display());
    let ns = k.namespace("demo-kelos").await?;
    let rx = Receiver::start().await?;
    step("starting our admission server and dispatcher, registering the chart's webhooks");
    let addon = AddOn::start(k, &ns, rx.ca_file()).await?;

    step("applying a cron TaskSpawner with an onCompletion hook");
    let hooks = json!({"hooks": [{"name": "notify", "webhook": {"url": rx.url("/notify")}}]});
    k.create_spawner(&ns, &cron_spawner("nightly", &hooks, 2, false))
        .await?;
    let spawner = k.wait_spawner_finalized(&ns, "nightly").await?;
    println!(
        "kelos-controller added {:?}; spec.onCompletion is still {}",
        spawner.metadata.finalizers.unwrap_or_default(),
        spawner.data["spec"]["onCompletion"]
    );
    ensure!(
        spawner.data["spec"]["onCompletion"] == hooks,
        "kelos's finalizer Update lost the hooks"
    );

    step("kelos-spawner --one-shot creates the Tasks; our mutating webhook injects the hooks");
    k.backdate_discovery(&ns, "nightly", 3).await?;
    let run = k.run_spawner_once(&ns, "nightly").await?;
    let tasks = k.spawned_tasks(&ns, "nightly").await?;
    ensure!(tasks.len() == 2, "{} Tasks, expected 2", tasks.len());
    println!("created in {} ms:", run.took.as_millis());
    for t in &tasks {
        println!(
            "  {}  {}: {}",
            t.metadata.name.as_deref().unwrap_or_default(),
            annotations::ON_COMPLETION,
            t.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::ON_COMPLETION))
                .map_or("(none)", String::as_str)
        );
    }

    step(
        "the Jobs end (one Succeeded, one Failed) as the Job controller writes it; kelos sets the Task phase",
    );
    let runs = [
        AgentRun::new(
            Phase::Succeeded,
            &["https://github.com/kelos-dev/demo/pull/7", "cost-usd: 0.42"],
        ),
        AgentRun::new(Phase::Failed, &["cost-usd: 0.05"]),
    ];
    for (t, agent) in tasks.iter().zip(&runs) {
        let name = t.metadata.name.clone().unwrap_or_default();
        let done = k.run_task(&ns, &name, agent).await?;
        let status = done.task.status.unwrap_or_default();
        println!(
            "  {name}: Job {} → kelos set {:?} ({:?})",
            done.job, status.phase, status.message
        );
    }

    step("our dispatcher delivers: what the receiver got");
    let got = rx
        .wait_for("/notify", 2, Duration::from_secs(60))
        .await
        .with_context(|| addon.dispatcher.logs())?;
    for r in &got {
        println!(
            "  POST {}  webhook-id: {}  webhook-signature: {}…",
            r.path,
            r.header("webhook-id").unwrap_or_default(),
            r.header("webhook-signature")
                .unwrap_or_default()
                .chars()
                .take(16)
                .collect::<String>()
        );
        println!("  {}", serde_json::to_string(&r.json())?);
    }
    println!(
        "\nkelos {} + kelos-hooks: 2 Tasks completed by kelos, 2 hooks delivered",
        k.commit()
    );
    Ok(())
}
