//! The load: Tasks carrying the hook snapshot, created and completed (`tasks::complete`: Running,
//! then the terminal phase, through the status subresource as kelos's controller does) at a steady
//! rate, every API call retried across API-server and etcd restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::{StreamExt, stream};
use kelos_hooks_shared::api::{Phase, Task};
use kelos_hooks_tests::faulty_receiver::{Fault, FaultyReceiver};
use kelos_hooks_tests::tasks;
use kube::api::{Api, PostParams};

/// Hook names of every Task: `a` suffers a fault, `b` only the 5xx bursts.
pub const HOOKS: [&str; 2] = ["a", "b"];
/// The faults hook `a` cycles through.
const FAULTS: [Fault; 8] = Fault::ALL;
/// How long one API call is retried (an API-server restart takes a few seconds).
const RETRY_FOR: Duration = Duration::from_secs(120);

/// One Task of the soak.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Its name.
    pub name: String,
    /// The phase it completes with.
    pub phase: Phase,
    /// Each hook's name and fault.
    pub hooks: Vec<(&'static str, Fault)>,
}

/// The plan for Task number `i`.
pub fn plan(i: usize) -> Planned {
    Planned {
        name: format!("soak-{i}"),
        phase: if i % 5 == 4 {
            Phase::Failed
        } else {
            Phase::Succeeded
        },
        hooks: vec![(HOOKS[0], FAULTS[i % FAULTS.len()]), (HOOKS[1], Fault::Ok)],
    }
}

/// Retries `op` until it succeeds or [`RETRY_FOR`] has passed; counts the failed tries.
async fn retried<F, Fut>(what: &str, retries: &AtomicUsize, mut op: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        match op().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                retries.fetch_add(1, Ordering::Relaxed);
                note_retry(what, &e);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => bail!("{what}: still failing after {RETRY_FOR:?}: {e}"),
        }
    }
}

/// Notes a failed API call without flooding the output (the first of each kind of error).
fn note_retry(what: &str, e: &anyhow::Error) {
    static SHOWN: AtomicUsize = AtomicUsize::new(0);
    if SHOWN.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("[soak] load: {what}: {e} (retrying)");
    }
}

/// Creates and completes `n` Tasks at `rate` per second (8 in flight at most); returns the plan
/// and how many API calls had to be retried.
pub async fn run(
    api: Api<Task>,
    rx: Arc<FaultyReceiver>,
    n: usize,
    rate: f64,
) -> Result<(Vec<Planned>, usize)> {
    let retries = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let results: Vec<Result<Planned>> = stream::iter((0..n).map(plan))
        .enumerate()
        .map(|(i, p)| {
            let (api, rx, retries) = (api.clone(), rx.clone(), retries.clone());
            async move {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(at.into()).await;
                let hooks: Vec<_> = p
                    .hooks
                    .iter()
                    .map(|(h, f)| tasks::hook(h, rx.url(*f, &p.name, h)))
                    .collect();
                let task = tasks::task(&p.name, Some("opus"), Some(hooks.as_slice()), None);
                retried("create", &retries, || async {
                    match api.create(&PostParams::default(), &task).await {
                        // An earlier try that seemed to fail did create it.
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        r => r.map(drop).map_err(Into::into),
                    }
                })
                .await?;
                retried("complete", &retries, || {
                    tasks::complete(&api, &p.name, p.phase, Duration::ZERO)
                })
                .await?;
                Ok(p)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let planned = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok((planned, retries.load(Ordering::Relaxed)))
}
