//! kubectl run as a child process, its output captured.

use std::process::Stdio;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::Cluster;

/// What a kubectl run printed, and whether it succeeded.
pub struct Output {
    /// The exit status was success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs kubectl with `args`, feeding `stdin` when given.
pub async fn kubectl(c: &Cluster, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut cmd = c.kubectl();
    cmd.args(args).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(input.as_bytes()).await?;
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `kubectl apply -n <ns> -f - <extra…>` of `manifest`.
pub async fn kubectl_apply(
    c: &Cluster,
    ns: &str,
    manifest: &Value,
    extra: &[&str],
) -> Result<Output> {
    let mut args = vec!["apply", "-n", ns, "-f", "-"];
    args.extend_from_slice(extra);
    kubectl(c, &args, Some(&manifest.to_string())).await
}
