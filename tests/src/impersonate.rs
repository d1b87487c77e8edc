//! Running a local process as a ServiceAccount: a copy of the admin kubeconfig whose users
//! impersonate it, so RBAC and admission see the username the process would have in a Pod.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

/// The username the API server gives ServiceAccount `sa` of namespace `ns`.
pub fn service_account_user(ns: &str, sa: &str) -> String {
    format!("system:serviceaccount:{ns}:{sa}")
}

/// The admin kubeconfig `admin` (YAML or JSON text) with every user impersonating
/// `system:serviceaccount:NS:SA`, with the groups the API server gives a real ServiceAccount
/// token.
pub fn impersonating_kubeconfig(admin: &str, ns: &str, sa: &str) -> Result<String> {
    let mut config: Value = serde_saphyr::from_str(admin)?;
    let users = config["users"]
        .as_array_mut()
        .context("kubeconfig has no users")?;
    ensure!(!users.is_empty(), "kubeconfig has no users");
    for user in users {
        let u = user["user"]
            .as_object_mut()
            .context("user entry without user")?;
        u.insert("as".into(), json!(service_account_user(ns, sa)));
        u.insert(
            "as-groups".into(),
            json!([
                "system:serviceaccounts",
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated"
            ]),
        );
    }
    Ok(serde_json::to_string_pretty(&config)?)
}

/// Writes [`impersonating_kubeconfig`] of the admin kubeconfig file `admin` to `out`.
pub fn write_impersonating_kubeconfig(admin: &Path, ns: &str, sa: &str, out: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(admin).with_context(|| format!("reading {}", admin.display()))?;
    std::fs::write(out, impersonating_kubeconfig(&text, ns, sa)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// A client from a kubeconfig file (through kube-rs, as our binaries use one).
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let config = Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
