//! What a user of the API server feels: the latency of Task and TaskSpawner CREATEs (what
//! `kubectl create`, `kubectl apply` of a new object and kelos's controller send) through a real
//! kube-apiserver, from one client with keep-alive, at a fixed rate. Driven by
//! `bench/admission-e2e.sh`, which switches the admission configuration between runs.
//!
//! ```text
//! apply_latency tasks    --namespace NS --template task.json        --rate 200 --count 2000 --out FILE
//! apply_latency spawners --namespace NS --template taskspawner.json --rate 1   --count 20   --out FILE
//! ```
//!
//! Requests are sent on a fixed schedule (`--rate` per second, open loop) and each latency is
//! measured from its scheduled start, so a slow answer that delays later requests is counted in
//! theirs too. `--warmup` requests go first, unmeasured. Latencies (µs, one per line) go to
//! `--out`; a summary line to stdout: `n=… p50_ms=… p99_ms=… annotated=… failed=…` (`annotated`:
//! how many created Tasks came back with the hook snapshot, i.e. went through the mutating
//! webhook; `failed`: requests the API server refused, not in the latencies).
//! Reads the kubeconfig from `KUBECONFIG`.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kelos_hooks_shared::annotations::ON_COMPLETION;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    kind: String,
    namespace: String,
    template: PathBuf,
    rate: f64,
    count: usize,
    warmup: usize,
    prefix: String,
    out: PathBuf,
}

fn args() -> Result<Args, Failure> {
    let mut it = std::env::args().skip(1);
    let kind = it.next().ok_or("usage: apply_latency tasks|spawners --namespace NS --template FILE --rate R --count N --out FILE [--warmup N] [--prefix P]")?;
    let mut a = Args {
        kind,
        namespace: String::new(),
        template: PathBuf::new(),
        rate: 1.0,
        count: 10,
        warmup: 5,
        prefix: "lat".to_owned(),
        out: PathBuf::from("latencies.txt"),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--namespace" => a.namespace = value,
            "--template" => a.template = value.into(),
            "--rate" => a.rate = value.parse()?,
            "--count" => a.count = value.parse()?,
            "--warmup" => a.warmup = value.parse()?,
            "--prefix" => a.prefix = value,
            "--out" => a.out = value.into(),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.namespace.is_empty() || a.rate <= 0.0 {
        return Err("--namespace and a positive --rate are required".into());
    }
    Ok(a)
}

/// One CREATE; whether the created object carries the hook snapshot.
async fn send(api: &Api<DynamicObject>, object: DynamicObject) -> Result<bool, Failure> {
    let stored = api.create(&PostParams::default(), &object).await?;
    Ok(stored
        .metadata
        .annotations
        .is_some_and(|a| a.contains_key(ON_COMPLETION)))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args()?;
    let kind_name = match a.kind.as_str() {
        "tasks" => "Task",
        "spawners" => "TaskSpawner",
        other => return Err(format!("unknown object kind {other}: tasks or spawners").into()),
    };
    let template: Value = serde_json::from_slice(&std::fs::read(&a.template)?)?;
    // One client for the whole run: its connection pool keeps connections alive.
    let client = kube::Client::try_default().await?;
    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("kelos.dev", "v1alpha2", kind_name));
    let api: Arc<Api<DynamicObject>> =
        Arc::new(Api::namespaced_with(client, &a.namespace, &resource));
    let object = |i: usize| -> Result<DynamicObject, Failure> {
        let mut v = template.clone();
        if let Some(meta) = v["metadata"].as_object_mut() {
            // A new object each time: nothing of the template's identity.
            meta.remove("uid");
            meta.remove("resourceVersion");
        }
        v["metadata"]["name"] = format!("{}-{i}", a.prefix).into();
        v["metadata"]["namespace"] = a.namespace.clone().into();
        Ok(serde_json::from_value(v)?)
    };

    for i in 0..a.warmup {
        send(&api, object(a.count + i)?).await?;
    }
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let start = tokio::time::Instant::now() + interval;
    let mut running = Vec::with_capacity(a.count);
    for i in 0..a.count {
        let scheduled = start + interval * u32::try_from(i)?;
        tokio::time::sleep_until(scheduled).await;
        let (api, object) = (api.clone(), object(i)?);
        let scheduled = scheduled.into_std();
        running.push(tokio::spawn(async move {
            let annotated = send(&api, object).await;
            (scheduled.elapsed(), annotated)
        }));
    }
    let mut latencies = Vec::with_capacity(a.count);
    let (mut annotated, mut failed) = (0, 0);
    for r in running {
        match r.await? {
            (elapsed, Ok(with_snapshot)) => {
                latencies.push(u64::try_from(elapsed.as_micros())?);
                annotated += usize::from(with_snapshot);
            }
            (_, Err(e)) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("first failure: {e}");
                }
            }
        }
    }
    let lines: Vec<String> = latencies.iter().map(u64::to_string).collect();
    std::fs::write(&a.out, lines.join("\n") + "\n")?;
    latencies.sort_unstable();
    println!(
        "n={} p50_ms={:.3} p99_ms={:.3} annotated={annotated} failed={failed}",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
    );
    Ok(())
}
