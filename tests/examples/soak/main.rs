//! The chaos soak (run by `hack/soak.sh`, by hand; not part of the tests).
//!
//! Against the control plane of `hack/soak.sh` (`KELOS_HOOKS_CLUSTER_DIR`): two dispatcher
//! replicas with leader election, a receiver that misbehaves on purpose
//! (`kelos_hooks_tests::faulty_receiver`), `--tasks` Tasks created and completed at `--rate`
//! per second, and meanwhile `--kills` SIGKILLs of whichever replica leads, `--apiserver-restarts`
//! kube-apiserver and `--etcd-restarts` etcd restarts (SIGKILL, same ports and data) while
//! deliveries are in flight, and 5xx bursts. Then it waits for every hook to be final and checks
//! (`check.rs`); prints a figures table; exits non-zero when a check fails or `--deadline` passes.
//! All traffic stays on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod check;
mod load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use k8s_openapi::api::events::v1::Event;
use kelos_hooks_shared::api::Task;
use kelos_hooks_shared::duration::parse as parse_duration;
use kelos_hooks_tests::cluster;
use kelos_hooks_tests::faulty_receiver::FaultyReceiver;
use kube::api::Api;

/// Bounds of the run.
#[derive(Debug, Parser)]
struct Args {
    /// Tasks to create and complete.
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Tasks completed per second.
    #[arg(long, default_value_t = 3.0)]
    rate: f64,
    /// SIGKILLs of the leading replica.
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// Pause between two kills.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    kill_every: Duration,
    /// kube-apiserver restarts, spread over the time the Tasks are completed.
    #[arg(long, default_value_t = 3)]
    apiserver_restarts: usize,
    /// etcd restarts, spread likewise.
    #[arg(long, default_value_t = 1)]
    etcd_restarts: usize,
    /// Give up (and fail) after this long.
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    deadline: Duration,
    /// Largest dispatcher VmRSS accepted, MiB.
    #[arg(long, default_value_t = 256.0)]
    rss_limit_mib: f64,
}

/// When the control-plane restarts happen (offsets from the start of the load), in order.
fn restart_plan(args: &Args) -> Vec<(Duration, &'static str)> {
    let load = Duration::from_secs_f64(args.tasks as f64 / args.rate);
    let mut plan: Vec<(Duration, &'static str)> = (1..=args.apiserver_restarts)
        .map(|i| {
            (
                load * i as u32 / (args.apiserver_restarts as u32 + 1),
                "apiserver",
            )
        })
        .chain((1..=args.etcd_restarts).map(|i| {
            // Between the API-server restarts: at 3/8 of the load for one.
            let at = load.mul_f64(0.75 * (i as f64 - 0.5) / args.etcd_restarts as f64);
            (at, "etcd")
        }))
        .collect();
    plan.sort();
    plan
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let t0 = Instant::now();
    let deadline = t0 + args.deadline;
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("soak").await?;
    let rx = Arc::new(FaultyReceiver::start("127.0.0.1".parse()?).await?);
    let mut replicas = chaos::Replicas::start(c, client.clone(), &ns, rx.ca_file()).await?;
    let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eprintln!(
        "[soak] namespace {ns}; {} Tasks at {}/s",
        args.tasks, args.rate
    );

    let load_started = Instant::now();
    let mut load = tokio::spawn(load::run(tasks.clone(), rx.clone(), args.tasks, args.rate));
    let mut restarts = restart_plan(&args).into_iter().peekable();
    let (mut kills, mut apiserver_restarts, mut etcd_restarts) = (0, 0, 0);
    let mut away = Duration::ZERO;
    let mut next_kill = Instant::now() + args.kill_every;
    let mut next_burst = Instant::now() + Duration::from_secs(20);
    let mut bursts = 0;
    let mut loaded = None;
    // Chaos while the load runs and until every kill and restart is done.
    while loaded.is_none() || kills < args.kills || restarts.peek().is_some() {
        if Instant::now() > deadline {
            bail!("deadline: {kills} kills, load done: {}", loaded.is_some());
        }
        replicas.sample();
        replicas.revive().await;
        if loaded.is_none() && load.is_finished() {
            loaded = Some((&mut load).await??);
            eprintln!("[soak] load done after {:?}", load_started.elapsed());
        }
        if let Some((at, what)) = restarts.peek().copied()
            && load_started.elapsed() >= at
        {
            restarts.next();
            let took = chaos::restart_control_plane(c.dir(), what).await?;
            away += took;
            if what == "etcd" {
                etcd_restarts += 1;
            } else {
                apiserver_restarts += 1;
            }
            eprintln!("[soak] {what} restarted in {took:?}");
        }
        if kills < args.kills
            && Instant::now() >= next_kill
            && replicas.kill_leader(!kills.is_multiple_of(2)).await
        {
            kills += 1;
            next_kill = Instant::now() + args.kill_every;
            if kills.is_multiple_of(10) {
                eprintln!("[soak] {kills} leader kills");
            }
        }
        if loaded.is_none() && Instant::now() >= next_burst {
            // A 5xx burst: every answer is a 503 for 2 s.
            rx.set_burst(true);
            tokio::time::sleep(Duration::from_secs(2)).await;
            rx.set_burst(false);
            bursts += 1;
            next_burst = Instant::now() + Duration::from_secs(20);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (planned, api_retries) = loaded.unwrap_or_default();
    eprintln!("[soak] chaos done after {:?}; draining", t0.elapsed());
    let mut last_report = Instant::now();
    loop {
        replicas.sample();
        replicas.revive().await;
        let open = check::unfinished(&tasks, &planned)
            .await
            .unwrap_or(usize::MAX);
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("deadline: {open} hooks still not final");
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!("[soak] {open} hooks not final yet");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drained = t0.elapsed();
    // Events are published in the background: give the last ones a moment.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tally = check::check(&tasks, &events, &planned, &rx.hits()).await?;
    let mut logs = replicas.logs();
    logs.extend(["etcd.log", "apiserver.log"].map(|f| c.dir().join(f)));
    let panics = check::panics(&logs);
    let mem = &replicas.memory;
    let (big, big_bytes) = rx.big_bodies();

    println!("\n| figure | value |\n|---|---|");
    let row = |k: &str, v: String| println!("| {k} | {v} |");
    row("Tasks completed", planned.len().to_string());
    row("hooks (2 per Task)", tally.hooks.to_string());
    row("leader SIGKILLs", kills.to_string());
    row(
        "  of them failovers (the other replica took the Lease)",
        replicas.failovers.to_string(),
    );
    row(
        "kube-apiserver restarts (SIGKILL)",
        apiserver_restarts.to_string(),
    );
    row(
        "etcd restarts (SIGKILL, same data)",
        etcd_restarts.to_string(),
    );
    row(
        "control plane away (sum)",
        format!("{:.1} s", away.as_secs_f64()),
    );
    row("5xx bursts (2 s each)", bursts.to_string());
    row("load API calls retried", api_retries.to_string());
    row("deliveries (hooks Delivered)", tally.delivered.to_string());
    row(
        "hooks Failed, each with a Warning Event",
        tally.failed.to_string(),
    );
    for (fault, (d, f, dup)) in &tally.by_fault {
        row(
            &format!("  hook fault {fault}"),
            format!("{d} delivered, {f} failed, {dup} duplicates"),
        );
    }
    row("requests received whole", tally.requests.to_string());
    row(
        "TLS handshakes failed on purpose",
        rx.tls_refused().to_string(),
    );
    row(
        "100 MB answers / MiB of them taken",
        format!("{big} / {:.1}", big_bytes as f64 / f64::from(1 << 20)),
    );
    row(
        "duplicates (2xx re-sent, same webhook-id)",
        tally.duplicates.to_string(),
    );
    row("lost", tally.lost.to_string());
    row(
        "hooks Failed without a Warning Event",
        tally.failed_silently.to_string(),
    );
    row(
        "dispatcher VmRSS min / max (MiB)",
        format!("{:.1} / {:.1}", mem.min.unwrap_or(f64::NAN), mem.max),
    );
    row("dispatcher VmHWM max (MiB)", format!("{:.1}", mem.peak));
    row("RSS samples", mem.samples.to_string());
    row(
        "longest replica life",
        format!("{:.0} s", replicas.longest_life.as_secs_f64()),
    );
    row("panics in logs", panics.len().to_string());
    row(
        "duration (all hooks final)",
        format!("{:.0} s", drained.as_secs_f64()),
    );
    for (fault, why) in &tally.why {
        println!("\nWarning for {fault}: {why}");
    }

    let mut failures = tally.violations.clone();
    failures.extend(panics);
    if planned.len() != args.tasks {
        failures.push(format!(
            "{} of {} Tasks completed",
            planned.len(),
            args.tasks
        ));
    }
    if kills < args.kills {
        failures.push(format!("{kills} of {} kills", args.kills));
    }
    if mem.max > args.rss_limit_mib {
        failures.push(format!(
            "dispatcher VmRSS {:.1} MiB > {} MiB",
            mem.max, args.rss_limit_mib
        ));
    }
    if !failures.is_empty() {
        for f in failures.iter().take(50) {
            eprintln!("[soak] FAIL: {f}");
        }
        bail!("{} checks failed", failures.len());
    }
    eprintln!("[soak] all checks passed");
    Ok(())
}
