//! kelos installed from its own chart, as `kelos install` does it: `helm template` of
//! `internal/manifests/charts/kelos` (with its CRD subchart), every object applied by server-side
//! apply under kelos's field manager (`kelos`, forced).
//!
//! The chart has no values for a webhook reached by URL: it relies on cert-manager (an Issuer, a
//! Certificate, `cert-manager.io/inject-ca-from`) and an in-cluster Service in front of the
//! controller's Deployment. [`localize`] is the one post-processing step, documented here:
//! - every webhook `clientConfig.service` (the CRD conversion webhooks and the TaskBudget
//!   validating webhook) becomes `url: https://127.0.0.1:9443<path>` + `caBundle` of our test CA
//!   (what cert-manager's CA injection does in a cluster);
//! - the cert-manager Issuer and Certificate are dropped (no cert-manager here; the serving
//!   certificate comes from `kelos-hooks-certs`);
//! - the controller's Deployment and its webhook Service are dropped: the controller runs as a
//!   local process with the Deployment's own args (see [`Localized::controller_args`]).
//!
//! Everything else — the nine CRDs with both versions, Namespace, ServiceAccount, RBAC — is
//! applied exactly as rendered.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

use crate::Cluster;
use crate::helm::{helm_command, run};

/// Release name and namespace the chart hard-codes (`kelos-system`).
pub const NAMESPACE: &str = "kelos-system";
/// kelos's field manager (`internal/cli/install.go`).
pub const FIELD_MANAGER: &str = "kelos";
/// The chart's controller Deployment and its container.
const DEPLOYMENT: &str = "kelos-controller-manager";
const CONTAINER: &str = "manager";

/// The chart rendered for a local controller.
#[derive(Debug)]
pub struct Localized {
    /// The objects to apply, in the chart's install order.
    pub objects: Vec<Value>,
    /// Names of the CRDs among them.
    pub crds: Vec<String>,
    /// The args the chart gives the controller container.
    pub controller_args: Vec<String>,
    /// How many webhooks (CRD conversion, admission) now reach the controller by URL: none
    /// for a kelos without webhooks (kelos PR #1240), whose controller serves no webhook port.
    pub webhooks: usize,
}

/// `helm template` of the chart under `src` (a kelos source snapshot), CRDs included.
pub async fn render(c: &Cluster, src: &Path) -> Result<Vec<Value>> {
    let chart = src.join("internal/manifests/charts/kelos");
    ensure!(chart.is_dir(), "{} is missing", chart.display());
    let mut cmd = helm_command(c, "kelos");
    cmd.args(["template", "kelos"]).arg(&chart).args([
        "--namespace",
        NAMESPACE,
        "--set",
        "crds.install=true",
    ]);
    let yaml = run(
        tokio::process::Command::from(cmd),
        "helm template (kelos chart)",
    )
    .await?;
    Ok(serde_saphyr::from_multiple::<Value>(&yaml)?
        .into_iter()
        .filter(|d| d.is_object())
        .collect())
}

/// The post-processing step (module docs): webhooks by `webhook_url` + `ca_bundle` (base64 PEM),
/// cert-manager objects, the Deployment and the webhook Service out. Fails when the chart no
/// longer looks as expected, so a kelos upgrade that changes it is noticed.
pub fn localize(docs: Vec<Value>, webhook_url: &str, ca_bundle: &str) -> Result<Localized> {
    let mut objects = Vec::new();
    let mut crds = Vec::new();
    let mut controller_args = None;
    let mut webhooks = 0;
    for mut doc in docs {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if api_version.starts_with("cert-manager.io/") {
            continue;
        }
        match kind.as_str() {
            "Deployment" if name == DEPLOYMENT => {
                controller_args = Some(container_args(&doc)?);
                continue;
            }
            "Service" if name == "kelos-webhook" => continue,
            "CustomResourceDefinition" => {
                let versions = doc["spec"]["versions"].as_array().map_or(0, Vec::len);
                // pointer_mut, not indexing: indexing a missing key would insert nulls.
                let config = doc.pointer_mut("/spec/conversion/webhook/clientConfig");
                if let Some(config) = config {
                    *config = by_url(config, webhook_url, ca_bundle)
                        .with_context(|| format!("conversion webhook of CRD {name}"))?;
                    webhooks += 1;
                } else {
                    ensure!(
                        versions < 2,
                        "CRD {name} serves {versions} versions without a conversion webhook"
                    );
                }
                crds.push(name);
            }
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                let hooks = doc.get_mut("webhooks").and_then(Value::as_array_mut);
                for hook in hooks.into_iter().flatten() {
                    let config = &mut hook["clientConfig"];
                    *config = by_url(config, webhook_url, ca_bundle)
                        .with_context(|| format!("{kind} {name}"))?;
                    webhooks += 1;
                }
            }
            _ => {}
        }
        objects.push(doc);
    }
    for crd in ["tasks.kelos.dev", "taskspawners.kelos.dev"] {
        ensure!(
            crds.iter().any(|c| c == crd),
            "the kelos chart renders no CRD {crd}"
        );
    }
    Ok(Localized {
        objects,
        crds,
        controller_args: controller_args
            .with_context(|| format!("the chart renders no Deployment {DEPLOYMENT}"))?,
        webhooks,
    })
}

/// The `kelos.dev` version to use with the rendered chart `objects`: `v1alpha2` when the Task
/// CRD serves it, else the one it stores.
pub fn api_version(objects: &[Value]) -> Result<String> {
    let crd = objects
        .iter()
        .find(|o| {
            o["kind"] == "CustomResourceDefinition" && o["metadata"]["name"] == "tasks.kelos.dev"
        })
        .context("the kelos chart renders no CRD tasks.kelos.dev")?;
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let served = |v: &Value| v["served"].as_bool().unwrap_or(false);
    if versions
        .iter()
        .any(|v| served(v) && v["name"] == "v1alpha2")
    {
        return Ok("v1alpha2".into());
    }
    versions
        .iter()
        .find(|v| served(v) && v["storage"].as_bool().unwrap_or(false))
        .and_then(|v| v["name"].as_str())
        .map(str::to_owned)
        .context("CRD tasks.kelos.dev stores no served version")
}

/// `{service: {path}}` → `{url: <base><path>, caBundle}`.
fn by_url(config: &Value, base: &str, ca_bundle: &str) -> Result<Value> {
    if config.get("url").is_some() {
        bail!("already reached by URL: {config}");
    }
    let path = config["service"]["path"]
        .as_str()
        .with_context(|| format!("no service.path in clientConfig {config}"))?;
    Ok(json!({"url": format!("{base}{path}"), "caBundle": ca_bundle}))
}

fn container_args(deployment: &Value) -> Result<Vec<String>> {
    let container = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == CONTAINER)
        .with_context(|| format!("Deployment {DEPLOYMENT} has no container {CONTAINER}"))?;
    Ok(container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect())
}

/// Applies `objects` as `kelos install` does (server-side apply, field manager `kelos`, forced)
/// and waits until every CRD of `crds` is Established.
pub async fn apply(c: &Cluster, objects: &[Value], crds: &[String]) -> Result<()> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = crate::kubectl::kubectl(
        c,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            FIELD_MANAGER,
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    )
    .await?;
    ensure!(
        out.ok,
        "applying the kelos chart failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    let api: Api<CustomResourceDefinition> = Api::all(c.client().await?);
    for name in crds {
        let established = await_condition(api.clone(), name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("kelos CRD {name} not Established within 30s"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart_like() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kelos-system"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "taskspawners.kelos.dev"},
                   "spec": {"versions": [{"name": "v1alpha2"}]}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "tasks.kelos.dev"},
                   "spec": {"versions": [{"name": "v1alpha1"}, {"name": "v1alpha2"}],
                            "conversion": {"strategy": "Webhook", "webhook": {
                       "clientConfig": {"service": {"name": "kelos-webhook", "namespace": "kelos-system",
                                                    "path": "/convert", "port": 443}},
                       "conversionReviewVersions": ["v1"]}}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "i"}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "c"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kelos-webhook"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOYMENT},
                   "spec": {"template": {"spec": {"containers": [
                       {"name": "manager", "args": ["--leader-elect", "--spawner-image=x"]}]}}}}),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                   "metadata": {"name": "v"},
                   "webhooks": [{"name": "vtaskbudget.kelos.dev", "clientConfig": {"service": {
                       "name": "kelos-webhook", "namespace": "kelos-system",
                       "path": "/validate-kelos-dev-v1alpha2-taskbudget", "port": 443}}}]}),
        ]
    }

    #[test]
    fn webhooks_by_url_and_only_what_needs_a_cluster_addon_dropped() {
        let l = localize(chart_like(), "https://127.0.0.1:9443", "Q0E=").unwrap();
        assert_eq!(
            l.webhooks, 2,
            "one conversion webhook, one admission webhook"
        );
        let kinds: Vec<&str> = l
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "CustomResourceDefinition",
                "ValidatingWebhookConfiguration"
            ]
        );
        assert_eq!(l.crds, ["taskspawners.kelos.dev", "tasks.kelos.dev"]);
        assert_eq!(
            l.objects[1],
            chart_like()[1],
            "a one-version CRD is applied as rendered"
        );
        assert_eq!(
            l.objects[2]["spec"]["conversion"]["webhook"]["clientConfig"],
            json!({"url": "https://127.0.0.1:9443/convert", "caBundle": "Q0E="})
        );
        assert_eq!(
            l.objects[2]["spec"]["conversion"]["webhook"]["conversionReviewVersions"],
            json!(["v1"])
        );
        assert_eq!(
            l.objects[3]["webhooks"][0]["clientConfig"],
            json!({"url": "https://127.0.0.1:9443/validate-kelos-dev-v1alpha2-taskbudget", "caBundle": "Q0E="})
        );
        assert_eq!(l.controller_args, ["--leader-elect", "--spawner-image=x"]);
    }

    #[test]
    fn a_chart_that_changed_shape_is_an_error() {
        let mut no_deployment = chart_like();
        no_deployment.remove(6);
        assert!(localize(no_deployment, "https://x", "Q0E=").is_err());
        let mut no_conversion = chart_like();
        no_conversion[2]["spec"]["conversion"] = json!({"strategy": "None"});
        assert!(localize(no_conversion, "https://x", "Q0E=").is_err());
        let mut no_tasks = chart_like();
        no_tasks.remove(2);
        assert!(localize(no_tasks, "https://x", "Q0E=").is_err());
    }

    #[test]
    fn the_api_version_is_v1alpha2_where_served_else_the_stored_one() {
        let crd = |versions: Value| {
            vec![
                json!({"kind": "CustomResourceDefinition", "metadata": {"name": "tasks.kelos.dev"},
                        "spec": {"versions": versions}}),
            ]
        };
        let upstream = crd(json!([
            {"name": "v1alpha1", "served": true, "storage": false},
            {"name": "v1alpha2", "served": true, "storage": true}]));
        assert_eq!(api_version(&upstream).unwrap(), "v1alpha2");
        let pr1240 = crd(json!([{"name": "v1alpha1", "served": true, "storage": true}]));
        assert_eq!(api_version(&pr1240).unwrap(), "v1alpha1");
        let unserved = crd(json!([
            {"name": "v1alpha1", "served": true, "storage": true},
            {"name": "v1alpha2", "served": false, "storage": false}]));
        assert_eq!(api_version(&unserved).unwrap(), "v1alpha1");
        assert!(api_version(&crd(json!([]))).is_err());
        assert!(api_version(&[]).is_err());
    }
}
