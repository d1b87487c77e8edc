//! kelos benchmark driver (run by `bench/kelos.sh`, not by the tests), on the real kelos of
//! `kelos_hooks_tests::kelos` (kelos-controller and kelos-spawner from ../shared/kelos-src):
//! - `delivery N`: one cron TaskSpawner with a hook; `kelos-spawner --one-shot` creates N Tasks;
//!   their Jobs run to the end (4 at a time, alternately Succeeded and Failed) and kelos sets
//!   the Tasks' terminal phases. Per Task: kelos's terminal status (first seen by a watch of this
//!   driver) → the delivery at the receiver, and the Job's terminal status → that delivery.
//! - `creation ROUNDS BATCH`: `kelos-spawner --one-shot` creating BATCH Tasks of a spawner with a
//!   hook, with and without our webhooks registered, alternately, ROUNDS times each; plus the API
//!   server's own histogram of our Task CREATE webhook over the rounds with it.
//!
//! Lines starting RESULT are the figures for BENCHMARKS.md. The workspace binaries come from
//! `KELOS_HOOKS_BIN_DIR` (bench/kelos.sh: release builds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use kelos_hooks_shared::api::{Phase, Task};
use kelos_hooks_tests::kelos::{AddOn, AgentRun, Kelos, cron_spawner, kelos};
use kelos_hooks_tests::receiver::Receiver;
use kelos_hooks_tests::stats::{ms, percentile, print_summary};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

fn hooks(url: &str) -> serde_json::Value {
    json!({"hooks": [{"name": "notify", "webhook": {"url": url}}]})
}

/// When each Task of `ns` was first seen in a terminal phase by a watch.
fn watch_terminal(client: kube::Client, ns: &str) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let api: Api<Task> = Api::namespaced(client, ns);
    let out = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
        while let Ok(Some(task)) = events.try_next().await {
            if task.terminal_phase().is_some() {
                let name = task.metadata.name.clone().unwrap_or_default();
                out.lock().unwrap().entry(name).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

async fn delivery(k: &Kelos, n: usize) -> Result<()> {
    let ns = k.namespace("bench-delivery").await?;
    let rx = Receiver::start().await?;
    let addon = AddOn::start(k, &ns, rx.ca_file()).await?;
    let seen = watch_terminal(k.cluster().client().await?, &ns);
    k.create_spawner(
        &ns,
        &cron_spawner("bench", &hooks(&rx.url("/notify")), n as u32, true),
    )
    .await?;
    k.backdate_discovery(&ns, "bench", n as i64 + 1).await?;
    let run = k.run_spawner_once(&ns, "bench").await?;
    let tasks = k.spawned_tasks(&ns, "bench").await?;
    ensure!(tasks.len() == n, "{} Tasks, expected {n}", tasks.len());
    println!(
        "kelos-spawner --one-shot created {n} Tasks in {:.0} ms",
        ms(run.took)
    );

    let started = Instant::now();
    let completions: Vec<_> = stream::iter(tasks.iter().enumerate())
        .map(|(i, t)| {
            let name = t.metadata.name.clone().unwrap_or_default();
            let run = if i % 2 == 0 {
                AgentRun::new(Phase::Succeeded, &["cost-usd: 0.10", "input-tokens: 100"])
            } else {
                AgentRun::new(Phase::Failed, &["cost-usd: 0.02"])
            };
            let ns = ns.clone();
            async move { k.run_task(&ns, &name, &run).await }
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    let got = rx
        .wait_for("/notify", n, Duration::from_secs(120))
        .await
        .with_context(|| addon.dispatcher.logs())?;
    println!(
        "{n} Tasks completed by kelos and delivered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let seen = seen.lock().unwrap().clone();
    let job_done: HashMap<String, Instant> = completions
        .iter()
        .map(|c| {
            (
                c.task.metadata.name.clone().unwrap_or_default(),
                c.job_finished_at,
            )
        })
        .collect();
    let (mut from_status, mut from_job, mut kelos_took) = (Vec::new(), Vec::new(), Vec::new());
    for r in &got {
        let name = r.json()["task"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (Some(s), Some(j)) = (seen.get(&name), job_done.get(&name)) else {
            bail!("delivery for unknown Task {name}");
        };
        from_status.push(ms(r.at.saturating_duration_since(*s)));
        from_job.push(ms(r.at.saturating_duration_since(*j)));
        kelos_took.push(ms(s.saturating_duration_since(*j)));
    }
    ensure!(got.len() == n, "{} deliveries for {n} Tasks", got.len());
    print_summary(
        "kelos terminal Task status (watch) -> delivery at the receiver",
        from_status,
    );
    print_summary(
        "Job terminal status written -> delivery at the receiver",
        from_job,
    );
    print_summary(
        "Job terminal status written -> kelos terminal Task status (watch)",
        kelos_took,
    );
    Ok(())
}

/// `sum` and `count` of the API server's admission webhook histogram for webhook `name`.
fn webhook_histogram(metrics: &str, name: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "apiserver_admission_webhook_admission_duration_seconds_{suffix}{{"
                )) && l.contains(&format!("name=\"{name}\""))
                    && l.contains("operation=\"CREATE\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (value("sum"), value("count"))
}

async fn apiserver_metrics(k: &Kelos) -> Result<String> {
    let client = k.cluster().client().await?;
    let req = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

async fn creation(k: &Kelos, rounds: usize, batch: usize) -> Result<()> {
    let ns = k.namespace("bench-create").await?;
    let rx = Receiver::start().await?;
    let mut addon = AddOn::start(k, &ns, rx.ca_file()).await?;
    // The one webhook a Task CREATE calls (the Task annotation rules are a ValidatingAdmissionPolicy).
    const WEBHOOKS: [&str; 1] = ["mutate-tasks.hooks.kelos.dev"];
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut histograms = [(0.0, 0.0); WEBHOOKS.len()];
    for round in 0..rounds {
        for registered in [false, true] {
            if registered {
                addon.register(k).await?;
            } else {
                addon.unregister(k).await?;
            }
            let name = format!("r{round}-{}", if registered { "with" } else { "without" });
            k.create_spawner(
                &ns,
                &cron_spawner(&name, &hooks(&rx.url("/notify")), batch as u32, true),
            )
            .await?;
            k.backdate_discovery(&ns, &name, batch as i64 + 1).await?;
            let before = apiserver_metrics(k).await?;
            let run = k.run_spawner_once(&ns, &name).await?;
            let after = apiserver_metrics(k).await?;
            let created = k.spawned_tasks(&ns, &name).await?.len();
            ensure!(created == batch, "{created} Tasks, expected {batch}");
            let per_task = ms(run.took) / batch as f64;
            println!(
                "round {round} {name}: kelos-spawner --one-shot created {batch} Tasks in {:.0} ms ({per_task:.2} ms/Task)",
                ms(run.took)
            );
            if registered {
                with.push(ms(run.took));
                for (h, w) in histograms.iter_mut().zip(WEBHOOKS) {
                    let (s0, c0) = webhook_histogram(&before, w);
                    let (s1, c1) = webhook_histogram(&after, w);
                    h.0 += s1 - s0;
                    h.1 += c1 - c0;
                }
            } else {
                without.push(ms(run.took));
            }
        }
    }
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let (w, wo) = (percentile(&with, 0.5), percentile(&without, 0.5));
    println!(
        "RESULT kelos-spawner --one-shot, {batch} Tasks, median of {rounds}: with our webhooks {w:.0} ms, without {wo:.0} ms; added {:.2} ms per Task creation ({:.2} vs {:.2} ms/Task)",
        (w - wo) / batch as f64,
        w / batch as f64,
        wo / batch as f64
    );
    for ((sum, count), name) in histograms.iter().zip(WEBHOOKS) {
        println!(
            "RESULT API server's own histogram for {name} on CREATE: {count:.0} calls, mean {:.2} ms",
            sum / count * 1000.0
        );
    }
    addon.register(k).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let k = kelos().await?;
    println!("kelos {} from {}", k.commit(), k.source().display());
    match args.first().map(String::as_str) {
        Some("delivery") => delivery(k, num(1, 60)).await,
        Some("creation") => creation(k, num(1, 3), num(2, 50)).await,
        Some("all") | None => {
            delivery(k, num(1, 60)).await?;
            creation(k, num(2, 3), num(3, 50)).await
        }
        Some(other) => bail!("unknown mode {other}: delivery N | creation ROUNDS BATCH | all"),
    }
}
