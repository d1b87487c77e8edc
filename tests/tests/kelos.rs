//! The add-on on real kelos: kelos's chart, kelos-controller and kelos-spawner built from
//! `../shared/kelos-src` (see `kelos_hooks_tests::kelos`), our admission server and dispatcher next
//! to them. A cron TaskSpawner with `onCompletion` → `kelos-spawner --one-shot` creates Tasks →
//! our mutating webhook snapshots the hooks → the Jobs run to their end as a cluster would → kelos
//! sets Succeeded/Failed → our dispatcher delivers to a local receiver.
//!
//! Nothing of kelos is imitated: no Task status is written here, only what a Job controller,
//! scheduler and kubelet would write for the Jobs kelos creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kelos_hooks_shared::annotations::ON_COMPLETION;
use kelos_hooks_shared::api::{Phase, Task};
use kelos_hooks_shared::deliveries::{Deliveries, HookState};
use kelos_hooks_tests::kelos::{
    AddOn, AgentRun, Completion, Kelos, TASK_FINALIZER, controller_user, cron_spawner, kelos,
};
use kelos_hooks_tests::metrics::sample;
use kelos_hooks_tests::receiver::{Receiver, Recorded};
use kelos_hooks_tests::tasks::wait_report_phase;
use kube::api::{Api, DeleteParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const HOOK_PATH: &str = "/notify";
fn hooks(url: &str) -> Value {
    json!({"hooks": [{"name": "notify", "webhook": {"url": url}}]})
}

fn name_of(t: &Task) -> String {
    t.metadata.name.clone().unwrap_or_default()
}

/// The runs the flow tests give their two Tasks: one succeeds with outputs and usage, one fails.
fn agent_runs() -> [AgentRun; 2] {
    [
        AgentRun::new(
            Phase::Succeeded,
            &[
                "https://github.com/kelos-dev/demo/pull/7",
                "branch: deps-update",
                "cost-usd: 0.42",
                "input-tokens: 1200",
                "output-tokens: 340",
            ],
        ),
        AgentRun::new(Phase::Failed, &["cost-usd: 0.05", "input-tokens: 90"]),
    ]
}

/// Spawns two Tasks from `spawner` with kelos-spawner, checks our snapshot is on each, runs them
/// to Succeeded and Failed, checks what the receiver got, and returns how each Task ended.
async fn spawn_run_and_check_deliveries(
    k: &Kelos,
    ns: &str,
    spawner: &str,
    rx: &Receiver,
    addon: &AddOn,
    expect_snapshot: bool,
) -> Result<Vec<Completion>> {
    k.backdate_discovery(ns, spawner, 10).await?;
    let run = k.run_spawner_once(ns, spawner).await?;
    let tasks = k.spawned_tasks(ns, spawner).await?;
    ensure!(
        tasks.len() == 2,
        "kelos-spawner created {} Tasks, expected 2 (maxTotalTasks):\n{}",
        tasks.len(),
        run.log
    );
    eprintln!(
        "[kelos] kelos-spawner --one-shot created {:?} in {} ms",
        tasks.iter().map(name_of).collect::<Vec<_>>(),
        run.took.as_millis()
    );
    let expected = hooks(&rx.url(HOOK_PATH));
    for t in &tasks {
        let snapshot = t
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ON_COMPLETION));
        if expect_snapshot {
            let snapshot = snapshot.with_context(|| {
                format!(
                    "Task {} has no {ON_COMPLETION}: our mutating webhook did not inject the snapshot\n{}",
                    name_of(t),
                    addon.admission_log()
                )
            })?;
            let snapshot: Value = serde_json::from_str(snapshot)?;
            assert_eq!(snapshot, expected, "snapshot on {}", name_of(t));
        } else {
            assert_eq!(snapshot, None, "no admission server, no snapshot");
        }
    }

    let mut completions = Vec::new();
    for (t, run) in tasks.iter().zip(agent_runs()) {
        let done = k.run_task(ns, &name_of(t), &run).await?;
        eprintln!("[kelos] {done}");
        completions.push(done);
    }

    let got = rx.wait_for(HOOK_PATH, 2, WAIT).await.with_context(|| {
        format!(
            "deliveries missing\n--- dispatcher:\n{}",
            addon.dispatcher.logs()
        )
    })?;
    for (done, run) in completions.iter().zip(agent_runs()) {
        let name = name_of(&done.task);
        let req: Vec<&Recorded> = got
            .iter()
            .filter(|r| r.json()["task"]["name"] == name.as_str())
            .collect();
        assert_eq!(req.len(), 1, "one delivery for {name}: {got:?}");
        check_payload(&req[0].json(), done, spawner, &run);
    }
    let api: Api<Task> = Api::namespaced(k.cluster().client().await?, ns);
    for (done, run) in completions.iter().zip(agent_runs()) {
        let t = wait_report_phase(&api, &name_of(&done.task), run.phase, WAIT, || {
            addon.dispatcher.logs()
        })
        .await?;
        let ann = t.metadata.annotations.unwrap_or_default();
        let d = Deliveries::parse(&ann[kelos_hooks_shared::annotations::DELIVERIES])?;
        assert_eq!(d.hooks["notify"].state, HookState::Delivered);
    }
    Ok(completions)
}

/// The Generic payload carries what kelos wrote where kelos v1alpha2 keeps it: nothing null that
/// kelos has a value for.
fn check_payload(p: &Value, done: &Completion, spawner: &str, run: &AgentRun) {
    let t = &p["task"];
    let status = done.task.status.clone().unwrap_or_default();
    let what = format!("payload {p}");
    let (event, message, cost) = match run.phase {
        Phase::Succeeded => (
            "kelos.task.succeeded",
            "Task completed successfully",
            "0.42",
        ),
        Phase::Failed => ("kelos.task.failed", "Task failed", "0.05"),
    };
    assert_eq!(p["type"], event, "{what}");
    assert_eq!(p["hook"], "notify", "{what}");
    assert_eq!(t["phase"], run.phase.as_str(), "{what}");
    assert_eq!(
        t["namespace"],
        done.task.metadata.namespace.as_deref().unwrap(),
        "{what}"
    );
    assert_eq!(
        t["uid"],
        done.task.metadata.uid.as_deref().unwrap(),
        "{what}"
    );
    assert_eq!(t["spawner"], spawner, "{what}");
    assert_eq!(t["agentType"], "claude-code", "spec.worker.type: {what}");
    assert_eq!(t["model"], "opus", "spec.worker.model: {what}");
    assert_eq!(t["message"], message, "{what}");
    assert_eq!(t["usage"]["costUSD"], cost, "status.usage.costUSD: {what}");
    assert_eq!(
        t["startTime"].as_str(),
        status.start_time.as_deref(),
        "{what}"
    );
    assert_eq!(
        t["completionTime"].as_str(),
        status.completion_time.as_deref(),
        "{what}"
    );
    assert!(
        t["startTime"].is_string() && t["completionTime"].is_string(),
        "{what}"
    );
    if run.phase == Phase::Succeeded {
        assert_eq!(t["usage"]["inputTokens"], 1200, "{what}");
        assert_eq!(t["usage"]["outputTokens"], 340, "{what}");
        assert_eq!(
            t["outputs"][0], "https://github.com/kelos-dev/demo/pull/7",
            "{what}"
        );
        assert_eq!(t["results"]["branch"], "deps-update", "{what}");
    }
}

/// When `KELOS_HOOKS_WRITE_KELOS_FIXTURES=DIR` is set: the Tasks as the API server returns them
/// (managedFields dropped) into `DIR/kelos-task-<phase>.json`, for the payload unit tests.
async fn write_fixtures(k: &Kelos, ns: &str, done: &[Completion]) -> Result<()> {
    let Some(dir) = std::env::var_os("KELOS_HOOKS_WRITE_KELOS_FIXTURES") else {
        return Ok(());
    };
    let gvk = GroupVersionKind::gvk("kelos.dev", "v1alpha2", "Task");
    let api: Api<DynamicObject> = Api::namespaced_with(
        k.cluster().client().await?,
        ns,
        &ApiResource::from_gvk(&gvk),
    );
    for d in done {
        let mut t = api.get(&name_of(&d.task)).await?;
        t.metadata.managed_fields = None;
        let phase = d.task.terminal_phase().unwrap().as_str().to_lowercase();
        let path = std::path::Path::new(&dir).join(format!("kelos-task-{phase}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&t)? + "\n")?;
        eprintln!("[kelos] wrote {}", path.display());
    }
    Ok(())
}

fn managers(
    obj_fields: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>>,
) -> Vec<String> {
    obj_fields
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} {}",
                m.manager.as_deref().unwrap_or("?"),
                m.operation.as_deref().unwrap_or("?")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// (a) The whole flow with a TaskSpawner exactly as a user creates it (no finalizer): kelos's
/// controller rewrites it with a full Update to add its finalizer, and `onCompletion` must
/// survive that (our TaskSpawner UPDATE webhook restores it), then the hooks fire.
#[tokio::test]
async fn hooks_survive_kelos_and_fire_when_kelos_finishes_tasks() -> Result<()> {
    let k = kelos().await?;
    eprintln!(
        "[kelos] kelos commit {} ({})",
        k.commit(),
        k.source().display()
    );
    let ns = k.namespace("kelos-flow").await?;
    let rx = Receiver::start().await?;
    let addon = AddOn::start(k, &ns, rx.ca_file()).await?;
    let on_completion = hooks(&rx.url(HOOK_PATH));
    k.create_spawner(&ns, &cron_spawner("nightly", &on_completion, 2, false))
        .await?;

    let reconciled = k.wait_spawner_finalized(&ns, "nightly").await?;
    assert_eq!(
        reconciled.data["spec"]["onCompletion"],
        on_completion,
        "kelos-controller's finalizer Update (a full Update of its Go type, which has no \
         onCompletion) removed spec.onCompletion; managedFields: {:?}",
        managers(reconciled.metadata.managed_fields.as_ref())
    );
    spawn_run_and_check_deliveries(k, &ns, "nightly", &rx, &addon, true).await?;
    Ok(())
}

/// (b) kelos's own writes pass our admission configuration: kelos adds and removes its Task
/// finalizer by full Updates (judged by the chart's Task annotation policy inside the API server,
/// never sent to our admission server), writes Task status, and deletes Jobs; our dispatcher's
/// annotation writes do not get in its way. The spawner is created with
/// kelos's finalizer already on, so this holds independently of test (a).
#[tokio::test]
async fn kelos_writes_pass_our_webhooks() -> Result<()> {
    let k = kelos().await?;
    let ns = k.namespace("kelos-writes").await?;
    let rx = Receiver::start().await?;
    let addon = AddOn::start(k, &ns, rx.ca_file()).await?;
    let on_completion = hooks(&rx.url(HOOK_PATH));
    k.create_spawner(&ns, &cron_spawner("weekly", &on_completion, 2, true))
        .await?;
    let done = spawn_run_and_check_deliveries(k, &ns, "weekly", &rx, &addon, true).await?;
    write_fixtures(k, &ns, &done).await?;

    let api: Api<Task> = Api::namespaced(k.cluster().client().await?, &ns);
    for d in &done {
        let t = api.get(&name_of(&d.task)).await?;
        let finalizers = t.metadata.finalizers.clone().unwrap_or_default();
        assert!(
            finalizers.iter().any(|f| f == TASK_FINALIZER),
            "kelos's finalizer Update did not land: {finalizers:?}"
        );
        let writers = managers(t.metadata.managed_fields.as_ref());
        assert!(
            writers.iter().any(|m| m == "kelos-controller Update"),
            "no Update by kelos-controller in {writers:?}"
        );
    }
    let (_, metrics) =
        kelos_hooks_tests::admission_server::probe(addon.admission_probe_port(), "/metrics")
            .await?;
    let reviewed_updates: f64 = ["true", "false"]
        .iter()
        .map(|allowed| {
            sample(
                &metrics,
                &format!(
                    r#"kelos_hooks_admission_requests_total{{endpoint="validate-tasks",operation="UPDATE",allowed="{allowed}"}}"#
                ),
            )
        })
        .sum();
    assert_eq!(
        reviewed_updates, 0.0,
        "kelos's Task Updates must not wait on our admission server:\n{metrics}"
    );

    // Deletion: kelos deletes the Job and removes its finalizer (another full Update).
    let name = name_of(&done[0].task);
    api.delete(&name, &DeleteParams::default()).await?;
    let deadline = Instant::now() + WAIT;
    while api.get_opt(&name).await?.is_some() {
        ensure!(
            Instant::now() < deadline,
            "Task {name} still there {WAIT:?} after deletion: kelos could not remove its finalizer\n{}\n{}",
            k.controller_log_tail(30),
            addon.admission_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "[kelos] kelos's writes ({} as {}) passed our admission configuration: finalizer added \
         and removed, status written, no Task UPDATE sent to our admission server",
        k.commit(),
        controller_user()
    );
    Ok(())
}

/// (c) With our admission server down (webhooks still registered, as in an outage), kelos keeps
/// working: its Task writes succeed, Tasks complete, and the dispatcher still delivers (the hooks
/// taken from the spawner, since no snapshot could be injected).
#[tokio::test]
async fn kelos_keeps_working_while_our_admission_server_is_down() -> Result<()> {
    let k = kelos().await?;
    let ns = k.namespace("kelos-outage").await?;
    let rx = Receiver::start().await?;
    let mut addon = AddOn::start(k, &ns, rx.ca_file()).await?;
    let on_completion = hooks(&rx.url(HOOK_PATH));
    k.create_spawner(&ns, &cron_spawner("daily", &on_completion, 2, true))
        .await?;
    addon.stop_admission().await?;
    spawn_run_and_check_deliveries(k, &ns, "daily", &rx, &addon, false).await?;
    Ok(())
}
