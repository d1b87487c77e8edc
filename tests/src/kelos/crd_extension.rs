//! TEMPORARY — delete this file (and its one call in `AddOn::start`) once the admission server
//! extends kelos's TaskSpawner CRD with `spec.onCompletion` itself (issue 13, item 3).
//!
//! Until then the harness does what the add-on is to do: put the `onCompletion` schema our code
//! generates (`kelos_hooks_shared::crd::task_spawner`, what `kelos-hooks-admission crds` prints)
//! into the schema of kelos's `taskspawners.kelos.dev`, by server-side apply under a field manager
//! of its own. `spec.versions` is an atomic list, so the apply carries kelos's versions whole, with
//! only that property added — to every served version, v1alpha1 included, because both binaries'
//! CRD checks (today) want every served version to declare it; through v1alpha1 the field is lost
//! in kelos's conversion anyway.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use crate::Cluster;

/// The field manager of the harness's CRD extension.
pub const FIELD_MANAGER: &str = "kelos-hooks-tests-crd-extension";
const CRD: &str = "taskspawners.kelos.dev";
const VERSION: &str = "v1alpha2";

/// `spec.properties.onCompletion` of the CRD our code generates.
fn on_completion_schema() -> Result<Value> {
    let ours = serde_json::to_value(kelos_hooks_shared::crd::task_spawner())?;
    ours["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == VERSION)
        .map(|v| {
            v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["onCompletion"]
                .clone()
        })
        .filter(Value::is_object)
        .context("our generated TaskSpawner CRD has no v1alpha2 spec.onCompletion")
}

/// Adds `spec.onCompletion` to the v1alpha2 schema of the installed (kelos's) TaskSpawner CRD and
/// waits until the API server keeps the field.
pub async fn extend_taskspawner_crd(c: &Cluster) -> Result<()> {
    let client = c.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let installed = serde_json::to_value(crds.get(CRD).await?)?;
    let mut versions = installed["spec"]["versions"].clone();
    let schema = on_completion_schema()?;
    let mut found = false;
    for v in versions.as_array_mut().into_iter().flatten() {
        let (served, ours) = (v["served"] == true, v["name"] == VERSION);
        let props = v.pointer_mut("/schema/openAPIV3Schema/properties/spec/properties");
        if let (Some(Value::Object(props)), true) = (props, served) {
            props.insert("onCompletion".into(), schema.clone());
            found |= ours;
        }
    }
    if !found {
        bail!("{CRD} serves no {VERSION} with a spec schema");
    }
    let patch = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD},
        "spec": {"versions": versions},
    });
    crds.patch(
        CRD,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .with_context(|| format!("extending {CRD} with spec.onCompletion"))?;
    wait_kept(client).await
}

/// Waits until a (dry-run) TaskSpawner created in `default` comes back with its `onCompletion`:
/// the API server serves the new schema a moment after the CRD changed.
async fn wait_kept(client: kube::Client) -> Result<()> {
    let gvk = GroupVersionKind::gvk("kelos.dev", VERSION, "TaskSpawner");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, "default", &ApiResource::from_gvk(&gvk));
    let probe: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
        "metadata": {"name": "crd-extension-probe"},
        "spec": {
            "when": {"cron": {"schedule": "0 9 * * 1"}},
            "taskTemplate": {"worker": {"type": "claude-code", "credentials": {"type": "none"}},
                             "promptTemplate": "probe"},
            "onCompletion": {"hooks": [{"name": "probe", "webhook": {"url": "https://hooks.example.com/x"}}]},
        },
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = api.create(&dry_run, &probe).await?;
        if created.data["spec"].get("onCompletion").is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{CRD} still prunes spec.onCompletion 30s after it was extended");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
