//! Keeps `spec.onCompletion` declared in kelos's TaskSpawner CRD (`serve --extend-kelos-crd`),
//! and takes it out again (`crd-extension remove`, the chart's post-delete hook).
//!
//! kelos installs its CRDs with a forced server-side apply, and `spec.versions` is an atomic
//! list, so every kelos install or upgrade replaces the property away; the admission server's
//! watch of the CRD (`crate::crd_check`) calls [`Extension::ensure`] on every change. What is
//! patched, and why a JSON patch, is in [`plan`].

pub mod plan;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kelos_hooks_shared::crd_check::CRD_NAME;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

use crate::error::{Error, Result};
use plan::{FIELD_MANAGER, Plan, Wanted};

/// What [`Extension::ensure`] did.
#[derive(Debug)]
pub enum Ensured {
    /// Nothing was needed.
    InPlace,
    /// kelos declares `onCompletion` itself; left alone.
    KelosOwn,
    /// Patched; the CRD as the API server returned it.
    Patched {
        /// The patched CRD.
        crd: Box<CustomResourceDefinition>,
        /// What the patch did, for the Event and `/readyz`.
        summary: String,
        /// Whether it put a missing property back (rather than updating an older one of ours).
        restored: bool,
    },
    /// The CRD cannot be extended (its shape), or the patch failed: say so, retry later.
    Failed(String),
}

/// The extension's state across watch events.
#[derive(Debug, Default)]
pub struct Extension {
    wanted: Wanted,
    /// Our schema per version as the API server returned it after our last patch.
    accepted: BTreeMap<String, Value>,
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

async fn json_patch(
    api: &Api<CustomResourceDefinition>,
    ops: Value,
) -> Result<CustomResourceDefinition> {
    let ops: json_patch::Patch = serde_json::from_value(ops)
        .map_err(|e| Error::CrdExtension(format!("building the patch: {e}")))?;
    Ok(api
        .patch(CRD_NAME, &patch_params(), &Patch::Json::<()>(ops))
        .await?)
}

fn on_completion_of(crd: &Value, version: &str) -> Option<Value> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)
        .map(|v| {
            v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["onCompletion"]
                .clone()
        })
}

impl Extension {
    /// Makes `crd` carry our schema (one patch at most).
    pub async fn ensure(
        &mut self,
        api: &Api<CustomResourceDefinition>,
        crd: &CustomResourceDefinition,
    ) -> Ensured {
        let json = match serde_json::to_value(crd) {
            Ok(v) => v,
            Err(e) => return Ensured::Failed(format!("reading the CRD: {e}")),
        };
        let (ops, restored, removed_by) = match plan::ensure(&json, &self.wanted, &self.accepted) {
            Plan::InPlace => return Ensured::InPlace,
            Plan::KelosOwn => return Ensured::KelosOwn,
            Plan::Cannot(why) => {
                return Ensured::Failed(format!("CRD {CRD_NAME} cannot be extended: {why}"));
            }
            Plan::Patch {
                ops,
                restored,
                removed_by,
            } => (ops, restored, removed_by),
        };
        let patched = match json_patch(api, ops).await {
            Ok(p) => p,
            Err(e) => return Ensured::Failed(format!("patching CRD {CRD_NAME}: {e}")),
        };
        if let Ok(after) = serde_json::to_value(&patched) {
            for version in ["v1alpha1", "v1alpha2"] {
                if let Some(schema) = on_completion_of(&after, version).filter(Value::is_object) {
                    self.accepted.insert(version.to_owned(), schema);
                }
            }
        }
        let summary = if restored.is_empty() {
            format!("kelos-hooks-admission updated its spec.onCompletion schema in CRD {CRD_NAME}")
        } else {
            format!(
                "spec.onCompletion was missing from CRD {CRD_NAME} version(s) {}{}; kelos-hooks-admission \
                 restored it",
                restored.join(", "),
                removed_by
                    .map(|w| format!(" (spec.versions last written by {w})"))
                    .unwrap_or_default()
            )
        };
        Ensured::Patched {
            crd: Box::new(patched),
            summary,
            restored: !restored.is_empty(),
        }
    }
}

/// `crd-extension remove`: takes our schema out of every version, drops our managedFields entry,
/// and for `settle` keeps doing so if something puts it back (an admission server still shutting
/// down). Returns what it did.
pub async fn remove(client: kube::Client, settle: Duration) -> Result<String> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let deadline = Instant::now() + settle;
    let mut removals = 0;
    loop {
        let Some(crd) = api.get_opt(CRD_NAME).await? else {
            return Ok(format!(
                "CRD {CRD_NAME} is not installed: nothing to remove"
            ));
        };
        let json = serde_json::to_value(&crd)
            .map_err(|e| Error::CrdExtension(format!("reading the CRD: {e}")))?;
        if let Some(ops) = plan::remove(&json) {
            let after = json_patch(&api, ops).await?;
            removals += 1;
            let after = serde_json::to_value(&after)
                .map_err(|e| Error::CrdExtension(format!("reading the CRD: {e}")))?;
            if let Some(ops) = plan::forget_ownership(&after) {
                json_patch(&api, ops).await?;
            }
        } else if let Some(ops) = plan::forget_ownership(&json) {
            json_patch(&api, ops).await?;
        }
        if Instant::now() >= deadline {
            return Ok(match removals {
                0 => format!("CRD {CRD_NAME} carries no kelos-hooks schema: nothing to remove"),
                1 => format!("took kelos-hooks' spec.onCompletion schema out of CRD {CRD_NAME}"),
                n => format!(
                    "took kelos-hooks' spec.onCompletion schema out of CRD {CRD_NAME} ({n} times: \
                     an admission server put it back meanwhile)"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500).min(settle)).await;
    }
}
