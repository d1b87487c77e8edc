//! The shared control plane of a test run.
//!
//! `hack/test.sh` starts one etcd + kube-apiserver for the whole run and exports
//! `KELOS_HOOKS_KUBECONFIG` (and `KELOS_HOOKS_CLUSTER_DIR`); every test binary reuses it, and each
//! test works in a namespace of its own. Run alone (`cargo test -p kelos-hooks-tests`), the first
//! test starts a control plane through `hack/cluster-up.sh`, which stops when the test process exits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use tokio::sync::OnceCell;

use crate::paths::workspace_root;

/// A running control plane.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    tools: PathBuf,
}

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

/// The control plane of this test run, with the kelos-hooks CRDs installed and Established.
pub async fn cluster() -> Result<&'static Cluster> {
    CLUSTER.get_or_try_init(start_or_reuse).await
}

async fn start_or_reuse() -> Result<Cluster> {
    let dir = match std::env::var_os("KELOS_HOOKS_CLUSTER_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => start_own().await?,
    };
    let kubeconfig = dir.join("kubeconfig");
    let tools = std::fs::read_to_string(dir.join("tools"))
        .with_context(|| format!("{}/tools: is the control plane up?", dir.display()))?;
    let cluster = Cluster {
        dir,
        kubeconfig,
        tools: PathBuf::from(tools.trim()),
    };
    cluster.install_crds().await?;
    Ok(cluster)
}

/// Starts a control plane for this process alone (used when the tests run outside hack/test.sh).
async fn start_own() -> Result<PathBuf> {
    start_in(&format!("kelos-hooks-cluster-{}", std::process::id())).await
}

/// Starts a control plane in `$TMPDIR/<name>` that stops when this process exits.
async fn start_in(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(name);
    let out = tokio::process::Command::new(workspace_root().join("hack/cluster-up.sh"))
        .arg("--dir")
        .arg(&dir)
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running hack/cluster-up.sh")?;
    if !out.status.success() {
        bail!(
            "hack/cluster-up.sh failed: the control plane could not be built or started (see its output above)"
        );
    }
    Ok(dir)
}

impl Cluster {
    /// A control plane of this process's own, apart from the shared one and without the
    /// kelos-hooks CRDs (for tests that install kelos's CRDs of the same names); named after
    /// `tag`, stopped when the process exits.
    pub async fn dedicated(tag: &str) -> Result<Cluster> {
        let dir = start_in(&format!("kelos-hooks-{tag}-cluster-{}", std::process::id())).await?;
        Self::existing(dir)
    }

    /// A control plane already running from `dir` (started by `hack/cluster-up.sh --dir DIR`,
    /// e.g. by bench/peer.sh for several processes in turn), as it is: no CRDs installed, not
    /// stopped by this process.
    pub fn existing(dir: PathBuf) -> Result<Cluster> {
        let tools = std::fs::read_to_string(dir.join("tools"))
            .with_context(|| format!("{}/tools: is the control plane up?", dir.display()))?;
        Ok(Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            tools: PathBuf::from(tools.trim()),
        })
    }

    /// The admin (system:masters) kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding the control plane's state, logs and PKI.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test PKI: `ca.crt`/`ca.key` in kelos-hooks-certs format.
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// Directory of the built control-plane tools (kubectl, helm, …).
    pub fn tools_dir(&self) -> &Path {
        &self.tools
    }

    /// An admin client.
    pub async fn client(&self) -> Result<kube::Client> {
        let config = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The built kubectl, pointed at this control plane.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.tools.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd.kill_on_drop(true);
        cmd
    }

    /// A fresh namespace labelled `kelos-hooks.dev/test=<prefix>`. Never deleted: no controllers
    /// run here, so deletion would not finish anyway.
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        let n = NAMESPACES.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"kelos-hooks.dev/test": prefix}}
        }))?;
        Api::<Namespace>::all(self.client().await?)
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(name)
    }

    /// Applies the generated CRDs (server-side, idempotent) and waits until they are Established.
    async fn install_crds(&self) -> Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client().await?);
        let params = PatchParams::apply("kelos-hooks-tests").force();
        for crd in kelos_hooks_shared::crd::all() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .with_context(|| format!("applying CRD {name}"))?;
            let established =
                await_condition(crds.clone(), &name, conditions::is_crd_established());
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .with_context(|| format!("CRD {name} not Established within 30s"))??;
        }
        Ok(())
    }
}
