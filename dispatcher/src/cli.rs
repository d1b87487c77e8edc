//! Command line: `run` and `check-url`. Every flag can also come from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Watch-driven, at-least-once webhook delivery for kelos Task completions.
#[derive(Debug, Parser)]
#[command(name = "kelos-hooks-dispatcher", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the dispatcher: watch Tasks and deliver their completion webhooks.
    Run(Box<RunArgs>),
    /// Resolve and judge a webhook URL exactly as a delivery would (exit 0 allowed, 1 blocked).
    CheckUrl(CheckUrlArgs),
    /// Send one test notification (`type: kelos.task.test`) to each hook of a TaskSpawner, print
    /// each receiver's answer and record it as an Event on the spawner (exit 0 all accepted, 1 not).
    SendTest(SendTestArgs),
    /// Show recent Tasks' delivery state per hook and each hook's health (read-only).
    Status(StatusArgs),
}

/// `send-test` arguments.
#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// Namespace of the TaskSpawner.
    #[arg(short = 'n', long, env = "KELOS_HOOKS_NAMESPACE")]
    pub namespace: String,
    /// The TaskSpawner.
    #[arg(long)]
    pub spawner: String,
    /// Only this hook (default: every hook of the spawner).
    #[arg(long)]
    pub hook: Option<String>,
    /// Timeout of each request.
    #[arg(long, env = "KELOS_HOOKS_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Policy and trust (use the dispatcher's values: the test obeys the same rules).
    #[command(flatten)]
    pub net: NetArgs,
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Namespace of the Tasks.
    #[arg(short = 'n', long, env = "KELOS_HOOKS_NAMESPACE")]
    pub namespace: String,
    /// Only Tasks of this TaskSpawner.
    #[arg(long)]
    pub spawner: Option<String>,
    /// Most recent Tasks shown.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// Flags shared by `run` and `check-url`: the address policy and trust.
#[derive(Debug, Args, Clone)]
pub struct NetArgs {
    /// CIDR (or single address) to allow although it is in a blocked range, e.g. an in-cluster
    /// receiver. Repeatable; from the environment as a comma-separated list.
    #[arg(
        long = "allow-cidr",
        env = "KELOS_HOOKS_ALLOW_CIDR",
        value_delimiter = ','
    )]
    pub allow_cidr: Vec<String>,
    /// PEM file of extra CA certificates to trust in addition to the web PKI roots. Repeatable;
    /// comma-separated in the environment.
    #[arg(long = "ca-file", env = "KELOS_HOOKS_CA_FILES", value_delimiter = ',')]
    pub ca_file: Vec<PathBuf>,
}

/// `check-url` arguments.
#[derive(Debug, Args)]
pub struct CheckUrlArgs {
    /// The webhook URL (https://…).
    pub url: String,
    /// Policy and trust.
    #[command(flatten)]
    pub net: NetArgs,
}

pub use kelos_hooks_runtime::LogFormat;

use kelos_hooks_shared::duration::parse as parse_duration;

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy and trust.
    #[command(flatten)]
    pub net: NetArgs,
    /// Timeout of one delivery attempt (connect, send, answer).
    #[arg(long, env = "KELOS_HOOKS_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Attempts after which a hook is marked Failed.
    #[arg(long, env = "KELOS_HOOKS_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Time after the first attempt after which a hook is marked Failed instead of retried.
    #[arg(long, env = "KELOS_HOOKS_MAX_RETRY_DURATION", default_value = "1h", value_parser = parse_duration)]
    pub max_retry_duration: Duration,
    /// Ceiling of the first retry delay (doubles per attempt, with full jitter).
    #[arg(long, env = "KELOS_HOOKS_BACKOFF_BASE", default_value = "2s", value_parser = parse_duration)]
    pub backoff_base: Duration,
    /// Largest retry delay; also the longest Retry-After honoured.
    #[arg(long, env = "KELOS_HOOKS_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Tasks that completed longer ago than this are marked Skipped instead of notified (so
    /// installing into a cluster of old Tasks sends no flood).
    #[arg(long, env = "KELOS_HOOKS_MAX_AGE", default_value = "1h", value_parser = parse_duration)]
    pub max_age: Duration,
    /// Most delivery attempts in flight at once.
    #[arg(long, env = "KELOS_HOOKS_MAX_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,
    /// Most delivery attempts in flight to one host at once.
    #[arg(long, env = "KELOS_HOOKS_MAX_PER_HOST", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_host: u32,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KELOS_HOOKS_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(
        long,
        env = "KELOS_HOOKS_LEASE_NAME",
        default_value = "kelos-hooks-dispatcher"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (defaults to POD_NAMESPACE, else "default").
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (defaults to POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub lease_identity: Option<String>,
    /// How long a Lease is valid without renewal.
    #[arg(long, env = "KELOS_HOOKS_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often the leader renews the Lease.
    #[arg(long, env = "KELOS_HOOKS_LEASE_RENEW_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub lease_renew_interval: Duration,
    /// Disable leader election (single replica only: every replica would send).
    #[arg(long, env = "KELOS_HOOKS_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Address of the plain-HTTP server for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "KELOS_HOOKS_METRICS_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub metrics_listen: SocketAddr,
    /// How long SIGTERM waits for in-flight attempts before handing them to the next leader.
    #[arg(long, env = "KELOS_HOOKS_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Log format.
    #[arg(
        long,
        env = "KELOS_HOOKS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent_and_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "d",
            "run",
            "--allow-cidr",
            "127.0.0.0/8",
            "--allow-cidr",
            "10.0.0.1",
            "--max-attempts",
            "3",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.net.allow_cidr, ["127.0.0.0/8", "10.0.0.1"]);
        assert_eq!(run.max_attempts, 3);
        assert_eq!(run.request_timeout, Duration::from_secs(10));
        assert!(Cli::try_parse_from(["d", "run", "--max-attempts", "0"]).is_err());
        let cli = Cli::try_parse_from([
            "d",
            "send-test",
            "-n",
            "ns",
            "--spawner",
            "s",
            "--hook",
            "h",
        ])
        .unwrap();
        let Command::SendTest(t) = cli.command else {
            panic!("not send-test")
        };
        assert_eq!((t.namespace.as_str(), t.hook.as_deref()), ("ns", Some("h")));
        assert!(Cli::try_parse_from(["d", "send-test", "-n", "ns"]).is_err());
        let cli = Cli::try_parse_from(["d", "status", "-n", "ns"]).unwrap();
        assert!(matches!(cli.command, Command::Status(s) if s.limit == 20 && s.spawner.is_none()));
    }
}
