//! The `kelos-hooks-certs` binary end to end, in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use kelos_hooks_certs::{Issued, not_after};
use x509_parser::pem::parse_x509_pem;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kelos-hooks-certs"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Exit code 1, a message on stderr, no panic.
fn fails(args: &[&str], expect: &str) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains(expect), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn pair(dir: &Path, name: &str) -> Issued {
    Issued {
        cert_pem: read(&dir.join(format!("{name}.crt"))),
        key_pem: read(&dir.join(format!("{name}.key"))),
    }
}

#[tokio::test]
async fn ca_serving_client_keypair_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let out = tmp.path().join("out");
    let (ca_s, out_s) = (ca_dir.to_str().unwrap(), out.to_str().unwrap());

    ok(&["ca", "--out", ca_s, "--cn", "test-ca", "--days", "30"]);
    assert_eq!(mode(&ca_dir.join("ca.crt")), 0o644);
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    let ca_pem = read(&ca_dir.join("ca.crt"));

    ok(&[
        "serving",
        "--ca-dir",
        ca_s,
        "--out",
        out_s,
        "--name",
        "admission",
        "--san",
        "127.0.0.1",
        "--san",
        "localhost",
        "--days",
        "7",
    ]);
    assert_eq!(mode(&out.join("admission.crt")), 0o644);
    assert_eq!(mode(&out.join("admission.key")), 0o600);
    let server = pair(&out, "admission");
    let end = not_after(&server.cert_pem).unwrap();
    let expected = std::time::SystemTime::now() + std::time::Duration::from_secs(7 * 86_400);
    assert!(end <= expected && end + std::time::Duration::from_secs(120) > expected);

    ok(&[
        "client",
        "--ca-dir",
        ca_s,
        "--out",
        out_s,
        "--name",
        "admin",
        "--cn",
        "admin",
        "--org",
        "system:masters",
        "--org",
        "team",
    ]);
    assert_eq!(mode(&out.join("admin.key")), 0o600);
    let client = pair(&out, "admin");
    let (_, pem) = parse_x509_pem(client.cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let orgs: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(orgs, ["system:masters", "team"]);

    // The files from the CLI complete a mutual-TLS handshake for IP 127.0.0.1 and localhost.
    for name in ["127.0.0.1", "localhost"] {
        let outcome = common::handshake(&ca_pem, &server, name, Some(&ca_pem), Some(&client)).await;
        assert!(outcome.ok(), "{name}: {outcome:?}");
    }

    ok(&["keypair", "--out", out_s, "--name", "sa"]);
    assert_eq!(mode(&out.join("sa.key")), 0o600);
    assert_eq!(mode(&out.join("sa.pub")), 0o644);
    assert!(read(&out.join("sa.key")).starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(read(&out.join("sa.pub")).starts_with("-----BEGIN PUBLIC KEY-----\n"));

    // Re-issuing replaces the pair (renewal).
    ok(&[
        "serving",
        "--ca-dir",
        ca_s,
        "--out",
        out_s,
        "--name",
        "admission",
        "--san",
        "127.0.0.1",
    ]);
    assert_ne!(pair(&out, "admission").key_pem, server.key_pem);

    // OpenSSL agrees, when it is installed.
    if let Ok(v) = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca_dir.join("ca.crt"))
        .arg(out.join("admission.crt"))
        .arg(out.join("admin.crt"))
        .output()
    {
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    }
}

#[test]
fn existing_ca_and_keypair_are_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    ok(&["ca", "--out", dir]);
    let before = read(&tmp.path().join("ca.crt"));
    fails(&["ca", "--out", dir], "already exists");
    assert_eq!(read(&tmp.path().join("ca.crt")), before);
    ok(&["ca", "--out", dir, "--force"]);
    assert_ne!(read(&tmp.path().join("ca.crt")), before);

    ok(&["keypair", "--out", dir, "--name", "sa"]);
    let key = read(&tmp.path().join("sa.key"));
    fails(&["keypair", "--out", dir, "--name", "sa"], "already exists");
    assert_eq!(read(&tmp.path().join("sa.key")), key);
    ok(&["keypair", "--out", dir, "--name", "sa", "--force"]);
    assert_ne!(read(&tmp.path().join("sa.key")), key);
}

#[test]
fn errors_exit_1_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let missing = tmp.path().join("nope");
    let missing = missing.to_str().unwrap();

    fails(
        &[
            "serving",
            "--ca-dir",
            missing,
            "--out",
            dir,
            "--name",
            "s",
            "--san",
            "localhost",
        ],
        "ca.crt",
    );
    ok(&["ca", "--out", dir]);
    fails(
        &[
            "serving", "--ca-dir", dir, "--out", dir, "--name", "s", "--san", "bad_name",
        ],
        "bad_name",
    );
    fails(
        &["serving", "--ca-dir", dir, "--out", dir, "--name", "s"],
        "--san",
    );
    fails(
        &[
            "serving",
            "--ca-dir",
            dir,
            "--out",
            dir,
            "--name",
            "../s",
            "--san",
            "localhost",
        ],
        "invalid file name",
    );
    fails(
        &[
            "client", "--ca-dir", dir, "--out", dir, "--name", "c", "--cn", "u", "--days", "0",
        ],
        "--days",
    );
    fails(
        &[
            "client", "--ca-dir", dir, "--out", dir, "--name", "c", "--cn", "",
        ],
        "common name",
    );
    fails(&["frobnicate"], "frobnicate");
    fails(&[], "Usage");

    // A corrupt CA key.
    std::fs::write(tmp.path().join("ca.key"), "not a key").unwrap();
    fails(
        &[
            "client", "--ca-dir", dir, "--out", dir, "--name", "c", "--cn", "u",
        ],
        "ca.key",
    );
}

#[test]
fn help_documents_every_flag() {
    let out = ok(&["--help"]);
    let top = String::from_utf8_lossy(&out.stdout).to_string();
    for sub in ["ca", "serving", "client", "keypair"] {
        assert!(top.contains(sub), "{top}");
    }
    for (sub, flags) in [
        ("ca", &["--out", "--cn", "--days", "--force"][..]),
        (
            "serving",
            &["--ca-dir", "--out", "--name", "--san", "--cn", "--days"][..],
        ),
        (
            "client",
            &["--ca-dir", "--out", "--name", "--cn", "--org", "--days"][..],
        ),
        ("keypair", &["--out", "--name", "--force"][..]),
    ] {
        let help = String::from_utf8_lossy(&ok(&[sub, "--help"]).stdout).to_string();
        for flag in flags {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{sub} {flag}: {help}"));
            // Every flag line carries a description after the flag and value name.
            assert!(line.split_whitespace().count() > 2, "{sub}: {line}");
        }
    }
}
