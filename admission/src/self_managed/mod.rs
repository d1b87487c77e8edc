//! Self-managed certificates (`serve --self-managed-certs`): the server keeps its CA and serving
//! certificate in a Secret, writes the serving pair to the files the TLS reloader serves, patches
//! the `caBundle` of the webhook configurations, and renews before expiry. Every replica runs
//! the same idempotent loop; the Secret (create / update with resourceVersion) is the only
//! coordination point.

pub mod ca_bundle;
mod controller;
pub mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kelos_hooks_certs::San;

use crate::cli::SelfManagedArgs;
use crate::error::{Error, Result};

pub use controller::run;
use secret::Wanted;

/// Everything the loop needs, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// Secret name.
    pub secret: String,
    /// Namespace of the Secret and Service.
    pub namespace: String,
    /// What the certificates must look like.
    pub wanted: Wanted,
    /// ValidatingWebhookConfiguration to patch.
    pub validating: Option<String>,
    /// MutatingWebhookConfiguration to patch.
    pub mutating: Option<String>,
    /// Time between checks.
    pub check_interval: Duration,
    /// Directory of the serving files.
    pub dir: PathBuf,
    /// Base name of the serving files (`NAME.crt`, `NAME.key`).
    pub name: String,
}

impl Config {
    /// Checks the flags; `cert_file`/`key_file` are where the serving pair is written.
    pub fn from_args(args: &SelfManagedArgs, cert_file: &Path, key_file: &Path) -> Result<Config> {
        let usage = |m: String| Error::Usage(format!("--self-managed-certs: {m}"));
        let namespace = args
            .namespace
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| usage("--cert-namespace (or POD_NAMESPACE) is required".into()))?;
        let service = args
            .service_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| usage("--service-name is required".into()))?;
        if args.secret.trim().is_empty() {
            return Err(usage("--cert-secret is empty".into()));
        }
        let sans = wanted_sans(&service, &namespace, &args.extra_sans).map_err(usage)?;
        for (flag, validity) in [
            ("--cert-validity", args.cert_validity),
            ("--ca-validity", args.ca_validity),
        ] {
            // Otherwise every check would renew again.
            if args.renew_before >= validity {
                return Err(usage(format!(
                    "--renew-before ({}) must be shorter than {flag} ({})",
                    secret::human(args.renew_before),
                    secret::human(validity)
                )));
            }
        }
        let (dir, name) = split_pair_paths(cert_file, key_file).map_err(usage)?;
        Ok(Config {
            secret: args.secret.clone(),
            wanted: Wanted {
                sans,
                common_name: format!("{service}.{namespace}.svc"),
                ca_common_name: format!("{service}-ca"),
                cert_validity: args.cert_validity,
                ca_validity: args.ca_validity,
                renew_before: args.renew_before,
            },
            namespace,
            validating: args.validating_webhook_config.clone(),
            mutating: args.mutating_webhook_config.clone(),
            check_interval: args.check_interval,
            dir,
            name,
        })
    }
}

/// NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local, then the extras; no duplicates.
pub fn wanted_sans(
    service: &str,
    namespace: &str,
    extra: &[String],
) -> std::result::Result<Vec<San>, String> {
    let mut out: Vec<San> = Vec::new();
    let names = [
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    for raw in names
        .iter()
        .chain(extra.iter())
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        let san: San = raw.parse().map_err(|e| format!("{e}"))?;
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// `DIR/NAME.crt` + `DIR/NAME.key` → (DIR, NAME): the shape `write_pair` writes atomically.
fn split_pair_paths(cert: &Path, key: &Path) -> std::result::Result<(PathBuf, String), String> {
    let shape_error = || {
        format!(
            "--tls-cert-file and --tls-key-file must be DIR/NAME.crt and DIR/NAME.key (got {} and {})",
            cert.display(),
            key.display()
        )
    };
    let dir = cert.parent().filter(|d| !d.as_os_str().is_empty());
    let stem = cert.file_name().and_then(|f| f.to_str());
    match (dir, stem.and_then(|s| s.strip_suffix(".crt"))) {
        (Some(dir), Some(name))
            if !name.is_empty()
                && kelos_hooks_certs::pair_paths(dir, name)
                    .is_ok_and(|(c, k)| c == cert && k == key) =>
        {
            Ok((dir.to_owned(), name.to_owned()))
        }
        _ => Err(shape_error()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sans_cover_the_service_names_and_extras() {
        let sans = wanted_sans(
            "hooks",
            "kelos",
            &["127.0.0.1".into(), "hooks".into(), " ".into()],
        )
        .unwrap();
        let shown: Vec<String> = sans.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "hooks",
                "hooks.kelos",
                "hooks.kelos.svc",
                "hooks.kelos.svc.cluster.local",
                "127.0.0.1"
            ]
        );
        assert!(wanted_sans("hooks", "kelos", &["a b".into()]).is_err());
        assert!(wanted_sans("Bad_Name", "kelos", &[]).is_err());
    }

    #[test]
    fn serving_files_must_be_a_pair() {
        assert_eq!(
            split_pair_paths(Path::new("/t/tls.crt"), Path::new("/t/tls.key")).unwrap(),
            (PathBuf::from("/t"), "tls".to_owned())
        );
        for (c, k) in [
            ("/t/tls.crt", "/u/tls.key"),
            ("/t/tls.pem", "/t/tls.key"),
            ("/t/a.crt", "/t/b.key"),
            ("tls.crt", "tls.key"),
        ] {
            assert!(split_pair_paths(Path::new(c), Path::new(k)).is_err(), "{c}");
        }
    }

    fn args(extra: &[&str]) -> SelfManagedArgs {
        use clap::Parser;
        let mut argv = vec!["kelos-hooks-admission", "serve", "--self-managed-certs"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Serve(a) => a.self_managed,
            _ => unreachable!(),
        }
    }

    #[test]
    fn config_needs_namespace_service_and_a_sane_renewal_window() {
        let (c, k) = (Path::new("/t/tls.crt"), Path::new("/t/tls.key"));
        let ok = args(&["--cert-namespace", "ns", "--service-name", "svc"]);
        let config = Config::from_args(&ok, c, k).unwrap();
        assert_eq!(config.wanted.common_name, "svc.ns.svc");
        assert_eq!(config.wanted.sans.len(), 4);
        let err = |a: &[&str]| Config::from_args(&args(a), c, k).unwrap_err().to_string();
        // POD_NAMESPACE may be set where the tests run; an explicit empty value still fails.
        assert!(err(&["--cert-namespace", "", "--service-name", "svc"]).contains("POD_NAMESPACE"));
        assert!(err(&["--cert-namespace", "ns"]).contains("--service-name"));
        assert!(
            err(&[
                "--cert-namespace",
                "ns",
                "--service-name",
                "svc",
                "--cert-validity",
                "10m",
                "--renew-before",
                "10m"
            ])
            .contains("--renew-before")
        );
    }
}
