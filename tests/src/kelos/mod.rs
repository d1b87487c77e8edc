//! Real kelos in the end-to-end tests, installed the way a user installs it.
//!
//! [`kelos()`] gives the test process one environment, started on first use:
//! - a control plane of its own (`hack/cluster-up.sh`): kelos's CRDs have the names of the
//!   kelos-hooks test CRDs of the shared test cluster — or, with `$KELOS_HOOKS_KELOS_CLUSTER_DIR`
//!   ([`KELOS_CLUSTER_DIR_ENV`]), one already running there, which [`Kelos::uninstall`] leaves as
//!   it found it for the next process (bench/peer.sh: two kelos snapshots on one control plane);
//! - kelos's chart from `../shared/kelos-src` (`helm template`, one documented post-processing
//!   step: [`install`]) applied as `kelos install` applies it: nine CRDs with both versions and the
//!   conversion webhook, RBAC, the TaskBudget webhook, all reached by URL + caBundle;
//! - kelos-controller, built by `hack/tools.sh --kelos`, as a local process under the chart's
//!   ServiceAccount `kelos-system/kelos-controller` (impersonation), with the chart's args, its
//!   webhooks on 127.0.0.1:9443 — one per machine, so a machine-wide lock makes concurrent test
//!   runs take turns;
//! - a Node whose log server lets kelos read agent outputs ([`node`]).
//!
//! Tests then use [`AddOn::start`] (our admission server + dispatcher for one namespace),
//! [`Kelos::create_spawner`] with [`cron_spawner`], [`Kelos::backdate_discovery`] and
//! [`Kelos::run_spawner_once`] (a spawner's discovery cycle, as its ServiceAccount), and
//! [`Kelos::run_task`] (a Task's Job run to its end as a cluster would, kelos doing the rest).

mod addon;
mod controller;
pub mod install;
mod job_run;
mod node;
mod spawner;
mod spawners;
mod uninstall;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use kelos_hooks_certs::{Ca, San, write_pair};
use tokio::sync::{Mutex, OnceCell};

pub use addon::{ALLOW_CIDR, AddOn, DISPATCHER_IDENTITY};
pub use controller::WEBHOOK_PORT;
pub use job_run::{AGENT_CONTAINER, AgentRun, Completion, StartedTask};
pub use spawner::{LongRunningSpawner, SPAWNER_SERVICE_ACCOUNT, SpawnerRun};
pub use spawners::{
    SPAWNER_FINALIZER, TASK_FINALIZER, Tasks, cron_spawner, cron_spawner_v1alpha1, spawner_api,
    spawner_api_in,
};

use crate::Cluster;
use crate::impersonate::{service_account_user, write_impersonating_kubeconfig};
use controller::{Controller, ControllerConfig, lock_webhook_port};
use node::LogNode;

/// A control plane directory (`hack/cluster-up.sh --dir`) to install kelos on instead of
/// starting one of the process's own.
pub const KELOS_CLUSTER_DIR_ENV: &str = "KELOS_HOOKS_KELOS_CLUSTER_DIR";

/// The kelos ServiceAccount the chart runs the controller as.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "kelos-controller";

/// The username kelos-controller has (`system:serviceaccount:kelos-system:kelos-controller`).
pub fn controller_user() -> String {
    service_account_user(install::NAMESPACE, CONTROLLER_SERVICE_ACCOUNT)
}

/// The kelos source snapshot the tests run: `../shared/kelos-src`.
pub fn default_source() -> PathBuf {
    crate::workspace_root().join("../shared/kelos-src")
}

/// A kelos installation on a control plane of its own, with its controller running.
pub struct Kelos {
    cluster: Cluster,
    src: PathBuf,
    bin: PathBuf,
    commit: String,
    version: String,
    controller: Mutex<Controller>,
    controller_log: PathBuf,
    node: LogNode,
    /// What was applied from the chart, and its CRDs (for [`Kelos::uninstall`]).
    objects: Vec<serde_json::Value>,
    crds: Vec<String>,
    /// On a control plane given by [`KELOS_CLUSTER_DIR_ENV`]: its cluster-scoped objects before
    /// the install, which [`Kelos::uninstall`] checks it returned to.
    before: Option<std::collections::BTreeSet<String>>,
    _port_lock: std::fs::File,
}

static KELOS: OnceCell<Kelos> = OnceCell::const_new();

/// The runtime the environment's long-lived parts (the log server, the controller process) live
/// on: each `#[tokio::test]` has a runtime of its own that ends with the test, and would take
/// them along.
fn env_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kelos-env")
            .enable_all()
            .build()
            .expect("a tokio runtime for the kelos environment")
    })
}

/// This process's kelos environment (kelos from [`default_source`]), started on first use.
pub async fn kelos() -> Result<&'static Kelos> {
    kelos_from(default_source()).await
}

/// This process's kelos environment with kelos built from the source snapshot `src` (e.g.
/// `../shared/kelos-pr1240-src`), started on first use. One per process (kelos-controller's
/// port is fixed): asking for another snapshot afterwards is an error.
pub async fn kelos_from(src: PathBuf) -> Result<&'static Kelos> {
    let env = KELOS
        .get_or_try_init(|| async {
            env_runtime()
                .spawn(Kelos::start(src.clone()))
                .await
                .context("starting kelos")?
        })
        .await?;
    ensure!(
        env.src == src,
        "this process runs kelos from {}, not {}: one kelos environment per test binary",
        env.src.display(),
        src.display()
    );
    Ok(env)
}

/// `hack/tools.sh --kelos SRC`: builds kelos from `src` into the tool cache if missing and returns
/// the directory holding kelos-controller and kelos-spawner (named after the snapshot's commit).
pub async fn build(src: &Path) -> Result<PathBuf> {
    let out = tokio::process::Command::new(crate::workspace_root().join("hack/tools.sh"))
        .arg("--kelos")
        .arg(src)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running hack/tools.sh --kelos")?;
    ensure!(
        out.status.success(),
        "hack/tools.sh --kelos {} failed: kelos could not be built (see above)",
        src.display()
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

impl Kelos {
    /// Builds (if needed) and installs kelos from the source snapshot `src` on a new control
    /// plane and starts its controller. Holds the machine-wide kelos-controller lock until this
    /// process exits. Runs on [`env_runtime`].
    async fn start(src: PathBuf) -> Result<Kelos> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let started = std::time::Instant::now();
        let bin = build(&src).await?;
        let commit = bin
            .file_name()
            .and_then(|n| n.to_str())
            .context("kelos bin directory without a name")?
            .to_owned();
        let cache = bin
            .parent()
            .context("kelos bin directory without a parent")?;
        let port_lock = tokio::task::spawn_blocking({
            let cache = cache.to_owned();
            move || lock_webhook_port(&cache)
        })
        .await??;
        let (cluster, before) = match std::env::var_os(KELOS_CLUSTER_DIR_ENV) {
            Some(dir) => {
                let cluster = Cluster::existing(PathBuf::from(dir))?;
                let before = uninstall::cluster_scoped(&cluster.client().await?).await?;
                (cluster, Some(before))
            }
            None => (Cluster::dedicated("kelos").await?, None),
        };

        // The webhook serving certificate, where controller-runtime looks for it.
        let day = std::time::Duration::from_secs(86400);
        let ca = Ca::generate("kelos-hooks tests: kelos webhook CA", day)?;
        let issued = ca.issue_server(
            "kelos-webhook",
            &[San::Ip(std::net::Ipv4Addr::LOCALHOST.into())],
            day,
        )?;
        // On a shared control plane each snapshot's controller keeps a directory of its own.
        let home = match before {
            Some(_) => cluster.dir().join(format!("kelos-controller-{commit}")),
            None => cluster.dir().join("kelos-controller"),
        };
        let tmpdir = home.join("tmp");
        write_pair(
            &tmpdir.join("k8s-webhook-server/serving-certs"),
            "tls",
            &issued,
        )?;

        let bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
        let rendered = install::render(&cluster, &src).await?;
        let local = install::localize(
            rendered,
            &format!("https://127.0.0.1:{WEBHOOK_PORT}"),
            &bundle,
        )?;
        install::apply(&cluster, &local.objects, &local.crds).await?;
        let version = install::api_version(&local.objects)?;

        let node = LogNode::start(cluster.client().await?, "kelos-hooks-node").await?;
        let kubeconfig = home.join("kubeconfig");
        let controller_log = home.join("kelos-controller.log");
        write_impersonating_kubeconfig(
            cluster.kubeconfig(),
            install::NAMESPACE,
            CONTROLLER_SERVICE_ACCOUNT,
            &kubeconfig,
        )?;
        let controller = Controller::start(ControllerConfig {
            bin: bin.join("kelos-controller"),
            args: local.controller_args,
            kubeconfig,
            tmpdir,
            log: controller_log.clone(),
            ca_pem: ca.cert_pem().to_owned(),
            serves_webhooks: local.webhooks > 0,
        })
        .await?;
        eprintln!(
            "[kelos] kelos {commit} from {} installed on {} ({} CRDs) in {:.1}s; kelos-controller \
             running as {}",
            src.display(),
            cluster.dir().display(),
            local.crds.len(),
            started.elapsed().as_secs_f64(),
            controller_user()
        );
        Ok(Kelos {
            cluster,
            src,
            bin,
            commit,
            version,
            controller: Mutex::new(controller),
            controller_log,
            node,
            objects: local.objects,
            crds: local.crds,
            before,
            _port_lock: port_lock,
        })
    }

    /// The control plane kelos runs on (admin access).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The upstream kelos commit (from the snapshot's SOURCE.md, as `hack/tools.sh` keys it).
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The `kelos.dev` version the tests speak to this kelos: `v1alpha2` where served (upstream
    /// kelos), else the one its CRDs serve (`v1alpha1` for kelos PR #1240).
    pub fn api_version(&self) -> &str {
        &self.version
    }

    /// The kelos source snapshot.
    pub fn source(&self) -> &Path {
        &self.src
    }

    /// Directory of the kelos-controller and kelos-spawner binaries.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A fresh namespace (see [`Cluster::namespace`]).
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        self.cluster.namespace(prefix).await
    }

    /// Stops kelos-controller (SIGTERM) and starts it again; returns once it serves again.
    pub async fn restart_controller(&'static self) -> Result<()> {
        env_runtime()
            .spawn(async move { self.controller.lock().await.restart().await })
            .await?
    }

    /// The last `lines` lines of kelos-controller's log.
    pub fn controller_log_tail(&self, lines: usize) -> String {
        controller::tail(&self.controller_log, lines)
    }

    /// kelos-controller's log file (appended to across restarts).
    pub fn controller_log_path(&self) -> &Path {
        &self.controller_log
    }

    fn node(&self) -> &LogNode {
        &self.node
    }
}
