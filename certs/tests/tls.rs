//! Issued certificates complete real TLS handshakes (rustls/webpki) against the CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::handshake;
use kelos_hooks_certs::{Ca, Issued, San};

const DAY: Duration = Duration::from_secs(86_400);

fn sans(list: &[&str]) -> Vec<San> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn server_pair(ca: &Ca) -> Issued {
    ca.issue_server(
        "kelos-hooks",
        &sans(&[
            "127.0.0.1",
            "kelos-hooks.kelos-system.svc",
            "localhost",
            "::1",
        ]),
        DAY,
    )
    .unwrap()
}

#[tokio::test]
async fn server_cert_verifies_for_ip_and_dns_names() {
    let ca = Ca::generate("test-ca", 30 * DAY).unwrap();
    let pair = server_pair(&ca);
    for name in [
        "127.0.0.1",
        "kelos-hooks.kelos-system.svc",
        "localhost",
        "::1",
    ] {
        let outcome = handshake(ca.cert_pem(), &pair, name, None, None).await;
        assert!(outcome.ok(), "{name}: {outcome:?}");
    }
}

#[tokio::test]
async fn server_cert_is_rejected_for_other_names() {
    let ca = Ca::generate("test-ca", 30 * DAY).unwrap();
    let pair = server_pair(&ca);
    for name in ["127.0.0.2", "other.example", "kelos-hooks.other.svc"] {
        let outcome = handshake(ca.cert_pem(), &pair, name, None, None).await;
        let err = outcome.client.expect_err(name);
        assert!(err.contains("not valid for name"), "{name}: {err}");
    }
}

#[tokio::test]
async fn server_cert_is_rejected_by_a_client_trusting_another_ca() {
    let ca = Ca::generate("test-ca", 30 * DAY).unwrap();
    let other = Ca::generate("other-ca", 30 * DAY).unwrap();
    let pair = server_pair(&ca);
    let outcome = handshake(other.cert_pem(), &pair, "127.0.0.1", None, None).await;
    let err = outcome.client.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn client_cert_passes_mutual_tls() {
    let ca = Ca::generate("test-ca", 30 * DAY).unwrap();
    let pair = server_pair(&ca);
    let client = ca
        .issue_client(
            "admin",
            &["system:masters".to_string(), "team".to_string()],
            DAY,
        )
        .unwrap();
    let outcome = handshake(
        ca.cert_pem(),
        &pair,
        "127.0.0.1",
        Some(ca.cert_pem()),
        Some(&client),
    )
    .await;
    assert!(outcome.ok(), "{outcome:?}");
}

#[tokio::test]
async fn key_usages_are_enforced() {
    let ca = Ca::generate("test-ca", 30 * DAY).unwrap();
    let server = server_pair(&ca);
    let client = ca.issue_client("admin", &[], DAY).unwrap();
    // A serving certificate (serverAuth only) is refused as a client certificate.
    let outcome = handshake(
        ca.cert_pem(),
        &server,
        "127.0.0.1",
        Some(ca.cert_pem()),
        Some(&server),
    )
    .await;
    assert!(!outcome.ok(), "{outcome:?}");
    let err = outcome.server.unwrap_err();
    assert!(
        err.contains("does not allow extended key usage for client authentication"),
        "{err}"
    );
    // A client certificate (clientAuth only, no SAN) is refused as a serving certificate.
    let outcome = handshake(ca.cert_pem(), &client, "admin", None, None).await;
    assert!(outcome.client.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn reloaded_ca_issues_certs_that_verify_under_the_original() {
    let ca = Ca::generate("test-ca", 30 * DAY).unwrap();
    let reloaded = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    assert_eq!(reloaded.cert_pem(), ca.cert_pem());
    let pair = server_pair(&reloaded);
    let client = reloaded
        .issue_client("admin", &["system:masters".to_string()], DAY)
        .unwrap();
    let outcome = handshake(
        ca.cert_pem(),
        &pair,
        "127.0.0.1",
        Some(ca.cert_pem()),
        Some(&client),
    )
    .await;
    assert!(outcome.ok(), "{outcome:?}");
    // And a pair issued before the reload still verifies alongside.
    let before = server_pair(&ca);
    let outcome = handshake(reloaded.cert_pem(), &before, "localhost", None, None).await;
    assert!(outcome.ok(), "{outcome:?}");
}
