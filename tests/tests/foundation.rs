//! The foundation on a real API server: the generated CRDs install, every kelos example (plus an
//! `onCompletion` block) is stored and read back unchanged, and a Task's status moves to Succeeded
//! through the status subresource as the kelos controller does it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use kelos_hooks_shared::api::{Phase, Task, TaskSpawner};
use kelos_hooks_tests::{cluster, examples_dir};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn on_completion() -> Value {
    json!({"hooks": [
        {"name": "notify-team", "phases": ["Succeeded", "Failed"],
         "webhook": {"url": "https://hooks.example.com/kelos",
                     "secretRef": {"name": "team-hook-headers"},
                     "signingSecretRef": {"name": "team-hook-signing", "key": "secret"},
                     "format": "Generic"}},
        {"name": "slack", "phases": ["Failed"],
         "webhook": {"url": "https://hooks.slack.example/services/T0/B0", "format": "Slack"}}
    ]})
}

/// Every example manifest as JSON, with its file name.
fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                doc,
            ));
        }
    }
    assert!(
        out.len() >= 10,
        "expected the kelos examples, found {}",
        out.len()
    );
    out
}

fn api_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("kelos.dev", "v1alpha2", kind))
}

#[tokio::test]
async fn crds_are_established_and_declare_on_completion() -> Result<()> {
    let c = cluster().await?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(c.client().await?);
    let ts = crds.get("taskspawners.kelos.dev").await?;
    let schema = serde_json::to_value(&ts.spec.versions[0].schema)?;
    let hooks = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["onCompletion"]["properties"]
        ["hooks"];
    // The rules are CEL with our wording (crd_coexist.rs checks what users read).
    assert_eq!(
        hooks["x-kubernetes-validations"][0]["rule"],
        json!("self.size() <= 8"),
        "schema: {hooks}"
    );
    assert_eq!(
        hooks["items"]["properties"]["phases"]["items"]["x-kubernetes-validations"][0]["rule"],
        json!("self in ['Succeeded', 'Failed']")
    );
    crds.get("tasks.kelos.dev").await?;

    let out = c.kubectl().args(["version", "-o", "json"]).output().await?;
    let version: Value = serde_json::from_slice(&out.stdout)?;
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("kube-apiserver version: {server}");
    assert!(
        server.starts_with("v1."),
        "real API server version expected, got {version}"
    );
    Ok(())
}

#[tokio::test]
async fn every_kelos_example_round_trips_through_the_api_server() -> Result<()> {
    let c = cluster().await?;
    let client = c.client().await?;
    let ns = c.namespace("foundation").await?;
    let mut seen = (0, 0);
    for (file, mut doc) in examples() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        if kind == "TaskSpawner" {
            doc["spec"]["onCompletion"] = on_completion();
            seen.0 += 1;
        } else if kind == "Task" {
            seen.1 += 1;
        } else {
            continue;
        }
        doc["metadata"]["namespace"] = json!(ns);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(&kind));
        let obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let created = api
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("{file}: creating {kind}"))?;
        let name = created.metadata.name.clone().unwrap();
        let read = serde_json::to_value(api.get(&name).await?)?;
        assert_eq!(
            read["spec"], doc["spec"],
            "{file}: spec changed on the way through the API server"
        );

        // Read-modify-write through our typed structs keeps every kelos field.
        if kind == "TaskSpawner" {
            let typed: Api<TaskSpawner> = Api::namespaced(client.clone(), &ns);
            let mut ts = typed.get(&name).await?;
            assert_eq!(ts.hooks().len(), 2, "{file}");
            ts.metadata
                .labels
                .get_or_insert_default()
                .insert("touched".into(), "yes".into());
            let replaced = typed.replace(&name, &PostParams::default(), &ts).await?;
            assert_eq!(
                serde_json::to_value(&replaced.spec)?,
                doc["spec"],
                "{file}: typed write lost a field"
            );
        } else {
            let typed: Api<Task> = Api::namespaced(client.clone(), &ns);
            let mut task = typed.get(&name).await?;
            task.metadata
                .labels
                .get_or_insert_default()
                .insert("touched".into(), "yes".into());
            let replaced = typed.replace(&name, &PostParams::default(), &task).await?;
            assert_eq!(
                serde_json::to_value(&replaced.spec)?,
                doc["spec"],
                "{file}: typed write lost a field"
            );
        }
    }
    assert!(
        seen.0 >= 8 && seen.1 >= 4,
        "TaskSpawners/Tasks seen: {seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn task_status_moves_to_succeeded_through_the_status_subresource() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("foundation").await?;
    let tasks: Api<Task> = Api::namespaced(c.client().await?, &ns);
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "Task",
        "metadata": {"name": "fib", "labels": {"kelos.dev/taskspawner": "fix-bugs"}},
        "spec": {"type": "claude-code", "prompt": "Print Fibonacci numbers.",
                 "credentials": {"type": "api-key", "secretRef": {"name": "anthropic-api-key"}}}
    }))?;
    tasks.create(&PostParams::default(), &task).await?;

    // A status written through the main resource is ignored (status subresource enabled).
    let ignored = tasks
        .patch(
            "fib",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await?;
    assert_eq!(ignored.terminal_phase(), None);

    let status = json!({"status": {
        "phase": "Succeeded", "message": "done", "startTime": "2026-11-25T10:00:00Z",
        "completionTime": "2026-11-25T10:05:00Z", "outputs": ["https://github.com/o/r/pull/1"],
        "results": {"pr": "1"}, "usage": {"costUSD": "0.42", "inputTokens": 1200, "outputTokens": 340},
        "podName": "fib-abc"
    }});
    tasks
        .patch_status("fib", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let done = tasks.get("fib").await?;
    assert_eq!(done.terminal_phase(), Some(Phase::Succeeded));
    let st = done.status.unwrap();
    assert_eq!(st.completion_time.as_deref(), Some("2026-11-25T10:05:00Z"));
    assert_eq!(st.usage.unwrap().input_tokens, Some(1200));
    assert_eq!(
        st.rest.get("podName"),
        Some(&json!("fib-abc")),
        "unknown status fields are kept"
    );
    Ok(())
}

/// The CRD schema is a second layer behind the admission server: it refuses structurally bad
/// hooks even when no webhook is registered.
#[tokio::test]
async fn crd_schema_refuses_structurally_bad_hooks() -> Result<()> {
    let c = cluster().await?;
    let ns = c.namespace("foundation").await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(c.client().await?, &ns, &api_resource("TaskSpawner"));
    let hook = |name: &str, url: &str| json!({"name": name, "webhook": {"url": url}});
    let nine: Vec<Value> = (0..9)
        .map(|i| hook(&format!("h{i}"), "https://a.example"))
        .collect();
    let cases = [
        (
            "http-url",
            json!([hook("a", "http://a.example/x")]),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        (
            "credentials",
            json!([hook("a", "https://u:p@a.example/x")]),
            "spec.onCompletion.hooks[0].webhook.url",
        ),
        ("nine-hooks", json!(nine), "spec.onCompletion.hooks"),
        (
            "bad-phase",
            json!([{"name": "a", "phases": ["Done"], "webhook": {"url": "https://a.example"}}]),
            "phases[0]",
        ),
        (
            "dup-names",
            json!([
                hook("a", "https://a.example"),
                hook("a", "https://b.example")
            ]),
            "spec.onCompletion.hooks[1].name: duplicate name \"a\"",
        ),
        (
            "bad-name",
            json!([hook("Not_A_Label", "https://a.example")]),
            "spec.onCompletion.hooks[0].name",
        ),
        (
            "bad-format",
            json!([{"name": "a", "webhook": {"url": "https://a.example", "format": "Xml"}}]),
            "format",
        ),
    ];
    for (name, hooks, expect) in cases {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner",
            "metadata": {"name": name},
            "spec": {"taskTemplate": {"type": "claude-code"}, "onCompletion": {"hooks": hooks}}
        }))?;
        let err = api
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(expect),
            "{name}: expected {expect:?} in {text}"
        );
    }
    let ok: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kelos.dev/v1alpha2", "kind": "TaskSpawner", "metadata": {"name": "fine"},
        "spec": {"onCompletion": {"hooks": [hook("a", "https://a.example/x?y=1#f")]}}
    }))?;
    api.create(&PostParams::default(), &ok).await?;
    Ok(())
}
