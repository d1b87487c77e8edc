//! Peer benchmark driver (issue 15, run by `bench/peer.sh`, not by the tests): kelos's own
//! onCompletion (kelos PR #1240, `../shared/kelos-pr1240-src`: kelos-controller + a long-running
//! kelos-spawner that delivers) against upstream kelos (`../shared/kelos-src`) with our admission
//! server and dispatcher, on the same workload and the same HTTPS receiver.
//!
//! - `run peer|ours OUT.json [STEADY [BURST]]`: one system on the control plane bench/peer.sh
//!   started (`$KELOS_HOOKS_KELOS_CLUSTER_DIR`, audited with `$KELOS_HOOKS_AUDIT_POLICY`), taken
//!   off it again at the end ([`Kelos::uninstall`]), the receiver in network namespace `$PEER_NETNS` at
//!   `$PEER_ADDR` named `$PEER_HOST` (bench/peer.sh makes them). Workload, per system:
//!   1. TaskSpawner `load` (one hook) creates STEADY + BURST Tasks (cron, backdated); all are
//!      started (Running, Pod seen), then STEADY end at 4/s and BURST end at once, alternately
//!      Succeeded and Failed, kelos setting the phases from the Jobs. Measured: terminal Task
//!      status (first seen by this driver's watch) → first 2xx at the receiver; lost and
//!      duplicate notifications; CPU seconds and peak RSS of the delivering process; API server
//!      requests by user from the audit log over this phase, per delivered Task.
//!   2. TaskSpawner `pair` (hooks `healthy` and `flaky`, 10 Tasks): `flaky` answers 500 for
//!      60 s from the completions; how often `healthy` was sent per Task, and whether `flaky`
//!      was delivered once it recovered.
//!   3. TaskSpawner `redir` (one hook answering 302 to another path, 2 Tasks): was the
//!      redirect followed?
//! - `table PEER.json OURS.json`: the Markdown table with ratios.
//!
//! kelos environments are one per process (kelos-controller's port is fixed), so bench/peer.sh
//! runs `run` once per system, one after the other, on the same API server and etcd; each
//! system's API requests are those of the shared audit log within its own time window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use kelos_hooks_certs::{Ca, San};
use kelos_hooks_shared::api::Phase;
use kelos_hooks_tests::kelos::{
    AddOn, AgentRun, KELOS_CLUSTER_DIR_ENV, Kelos, LongRunningSpawner, StartedTask, cron_spawner,
    cron_spawner_v1alpha1, default_source, kelos_from,
};
use kelos_hooks_tests::netns::listen_in;
use kelos_hooks_tests::receiver::{Receiver, Recorded, Reply};
use kelos_hooks_tests::workspace_root;
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The receiver's test host, as bench/peer.sh made it.
struct Host {
    netns: String,
    name: String,
    addr: SocketAddr,
    cert_dir: PathBuf,
}

impl Host {
    fn from_env() -> Result<Host> {
        let var = |k: &str| {
            std::env::var(k).with_context(|| format!("${k} is not set (bench/peer.sh sets it)"))
        };
        Ok(Host {
            netns: var("PEER_NETNS")?,
            name: var("PEER_HOST")?,
            addr: var("PEER_ADDR")?.parse().context("$PEER_ADDR: IP:PORT")?,
            cert_dir: var("PEER_CERT_DIR")?.into(),
        })
    }

    /// The receiver: a certificate for the host name (made once, shared by both runs), listening
    /// inside the namespace.
    fn receiver(&self) -> Result<Receiver> {
        let (ca_file, crt, key) = (
            self.cert_dir.join("ca.crt"),
            self.cert_dir.join("tls.crt"),
            self.cert_dir.join("tls.key"),
        );
        if !crt.exists() {
            let week = Duration::from_secs(7 * 86400);
            let ca = Ca::generate("kelos-hooks peer bench receiver CA", week)?;
            let issued = ca.issue_server("receiver", &[San::Dns(self.name.clone())], week)?;
            std::fs::create_dir_all(&self.cert_dir)?;
            std::fs::write(&ca_file, ca.cert_pem())?;
            std::fs::write(&key, &issued.key_pem)?;
            std::fs::write(&crt, &issued.cert_pem)?;
        }
        let listener = listen_in(&self.netns, self.addr)?;
        Receiver::serve(
            listener,
            &self.name,
            &std::fs::read_to_string(&crt)?,
            &std::fs::read_to_string(&key)?,
            &ca_file,
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Peer,
    Ours,
}

/// Latency summary in ms.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
struct Lat {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn lat(mut ms: Vec<f64>) -> Lat {
    ms.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    Lat {
        n: ms.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
    }
}

/// What one `run` measured (the JSON file `table` reads).
#[derive(Serialize, Deserialize, Debug, Default)]
struct Outcome {
    system: String,
    kelos: String,
    delivering_process: String,
    tasks: usize,
    all: Lat,
    steady: Lat,
    burst: Lat,
    job_to_delivery: Lat,
    lost: usize,
    duplicates: usize,
    window_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
    /// API requests in the window by identity.
    api: BTreeMap<String, usize>,
    delivering_identity: String,
    pair_tasks: usize,
    healthy_sends: usize,
    healthy_delivered: usize,
    flaky_sends: usize,
    flaky_delivered: usize,
    redirect_tasks: usize,
    redirect_sends: usize,
    redirect_followed: usize,
    notes: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Task a notification is about: our payload has `task.name`, the peer's `task`.
fn task_of(r: &Recorded) -> String {
    let j = r.json();
    j["task"]
        .as_str()
        .or_else(|| j["task"]["name"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn ok(r: &Recorded) -> bool {
    (200..300).contains(&r.status)
}

/// When each Task of `ns` was first seen in a terminal phase by a watch of this driver.
async fn watch_terminal(k: &Kelos, ns: &str) -> Result<Arc<Mutex<HashMap<String, Instant>>>> {
    let api = k.tasks(ns).await?.api().clone();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
        while let Ok(Some(task)) = events.try_next().await {
            let phase = task.data["status"]["phase"].as_str().unwrap_or_default();
            if phase == "Succeeded" || phase == "Failed" {
                let name = task.metadata.name.clone().unwrap_or_default();
                out.lock().unwrap().entry(name).or_insert_with(Instant::now);
            }
        }
    });
    Ok(seen)
}

/// utime + stime of `pid` in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .context("/proc/PID/stat without comm")?
        .1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm)": state is field 3 of proc(5), utime 14, stime 15.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set (VmHWM) of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

/// Who made an audited request: our binaries by their User-Agent (they share the test
/// cluster's admin identity with this driver), kelos by its ServiceAccounts.
fn identity(ev: &Value) -> String {
    let user = ev["impersonatedUser"]["username"]
        .as_str()
        .or_else(|| ev["user"]["username"].as_str())
        .unwrap_or("?");
    let agent = ev["userAgent"].as_str().unwrap_or_default();
    if agent.starts_with("kelos-hooks-dispatcher") {
        "kelos-hooks-dispatcher".into()
    } else if agent.starts_with("kelos-hooks-admission") {
        "kelos-hooks-admission".into()
    } else if user.ends_with(":kelos-spawner") {
        "kelos-spawner".into()
    } else if user.ends_with(":kelos-controller") {
        "kelos-controller".into()
    } else if user == kelos_hooks_tests::kelos::DISPATCHER_IDENTITY {
        "bench driver (admin)".into()
    } else {
        user.to_owned()
    }
}

/// Requests received in [from, to] by identity, from the audit log (one line per stage; counted
/// once per `auditID`).
fn audit_counts(log: &Path, from: SystemTime, to: SystemTime) -> Result<BTreeMap<String, usize>> {
    let text = std::fs::read_to_string(log).with_context(|| {
        format!(
            "{}: no audit log (is $KELOS_HOOKS_AUDIT_POLICY set?)",
            log.display()
        )
    })?;
    let (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        (from.into(), to.into());
    let mut ids = HashSet::new();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(at) = ev["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let at = at.with_timezone(&chrono::Utc);
        if at < from || at > to {
            continue;
        }
        if !ids.insert(ev["auditID"].as_str().unwrap_or_default().to_owned()) {
            continue;
        }
        *counts.entry(identity(&ev)).or_insert(0) += 1;
    }
    Ok(counts)
}

struct Bench {
    system: System,
    k: &'static Kelos,
    ns: String,
    rx: Receiver,
    addon: Option<AddOn>,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

fn hooks(list: &[(&str, String)]) -> Value {
    let hooks: Vec<Value> = list
        .iter()
        .map(|(name, url)| json!({"name": name, "webhook": {"url": url}}))
        .collect();
    json!({ "hooks": hooks })
}

fn agent_run(i: usize) -> AgentRun {
    if i.is_multiple_of(2) {
        AgentRun::new(Phase::Succeeded, &["cost-usd: 0.10", "input-tokens: 100"])
    } else {
        AgentRun::new(Phase::Failed, &["cost-usd: 0.02"])
    }
}

impl Bench {
    /// Creates TaskSpawner `name` with `on_completion`, making `n` Tasks once its spawner runs;
    /// for the peer, starts its long-running kelos-spawner (trusting the receiver's CA) and
    /// waits for the Tasks. For ours the spawner is upstream's kelos-spawner, also long-running.
    async fn spawner(
        &self,
        name: &str,
        on_completion: &Value,
        n: usize,
    ) -> Result<(LongRunningSpawner, Vec<String>)> {
        let doc = match self.system {
            System::Peer => cron_spawner_v1alpha1(name, on_completion, n as u32, true),
            System::Ours => cron_spawner(name, on_completion, n as u32, true),
        };
        self.k.create_spawner(&self.ns, &doc).await?;
        self.k
            .backdate_discovery(&self.ns, name, n as i64 + 1)
            .await?;
        let ca = self.rx.ca_file().display().to_string();
        let mut sp = self
            .k
            .start_spawner(&self.ns, name, &[("SSL_CERT_FILE", &ca)])
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            sp.check_running()?;
            let tasks = self.k.spawned_tasks(&self.ns, name).await?;
            if tasks.len() >= n {
                let names = tasks
                    .into_iter()
                    .map(|t| t.metadata.name.unwrap_or_default())
                    .collect();
                return Ok((sp, names));
            }
            if Instant::now() > deadline {
                bail!(
                    "spawner {name} created {} of {n} Tasks in 120s; its log: {}",
                    tasks.len(),
                    sp.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn start_all(&self, names: &[String]) -> Result<Vec<StartedTask>> {
        let k = self.k;
        stream::iter(names.iter().enumerate())
            .map(|(i, name)| async move { k.start_task(&self.ns, name, &agent_run(i)).await })
            .buffered(6)
            .try_collect()
            .await
    }

    fn finish(&self, i: usize, t: StartedTask) -> tokio::task::JoinHandle<Result<Instant>> {
        let k = self.k;
        tokio::spawn(async move { Ok(k.finish_task(&t, &agent_run(i)).await?.job_finished_at) })
    }

    /// Ends all `started` Tasks at once.
    async fn finish_all(&self, started: Vec<StartedTask>) -> Result<()> {
        let jobs: Vec<_> = started
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.finish(i, t))
            .collect();
        for j in jobs {
            j.await??;
        }
        Ok(())
    }

    /// Waits until every Task of `names` had a 2xx at `path` (or `timeout`).
    async fn wait_delivered(&self, path: &str, names: &[String], timeout: Duration) -> usize {
        let want: HashSet<&str> = names.iter().map(String::as_str).collect();
        let deadline = Instant::now() + timeout;
        loop {
            let got: HashSet<String> = self
                .rx
                .requests_to(path)
                .iter()
                .filter(|r| ok(r))
                .map(task_of)
                .filter(|t| want.contains(t.as_str()))
                .collect();
            if got.len() >= want.len() || Instant::now() > deadline {
                return got.len();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self, spawner: &LongRunningSpawner) -> Result<u32> {
        match &self.addon {
            Some(a) => a.dispatcher.pid(),
            None => spawner.pid(),
        }
        .context("the delivering process is gone")
    }
}

async fn run(system: System, out: &Path, steady: usize, burst: usize) -> Result<()> {
    let host = Host::from_env()?;
    ensure!(
        std::env::var_os("KELOS_HOOKS_AUDIT_POLICY").is_some(),
        "$KELOS_HOOKS_AUDIT_POLICY is not set: the API requests are counted from the audit log"
    );
    ensure!(
        std::env::var_os(KELOS_CLUSTER_DIR_ENV).is_some(),
        "${KELOS_CLUSTER_DIR_ENV} is not set: both systems run on the control plane bench/peer.sh starts"
    );
    let src = match system {
        System::Peer => workspace_root().join("../shared/kelos-pr1240-src"),
        System::Ours => default_source(),
    };
    let k = kelos_from(src).await?;
    println!(
        "kelos {} from {} (API {})",
        k.commit(),
        k.source().display(),
        k.api_version()
    );
    let ns = k.namespace("peer-bench").await?;
    let rx = host.receiver()?;
    let addon = match system {
        System::Peer => None,
        System::Ours => Some(
            AddOn::start_allowing(
                k,
                &ns,
                rx.ca_file(),
                "203.0.113.0/24",
                &[],
                // The dispatcher's own defaults for backoff (the test harness shortens them).
                &["--backoff-base", "2s", "--backoff-max", "5m"],
            )
            .await?,
        ),
    };
    let seen = watch_terminal(k, &ns).await?;
    let b = Bench {
        system,
        k,
        ns,
        rx,
        addon,
        seen,
    };
    let mut o = Outcome {
        system: format!("{system:?}"),
        kelos: k.commit().to_owned(),
        ..Outcome::default()
    };

    // 1. steady + burst.
    let n = steady + burst;
    let (sp, names) = b
        .spawner("load", &hooks(&[("notify", b.rx.url("/notify"))]), n)
        .await?;
    println!("spawner load created {n} Tasks");
    let started = b.start_all(&names).await?;
    println!("{n} Tasks running");
    let pid = b.pid(&sp)?;
    o.delivering_process = match system {
        System::Peer => "kelos-spawner (PR #1240)".into(),
        System::Ours => "kelos-hooks-dispatcher".into(),
    };
    o.delivering_identity = match system {
        System::Peer => "kelos-spawner".into(),
        System::Ours => "kelos-hooks-dispatcher".into(),
    };
    let cpu0 = cpu_seconds(pid)?;
    let (t0, w0) = (SystemTime::now(), Instant::now());
    let mut jobs = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut started = started.into_iter().enumerate();
    for (i, t) in started.by_ref().take(steady) {
        tick.tick().await;
        jobs.push((t.name.clone(), b.finish(i, t)));
    }
    let steady_names: Vec<String> = names[..steady].to_vec();
    let got = b
        .wait_delivered("/notify", &steady_names, Duration::from_secs(120))
        .await;
    println!("steady: {got} of {steady} delivered");
    for (i, t) in started {
        jobs.push((t.name.clone(), b.finish(i, t)));
    }
    let mut job_done = HashMap::new();
    for (name, j) in jobs {
        job_done.insert(name, j.await??);
    }
    let got = b
        .wait_delivered("/notify", &names, Duration::from_secs(180))
        .await;
    println!("all: {got} of {n} delivered");
    tokio::time::sleep(Duration::from_secs(3)).await; // late duplicates
    let (t1, window) = (SystemTime::now(), w0.elapsed());
    o.cpu_s = cpu_seconds(pid)? - cpu0;
    o.peak_rss_mib = peak_rss_mib(pid)?;
    o.window_s = window.as_secs_f64();
    o.tasks = n;
    let seen = b.seen.lock().unwrap().clone();
    let reqs = b.rx.requests_to("/notify");
    let mut first: HashMap<String, Instant> = HashMap::new();
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in reqs.iter().filter(|r| ok(r)) {
        let t = task_of(r);
        first.entry(t.clone()).or_insert(r.at);
        *count.entry(t).or_insert(0) += 1;
    }
    let (mut all, mut st, mut bu, mut from_job) = (vec![], vec![], vec![], vec![]);
    for (i, name) in names.iter().enumerate() {
        let Some(at) = first.get(name) else {
            o.lost += 1;
            continue;
        };
        let s = seen
            .get(name)
            .context("a delivered Task never seen terminal")?;
        let d = ms(at.saturating_duration_since(*s));
        all.push(d);
        if i < steady {
            st.push(d)
        } else {
            bu.push(d)
        }
        from_job.push(ms(at.saturating_duration_since(job_done[name])));
    }
    o.duplicates = count.values().map(|c| c - 1).sum();
    o.all = lat(all);
    o.steady = lat(st);
    o.burst = lat(bu);
    o.job_to_delivery = lat(from_job);
    o.api = audit_counts(&k.cluster().dir().join("audit.log"), t0, t1)?;
    println!("phase 1: {o:?}");
    sp.stop().await; // the peer's spawner binds :8080 for metrics: one at a time

    // 2. one hook answers 500 for a minute.
    let pair_n = 10;
    b.rx.script("/flaky", std::iter::repeat_n(Reply::Status(500), 1_000_000));
    let (sp, names) = b
        .spawner(
            "pair",
            &hooks(&[
                ("healthy", b.rx.url("/healthy")),
                ("flaky", b.rx.url("/flaky")),
            ]),
            pair_n,
        )
        .await?;
    let started = b.start_all(&names).await?;
    let failing_since = Instant::now();
    b.finish_all(started).await?;
    tokio::time::sleep_until((failing_since + Duration::from_secs(60)).into()).await;
    b.rx.clear_script("/flaky");
    println!("flaky hook answers 200 again");
    let flaky = b
        .wait_delivered("/flaky", &names, Duration::from_secs(150))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mine: HashSet<&str> = names.iter().map(String::as_str).collect();
    let of = |path: &str| -> Vec<Recorded> {
        b.rx.requests_to(path)
            .into_iter()
            .filter(|r| mine.contains(task_of(r).as_str()))
            .collect()
    };
    o.pair_tasks = pair_n;
    o.healthy_sends = of("/healthy").len();
    o.healthy_delivered = of("/healthy")
        .iter()
        .filter(|r| ok(r))
        .map(task_of)
        .collect::<HashSet<_>>()
        .len();
    o.flaky_sends = of("/flaky").len();
    o.flaky_delivered = flaky;
    println!(
        "phase 2: healthy {} sends for {pair_n} Tasks, flaky {} sends, {flaky} delivered",
        o.healthy_sends, o.flaky_sends
    );
    sp.stop().await;

    // 3. 302 to another path.
    let redir_n = 2;
    b.rx.script(
        "/redirect",
        std::iter::repeat_n(Reply::Redirect(b.rx.url("/redirected")), 1_000_000),
    );
    let (sp, names) = b
        .spawner(
            "redir",
            &hooks(&[("moved", b.rx.url("/redirect"))]),
            redir_n,
        )
        .await?;
    let started = b.start_all(&names).await?;
    b.finish_all(started).await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mine: HashSet<&str> = names.iter().map(String::as_str).collect();
    o.redirect_tasks = redir_n;
    o.redirect_sends =
        b.rx.requests_to("/redirect")
            .iter()
            .filter(|r| mine.contains(task_of(r).as_str()))
            .count();
    // Only this phase's hook redirects there; a followed 302 may arrive as a GET without the
    // body (Go's client turns a redirected POST into a GET), so every request counts.
    let followed = b.rx.requests_to("/redirected");
    o.redirect_followed = followed.len();
    o.notes.extend(followed.iter().take(1).map(|r| {
        format!(
            "the redirect was followed with a {} of {} bytes",
            r.method,
            r.body.len()
        )
    }));
    sp.stop().await;
    println!(
        "phase 3: {} sends to the redirecting hook, {} followed {:?}",
        o.redirect_sends, o.redirect_followed, o.notes
    );
    std::fs::write(out, serde_json::to_string_pretty(&o)?)?;
    println!("RESULT written to {}", out.display());

    // Off the shared control plane, so the next system starts on a clean one.
    let Bench { mut addon, .. } = b;
    if let Some(a) = addon.as_mut() {
        a.remove(k).await?;
    }
    drop(addon); // stops our admission server and dispatcher
    k.uninstall().await?;
    println!("kelos {} and everything it installed removed", k.commit());
    Ok(())
}

fn ratio(peer: f64, ours: f64) -> String {
    if ours == 0.0 && peer == 0.0 {
        "=".into()
    } else if ours == 0.0 {
        "∞".into()
    } else {
        format!("{:.1}×", peer / ours)
    }
}

fn table(peer: &Outcome, ours: &Outcome) {
    println!("| measure | kelos PR #1240 | kelos-hooks | peer ÷ ours |");
    println!("|---|---:|---:|---:|");
    let row = |m: &str, p: String, o: String, r: String| println!("| {m} | {p} | {o} | {r} |");
    for (what, p, o) in [
        ("all", &peer.all, &ours.all),
        ("steady (4/s)", &peer.steady, &ours.steady),
        ("burst", &peer.burst, &ours.burst),
    ] {
        for (stat, pv, ov) in [
            ("p50", p.p50, o.p50),
            ("p99", p.p99, o.p99),
            ("max", p.max, o.max),
        ] {
            row(
                &format!(
                    "completion → delivery, {what} ({} Tasks), {stat}",
                    p.n.max(o.n)
                ),
                format!("{pv:.1} ms"),
                format!("{ov:.1} ms"),
                ratio(pv, ov),
            );
        }
    }
    row(
        "Job's terminal status → delivery, p50 / p99",
        format!(
            "{:.0} / {:.0} ms",
            peer.job_to_delivery.p50, peer.job_to_delivery.p99
        ),
        format!(
            "{:.0} / {:.0} ms",
            ours.job_to_delivery.p50, ours.job_to_delivery.p99
        ),
        ratio(peer.job_to_delivery.p99, ours.job_to_delivery.p99),
    );
    row(
        &format!("notifications lost (of {})", peer.tasks),
        peer.lost.to_string(),
        ours.lost.to_string(),
        "—".into(),
    );
    row(
        "duplicate 2xx deliveries",
        peer.duplicates.to_string(),
        ours.duplicates.to_string(),
        "—".into(),
    );
    let per = |n: usize, d: usize| n as f64 / d.max(1) as f64;
    row(
        &format!(
            "healthy hook sends per Task while the other answers 500 for 60 s ({} Tasks)",
            peer.pair_tasks
        ),
        format!("{:.2}", per(peer.healthy_sends, peer.pair_tasks)),
        format!("{:.2}", per(ours.healthy_sends, ours.pair_tasks)),
        ratio(
            per(peer.healthy_sends, peer.pair_tasks),
            per(ours.healthy_sends, ours.pair_tasks),
        ),
    );
    row(
        "failing hook: sends / delivered once it answers 200 again",
        format!("{} / {}", peer.flaky_sends, peer.flaky_delivered),
        format!("{} / {}", ours.flaky_sends, ours.flaky_delivered),
        "—".into(),
    );
    row(
        &format!(
            "302 to another URL: sends / followed ({} Tasks)",
            peer.redirect_tasks
        ),
        format!("{} / {}", peer.redirect_sends, peer.redirect_followed),
        format!("{} / {}", ours.redirect_sends, ours.redirect_followed),
        "—".into(),
    );
    let delivered = |o: &Outcome| (o.tasks - o.lost).max(1) as f64;
    let dp = |o: &Outcome| *o.api.get(&o.delivering_identity).unwrap_or(&0) as f64 / delivered(o);
    row(
        "API requests per delivered Task, delivering process",
        format!("{:.1} ({})", dp(peer), peer.delivering_identity),
        format!("{:.1} ({})", dp(ours), ours.delivering_identity),
        ratio(dp(peer), dp(ours)),
    );
    let mut users: Vec<&String> = peer.api.keys().chain(ours.api.keys()).collect();
    users.sort();
    users.dedup();
    for u in users {
        let get = |o: &Outcome| *o.api.get(u).unwrap_or(&0) as f64 / delivered(o);
        row(
            &format!("API requests per delivered Task by {u}"),
            format!("{:.1}", get(peer)),
            format!("{:.1}", get(ours)),
            ratio(get(peer), get(ours)),
        );
    }
    row(
        &format!(
            "CPU seconds of the delivering process over the {} Tasks",
            peer.tasks
        ),
        format!("{:.2} s", peer.cpu_s),
        format!("{:.2} s", ours.cpu_s),
        ratio(peer.cpu_s, ours.cpu_s),
    );
    row(
        "peak RSS (VmHWM) of the delivering process",
        format!("{:.1} MiB", peer.peak_rss_mib),
        format!("{:.1} MiB", ours.peak_rss_mib),
        ratio(peer.peak_rss_mib, ours.peak_rss_mib),
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("run") => {
            let system = match args.get(1).map(String::as_str) {
                Some("peer") => System::Peer,
                Some("ours") => System::Ours,
                other => bail!("run peer|ours OUT.json, not {other:?}"),
            };
            let out = PathBuf::from(args.get(2).context("run SYSTEM OUT.json")?);
            run(system, &out, num(3, 60), num(4, 40)).await
        }
        Some("table") => {
            let read = |i: usize| -> Result<Outcome> {
                let p = args.get(i).context("table PEER.json OURS.json")?;
                Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
            };
            let (peer, ours) = (read(1)?, read(2)?);
            table(&peer, &ours);
            for o in [&peer, &ours] {
                for n in &o.notes {
                    println!("\n{} (kelos {}): {n}", o.system, o.kelos);
                }
            }
            Ok(())
        }
        other => bail!(
            "usage: run peer|ours OUT.json [STEADY [BURST]] | table PEER.json OURS.json (got {other:?})"
        ),
    }
}
