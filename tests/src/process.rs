//! The processes the tests start: stopping them, reading their memory.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

/// SIGTERM (graceful, as a Pod deletion) and waits up to 20 s for `child` to exit; `None` (already
/// stopped) is a no-op. `what` names the process in the error.
pub async fn stop_gracefully(child: Option<Child>, what: &str) -> Result<()> {
    let Some(mut child) = child else {
        return Ok(());
    };
    if let Some(pid) = child.id() {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
    }
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .with_context(|| format!("{what} did not stop within 20s"))??;
    Ok(())
}

/// A field of `/proc/<pid>/status` in MiB (`VmRSS:`, `VmHWM:`); `None` once the process is gone.
pub fn status_mib(pid: u32, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
