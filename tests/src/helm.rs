//! helm run as a child process against the test cluster.

use std::process::Output;

use anyhow::{Context, Result, ensure};

use crate::Cluster;

/// helm with the test cluster's kubeconfig and its own cache/config dirs (nothing from $HOME),
/// under a temporary directory named after `tag` and this process.
pub fn helm_command(c: &Cluster, tag: &str) -> std::process::Command {
    let home = std::env::temp_dir().join(format!("kelos-hooks-{tag}-helm-{}", std::process::id()));
    let mut cmd = std::process::Command::new(c.tools_dir().join("helm"));
    cmd.env("KUBECONFIG", c.kubeconfig())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// A finished command's stdout then stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` (`what` names it in errors); its stdout when it succeeds, an error with all it
/// printed otherwise.
pub async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed:\n{}",
        output_text(&out)
    );
    Ok(String::from_utf8(out.stdout)?)
}
