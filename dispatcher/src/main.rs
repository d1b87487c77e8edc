//! `kelos-hooks-dispatcher`: watch-driven, at-least-once delivery of kelos Task completion webhooks.
#![forbid(unsafe_code)]

mod check_url;
mod cli;
mod cluster;
mod crd_check;
mod error;
mod executor;
mod machine;
mod metrics;
mod send;
mod status;
mod test_send;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kelos_hooks_shared::ip::IpPolicy;
use tokio_util::sync::CancellationToken;

use kelos_hooks_runtime::{Health, shutdown, telemetry};

use crate::cli::{Cli, Command, RunArgs};
use crate::cluster::{events, leader, watch};
use crate::error::{Error, Result};
use crate::send::{client, resolve};

/// How the dispatcher names itself to the API server (`User-Agent`, seen in audit logs).
const AGENT: &str = concat!("kelos-hooks-dispatcher/", env!("CARGO_PKG_VERSION"));

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::CheckUrl(args) => rt.block_on(check_url_main(args)),
        Command::SendTest(args) => rt.block_on(send_test_main(args)),
        Command::Status(args) => rt.block_on(status_main(args)),
        Command::Run(args) => {
            telemetry::init(args.log_format);
            match rt.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "dispatcher failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn check_url_main(args: cli::CheckUrlArgs) -> ExitCode {
    let policy = match IpPolicy::from_cidrs(&args.net.allow_cidr) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --allow-cidr: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = client::load_cas(&args.net.ca_file) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match check_url::check(&args.url, &policy, &resolve::system_lookup()).await {
        check_url::Verdict::Allowed(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        check_url::Verdict::Blocked(line) => {
            println!("{line}");
            ExitCode::from(1)
        }
    }
}

/// `send-test`: exit 0 when every hook answered 2xx, 1 when one did not, 2 when nothing could be
/// sent (bad flags, no such spawner or hook).
async fn send_test_main(args: cli::SendTestArgs) -> ExitCode {
    match send_test(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The SSRF-safe client of `run` and `send-test`: the address policy and trust of `net`.
fn safe_client(net: &cli::NetArgs, timeout: Duration) -> Result<client::SafeClient> {
    let policy = IpPolicy::from_cidrs(&net.allow_cidr)
        .map_err(|e| Error::Config(format!("--allow-cidr: {e}")))?;
    client::SafeClient::new(policy, resolve::system_lookup(), &net.ca_file, timeout)
}

async fn send_test(args: &cli::SendTestArgs) -> Result<bool> {
    use kelos_hooks_shared::api::TaskSpawner;
    let http = safe_client(&args.net, args.request_timeout)?;
    let kube = kelos_hooks_runtime::kube_client(AGENT).await?;
    let api: kube::Api<TaskSpawner> = kube::Api::namespaced(kube.clone(), &args.namespace);
    let ts = api.get_opt(&args.spawner).await?.ok_or_else(|| {
        Error::Config(format!(
            "TaskSpawner {}/{} not found",
            args.namespace, args.spawner
        ))
    })?;
    let mut hooks = ts.hooks().to_vec();
    if let Some(only) = &args.hook {
        hooks.retain(|h| &h.name == only);
        if hooks.is_empty() {
            return Err(Error::Config(format!(
                "TaskSpawner {}/{} has no hook {only:?}",
                args.namespace, args.spawner
            )));
        }
    }
    if hooks.is_empty() {
        return Err(Error::Config(format!(
            "TaskSpawner {}/{} has no spec.onCompletion hooks",
            args.namespace, args.spawner
        )));
    }
    let mut spawner = machine::health::spawner_ref(&args.namespace, &args.spawner);
    spawner.uid = ts.metadata.uid.clone();
    let now = chrono::Utc::now();
    let test = machine::SpawnerTest {
        spawner,
        value: format!("send-test-{}", now.timestamp_millis()),
        hooks,
    };
    let limits = send::SendLimits {
        max_concurrency: 8,
        max_per_host: 8,
        timeout: args.request_timeout,
    };
    let secrets = cluster::secrets::Secrets::new(kube.clone(), Duration::from_secs(5));
    let sender = send::Sender::new(http, secrets, limits, CancellationToken::new());
    let events = events::Events::new(kube, "send-test".into());
    let mut all_ok = true;
    for (hook, outcome) in test_send::send_all(&sender, &test, now).await {
        let (ok, line) = test_send::describe(&hook, outcome.as_ref());
        all_ok &= ok;
        println!("{} {line}", if ok { "ok  " } else { "FAIL" });
        let n = test_send::note(&test, &hook, outcome.as_ref());
        events
            .publish_now(&n.object, n.warning, n.reason, &n.hook, n.message)
            .await;
    }
    Ok(all_ok)
}

async fn status_main(args: cli::StatusArgs) -> ExitCode {
    let result = async {
        let kube = kelos_hooks_runtime::kube_client(AGENT).await?;
        status::run(kube, &args).await
    };
    match result.await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: RunArgs) -> Result<()> {
    if args.backoff_base.is_zero() || args.backoff_max < args.backoff_base {
        return Err(Error::Config(
            "--backoff-base must be > 0 and <= --backoff-max".into(),
        ));
    }
    if args.lease_renew_interval >= args.lease_duration * 2 / 3 {
        return Err(Error::Config(
            "--lease-renew-interval must be shorter than 2/3 of --lease-duration".into(),
        ));
    }
    let http = safe_client(&args.net, args.request_timeout)?;
    let kube = kelos_hooks_runtime::kube_client(AGENT).await?;
    let identity = args
        .lease_identity
        .clone()
        .or_else(|| {
            hostname::get()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "kelos-hooks-dispatcher".into());
    tracing::info!(identity = %identity, namespace = ?args.namespace, allow = ?args.net.allow_cidr, "starting");

    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(Health::waiting_for(&[(
        watch::READY_CHECK,
        "Task watch not synced yet",
    )]));
    let shutdown = CancellationToken::new();
    let background = CancellationToken::new();

    // Health and metrics first, so probes answer while the rest starts.
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| Error::Config(format!("--metrics-listen {}: {e}", args.metrics_listen)))?;
    let server = {
        let stop = background.clone();
        tokio::spawn(kelos_hooks_runtime::health::serve(
            listener,
            health.clone(),
            metrics.clone(),
            async move { stop.cancelled().await },
        ))
    };

    let events = events::Events::new(kube.clone(), identity.clone());
    tokio::spawn(crd_check::run(
        kube.clone(),
        health.clone(),
        metrics.clone(),
        events.clone(),
        background.clone(),
    ));

    let (leader_tx, leader_rx) = tokio::sync::watch::channel(false);
    let lease_stop = CancellationToken::new();
    let lease_task = if args.no_leader_election {
        leader_tx.send_replace(true);
        None
    } else {
        let cfg = leader::LeaseConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity,
            duration: args.lease_duration,
            renew_interval: args.lease_renew_interval,
        };
        Some(tokio::spawn(leader::run(
            kube.clone(),
            cfg,
            leader_tx,
            lease_stop.clone(),
        )))
    };

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = executor::Settings {
        rules: machine::Rules {
            limits: machine::plan::Limits {
                max_age: args.max_age,
                max_attempts: args.max_attempts,
                max_retry_duration: args.max_retry_duration,
            },
            backoff: machine::backoff::Backoff {
                base: args.backoff_base,
                max: args.backoff_max,
            },
        },
        send: send::SendLimits {
            max_concurrency: args.max_concurrency as usize,
            max_per_host: args.max_per_host as usize,
            timeout: args.request_timeout,
        },
        shutdown_timeout: args.shutdown_timeout,
        tests_lease: (
            args.lease_namespace.clone(),
            format!("{}-tests", args.lease_name),
        ),
    };
    let executor = executor::Executor::new(
        settings,
        http,
        kube.clone(),
        events,
        metrics.clone(),
        health.clone(),
        tx.clone(),
    );
    let spawner_watch_task = tokio::spawn(cluster::spawner_watch::run(
        kube.clone(),
        args.namespace.clone(),
        tx.clone(),
    ));
    let watch_task = tokio::spawn(watch::run(kube.clone(), args.namespace.clone(), tx));
    let loop_task = tokio::spawn(executor.run(rx, leader_rx, shutdown.clone()));

    shutdown::terminated().await;
    tracing::info!("SIGTERM: finishing in-flight attempts");
    shutdown.cancel();
    let _ = loop_task.await;
    watch_task.abort();
    spawner_watch_task.abort();
    lease_stop.cancel();
    if let Some(t) = lease_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    background.cancel();
    let _ = server.await;
    Ok(())
}
