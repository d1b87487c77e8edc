//! Hooks survive real kelos (`kelos_hooks_tests::kelos`: kelos's chart, kelos-controller as its
//! own ServiceAccount, kelos's conversion webhook), with our admission server extending kelos's
//! TaskSpawner CRD (`--extend-kelos-crd`) and our webhooks registered for the test's namespace:
//! - kelos-controller adds its finalizer with a full Update of Go types without `onCompletion`;
//!   our TaskSpawner mutation puts the stored hooks back (created without the finalizer), or
//!   never has to (created with it), also across a kelos-controller restart;
//! - a write through kelos.dev/v1alpha1 (kelos's conversion drops the field) is refused while
//!   the spawner has hooks, and a v1alpha1 object carrying hooks is refused by the CRD's rule;
//! - a user's own v1alpha2 edit or removal of `onCompletion` is obeyed;
//! - kelos re-applying its CRD (an upgrade) takes the property away; it comes back, and stored
//!   hooks stay readable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kelos_hooks_tests::admission_server::probe;
use kelos_hooks_tests::kelos::{
    AddOn, Kelos, SPAWNER_FINALIZER, controller_user, cron_spawner, install, kelos, spawner_api,
};
use kelos_hooks_tests::kubectl::kubectl;
use kelos_hooks_tests::metrics::sample;
use kelos_hooks_tests::receiver::Receiver;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use tokio::sync::RwLock;

const WAIT: Duration = Duration::from_secs(60);
const RESTORED: &str = "kelos_hooks_taskspawner_hooks_kept_total{action=\"restored\"}";
const REFUSED: &str = "kelos_hooks_taskspawner_hooks_kept_total{action=\"refused\"}";

/// Replaying kelos's CRD takes `onCompletion` out of the schema for a moment: a TaskSpawner
/// written meanwhile would lose its hooks to pruning. That test holds this for writing, the
/// others for reading.
static CRD_SCHEMA: RwLock<()> = RwLock::const_new(());

fn hooks(tag: &str) -> Value {
    json!({"hooks": [{"name": "notify", "phases": ["Succeeded"],
                      "webhook": {"url": format!("https://hooks.example.com/{tag}")}}]})
}

/// Polls TaskSpawner `ns/name` until `done` holds; fails after [`WAIT`] with kelos's log.
async fn wait_spawner(
    k: &Kelos,
    ns: &str,
    name: &str,
    what: &str,
    done: impl Fn(&DynamicObject) -> bool,
) -> Result<DynamicObject> {
    let api = spawner_api(k.cluster().client().await?, ns);
    let deadline = Instant::now() + WAIT;
    loop {
        let s = api.get(name).await?;
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "{ns}/{name}: {what} not seen within {WAIT:?}; spec {}\nkelos-controller:\n{}",
                s.data["spec"],
                k.controller_log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_finalizer(s: &DynamicObject) -> bool {
    s.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == SPAWNER_FINALIZER))
}

/// kelos has reconciled the cron spawner: it points at the CronJob it made.
fn reconciled(s: &DynamicObject) -> bool {
    has_finalizer(s)
        && s.data["status"]["cronJobName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
}

/// A sample of the admission server's metrics.
async fn metric(addon: &AddOn, series: &str) -> Result<f64> {
    let (_, text) = probe(addon.admission_probe_port(), "/metrics").await?;
    Ok(sample(&text, series))
}

/// Our add-on for a fresh namespace of the kelos cluster.
async fn setup(k: &Kelos, prefix: &str) -> Result<(String, Receiver, AddOn)> {
    let ns = k.namespace(prefix).await?;
    let rx = Receiver::start().await?;
    let addon = AddOn::start(k, &ns, rx.ca_file()).await?;
    Ok((ns, rx, addon))
}

#[tokio::test]
async fn kelos_finalizer_update_keeps_the_hooks() -> Result<()> {
    let _schema = CRD_SCHEMA.read().await;
    let k = kelos().await?;
    let (ns, _rx, addon) = setup(k, "coexist-finalizer").await?;
    let on_completion = hooks("finalizer");
    k.create_spawner(&ns, &cron_spawner("nightly", &on_completion, 0, false))
        .await?;
    let s = wait_spawner(k, &ns, "nightly", "kelos's finalizer", reconciled).await?;
    assert_eq!(
        s.data["spec"]["onCompletion"], on_completion,
        "kelos-controller's finalizer Update removed the hooks"
    );
    let kelos_wrote = s.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref().is_some_and(|n| n.contains("kelos"))
            && m.operation.as_deref() == Some("Update")
    });
    ensure!(
        kelos_wrote,
        "no Update by kelos in managedFields: {:?}",
        s.metadata.managed_fields
    );
    ensure!(
        metric(&addon, RESTORED).await? >= 1.0,
        "our webhook restored nothing: kelos's Update never lacked the field?\n{}",
        addon.admission_log()
    );
    ensure!(
        addon.admission_log().contains(&controller_user()),
        "the restore is not logged with kelos's identity:\n{}",
        addon.admission_log()
    );
    Ok(())
}

#[tokio::test]
async fn a_spawner_created_with_the_finalizer_needs_no_restore_and_survives_a_restart() -> Result<()>
{
    let _schema = CRD_SCHEMA.read().await;
    let k = kelos().await?;
    let (ns, _rx, addon) = setup(k, "coexist-restart").await?;
    let api = spawner_api(k.cluster().client().await?, &ns);
    let on_completion = hooks("restart");
    k.create_spawner(
        &ns,
        &cron_spawner("with-finalizer", &on_completion, 0, true),
    )
    .await?;
    k.create_spawner(&ns, &cron_spawner("without", &on_completion, 0, false))
        .await?;
    let s = wait_spawner(k, &ns, "with-finalizer", "kelos's reconcile", reconciled).await?;
    assert_eq!(s.data["spec"]["onCompletion"], on_completion);
    wait_spawner(k, &ns, "without", "kelos's reconcile", reconciled).await?;

    // kelos-controller restarts: it reconciles every spawner again from scratch.
    k.restart_controller().await?;
    let created = k
        .create_spawner(
            &ns,
            &cron_spawner("after-restart", &on_completion, 0, false),
        )
        .await?;
    ensure!(created.data["spec"]["onCompletion"] == on_completion);
    wait_spawner(
        k,
        &ns,
        "after-restart",
        "kelos's reconcile after its restart",
        reconciled,
    )
    .await?;
    for name in ["with-finalizer", "without", "after-restart"] {
        let s = api.get(name).await?;
        assert_eq!(
            s.data["spec"]["onCompletion"], on_completion,
            "{name} after kelos's restart"
        );
    }
    ensure!(
        metric(&addon, RESTORED).await? >= 2.0,
        "{}",
        addon.admission_log()
    );
    Ok(())
}

#[tokio::test]
async fn v1alpha1_writes_never_lose_hooks() -> Result<()> {
    let _schema = CRD_SCHEMA.read().await;
    let k = kelos().await?;
    let (ns, _rx, addon) = setup(k, "coexist-v1alpha1").await?;
    let api = spawner_api(k.cluster().client().await?, &ns);
    let on_completion = hooks("v1alpha1");
    k.create_spawner(&ns, &cron_spawner("hooked", &on_completion, 0, true))
        .await?;
    k.create_spawner(&ns, &cron_spawner("plain", &Value::Null, 0, true))
        .await?;
    let c = k.cluster();

    // A label written through v1alpha1 would store the spawner converted by kelos, hooks gone.
    let out = kubectl(
        c,
        &[
            "label",
            "-n",
            &ns,
            "taskspawners.v1alpha1.kelos.dev/hooked",
            "team=a",
        ],
        None,
    )
    .await?;
    ensure!(
        !out.ok
            && out.stderr.contains("kelos.dev/v1alpha1 cannot carry")
            && out
                .stderr
                .contains("taskspawners.v1alpha2.kelos.dev/hooked"),
        "v1alpha1 label on a spawner with hooks: {}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        api.get("hooked").await?.data["spec"]["onCompletion"],
        on_completion
    );
    ensure!(metric(&addon, REFUSED).await? >= 1.0);
    // Through v1alpha2 the same edit passes; a spawner without hooks takes v1alpha1 writes.
    let out = kubectl(
        c,
        &[
            "label",
            "-n",
            &ns,
            "taskspawners.v1alpha2.kelos.dev/hooked",
            "team=a",
        ],
        None,
    )
    .await?;
    ensure!(out.ok, "{}", out.stderr);
    let out = kubectl(
        c,
        &[
            "label",
            "-n",
            &ns,
            "taskspawners.v1alpha1.kelos.dev/plain",
            "team=a",
        ],
        None,
    )
    .await?;
    ensure!(
        out.ok,
        "v1alpha1 write of a spawner without hooks: {}",
        out.stderr
    );

    // A v1alpha1 TaskSpawner carrying hooks is refused by the rule our extension put in kelos's CRD.
    let v1 = json!({
        "apiVersion": "kelos.dev/v1alpha1", "kind": "TaskSpawner", "metadata": {"name": "old-style"},
        "spec": {"when": {"cron": {"schedule": "0 3 * * *"}},
                 "taskTemplate": {"type": "claude-code", "credentials": {"type": "none"}, "promptTemplate": "x"},
                 "onCompletion": on_completion},
    });
    let out = kubectl(c, &["apply", "-n", &ns, "-f", "-"], Some(&v1.to_string())).await?;
    ensure!(
        !out.ok
            && out.stderr.contains(
                "spec.onCompletion: Forbidden: kelos.dev/v1alpha1 cannot carry spec.onCompletion"
            ),
        "v1alpha1 TaskSpawner with hooks: {}{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn a_users_v1alpha2_edit_or_removal_is_obeyed() -> Result<()> {
    let _schema = CRD_SCHEMA.read().await;
    let k = kelos().await?;
    let (ns, _rx, _addon) = setup(k, "coexist-user").await?;
    let api = spawner_api(k.cluster().client().await?, &ns);
    for name in ["edited", "removed"] {
        k.create_spawner(&ns, &cron_spawner(name, &hooks("one"), 0, false))
            .await?;
    }
    for name in ["edited", "removed"] {
        wait_spawner(k, &ns, name, "kelos's reconcile", reconciled).await?;
    }
    let edit = json!({"spec": {"onCompletion": hooks("two")}});
    api.patch("edited", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    let out = kubectl(
        k.cluster(),
        &[
            "patch",
            "-n",
            &ns,
            "taskspawners.v1alpha2.kelos.dev/removed",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/onCompletion"}]"#,
        ],
        None,
    )
    .await?;
    ensure!(out.ok, "{}", out.stderr);
    // kelos keeps reconciling (delete its CronJob: it makes a new one) without bringing anything back.
    let out = kubectl(
        k.cluster(),
        &["delete", "cronjobs", "--all", "-n", &ns, "--wait=false"],
        None,
    )
    .await?;
    ensure!(out.ok, "{}", out.stderr);
    for name in ["edited", "removed"] {
        wait_spawner(k, &ns, name, "a new CronJob", reconciled).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        api.get("edited").await?.data["spec"]["onCompletion"],
        hooks("two")
    );
    let removed = api.get("removed").await?;
    ensure!(
        removed.data["spec"].get("onCompletion").is_none(),
        "{}",
        removed.data["spec"]
    );
    Ok(())
}

/// kelos's own CRD as an upgrade re-applies it: the installed one with our property taken out,
/// by a forced server-side apply under kelos's field manager.
async fn replay_kelos_crd(api: &Api<CustomResourceDefinition>) -> Result<()> {
    let mut crd = serde_json::to_value(api.get("taskspawners.kelos.dev").await?)?;
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        if let Some(props) =
            v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].as_object_mut()
        {
            props.remove("onCompletion");
        }
    }
    let apply = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "taskspawners.kelos.dev"},
        "spec": crd["spec"],
    });
    api.patch(
        "taskspawners.kelos.dev",
        &PatchParams::apply(install::FIELD_MANAGER).force(),
        &Patch::Apply(&apply),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn kelos_reapplying_its_crd_is_undone() -> Result<()> {
    let k = kelos().await?;
    let (ns, _rx, addon) = {
        let _schema = CRD_SCHEMA.read().await;
        setup(k, "coexist-replay").await?
    };
    let spawners = spawner_api(k.cluster().client().await?, &ns);
    let on_completion = hooks("replay");
    k.create_spawner(&ns, &cron_spawner("kept", &on_completion, 0, true))
        .await?;

    let _schema = CRD_SCHEMA.write().await;
    let crds: Api<CustomResourceDefinition> = Api::all(k.cluster().client().await?);
    let restored = |text: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("kelos_hooks_crd_extension_patches_total{action=\"restored\"}")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let before = restored(&probe(addon.admission_probe_port(), "/metrics").await?.1);
    replay_kelos_crd(&crds).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, text) = probe(addon.admission_probe_port(), "/metrics").await?;
        let crd = serde_json::to_value(crds.get("taskspawners.kelos.dev").await?)?;
        let declared = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "v1alpha2")
            .is_some_and(|v| {
                v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["onCompletion"]
                    .is_object()
            });
        // With the lock held for writing, no other test's admission server runs: ours restores.
        if declared && restored(&text) > before {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "spec.onCompletion not restored:\n{}",
            addon.admission_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stored hooks are served again; the spawner never changed.
    let kept = spawners.get("kept").await?;
    assert_eq!(kept.data["spec"]["onCompletion"], on_completion);
    let (code, readyz) = probe(addon.admission_probe_port(), "/readyz").await?;
    ensure!(code == 200, "{readyz}");
    Ok(())
}
