//! `kelos-hooks-admission`: the kelos-hooks admission server and its offline tools.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kelos_hooks_admission::admission::{self, AppState};
use kelos_hooks_admission::cache::{self, CachedSpawner, SpawnerCache};
use kelos_hooks_admission::cli::{Cli, Command, CrdExtensionCommand, ServeArgs};
use kelos_hooks_admission::error::{Error, Result};
use kelos_hooks_admission::handlers::mutate_taskspawner::Identities;
use kelos_hooks_admission::metrics::Metrics;
use kelos_hooks_admission::{crd_check, crd_extension, self_managed, server, tls, validate_cmd};
use kelos_hooks_runtime::{Health, shutdown, telemetry};
use kelos_hooks_shared::ip::IpPolicy;
use kube::runtime::reflector::store::Writer;
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => ExitCode::from(validate_cmd::run(&args).clamp(0, 255) as u8),
        Command::Crds => match validate_cmd::crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            telemetry::init(args.log_format);
            block_on(serve(*args))
        }
        Command::CrdExtension(CrdExtensionCommand::Remove(args)) => {
            telemetry::init(kelos_hooks_runtime::LogFormat::Text);
            block_on(async move {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = kelos_hooks_runtime::kube_client(AGENT).await?;
                let done = crd_extension::remove(client, args.settle).await?;
                tracing::info!("{done}");
                Ok(())
            })
        }
    }
}

/// Runs `main` to completion on a multi-threaded runtime; errors are logged.
fn block_on(main: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

async fn serve(args: ServeArgs) -> Result<()> {
    // kube's client and our server share the ring provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = Arc::new(
        IpPolicy::from_cidrs(&args.policy.allow_cidr)
            .map_err(|e| Error::Cidr(format!("{:?}: {}", e.input, e.reason)))?,
    );
    let kelos = Identities::new(&args.kelos_identity);
    if args.dispatcher_identity.iter().all(|d| d.trim().is_empty()) {
        return Err(Error::Usage(
            "--dispatcher-identity must name at least one user".into(),
        ));
    }
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::waiting_for(&[
        (tls::READY_CHECK, "no serving certificate loaded yet"),
        (cache::READY_CHECK, "TaskSpawner cache not synced yet"),
    ]));

    let webhook_listener = bind(args.listen).await?;
    let probe_listener = bind(args.metrics_listen).await?;

    // TLS: load now (an error leaves us unready and retrying), then keep watching the files.
    let resolver = Arc::new(tls::ReloadingResolver::default());
    let tls_config = Arc::new(tls::server_config(resolver.clone())?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (cert_file, key_file) = (args.cert_file(), args.key_file());
    let self_managed = if args.self_managed.enabled {
        Some(self_managed::Config::from_args(
            &args.self_managed,
            &cert_file,
            &key_file,
        )?)
    } else {
        None
    };
    let reloader = tls::run_reloader(
        tls::CertFiles::new(&cert_file, &key_file),
        resolver,
        args.cert_reload_interval,
        metrics.clone(),
        health.clone(),
        stopped(),
    );

    let client = kelos_hooks_runtime::kube_client(AGENT).await?;
    if let Some(config) = self_managed {
        // Files left from an earlier run (e.g. in a surviving emptyDir) may be stale: serve
        // only what this process wrote from the Secret, so /readyz waits for it.
        let (written_tx, written_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(self_managed::run(
            config,
            client.clone(),
            metrics.clone(),
            written_tx,
            stopped(),
        ));
        tokio::spawn(async move {
            if written_rx.await.is_ok() {
                reloader.await;
            }
        });
    } else {
        tokio::spawn(reloader);
    }
    let writer: Writer<CachedSpawner> = Writer::default();
    let store = writer.as_reader();
    tokio::spawn(cache::run_reflector(
        client.clone(),
        writer,
        policy.clone(),
        metrics.clone(),
        health.clone(),
    ));
    tokio::spawn(crd_check::run(
        client.clone(),
        health.clone(),
        metrics.clone(),
        args.extend_kelos_crd
            .then(crd_extension::Extension::default),
    ));

    let authorizer = kelos_hooks_admission::authorize::Authorizer::new(client.clone());
    let lookup = cache::api_lookup(client, policy.clone(), args.lookup_timeout);
    let state = Arc::new(AppState {
        cache: SpawnerCache::new(store, lookup, metrics.clone()),
        policy,
        dispatchers: args.dispatcher_identity.clone(),
        kelos: kelos.clone(),
        metrics: metrics.clone(),
        authorizer,
    });

    let probe = axum::serve(
        probe_listener,
        kelos_hooks_runtime::health::router(health.clone(), metrics.clone()),
    )
    .with_graceful_shutdown(stopped());
    let probe = tokio::spawn(async move {
        if let Err(e) = probe.await {
            tracing::error!(error = %e, "health/metrics server failed");
        }
    });

    let shutdown_delay = args.shutdown_delay;
    let health_for_stop = health.clone();
    let begin_stop = async move {
        shutdown::terminated().await;
        health_for_stop.set_shutting_down();
        tracing::info!(
            ?shutdown_delay,
            "shutdown requested: not ready; closing the listener after the delay"
        );
        tokio::time::sleep(shutdown_delay).await;
    };
    tracing::info!(
        listen = %args.listen, metrics_listen = %args.metrics_listen,
        dispatcher_identity = ?args.dispatcher_identity, allow_cidr = ?args.policy.allow_cidr,
        kelos_identity = %kelos, extend_kelos_crd = args.extend_kelos_crd,
        "kelos-hooks-admission serving"
    );
    let router = admission::router(state);
    #[cfg(feature = "bench-ceiling")]
    let router = router.merge(admission::ceiling_router());
    server::serve_tls(
        webhook_listener,
        tls_config,
        router,
        begin_stop,
        args.drain_timeout,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = probe.await;
    tracing::info!("stopped");
    Ok(())
}

/// `User-Agent` of our API requests (audit logs, request metrics).
const AGENT: &str = concat!("kelos-hooks-admission/", env!("CARGO_PKG_VERSION"));
