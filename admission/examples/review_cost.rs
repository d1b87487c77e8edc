//! What one admission review costs in process: request body → decision → encoded response, the
//! path every webhook call takes between the HTTP layers (`admission::answer`), on the benchmark
//! bodies of `bench/make_reviews.py`. No network, TLS or HTTP: those are `bench/admission.sh`.
//!
//! ```text
//! python3 bench/make_reviews.py /tmp/bodies bench
//! cargo run --release -p kelos-hooks-admission --example review_cost -- /tmp/bodies \
//!     [--rounds 15] [--iterations 4000] [--only mutate]
//! ```
//!
//! Prints, per case, the median over rounds of the mean µs per review, and the fastest and
//! slowest round. `--only` keeps the cases whose name contains the text (e.g. to count
//! instructions per case under `valgrind --tool=callgrind`, which a busy machine does not skew).
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use kelos_hooks_admission::admission::{self, AppState};
use kelos_hooks_admission::cache::{CachedSpawner, Lookup, MissLookup, SpawnerCache};
use kelos_hooks_admission::cli::DEFAULT_DISPATCHER_IDENTITY;
use kelos_hooks_admission::metrics::{Endpoint, Metrics};
use kelos_hooks_shared::annotations::ON_COMPLETION;
use kelos_hooks_shared::ip::IpPolicy;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::Value;

/// What to run: `--rounds`, `--iterations`, `--only`.
struct Plan {
    rounds: usize,
    iterations: u32,
    only: String,
}

type Failure = Box<dyn std::error::Error>;

/// The call under test; the one line to adapt when this file runs against another commit.
async fn judge(state: &AppState, endpoint: Endpoint, body: &[u8]) -> Vec<u8> {
    admission::answer(state, endpoint, body)
        .await
        .unwrap_or_default()
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, Failure> {
    let path = dir.join(name);
    Ok(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// The server state with the benchmark TaskSpawner in the cache, as the reflector would hold it.
fn state(dir: &Path) -> Result<AppState, Failure> {
    let policy = Arc::new(IpPolicy::default());
    let mut spawner: CachedSpawner = serde_json::from_slice(&read(dir, "taskspawner.json")?)?;
    spawner.trim(&policy);
    let mut writer: Writer<CachedSpawner> = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(spawner));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let miss: MissLookup = Arc::new(|_, _| async { Lookup::NotFound }.boxed());
    let metrics = Arc::new(Metrics::new());
    Ok(AppState {
        cache: SpawnerCache::new(writer.as_reader(), miss, metrics.clone()),
        policy,
        dispatchers: vec![DEFAULT_DISPATCHER_IDENTITY.to_owned()],
        kelos: kelos_hooks_admission::handlers::mutate_taskspawner::Identities::new(
            &kelos_hooks_admission::cli::DEFAULT_KELOS_IDENTITIES.map(String::from),
        ),
        metrics,
        authorizer: Default::default(),
    })
}

/// `response` of an encoded review.
fn response(out: &[u8]) -> Result<Value, Failure> {
    let v: Value = serde_json::from_slice(out)?;
    Ok(v["response"].clone())
}

/// The Task review the validating webhook sees after mutation: the mutate body with the
/// snapshot annotation set by the mutating webhook's patch, written into the text so the body
/// keeps the API server's field order.
fn mutated(mutate: &[u8], resp: &Value) -> Result<Vec<u8>, Failure> {
    use base64::Engine as _;
    let patch = resp["patch"]
        .as_str()
        .ok_or("mutate answered without a patch")?;
    let ops: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch)?)?;
    let op = &ops[0];
    let snapshot = op["value"]
        .as_str()
        .ok_or("the bench Task has annotations: expected one added key")?;
    let text = std::str::from_utf8(mutate)?;
    let at = r#""annotations":{"#;
    let member = format!("{}:{},", Value::from(ON_COMPLETION), Value::from(snapshot));
    Ok(text.replacen(at, &format!("{at}{member}"), 1).into_bytes())
}

/// Median, fastest and slowest round of the mean µs per call.
fn measure(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    state: &AppState,
    endpoint: Endpoint,
    body: &[u8],
) -> [f64; 3] {
    let round = || {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..plan.iterations {
                black_box(judge(state, endpoint, black_box(body)).await);
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(plan.iterations)
        })
    };
    round(); // warm-up: caches, allocator
    let mut rounds: Vec<f64> = (0..plan.rounds.max(1)).map(|_| round()).collect();
    rounds.sort_by(f64::total_cmp);
    [
        rounds[rounds.len() / 2],
        rounds[0],
        rounds[rounds.len() - 1],
    ]
}

fn plan(mut args: impl Iterator<Item = String>) -> Result<Plan, Failure> {
    let mut plan = Plan {
        rounds: 15,
        iterations: 4_000,
        only: String::new(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => plan.rounds = value.parse()?,
            "--iterations" => plan.iterations = value.parse()?,
            "--only" => plan.only = value,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(plan)
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let dir: PathBuf = args
        .next()
        .ok_or("usage: review_cost BODIES_DIR [--rounds N] [--iterations N] [--only TEXT]")?
        .into();
    let plan = plan(args)?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let state = state(&dir)?;

    let mutate = read(&dir, "mutate-task.json")?;
    let resp = response(&rt.block_on(judge(&state, Endpoint::MutateTasks, &mutate)))?;
    let validate = mutated(&mutate, &resp)?;
    let uncached = String::from_utf8(validate.clone())?
        .replacen(
            r#""kelos.dev/taskspawner":"bench-spawner""#,
            r#""kelos.dev/taskspawner":"not-cached""#,
            1,
        )
        .into_bytes();
    if uncached == validate {
        return Err("the bench Task does not carry the bench-spawner label".into());
    }

    let cases = [
        ("mutate Task CREATE", Endpoint::MutateTasks, mutate),
        ("validate Task CREATE", Endpoint::ValidateTasks, validate),
        (
            "validate Task CREATE, spawner not cached",
            Endpoint::ValidateTasks,
            uncached,
        ),
        (
            "validate TaskSpawner CREATE",
            Endpoint::ValidateTaskSpawners,
            read(&dir, "validate-taskspawner.json")?,
        ),
    ];
    // Each case must take the path it names: a patch for mutate, allowed everywhere.
    for (name, endpoint, body) in &cases {
        let resp = response(&rt.block_on(judge(&state, *endpoint, body)))?;
        let patched = resp.get("patch").is_some();
        if resp["allowed"] != true || patched != (*endpoint == Endpoint::MutateTasks) {
            return Err(format!("{name}: unexpected answer {resp}").into());
        }
    }
    println!(
        "median of {} rounds of {} reviews each (fastest–slowest round), µs per review",
        plan.rounds, plan.iterations
    );
    for (name, endpoint, body) in cases.iter().filter(|(name, ..)| name.contains(&plan.only)) {
        let [median, fastest, slowest] = measure(&rt, &plan, &state, *endpoint, body);
        println!(
            "{name:<42} {:>6} B  {median:>7.2}  ({fastest:.2}–{slowest:.2})",
            body.len()
        );
    }
    Ok(())
}
