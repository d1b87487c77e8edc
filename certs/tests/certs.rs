//! Certificate contents, reloading, expiry, bad input and file writing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use kelos_hooks_certs::{Ca, Error, San, load_ca, not_after, write_pair};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::pem::parse_x509_pem;

const DAY: Duration = Duration::from_secs(86_400);

fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    f(&cert)
}

fn within(actual: SystemTime, expected: SystemTime, slack: Duration) -> bool {
    let diff = match actual.duration_since(expected) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    diff <= slack
}

#[test]
fn ca_is_a_ca_with_signing_usages_and_backdated_start() {
    let ca = Ca::generate("kelos-hooks-ca", 10 * DAY).unwrap();
    with_cert(ca.cert_pem(), |cert| {
        assert_eq!(cert.subject().to_string(), "CN=kelos-hooks-ca");
        assert_eq!(cert.subject(), cert.issuer());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let not_before = cert.validity().not_before.timestamp();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - not_before) >= 4 * 60 && (now - not_before) <= 6 * 60);
    });
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn server_cert_has_sans_server_auth_and_random_serial() {
    let ca = Ca::generate("ca", 10 * DAY).unwrap();
    let sans: Vec<San> = ["127.0.0.1", "svc.ns.svc"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let a = ca.issue_server("svc", &sans, DAY).unwrap();
    let b = ca.issue_server("svc", &sans, DAY).unwrap();
    assert_ne!(a.key_pem, b.key_pem);
    let serial_a = with_cert(&a.cert_pem, |c| c.raw_serial().to_vec());
    let serial_b = with_cert(&b.cert_pem, |c| c.raw_serial().to_vec());
    assert_ne!(serial_a, serial_b);
    with_cert(&a.cert_pem, |cert| {
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["IPAddress(7f:00:00:01)", "DNSName(svc.ns.svc)"]);
        assert_eq!(cert.issuer().to_string(), "CN=ca");
    });
}

#[test]
fn client_cert_subject_has_every_org() {
    let ca = Ca::generate("ca", 10 * DAY).unwrap();
    let orgs = vec!["system:masters".to_string(), "kelos:admins".to_string()];
    let issued = ca.issue_client("alice", &orgs, DAY).unwrap();
    with_cert(&issued.cert_pem, |cert| {
        let subject = cert.subject();
        let got: Vec<&str> = subject
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(got, ["system:masters", "kelos:admins"]);
        let cn: Vec<&str> = subject
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["alice"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        // The re-signed certificate still carries the authority key identifier.
        assert!(cert.extensions().iter().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
    });
}

#[test]
fn not_after_is_now_plus_validity_and_capped_by_the_ca() {
    let ca = Ca::generate("ca", 10 * DAY).unwrap();
    let now = SystemTime::now();
    let ca_end = not_after(ca.cert_pem()).unwrap();
    assert!(within(ca_end, now + 10 * DAY, Duration::from_secs(60)));

    let sans = ["localhost".parse().unwrap()];
    let leaf = ca.issue_server("l", &sans, 2 * DAY).unwrap();
    assert!(within(
        not_after(&leaf.cert_pem).unwrap(),
        now + 2 * DAY,
        Duration::from_secs(60)
    ));
    let long = ca.issue_server("l", &sans, 100 * DAY).unwrap();
    assert_eq!(not_after(&long.cert_pem).unwrap(), ca_end);
    let client = ca.issue_client("u", &[], 100 * DAY).unwrap();
    assert_eq!(not_after(&client.cert_pem).unwrap(), ca_end);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let ca = Ca::generate("ca", DAY).unwrap();
    let other = Ca::generate("other", DAY).unwrap();
    let leaf = ca
        .issue_server("l", &["localhost".parse().unwrap()], DAY)
        .unwrap();

    assert!(matches!(
        Ca::from_pem("garbage", &ca.key_pem()),
        Err(Error::InvalidCertificate(_))
    ));
    assert!(matches!(
        Ca::from_pem(ca.cert_pem(), "garbage"),
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        Ca::from_pem(ca.cert_pem(), ""),
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        Ca::from_pem(ca.cert_pem(), &other.key_pem()),
        Err(Error::KeyMismatch)
    ));
    assert!(matches!(
        Ca::from_pem(&leaf.cert_pem, &leaf.key_pem),
        Err(Error::NotCa)
    ));
    // A truncated certificate.
    let truncated: String = ca.cert_pem().lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(Ca::from_pem(&truncated, &ca.key_pem()).is_err());
    assert!(not_after("").is_err());
    assert!(not_after(&ca.key_pem()).is_err());

    assert!(matches!(
        ca.issue_server("x", &[], DAY),
        Err(Error::InvalidSan { .. })
    ));
    assert!(matches!(
        ca.issue_server("", &["localhost".parse().unwrap()], DAY),
        Err(Error::InvalidSubject(_))
    ));
    assert!(matches!(
        ca.issue_client("u", &[String::new()], DAY),
        Err(Error::InvalidSubject(_))
    ));
    assert!(matches!(
        ca.issue_client("u", &[], Duration::ZERO),
        Err(Error::InvalidValidity(_))
    ));
    assert!(matches!(
        Ca::generate("ca", Duration::MAX),
        Err(Error::InvalidValidity(_))
    ));
    assert!("bad_name".parse::<San>().is_err());
}

#[test]
fn write_pair_sets_modes_replaces_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/certs");
    let ca = Ca::generate("ca", DAY).unwrap();
    let first = ca
        .issue_server("s", &["localhost".parse().unwrap()], DAY)
        .unwrap();
    write_pair(&out, "serving", &first).unwrap();
    let second = ca
        .issue_server("s", &["localhost".parse().unwrap()], DAY)
        .unwrap();
    write_pair(&out, "serving", &second).unwrap();

    let crt = out.join("serving.crt");
    let key = out.join("serving.key");
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), second.cert_pem);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), second.key_pem);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&crt), 0o644);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        2,
        "no temp files left"
    );

    assert!(matches!(
        write_pair(&out, "../escape", &second),
        Err(Error::InvalidName(_))
    ));

    // The CA written the same way reloads from its directory.
    let ca_pair = kelos_hooks_certs::Issued {
        cert_pem: ca.cert_pem().to_string(),
        key_pem: ca.key_pem(),
    };
    write_pair(&out, "ca", &ca_pair).unwrap();
    let reloaded = load_ca(&out).unwrap();
    assert_eq!(reloaded.cert_pem(), ca.cert_pem());
    assert!(matches!(
        load_ca(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}
