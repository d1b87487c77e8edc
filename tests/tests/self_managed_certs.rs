//! Self-managed certificates on a real API server: the admission server creates its CA and
//! serving certificate in a Secret once, patches the `caBundle` of webhook configurations
//! registered without one (and the API server then trusts it), keeps the Secret across
//! restarts, renews the serving certificate before expiry from the same CA, and several replicas
//! share one Secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kelos_hooks_tests::admission_server::{
    admission_serve, ca_bundles, create_webhook_configs, delete_webhook_configs, probe,
    served_cert, server_log, spawn_logged, wait_ready,
};
use kelos_hooks_tests::kubectl::kubectl_apply;
use kelos_hooks_tests::metrics::sample;
use kelos_hooks_tests::tasks::spawner_manifest;
use kelos_hooks_tests::{Cluster, cluster, free_port};
use kube::api::{Api, PostParams};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const SECRET: &str = "kelos-hooks-admission-tls";

/// One test's namespace and webhook configurations (named after its unique label, scoped to
/// namespaces carrying that label, registered WITHOUT a caBundle).
struct Setup {
    label: String,
    ns: String,
    port: u16,
}

impl Setup {
    async fn new(c: &Cluster, test: &str) -> Result<Setup> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let label = format!("smc-{test}-{}", std::process::id());
        let ns = c.namespace(&label).await?;
        let setup = Setup {
            label,
            ns,
            port: free_port(),
        };
        setup.register(c).await?;
        Ok(setup)
    }

    fn webhook(&self, name: &str, path: &str, resource: &str, ops: &[&str], policy: &str) -> Value {
        let mut w = json!({
            "name": name,
            "clientConfig": {"url": format!("https://127.0.0.1:{}{path}", self.port)},
            "rules": [{"apiGroups": ["kelos.dev"], "apiVersions": ["v1alpha2"], "resources": [resource],
                       "operations": ops, "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kelos-hooks.dev/test": self.label}},
            "failurePolicy": policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        });
        if resource == "tasks" {
            w["objectSelector"] = json!({"matchExpressions": [{"key": "kelos.dev/taskspawner", "operator": "Exists"}]});
        }
        w
    }

    async fn register(&self, c: &Cluster) -> Result<()> {
        let client = c.client().await?;
        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": self.label},
            "webhooks": [
                self.webhook("taskspawners.validate.kelos-hooks.dev", "/validate/taskspawners",
                             "taskspawners", &["CREATE", "UPDATE"], "Fail"),
                self.webhook("tasks.validate.kelos-hooks.dev", "/validate/tasks", "tasks",
                             &["CREATE", "UPDATE"], "Ignore"),
            ]
        }))?;
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": self.label},
            "webhooks": [self.webhook("tasks.mutate.kelos-hooks.dev", "/mutate/tasks", "tasks",
                                      &["CREATE"], "Ignore")]
        }))?;
        create_webhook_configs(client, &validating, &mutating).await
    }

    async fn unregister(&self, c: &Cluster) -> Result<()> {
        delete_webhook_configs(c.client().await?, &self.label).await
    }

    /// Every `caBundle` of both configurations (decoded), in order.
    async fn ca_bundles(&self, c: &Cluster) -> Result<Vec<Option<Vec<u8>>>> {
        let client = c.client().await?;
        let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .get(&self.label)
            .await?;
        let m = Api::<MutatingWebhookConfiguration>::all(client)
            .get(&self.label)
            .await?;
        Ok(ca_bundles(&v, &m))
    }

    async fn secret(&self, c: &Cluster) -> Result<Secret> {
        Ok(Api::<Secret>::namespaced(c.client().await?, &self.ns)
            .get(SECRET)
            .await?)
    }

    /// Starts a server for this setup on `port` (the webhook port for the first one).
    async fn start(&self, c: &Cluster, port: u16, extra: &[&str]) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let probe_port = free_port();
        let mut cmd = admission_serve(c, port, probe_port, &dir.path().join("tls"));
        cmd.args(["--self-managed-certs", "--cert-namespace", &self.ns])
            .args(["--service-name", "kelos-hooks-admission"])
            .args(["--cert-extra-san", "127.0.0.1"])
            .args(["--validating-webhook-config", &self.label])
            .args(["--mutating-webhook-config", &self.label])
            .args(["--cert-reload-interval", "200ms"])
            .args(["--shutdown-delay", "0s", "--drain-timeout", "2s"])
            .args(extra)
            .env_remove("POD_NAMESPACE");
        let child = spawn_logged(cmd, dir.path())?;
        let mut server = Server {
            child: Some(child),
            port,
            probe_port,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Waits until the API server calls the webhook over TLS it trusts: a bad TaskSpawner is
    /// denied BY THE WEBHOOK ("denied the request"), not refused for an unreachable or untrusted
    /// endpoint.
    async fn wait_effective(&self, c: &Cluster, log: impl Fn() -> String) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = kubectl_apply(c, &self.ns, &bad_spawner(), &["--dry-run=server"]).await?;
            if !out.ok && out.stderr.contains("denied the request") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "webhook not trusted within 30s; last kubectl: {}\n{}",
                    out.stderr,
                    log()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// A bad TaskSpawner is refused with the field path; a good one is accepted (through the
    /// fail-closed webhook, so the API server reached and trusted it).
    async fn judged(&self, c: &Cluster, name: &str) -> Result<()> {
        let out = kubectl_apply(c, &self.ns, &bad_spawner(), &[]).await?;
        assert!(!out.ok, "bad spawner accepted: {}", out.stdout);
        assert!(
            out.stderr.contains("denied the request")
                && out
                    .stderr
                    .contains("spec.onCompletion.hooks[0].webhook.url"),
            "{}",
            out.stderr
        );
        let out = kubectl_apply(c, &self.ns, &good_spawner(name), &[]).await?;
        assert!(out.ok, "good spawner refused: {}", out.stderr);
        Ok(())
    }
}

struct Server {
    child: Option<Child>,
    port: u16,
    probe_port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn log(&self) -> String {
        server_log(self.dir.path())
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("tls/tls.crt")
    }

    async fn probe(&self, path: &str) -> Result<(u16, String)> {
        probe(self.probe_port, path).await
    }

    async fn metrics(&self) -> Result<String> {
        Ok(self.probe("/metrics").await?.1)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let dir = self.dir.path().to_owned();
        wait_ready(&mut self.child, self.probe_port, || server_log(&dir)).await
    }

    /// SIGTERM, then wait for the exit.
    async fn stop(&mut self) -> Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        let pid = child.id().context("no pid")?;
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
        assert!(status.success(), "{status}:\n{}", self.log());
        Ok(())
    }

    /// The leaf a fresh handshake gets, verified against `ca_pem` (a bundle).
    async fn served(&self, ca_pem: &[u8]) -> Result<CertificateDer<'static>> {
        served_cert(self.port, ca_pem).await
    }
}

fn data(s: &Secret, key: &str) -> Vec<u8> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

fn der(pem: &[u8]) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .expect("a certificate")
        .unwrap()
}

fn spawner(name: &str, url: &str) -> Value {
    let hooks = json!({"hooks": [{"name": "notify", "webhook": {"url": url}}]});
    spawner_manifest(name, hooks)
}

fn bad_spawner() -> Value {
    // Passes the CRD schema (https) but not the webhook (blocked address range).
    spawner("bad", "https://10.0.0.1/x")
}

fn good_spawner(name: &str) -> Value {
    spawner(name, "https://hooks.example.com/x")
}

#[tokio::test]
async fn secret_is_created_once_bundle_patched_and_stable_across_restarts() -> Result<()> {
    let c = cluster().await?;
    let setup = Setup::new(c, "create").await?;
    assert!(
        setup.ca_bundles(c).await?.iter().all(Option::is_none),
        "registered without caBundle"
    );
    let mut server = setup.start(c, setup.port, &[]).await?;

    let secret = setup.secret(c).await?;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    let ca = data(&secret, "ca.crt");
    let tls = data(&secret, "tls.crt");
    // Readiness came after the files were written, and they hold the Secret's certificate.
    assert_eq!(std::fs::read(server.cert_file())?, tls);
    assert_eq!(server.served(&ca).await?, der(&tls));
    // Every webhook entry of both configurations carries the CA.
    let bundles = setup.ca_bundles(c).await?;
    assert_eq!(bundles.len(), 3);
    assert!(
        bundles.iter().all(|b| b.as_deref() == Some(&ca[..])),
        "{bundles:?}"
    );
    let text = server.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"kelos_hooks_cert_secret_writes_total{action="create"} "#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"kelos_hooks_ca_bundle_patches_total{kind="validating"} "#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"kelos_hooks_ca_bundle_patches_total{kind="mutating"} "#
        ),
        1.0
    );
    // The API server trusts the patched caBundle: kubectl gets the webhook's verdict.
    setup.wait_effective(c, || server.log()).await?;
    setup.judged(c, "good-1").await?;
    let log = server.log();
    assert!(
        !log.contains("PRIVATE KEY"),
        "key material in the log:\n{log}"
    );

    // Restart (as after a helm upgrade): nothing is re-issued or re-patched.
    server.stop().await?;
    let version = secret.metadata.resource_version.clone();
    let mut server = setup.start(c, setup.port, &[]).await?;
    let again = setup.secret(c).await?;
    assert_eq!(again.metadata.resource_version, version);
    assert_eq!(data(&again, "tls.crt"), tls);
    assert_eq!(server.served(&ca).await?, der(&tls));
    let text = server.metrics().await?;
    assert!(!text.contains("cert_secret_writes_total{"), "{text}");
    assert!(!text.contains("ca_bundle_patches_total{"), "{text}");
    setup.judged(c, "good-2").await?;

    // A caBundle changed behind our back is put back on the next check (patched, not churned).
    server.stop().await?;
    let mutating = Api::<MutatingWebhookConfiguration>::all(c.client().await?);
    let mut m = mutating.get(&setup.label).await?;
    for w in m.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = None;
    }
    mutating
        .replace(&setup.label, &PostParams::default(), &m)
        .await?;
    let server = setup.start(c, setup.port, &[]).await?;
    let text = server.metrics().await?;
    assert_eq!(
        sample(
            &text,
            r#"kelos_hooks_ca_bundle_patches_total{kind="mutating"} "#
        ),
        1.0,
        "{text}"
    );
    assert!(!text.contains("ca_bundle_patches_total{kind=\"validating\"}"));
    assert!(
        setup
            .ca_bundles(c)
            .await?
            .iter()
            .all(|b| b.as_deref() == Some(&ca[..]))
    );
    assert_eq!(
        setup.secret(c).await?.metadata.resource_version,
        secret.metadata.resource_version
    );
    drop(server);
    setup.unregister(c).await
}

#[tokio::test]
async fn serving_certificate_is_renewed_before_expiry_from_the_same_ca() -> Result<()> {
    let c = cluster().await?;
    let setup = Setup::new(c, "rotate").await?;
    // Valid 3 minutes, renewed when less than 2m50s are left: a renewal about every 10s.
    let server = setup
        .start(
            c,
            setup.port,
            &[
                "--cert-validity",
                "3m",
                "--renew-before",
                "2m50s",
                "--cert-check-interval",
                "2s",
            ],
        )
        .await?;
    let first = setup.secret(c).await?;
    let ca = data(&first, "ca.crt");
    let tls = data(&first, "tls.crt");
    setup.wait_effective(c, || server.log()).await?;

    let deadline = Instant::now() + Duration::from_secs(40);
    let renewed = loop {
        let s = setup.secret(c).await?;
        if data(&s, "tls.crt") != tls {
            break s;
        }
        if Instant::now() > deadline {
            bail!(
                "serving certificate not renewed within 40s:\n{}",
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Same CA (and so the same caBundle), new certificate with a new serial.
    assert_eq!(data(&renewed, "ca.crt"), ca);
    assert_eq!(data(&renewed, "ca.key"), data(&first, "ca.key"));
    let new_tls = data(&renewed, "tls.crt");
    assert_ne!(new_tls, tls);
    // New handshakes get a renewed certificate (a later one may already have replaced it).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let served = server.served(&ca).await?;
        if served != der(&tls) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the renewed certificate is not served:\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        setup
            .ca_bundles(c)
            .await?
            .iter()
            .all(|b| b.as_deref() == Some(&ca[..]))
    );
    // The API server keeps trusting the webhook across renewals.
    for i in 0..3 {
        setup.judged(c, &format!("good-{i}")).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let text = server.metrics().await?;
    assert!(
        sample(
            &text,
            r#"kelos_hooks_cert_secret_writes_total{action="renew_serving"} "#
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"kelos_hooks_ca_bundle_patches_total{kind="validating"} "#
        ) == 1.0,
        "the bundle does not change with the serving certificate: {text}"
    );
    drop(server);
    setup.unregister(c).await
}

#[tokio::test]
async fn ca_near_expiry_rotates_with_old_and_new_ca_in_the_bundle() -> Result<()> {
    let c = cluster().await?;
    let setup = Setup::new(c, "rotate-ca").await?;
    // The CA lives 4 minutes and is replaced when less than 3m50s are left: about every 10s.
    let server = setup
        .start(
            c,
            setup.port,
            &[
                "--ca-validity",
                "4m",
                "--cert-validity",
                "4m",
                "--renew-before",
                "3m50s",
                "--cert-check-interval",
                "2s",
            ],
        )
        .await?;
    let first = setup.secret(c).await?;
    let first_ca = data(&first, "ca.crt");
    assert_eq!(rustls_pemfile::certs(&mut &first_ca[..]).count(), 1);
    setup.wait_effective(c, || server.log()).await?;

    let deadline = Instant::now() + Duration::from_secs(40);
    let rotated = loop {
        let s = setup.secret(c).await?;
        if data(&s, "ca.crt") != first_ca {
            break s;
        }
        if Instant::now() > deadline {
            bail!("CA not rotated within 40s:\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // New CA first, the old one kept after it; a new CA key and a serving certificate of the
    // new CA.
    let bundle = data(&rotated, "ca.crt");
    let cas: Vec<_> = rustls_pemfile::certs(&mut &bundle[..]).collect::<Result<_, _>>()?;
    assert_eq!(cas.len(), 2, "{}", String::from_utf8_lossy(&bundle));
    assert_eq!(cas[1], der(&first_ca));
    assert_ne!(cas[0], der(&first_ca));
    assert_ne!(data(&rotated, "ca.key"), data(&first, "ca.key"));
    served_cert_chains_to(&data(&rotated, "tls.crt"), &cas[0])?;
    // Both configurations carry old + new (patched before the new certificate is served).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = data(&setup.secret(c).await?, "ca.crt");
        let bundles = setup.ca_bundles(c).await?;
        if bundles.iter().all(|b| b.as_deref() == Some(&current[..])) {
            break;
        }
        if Instant::now() > deadline {
            bail!("caBundle not updated: {bundles:?}\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The API server keeps trusting the webhook through the rotations.
    for i in 0..3 {
        setup.judged(c, &format!("good-{i}")).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let text = server.metrics().await?;
    assert!(
        sample(
            &text,
            r#"kelos_hooks_cert_secret_writes_total{action="rotate_ca"} "#
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"kelos_hooks_ca_bundle_patches_total{kind="mutating"} "#
        ) >= 2.0,
        "{text}"
    );
    drop(server);
    setup.unregister(c).await
}

/// Checks `leaf_pem` verifies against `ca` alone (as a TLS server certificate for 127.0.0.1).
fn served_cert_chains_to(leaf_pem: &[u8], ca: &CertificateDer<'static>) -> Result<()> {
    use rustls::client::danger::ServerCertVerifier as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots)).build()?;
    verifier.verify_server_cert(
        &der(leaf_pem),
        &[],
        &ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
        &[],
        rustls::pki_types::UnixTime::now(),
    )?;
    Ok(())
}

#[tokio::test]
async fn two_replicas_started_at_once_share_one_secret() -> Result<()> {
    let c = cluster().await?;
    let setup = Setup::new(c, "replicas").await?;
    let other_port = free_port();
    let (a, b) = tokio::join!(
        setup.start(c, setup.port, &[]),
        setup.start(c, other_port, &[])
    );
    let (a, b) = (a?, b?);
    let secret = setup.secret(c).await?;
    let ca = data(&secret, "ca.crt");
    let tls = data(&secret, "tls.crt");
    // Exactly one of them created the Secret; neither replaced it afterwards.
    let writes = |t: &str| {
        sample(
            t,
            r#"kelos_hooks_cert_secret_writes_total{action="create"} "#,
        ) + sample(
            t,
            r#"kelos_hooks_cert_secret_writes_total{action="regenerate"} "#,
        )
    };
    let (ta, tb) = (a.metrics().await?, b.metrics().await?);
    assert_eq!(writes(&ta) + writes(&tb), 1.0, "{ta}\n{tb}");
    assert_eq!(a.served(&ca).await?, der(&tls));
    assert_eq!(b.served(&ca).await?, der(&tls));
    assert_eq!(std::fs::read(b.cert_file())?, tls);
    assert!(
        setup
            .ca_bundles(c)
            .await?
            .iter()
            .all(|x| x.as_deref() == Some(&ca[..]))
    );
    setup.wait_effective(c, || a.log()).await?;
    setup.judged(c, "good").await?;
    drop((a, b));
    setup.unregister(c).await
}
