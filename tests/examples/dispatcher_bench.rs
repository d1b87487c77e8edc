//! Dispatcher benchmark driver (run by `bench/dispatcher.sh`, not by the tests).
//!
//! Against the real control plane of `kelos_hooks_tests::cluster()` and the local HTTPS receiver:
//! - `ceiling N`: the receiver's ceiling — a plain client posting the same Generic payloads, no Kubernetes;
//! - `burst N`: creates N Tasks with one hook each, then completes them all at once (status
//!   subresource, 64 in flight) and measures deliveries/s and completion-to-delivery latency;
//! - `rate N R`: completes N Tasks at R completions/s and measures completion-to-delivery latency;
//! - `backlog N`: completes N Tasks while no dispatcher runs, then starts it: deliveries/s of
//!   the dispatcher alone (status writes excluded);
//! - `cache N`: creates N running Tasks and reports the dispatcher's RSS once its watch holds them.
//!
//! The dispatcher binary is `$DISPATCHER` (release build), started here with `--allow-cidr 127.0.0.1/32`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use kelos_hooks_shared::annotations::{ON_COMPLETION, encode_snapshot};
use kelos_hooks_shared::api::{Hook, Phase, Task};
use kelos_hooks_tests::process::status_mib;
use kelos_hooks_tests::receiver::Receiver;
use kelos_hooks_tests::stats::percentile;
use kelos_hooks_tests::tasks;
use kelos_hooks_tests::{cluster, free_port};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn rss_mib(pid: u32, key: &str) -> f64 {
    status_mib(pid, key).unwrap_or(f64::NAN)
}

fn hook(url: String) -> Hook {
    tasks::hook("bench", url)
}

fn task(name: &str, annotation: &str) -> Task {
    serde_json::from_value(json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "Task",
        "metadata": {"name": name, "labels": {"kelos.dev/taskspawner": "bench"},
                     "annotations": {ON_COMPLETION: annotation}},
        "spec": {"type": "claude-code", "model": "claude-sonnet-4",
                 "prompt": "Fix the flaky test in the payments service and open a PR.",
                 "credentials": {"type": "oauth", "secretRef": {"name": "claude-oauth-token"}}}
    }))
    .unwrap()
}

struct Dispatcher {
    child: tokio::process::Child,
    metrics: u16,
}

impl Dispatcher {
    async fn start(
        kubeconfig: &std::path::Path,
        ns: &str,
        ca: &std::path::Path,
    ) -> Result<Dispatcher> {
        let bin =
            std::env::var("DISPATCHER").context("DISPATCHER must name the dispatcher binary")?;
        let metrics = free_port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("dispatcher-bench-{ns}.log")))?;
        let child = tokio::process::Command::new(bin)
            .env("KUBECONFIG", kubeconfig)
            .args([
                "run",
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
                "--allow-cidr",
                "127.0.0.1/32",
            ])
            .arg("--ca-file")
            .arg(ca)
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{metrics}"),
                "--log-format",
                "json",
            ])
            .args(["--max-concurrency", "256", "--max-per-host", "128"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let d = Dispatcher { child, metrics };
        d.wait_ready().await?;
        Ok(d)
    }

    async fn wait_ready(&self) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics);
        for _ in 0..600 {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("dispatcher not ready after 60s")
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

async fn create_tasks(
    api: &Api<Task>,
    prefix: &str,
    n: usize,
    annotation: &str,
) -> Result<Vec<String>> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let results: Vec<Result<()>> = stream::iter(names.clone())
        .map(|name| async move {
            api.create(&PostParams::default(), &task(&name, annotation))
                .await?;
            Ok(())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok(names)
}

/// Completes the named Tasks at `rate` per second (0 = as fast as 64 in flight allow); returns
/// each Task UID's completion instant (taken just before its status write).
async fn complete(
    api: &Api<Task>,
    names: &[String],
    rate: f64,
) -> Result<HashMap<String, Instant>> {
    let uids: HashMap<String, String> = {
        let list = api.list(&Default::default()).await?;
        list.items
            .into_iter()
            .filter_map(|t| Some((t.metadata.name.clone()?, t.metadata.uid.clone()?)))
            .collect()
    };
    let done = Arc::new(Mutex::new(HashMap::new()));
    let start = Instant::now();
    let results: Vec<Result<()>> = stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let done = done.clone();
            let uid = uids.get(name).cloned().unwrap_or_default();
            async move {
                if rate > 0.0 {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let status = json!({"status": {"phase": Phase::Succeeded.as_str(), "completionTime": now,
                                               "message": "done"}});
                done.lock().unwrap().insert(uid, Instant::now());
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok(Arc::try_unwrap(done)
        .map_err(|_| anyhow::anyhow!("still shared"))?
        .into_inner()
        .unwrap())
}

fn report_latency(
    label: &str,
    completed: &HashMap<String, Instant>,
    rx: &Receiver,
    path: &str,
) -> Result<()> {
    let got = rx.requests_to(path);
    let mut lat = Vec::new();
    let mut first_complete = None::<Instant>;
    let mut last_arrival = None::<Instant>;
    for r in &got {
        let id = r.header("webhook-id").unwrap_or_default();
        let uid = id.split('_').next().unwrap_or_default();
        if let Some(t) = completed.get(uid) {
            lat.push(r.at.saturating_duration_since(*t).as_secs_f64() * 1e3);
            first_complete = Some(first_complete.map_or(*t, |f| f.min(*t)));
            last_arrival = Some(last_arrival.map_or(r.at, |l| l.max(r.at)));
        }
    }
    lat.sort_by(f64::total_cmp);
    let span = match (first_complete, last_arrival) {
        (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64(),
        _ => f64::NAN,
    };
    println!(
        "RESULT {label}: delivered={} deliveries/s={:.0} latency_ms p50={:.1} p99={:.1} max={:.1}",
        lat.len(),
        lat.len() as f64 / span,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    if lat.len() != completed.len() {
        bail!(
            "{label}: {} deliveries matched of {} completions",
            lat.len(),
            completed.len()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("burst");
    let n: usize = args.get(1).map_or(Ok(1000), |s| s.parse())?;
    let rx = Receiver::start().await?;

    if mode == "ceiling" {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(rx.ca_file())?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(cert?)?;
            }
            roots
        })
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()?;
        let body = kelos_hooks_shared::payload::build(
            &task("ceiling", "{}"),
            &hook(rx.url("/ceiling")),
            Phase::Succeeded,
            "uid_Succeeded_bench",
            chrono::Utc::now(),
            None,
        )?
        .bytes;
        let start = Instant::now();
        let results: Vec<Result<()>> = stream::iter(0..n)
            .map(|i| {
                let (client, body, url) = (client.clone(), body.clone(), rx.url("/ceiling"));
                async move {
                    let resp = client
                        .post(url)
                        .header("content-type", "application/json")
                        .header("webhook-id", format!("ceiling{i}_Succeeded_bench"))
                        .body(body)
                        .send()
                        .await?;
                    if !resp.status().is_success() {
                        bail!("status {}", resp.status());
                    }
                    Ok(())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        results.into_iter().collect::<Result<()>>()?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "RESULT ceiling: requests={n} requests/s={:.0}",
            n as f64 / secs
        );
        return Ok(());
    }

    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace(&format!("bench-{mode}")).await?;
    let api: Api<Task> = Api::namespaced(client, &ns);
    let annotation = encode_snapshot(&[hook(rx.url("/hook"))]);
    if mode == "backlog" {
        // Tasks that completed while no dispatcher ran (a restart or failover with a backlog):
        // measures the dispatcher's own throughput, status writes excluded.
        let names = create_tasks(&api, "b", n, &annotation).await?;
        complete(&api, &names, 0.0).await?;
        let t0 = Instant::now();
        let d = Dispatcher::start(c.kubeconfig(), &ns, rx.ca_file()).await?;
        let got = rx.wait_for("/hook", n, Duration::from_secs(600)).await?;
        let last = got.iter().map(|r| r.at).max().unwrap_or(t0);
        let secs = last.saturating_duration_since(t0).as_secs_f64();
        println!(
            "RESULT backlog n={n}: delivered={} in {secs:.1}s from dispatcher start: deliveries/s={:.0}; VmHWM {:.1} MiB",
            got.len(),
            got.len() as f64 / secs,
            rss_mib(d.pid(), "VmHWM:")
        );
        return Ok(());
    }
    let d = Dispatcher::start(c.kubeconfig(), &ns, rx.ca_file()).await?;
    println!(
        "dispatcher idle: VmRSS {:.1} MiB",
        rss_mib(d.pid(), "VmRSS:")
    );

    match mode {
        "burst" | "rate" => {
            let rate: f64 = if mode == "rate" {
                args.get(2).map_or(Ok(100.0), |s| s.parse())?
            } else {
                0.0
            };
            let t = Instant::now();
            let names = create_tasks(&api, "t", n, &annotation).await?;
            println!("created {n} Tasks in {:.1}s", t.elapsed().as_secs_f64());
            let t = Instant::now();
            let completed = complete(&api, &names, rate).await?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "completed {n} Tasks in {secs:.1}s ({:.0} status writes/s)",
                n as f64 / secs
            );
            rx.wait_for("/hook", n, Duration::from_secs(600)).await?;
            report_latency(
                &format!("{mode} n={n} rate={rate}"),
                &completed,
                &rx,
                "/hook",
            )?;
        }
        "cache" => {
            let t = Instant::now();
            create_tasks(&api, "idle", n, &annotation).await?;
            println!(
                "created {n} running Tasks in {:.1}s",
                t.elapsed().as_secs_f64()
            );
            // Let the watch absorb every event, then sample.
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        other => bail!("unknown mode {other} (ceiling | burst | rate | backlog | cache)"),
    }
    println!(
        "RESULT rss {mode} n={n}: VmRSS {:.1} MiB, peak VmHWM {:.1} MiB",
        rss_mib(d.pid(), "VmRSS:"),
        rss_mib(d.pid(), "VmHWM:")
    );
    Ok(())
}
