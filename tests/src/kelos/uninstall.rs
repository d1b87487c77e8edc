//! Taking a kelos installation off a control plane it shares with the next process
//! ([`super::KELOS_CLUSTER_DIR_ENV`]): bench/peer.sh runs kelos PR #1240 and then upstream kelos
//! on the same API server and etcd, and each kelos-controller reconciles every Task of the
//! cluster, so nothing of the first may be left for the second to see.
//!
//! No kube-controller-manager runs here, so nothing finishes a deletion by itself: the
//! namespace controller does not empty or finalize namespaces, no kelos-controller is left to
//! remove its finalizers. [`Kelos::uninstall`] does those steps itself, then checks that the
//! cluster-scoped objects are those it found before the install.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Discovery, Scope, verbs};
use serde_json::json;

use super::{Kelos, env_runtime, install};

const WAIT: Duration = Duration::from_secs(60);

/// The label [`crate::Cluster::namespace`] puts on the namespaces it makes.
const TEST_NAMESPACE_LABEL: &str = "kelos-hooks.dev/test";

/// Every listable resource the API server serves now, in its recommended version.
async fn listable(client: &kube::Client) -> Result<Vec<(ApiResource, ApiCapabilities)>> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("API discovery")?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| {
            caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE)
        })
        .collect())
}

/// The cluster-scoped objects, as `group/plural/name`.
pub async fn cluster_scoped(client: &kube::Client) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for (ar, caps) in listable(client).await? {
        if caps.scope != Scope::Cluster {
            continue;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        for obj in api.list(&ListParams::default()).await?.items {
            let name = obj.metadata.name.unwrap_or_default();
            out.insert(format!("{}/{}/{name}", ar.group, ar.plural));
        }
    }
    Ok(out)
}

fn api_of(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Removes the finalizers of every object of `ar` (in `ns`, or cluster-wide) and deletes it at
/// once; returns how many were still there.
async fn purge(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Result<usize> {
    let items = api_of(client, ar, ns)
        .list(&ListParams::default())
        .await?
        .items;
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for obj in &items {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api = api_of(client, ar, obj.metadata.namespace.as_deref());
        let ignore_gone = |r: kube::Result<()>| match r {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other,
        };
        if obj
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            let strip = Patch::Merge(json!({"metadata": {"finalizers": null}}));
            ignore_gone(
                api.patch(&name, &PatchParams::default(), &strip)
                    .await
                    .map(drop),
            )
            .with_context(|| format!("removing the finalizers of {} {name}", ar.kind))?;
        }
        ignore_gone(api.delete(&name, &params).await.map(drop))
            .with_context(|| format!("deleting {} {name}", ar.kind))?;
    }
    Ok(items.len())
}

/// Polls `done` every 200 ms until it holds, or fails after [`WAIT`] saying `what`.
async fn wait_for<F, Fut>(what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + WAIT;
    while !done().await? {
        if Instant::now() > deadline {
            bail!("{what}: not done within {}s", WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Empties namespace `ns` (every namespaced resource, finalizers removed), deletes it and
/// finalizes it, and waits until it is gone.
async fn remove_namespace(client: &kube::Client, ns: &str) -> Result<()> {
    let resources: Vec<ApiResource> = listable(client)
        .await?
        .into_iter()
        .filter(|(_, caps)| caps.scope == Scope::Namespaced)
        .map(|(ar, _)| ar)
        .collect();
    wait_for(&format!("emptying namespace {ns}"), || async {
        let mut left = 0;
        for ar in &resources {
            left += purge(client, ar, Some(ns)).await?;
        }
        Ok(left == 0)
    })
    .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.delete(ns, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting namespace {ns}")),
    }
    // What the namespace controller does once a namespace is empty.
    let mut terminating = namespaces.get(ns).await?;
    if let Some(spec) = terminating.spec.as_mut() {
        spec.finalizers = None;
    }
    namespaces
        .replace_subresource("finalize", ns, &PostParams::default(), &terminating)
        .await
        .with_context(|| format!("finalizing namespace {ns}"))?;
    wait_for(&format!("namespace {ns} gone"), || async {
        Ok(namespaces.get_opt(ns).await?.is_none())
    })
    .await
}

impl Kelos {
    /// Takes this kelos off its control plane: kelos-controller stopped; the finalizers of all
    /// kelos objects removed and its CRDs deleted (waited for until gone); `kelos-system` and the
    /// test namespaces emptied and deleted; the chart's cluster-scoped objects (ClusterRoles,
    /// bindings, webhook configurations) and the log Node deleted. On a control plane given by
    /// [`super::KELOS_CLUSTER_DIR_ENV`], fails unless its cluster-scoped objects are then those
    /// it had before the install. Long-running spawners are the caller's to stop first. This
    /// environment is unusable afterwards.
    pub async fn uninstall(&'static self) -> Result<()> {
        env_runtime()
            .spawn(async move { self.controller.lock().await.stop().await })
            .await??;
        let client = self.cluster().client().await?;

        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for name in &self.crds {
            let Some(crd) = crds.get_opt(name).await? else {
                continue;
            };
            // The stored version: others would need the conversion webhook, which stopped
            // with kelos-controller.
            let version = crd
                .spec
                .versions
                .iter()
                .find(|v| v.storage && v.served)
                .with_context(|| format!("CRD {name} serves no stored version"))?;
            let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
            purge(&client, &ar, None).await?;
            crds.delete(name, &DeleteParams::default()).await?;
        }
        for name in &self.crds {
            wait_for(&format!("kelos CRD {name} gone"), || async {
                Ok(crds.get_opt(name).await?.is_none())
            })
            .await?;
        }

        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut names = vec![install::NAMESPACE.to_owned()];
        names.extend(
            namespaces
                .list(&ListParams::default().labels(TEST_NAMESPACE_LABEL))
                .await?
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name),
        );
        for ns in &names {
            remove_namespace(&client, ns).await?;
        }

        let discovery = Discovery::new(client.clone()).run().await?;
        for obj in self.objects.iter().rev() {
            let (Some(api_version), Some(kind), Some(name)) = (
                obj["apiVersion"].as_str(),
                obj["kind"].as_str(),
                obj["metadata"]["name"].as_str(),
            ) else {
                continue;
            };
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            // Namespaced objects went with their namespace, the CRDs above.
            let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
                continue;
            };
            if caps.scope != Scope::Cluster || kind == "Namespace" {
                continue;
            }
            match api_of(&client, &ar, None)
                .delete(name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e).with_context(|| format!("deleting {kind} {name}")),
            }
        }
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes
            .delete(self.node().name(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e).context("deleting the log Node"),
        }

        if let Some(before) = &self.before {
            // Some objects (the APIServices of the CRDs' versions) go a moment later.
            let deadline = Instant::now() + WAIT;
            loop {
                let now = cluster_scoped(&client).await?;
                let extra: Vec<&String> = now.difference(before).collect();
                if extra.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("uninstalling kelos left cluster-scoped objects behind: {extra:?}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        eprintln!(
            "[kelos] kelos {} uninstalled from {}: controller stopped, {} CRDs and {} namespaces \
             deleted",
            self.commit,
            self.cluster.dir().display(),
            self.crds.len(),
            names.len()
        );
        Ok(())
    }
}
