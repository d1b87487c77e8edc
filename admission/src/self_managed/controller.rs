//! The loop: read the Secret, create/renew it if needed, patch the `caBundle`s, write the
//! serving files. Idempotent, run by every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Config;
use super::ca_bundle;
use super::secret::{Action, Material, build, decide};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Retries after a failure (or while a webhook configuration does not exist yet) come at most
/// this far apart.
const RETRY: Duration = Duration::from_secs(10);
/// Create/update races lost in a row before giving up until the next check.
const MAX_CONFLICTS: usize = 5;

/// How one pass over the webhook configurations went.
#[derive(Debug, Default)]
struct BundleOutcome {
    /// A patch or read failed (other than "not found").
    failed: bool,
    /// A named configuration does not exist (yet).
    missing: bool,
}

struct Controller {
    config: Config,
    secrets: Api<Secret>,
    validating: Api<ValidatingWebhookConfiguration>,
    mutating: Api<MutatingWebhookConfiguration>,
    metrics: Arc<Metrics>,
    /// The serving certificate in our files.
    written: Option<String>,
    first_written: Option<tokio::sync::oneshot::Sender<()>>,
    /// Problems already logged at warn level (each is logged once until it clears).
    reported: BTreeSet<String>,
}

/// Runs until `shutdown` resolves. `first_written` fires once the serving pair is on disk.
pub async fn run(
    config: Config,
    client: kube::Client,
    metrics: Arc<Metrics>,
    first_written: tokio::sync::oneshot::Sender<()>,
    shutdown: impl Future<Output = ()>,
) {
    let mut c = Controller {
        secrets: Api::namespaced(client.clone(), &config.namespace),
        validating: Api::all(client.clone()),
        mutating: Api::all(client),
        config,
        metrics,
        written: None,
        first_written: Some(first_written),
        reported: BTreeSet::new(),
    };
    tracing::info!(
        secret = %c.config.secret, namespace = %c.config.namespace,
        sans = ?c.config.wanted.sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
        validating = ?c.config.validating, mutating = ?c.config.mutating,
        "self-managed certificates"
    );
    tokio::pin!(shutdown);
    loop {
        let wait = match c.reconcile().await {
            Ok(true) => c.config.check_interval,
            Ok(false) => c.config.check_interval.min(RETRY),
            Err(e) => {
                tracing::warn!(error = %e, "self-managed certificates: retrying");
                c.config.check_interval.min(RETRY)
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Controller {
    /// One pass; `Ok(true)` when everything is in place, `Ok(false)` when something should be
    /// retried soon.
    async fn reconcile(&mut self) -> Result<bool> {
        let material = self.ensure_secret().await?;
        let bundles = self.patch_bundles(material.ca_bundle.as_bytes()).await;
        if self.written.as_deref() != Some(material.tls_crt.as_str()) {
            // The API server must trust the bundle before we serve a certificate from a new CA,
            // so a failed patch holds back the new files — unless nothing is served yet.
            if bundles.failed && self.written.is_some() {
                return Ok(false);
            }
            kelos_hooks_certs::write_pair(&self.config.dir, &self.config.name, &material.serving())
                .map_err(|e| Error::SelfManaged(format!("writing the serving files: {e}")))?;
            tracing::info!(
                serial = %material.serving_serial(), dir = %self.config.dir.display(),
                "serving certificate written"
            );
            self.written = Some(material.tls_crt.clone());
            if let Some(tx) = self.first_written.take() {
                let _ = tx.send(());
            }
        }
        Ok(!bundles.failed && !bundles.missing)
    }

    /// The Secret's material, created or renewed first when needed.
    async fn ensure_secret(&mut self) -> Result<Material> {
        let name = self.config.secret.clone();
        for _ in 0..MAX_CONFLICTS {
            let existing = self.secrets.get_opt(&name).await?;
            let data = existing
                .as_ref()
                .map(|s| s.data.clone().unwrap_or_default());
            let now = SystemTime::now();
            let action = decide(data.as_ref(), &self.config.wanted, now);
            let current = data.as_ref().and_then(|d| Material::from_data(d).ok());
            if action == Action::Keep
                && let Some(current) = current
            {
                return Ok(current);
            }
            let material = build(&action, current.as_ref(), &self.config.wanted, now)
                .map_err(|e| Error::SelfManaged(format!("making certificates: {e}")))?;
            let written = match existing {
                None => self.create(&material).await,
                Some(s) => self.update(s, &material).await,
            };
            match written {
                Ok(()) => {
                    self.metrics.observe_cert_secret_write(action.label());
                    log_action(&action, &self.config, &material);
                    return Ok(material);
                }
                // Another replica won the race: read theirs and judge it afresh.
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                    tracing::debug!(
                        action = action.label(),
                        "lost a Secret write race; re-reading"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::SelfManaged(format!(
            "Secret {name}: {MAX_CONFLICTS} write conflicts in a row"
        )))
    }

    async fn create(&self, material: &Material) -> kube::Result<()> {
        let labels = BTreeMap::from([
            (
                "app.kubernetes.io/name".to_owned(),
                "kelos-hooks".to_owned(),
            ),
            (
                "app.kubernetes.io/component".to_owned(),
                "admission".to_owned(),
            ),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "kelos-hooks-admission".to_owned(),
            ),
        ]);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.config.secret.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(material.to_data()),
            ..Secret::default()
        };
        self.secrets
            .create(&PostParams::default(), &secret)
            .await
            .map(drop)
    }

    /// Replaces the data, keeping any other keys; the resourceVersion read makes a concurrent
    /// writer's change a 409 instead of a lost update.
    async fn update(&self, mut secret: Secret, material: &Material) -> kube::Result<()> {
        let mut data = secret.data.take().unwrap_or_default();
        data.extend(material.to_data());
        secret.data = Some(data);
        secret.string_data = None;
        secret.metadata.managed_fields = None;
        self.secrets
            .replace(&self.config.secret, &PostParams::default(), &secret)
            .await
            .map(drop)
    }

    async fn patch_bundles(&mut self, bundle: &[u8]) -> BundleOutcome {
        let mut outcome = BundleOutcome::default();
        if let Some(name) = self.config.validating.clone() {
            let api = self.validating.clone();
            self.patch_one(&api, "validating", &name, bundle, &mut outcome)
                .await;
        }
        if let Some(name) = self.config.mutating.clone() {
            let api = self.mutating.clone();
            self.patch_one(&api, "mutating", &name, bundle, &mut outcome)
                .await;
        }
        outcome
    }

    async fn patch_one<K>(
        &mut self,
        api: &Api<K>,
        kind: &'static str,
        name: &str,
        bundle: &[u8],
        outcome: &mut BundleOutcome,
    ) where
        K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let got = api
            .get_opt(name)
            .await
            .map(|c| c.as_ref().map(ca_bundle::entries));
        let problem = match got {
            Ok(None) => {
                outcome.missing = true;
                Some(format!(
                    "{kind} webhook configuration {name} does not exist yet; will retry"
                ))
            }
            Err(e) => {
                outcome.failed = true;
                Some(format!("reading {kind} webhook configuration {name}: {e}"))
            }
            Ok(Some(entries)) => match ca_bundle::patch(&entries, bundle) {
                None => None,
                Some(patch) => {
                    let result = api
                        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                        .map(drop);
                    match result {
                        Ok(()) => {
                            self.metrics.observe_ca_bundle_patch(kind);
                            tracing::info!(
                                kind,
                                name,
                                webhooks = patch["webhooks"].as_array().map_or(0, Vec::len),
                                "caBundle patched"
                            );
                            None
                        }
                        Err(e) => {
                            outcome.failed = true;
                            Some(format!(
                                "patching caBundle of {kind} webhook configuration {name}: {e}"
                            ))
                        }
                    }
                }
            },
        };
        let key = format!("{kind}/{name}");
        match problem {
            Some(p) => {
                if self.reported.insert(key) {
                    tracing::warn!("{p}");
                } else {
                    tracing::debug!("{p}");
                }
            }
            None => {
                self.reported.remove(&key);
            }
        }
    }
}

fn log_action(action: &Action, config: &Config, material: &Material) {
    let reason = match action {
        Action::Regenerate { reason }
        | Action::RotateCa { reason }
        | Action::RenewServing { reason } => reason.as_str(),
        Action::Create => "no Secret yet",
        Action::PruneBundle => "an expired previous CA left the bundle",
        Action::Keep => "",
    };
    tracing::info!(
        action = action.label(), reason, secret = %config.secret, namespace = %config.namespace,
        serial = %material.serving_serial(),
        "certificate Secret written"
    );
}
