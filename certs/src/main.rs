//! `kelos-hooks-certs`: create a CA, serving and client certificates, and service-account key
//! pairs as files, for local runs, tests and the chart's self-managed mode.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kelos_hooks_certs::{
    CA_NAME, Ca, Error, Issued, San, generate_key_pair, load_ca, pair_paths, write_key_pair,
    write_pair,
};

/// Certificate tooling for kelos-hooks. Keys are ECDSA P-256 (PKCS#8 PEM); private keys are
/// written with mode 0600, certificates and public keys with 0644; every file is replaced
/// atomically.
#[derive(Debug, Parser)]
#[command(name = "kelos-hooks-certs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a self-signed CA: OUT/ca.crt and OUT/ca.key.
    Ca {
        /// Directory to write ca.crt and ca.key into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Common name of the CA certificate.
        #[arg(long, value_name = "NAME", default_value = "kelos-hooks-ca")]
        cn: String,
        /// Validity in days.
        #[arg(long, value_name = "N", default_value_t = 3650, value_parser = days())]
        days: u32,
        /// Replace an existing CA in OUT (every certificate it issued stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Issue a TLS serving certificate (serverAuth) signed by the CA: OUT/NAME.crt, OUT/NAME.key.
    Serving {
        #[command(flatten)]
        issue: IssueArgs,
        /// Subject alternative name: an IP address or a DNS name. Repeat for several, e.g.
        /// --san 127.0.0.1 --san localhost --san kelos-hooks.kelos-system.svc
        #[arg(long, value_name = "IP|DNS", required = true)]
        san: Vec<San>,
        /// Common name of the certificate (clients verify the SANs, not this). Default: the
        /// first --san.
        #[arg(long, value_name = "NAME")]
        cn: Option<String>,
        /// Validity in days (never past the CA's expiry).
        #[arg(long, value_name = "N", default_value_t = 365, value_parser = days())]
        days: u32,
    },
    /// Issue a TLS client certificate (clientAuth) signed by the CA: OUT/NAME.crt, OUT/NAME.key.
    /// Kubernetes reads CN as the user name and each O as a group.
    Client {
        #[command(flatten)]
        issue: IssueArgs,
        /// Common name: the Kubernetes user name, e.g. kelos-hooks-admin.
        #[arg(long, value_name = "USER")]
        cn: String,
        /// Organization (O=): a Kubernetes group, e.g. system:masters. Repeat for several.
        #[arg(long, value_name = "GROUP")]
        org: Vec<String>,
        /// Validity in days (never past the CA's expiry).
        #[arg(long, value_name = "N", default_value_t = 365, value_parser = days())]
        days: u32,
    },
    /// Create an ECDSA P-256 key pair for service-account tokens: OUT/NAME.key (PKCS#8 private
    /// key, for kube-apiserver --service-account-signing-key-file) and OUT/NAME.pub (public key,
    /// for --service-account-key-file).
    Keypair {
        /// Directory to write NAME.key and NAME.pub into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Base name of the files.
        #[arg(long, value_name = "NAME", default_value = "sa")]
        name: String,
        /// Replace an existing key pair (tokens signed with the old key stop verifying).
        #[arg(long)]
        force: bool,
    },
}

/// Where the CA is and where the issued pair goes.
#[derive(Debug, Args)]
struct IssueArgs {
    /// Directory holding the CA (ca.crt and ca.key, as written by the `ca` command).
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// Directory to write NAME.crt and NAME.key into (created if missing; existing files are
    /// replaced, which is how a certificate is renewed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Base name of the files: plain name of letters, digits, '.', '_', '-'.
    #[arg(long, value_name = "NAME")]
    name: String,
}

fn days() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=36_500)
}

fn days_to_duration(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 24 * 60 * 60)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 1 like every
            // other error of this tool.
            let code = if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    match run(cli.command) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kelos-hooks-certs: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<String, Error> {
    match command {
        Command::Ca {
            out,
            cn,
            days,
            force,
        } => {
            let (cert_path, key_path) = pair_paths(&out, CA_NAME)?;
            if !force {
                refuse_existing(&[&cert_path, &key_path])?;
            }
            let ca = Ca::generate(&cn, days_to_duration(days))?;
            let issued = Issued {
                cert_pem: ca.cert_pem().to_string(),
                key_pem: ca.key_pem(),
            };
            write_pair(&out, CA_NAME, &issued)?;
            Ok(format!(
                "wrote {} and {}",
                cert_path.display(),
                key_path.display()
            ))
        }
        Command::Serving {
            issue,
            san,
            cn,
            days,
        } => {
            let cn = cn.unwrap_or_else(|| san.first().map(San::to_string).unwrap_or_default());
            let ca = load_ca(&issue.ca_dir)?;
            let issued = ca.issue_server(&cn, &san, days_to_duration(days))?;
            write_issued(&issue, &issued)
        }
        Command::Client {
            issue,
            cn,
            org,
            days,
        } => {
            let ca = load_ca(&issue.ca_dir)?;
            let issued = ca.issue_client(&cn, &org, days_to_duration(days))?;
            write_issued(&issue, &issued)
        }
        Command::Keypair { out, name, force } => {
            let (_, key_path) = pair_paths(&out, &name)?;
            let pub_path = out.join(format!("{name}.pub"));
            if !force {
                refuse_existing(&[&key_path, &pub_path])?;
            }
            write_key_pair(&out, &name, &generate_key_pair()?)?;
            Ok(format!(
                "wrote {} and {}",
                key_path.display(),
                pub_path.display()
            ))
        }
    }
}

fn write_issued(issue: &IssueArgs, issued: &Issued) -> Result<String, Error> {
    let (cert_path, key_path) = pair_paths(&issue.out, &issue.name)?;
    write_pair(&issue.out, &issue.name, issued)?;
    Ok(format!(
        "wrote {} and {}",
        cert_path.display(),
        key_path.display()
    ))
}

fn refuse_existing(paths: &[&Path]) -> Result<(), Error> {
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(existing) => Err(Error::AlreadyExists(existing.to_path_buf())),
        None => Ok(()),
    }
}
