//! Command line: `serve`, `validate`, `crds`. Every flag can also come from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// kelos's own identities, from kelos's chart: the controller's ServiceAccount (namespace
/// kelos-system) and the `kelos-spawner` ServiceAccount kelos creates in each spawner namespace.
pub const DEFAULT_KELOS_IDENTITIES: [&str; 2] = [
    "system:serviceaccount:kelos-system:kelos-controller",
    "system:serviceaccount:*:kelos-spawner",
];

/// Default identity allowed to change `kelos.dev/webhook-*` Task annotations.
pub const DEFAULT_DISPATCHER_IDENTITY: &str =
    "system:serviceaccount:kelos-hooks:kelos-hooks-dispatcher";

/// kelos-hooks admission server: validates TaskSpawner `spec.onCompletion`, copies a spawner's
/// hooks into its Tasks, and guards the Task annotations kelos-hooks owns.
#[derive(Debug, Parser)]
#[command(name = "kelos-hooks-admission", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission server (kubeconfig from KUBECONFIG or in-cluster).
    Serve(Box<ServeArgs>),
    /// Check TaskSpawner manifests offline with the same rules (exit 0 valid, 1 invalid, 2 error).
    Validate(ValidateArgs),
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds,
    /// Manage what `serve --extend-kelos-crd` adds to kelos's TaskSpawner CRD.
    #[command(subcommand)]
    CrdExtension(CrdExtensionCommand),
}

/// `crd-extension` subcommands.
#[derive(Debug, Subcommand)]
pub enum CrdExtensionCommand {
    /// Take kelos-hooks' `spec.onCompletion` schema out of kelos's TaskSpawner CRD (uninstall; the
    /// chart's post-delete hook). Stored hooks stay in etcd but are no longer served. Run it once
    /// no admission server with --extend-kelos-crd runs, or it puts the schema back.
    Remove(RemoveArgs),
}

/// `crd-extension remove` flags.
#[derive(Clone, Debug, Args)]
pub struct RemoveArgs {
    /// Keep watching this long after removing and remove again if an admission server still
    /// shutting down put the schema back (0s: remove once).
    #[arg(long, env = "KELOS_HOOKS_SETTLE", default_value = "0s", value_parser = parse_duration)]
    pub settle: Duration,
}

pub use kelos_hooks_runtime::LogFormat;

/// Flags shared by `serve` and `validate`.
#[derive(Clone, Debug, Default, Args)]
pub struct PolicyArgs {
    /// CIDR whose addresses webhook URLs may use even though they are in a blocked range
    /// (repeatable; keep equal to the dispatcher's list). Env: comma-separated.
    #[arg(
        long = "allow-cidr",
        env = "KELOS_HOOKS_ALLOW_CIDR",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub allow_cidr: Vec<String>,
}

/// `serve` flags.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "KELOS_HOOKS_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP /healthz, /readyz and /metrics listener.
    #[arg(
        long,
        env = "KELOS_HOOKS_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,
    /// PEM serving certificate (chain) file; re-read when it changes. With
    /// --self-managed-certs this is where the server WRITES its certificate. [default:
    /// /etc/kelos-hooks/tls/tls.crt, or /tmp/kelos-hooks-tls/tls.crt with --self-managed-certs]
    #[arg(long, env = "KELOS_HOOKS_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key file of the serving certificate; re-read when it changes. With
    /// --self-managed-certs this is where the server WRITES its key (same directory as the
    /// certificate, same base name, `.key`). [default: /etc/kelos-hooks/tls/tls.key, or
    /// /tmp/kelos-hooks-tls/tls.key with --self-managed-certs]
    #[arg(long, env = "KELOS_HOOKS_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// How often to look for a changed certificate/key (e.g. 5s, 500ms, 1m).
    #[arg(long, env = "KELOS_HOOKS_CERT_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// Identity (username) allowed to change `kelos.dev/webhook-*` Task annotations (repeatable;
    /// env comma-separated).
    #[arg(
        long = "dispatcher-identity",
        env = "KELOS_HOOKS_DISPATCHER_IDENTITY",
        value_delimiter = ',',
        default_value = DEFAULT_DISPATCHER_IDENTITY,
        value_name = "USERNAME"
    )]
    pub dispatcher_identity: Vec<String>,
    /// Log format.
    #[arg(long, env = "KELOS_HOOKS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// On SIGTERM/SIGINT: time between reporting not-ready and closing the listener, so load
    /// balancers stop sending new requests first.
    #[arg(long, env = "KELOS_HOOKS_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Longest wait for in-flight requests once the listener is closed.
    #[arg(long, env = "KELOS_HOOKS_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Timeout of the one direct TaskSpawner read made when the cache does not know a spawner yet.
    #[arg(long, env = "KELOS_HOOKS_LOOKUP_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub lookup_timeout: Duration,
    /// Usernames of kelos's own components (repeatable; env comma-separated). Their TaskSpawner
    /// UPDATEs without `spec.onCompletion` (kelos's Go types lack it) get the stored hooks back.
    /// `*` as a whole `:`-separated segment matches any one segment.
    #[arg(
        long = "kelos-identity",
        env = "KELOS_HOOKS_KELOS_IDENTITY",
        value_delimiter = ',',
        default_values_t = DEFAULT_KELOS_IDENTITIES.map(String::from),
        value_name = "USERNAME"
    )]
    pub kelos_identity: Vec<String>,
    /// Keep `spec.onCompletion` declared in kelos's TaskSpawner CRD (v1alpha2; in v1alpha1 a rule
    /// that refuses it with a clear message): added when missing, under the field manager
    /// kelos-hooks-admission, again after every kelos install or upgrade replaces the CRD. Never
    /// replaces an `onCompletion` kelos declares itself.
    #[arg(long, env = "KELOS_HOOKS_EXTEND_KELOS_CRD", default_value_t = false)]
    pub extend_kelos_crd: bool,
    /// Blocked-range exceptions.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Self-managed certificates.
    #[command(flatten)]
    pub self_managed: SelfManagedArgs,
}

/// Default serving certificate/key files when certificates come from a mounted Secret.
const MOUNTED_TLS_DIR: &str = "/etc/kelos-hooks/tls";
/// Default serving certificate/key files when the server manages its own certificates.
const SELF_MANAGED_TLS_DIR: &str = "/tmp/kelos-hooks-tls";

impl ServeArgs {
    /// The serving certificate file (the default depends on the certificate mode).
    pub fn cert_file(&self) -> PathBuf {
        self.tls_cert_file
            .clone()
            .unwrap_or_else(|| self.default_tls_dir().join("tls.crt"))
    }

    /// The serving key file (the default depends on the certificate mode).
    pub fn key_file(&self) -> PathBuf {
        self.tls_key_file
            .clone()
            .unwrap_or_else(|| self.default_tls_dir().join("tls.key"))
    }

    fn default_tls_dir(&self) -> PathBuf {
        PathBuf::from(if self.self_managed.enabled {
            SELF_MANAGED_TLS_DIR
        } else {
            MOUNTED_TLS_DIR
        })
    }
}

/// `serve` flags of the self-managed certificate mode: the server keeps its CA and serving
/// certificate in a Secret, patches the webhook configurations' `caBundle`, and rotates.
#[derive(Clone, Debug, Args)]
pub struct SelfManagedArgs {
    /// Create and rotate the CA and serving certificate in a Secret (--cert-secret), write them
    /// to --tls-cert-file/--tls-key-file, and patch the caBundle of the webhook configurations.
    #[arg(
        long = "self-managed-certs",
        env = "KELOS_HOOKS_SELF_MANAGED_CERTS",
        default_value_t = false
    )]
    pub enabled: bool,
    /// Secret (type kubernetes.io/tls; keys tls.crt, tls.key, ca.crt, ca.key) holding the CA
    /// and serving certificate.
    #[arg(
        long = "cert-secret",
        env = "KELOS_HOOKS_CERT_SECRET",
        default_value = "kelos-hooks-admission-tls",
        value_name = "NAME"
    )]
    pub secret: String,
    /// Namespace of --cert-secret and of the Service; required with --self-managed-certs.
    #[arg(long = "cert-namespace", env = "POD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Service in front of the admission server; the certificate names NAME, NAME.NS,
    /// NAME.NS.svc and NAME.NS.svc.cluster.local. Required with --self-managed-certs.
    #[arg(
        long = "service-name",
        env = "KELOS_HOOKS_SERVICE_NAME",
        value_name = "NAME"
    )]
    pub service_name: Option<String>,
    /// Additional subject alternative name (DNS name or IP address) of the serving certificate
    /// (repeatable; env comma-separated), e.g. 127.0.0.1 for local runs.
    #[arg(
        long = "cert-extra-san",
        env = "KELOS_HOOKS_CERT_EXTRA_SAN",
        value_delimiter = ',',
        value_name = "SAN"
    )]
    pub extra_sans: Vec<String>,
    /// ValidatingWebhookConfiguration whose every webhook gets the CA bundle (retried until it
    /// exists).
    #[arg(
        long = "validating-webhook-config",
        env = "KELOS_HOOKS_VALIDATING_WEBHOOK_CONFIG",
        value_name = "NAME"
    )]
    pub validating_webhook_config: Option<String>,
    /// MutatingWebhookConfiguration whose every webhook gets the CA bundle (retried until it
    /// exists).
    #[arg(
        long = "mutating-webhook-config",
        env = "KELOS_HOOKS_MUTATING_WEBHOOK_CONFIG",
        value_name = "NAME"
    )]
    pub mutating_webhook_config: Option<String>,
    /// Lifetime of each serving certificate (e.g. 365d, 90d, 10m).
    #[arg(long = "cert-validity", env = "KELOS_HOOKS_CERT_VALIDITY", default_value = "365d", value_parser = parse_positive_duration)]
    pub cert_validity: Duration,
    /// Lifetime of the CA.
    #[arg(long = "ca-validity", env = "KELOS_HOOKS_CA_VALIDITY", default_value = "3650d", value_parser = parse_positive_duration)]
    pub ca_validity: Duration,
    /// Renew a certificate (serving or CA) once it has less than this left; must be shorter
    /// than both validities.
    #[arg(long = "renew-before", env = "KELOS_HOOKS_RENEW_BEFORE", default_value = "30d", value_parser = parse_positive_duration)]
    pub renew_before: Duration,
    /// How often the Secret and caBundle are re-checked (failures retry sooner).
    #[arg(long = "cert-check-interval", env = "KELOS_HOOKS_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = parse_positive_duration)]
    pub check_interval: Duration,
}

/// `validate` flags.
#[derive(Clone, Debug, Args)]
pub struct ValidateArgs {
    /// Manifest file(s), multi-document YAML or JSON; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1.., value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also say which documents were skipped (not TaskSpawners) and which passed.
    #[arg(short, long, env = "KELOS_HOOKS_VERBOSE")]
    pub verbose: bool,
    /// Blocked-range exceptions.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

use kelos_hooks_shared::duration::{
    parse as parse_duration, parse_positive as parse_positive_duration,
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The flags take the shared syntax (shared::duration has the parser's own tests).
    #[test]
    fn duration_flags() {
        let serve = |extra: &[&str]| {
            let mut argv = vec!["kelos-hooks-admission", "serve"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|c| match c.command {
                Command::Serve(a) => a,
                _ => unreachable!(),
            })
        };
        let a = serve(&["--shutdown-delay", "0s", "--drain-timeout", "2m30s"]).unwrap();
        assert_eq!(a.shutdown_delay, Duration::ZERO);
        assert_eq!(a.drain_timeout, Duration::from_secs(150));
        let a = serve(&["--self-managed-certs", "--cert-validity", "90d"]).unwrap();
        assert_eq!(
            a.self_managed.cert_validity,
            Duration::from_secs(90 * 86_400)
        );
        assert!(serve(&["--cert-validity", "0s"]).is_err());
        assert!(serve(&["--drain-timeout", "5x"]).is_err());
    }

    #[test]
    fn tls_file_defaults_follow_the_mode() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["kelos-hooks-admission", "serve"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Serve(a) => a,
                _ => unreachable!(),
            }
        };
        let mounted = parse(&[]);
        assert_eq!(
            mounted.cert_file(),
            PathBuf::from("/etc/kelos-hooks/tls/tls.crt")
        );
        assert!(!mounted.self_managed.enabled);
        let own = parse(&[
            "--self-managed-certs",
            "--cert-extra-san",
            "127.0.0.1,localhost",
        ]);
        assert_eq!(
            own.cert_file(),
            PathBuf::from("/tmp/kelos-hooks-tls/tls.crt")
        );
        assert_eq!(
            own.key_file(),
            PathBuf::from("/tmp/kelos-hooks-tls/tls.key")
        );
        assert_eq!(own.self_managed.secret, "kelos-hooks-admission-tls");
        assert_eq!(own.self_managed.extra_sans, ["127.0.0.1", "localhost"]);
        assert_eq!(
            own.self_managed.renew_before,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(own.self_managed.check_interval, Duration::from_secs(3600));
        let explicit = parse(&["--self-managed-certs", "--tls-cert-file", "/x/a.crt"]);
        assert_eq!(explicit.cert_file(), PathBuf::from("/x/a.crt"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
