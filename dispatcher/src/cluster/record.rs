//! Writes a Task's delivery state: one JSON merge patch of its annotations per batch of outcomes,
//! conditional on `resourceVersion`; on conflict the fresh annotation is merged (per hook, the
//! record further along wins) and the write retried.

use kelos_hooks_shared::annotations::{DELIVERIES, REPORT_PHASE};
use kelos_hooks_shared::api::Task;
use kelos_hooks_shared::deliveries::Deliveries;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::machine::Written;

/// Conditional writes tried before giving up for now (the caller retries later).
const MAX_CONFLICTS: usize = 5;

/// What the caller knows of the Task already (from the watch), to save a read.
#[derive(Clone, Debug)]
pub struct Known {
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// The `kelos.dev/webhook-deliveries` value.
    pub deliveries: Option<String>,
    /// The `kelos.dev/webhook-report-phase` value.
    pub report_phase: Option<String>,
}

impl Known {
    /// Reads what matters from a Task.
    pub fn of(task: &Task) -> Self {
        let ann = task.metadata.annotations.as_ref();
        Known {
            resource_version: task.metadata.resource_version.clone(),
            deliveries: ann.and_then(|a| a.get(DELIVERIES)).cloned(),
            report_phase: ann.and_then(|a| a.get(REPORT_PHASE)).cloned(),
        }
    }
}

/// The merge patch: the whole deliveries value, the report phase when due, and the resourceVersion
/// precondition.
pub fn patch_body(resource_version: Option<&str>, merged: &Deliveries, report: bool) -> Value {
    let mut annotations = json!({ DELIVERIES: merged.encode() });
    if report {
        annotations[REPORT_PHASE] = json!(merged.phase.as_str());
    }
    let mut metadata = json!({ "annotations": annotations });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({ "metadata": metadata })
}

/// Records `ours` on the Task. `matching` are the hooks firing on the phase (for the report phase).
/// Returns the state as written and the Task's new resourceVersion (`None` when nothing needed
/// writing); [`Error::TaskGone`] when the Task was deleted, replaced or left the phase.
pub async fn write(
    api: &Api<Task>,
    name: &str,
    uid: &str,
    ours: &Deliveries,
    matching: &[String],
    known: Option<Known>,
) -> Result<Written> {
    let mut known = known;
    for _ in 0..MAX_CONFLICTS {
        let current = match known.take() {
            Some(k) => k,
            None => {
                let task = api.get_opt(name).await?.ok_or(Error::TaskGone)?;
                if task.metadata.uid.as_deref() != Some(uid)
                    || task.terminal_phase() != Some(ours.phase)
                {
                    return Err(Error::TaskGone);
                }
                Known::of(&task)
            }
        };
        let before = Deliveries::resume(current.deliveries.as_deref(), ours.phase);
        let mut merged = before.clone();
        merged.merge_from(ours);
        let report = merged.all_final(matching.iter().map(String::as_str));
        let report_written = current.report_phase.as_deref() == Some(ours.phase.as_str());
        if merged == before && current.deliveries.is_some() && (!report || report_written) {
            return Ok(Written {
                deliveries: merged,
                resource_version: None,
            });
        }
        let body = patch_body(current.resource_version.as_deref(), &merged, report);
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(task) => {
                return Ok(Written {
                    deliveries: merged,
                    resource_version: task.metadata.resource_version,
                });
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(kube::Error::Api(s)) if s.code == 404 => return Err(Error::TaskGone),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::WriteConflicts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use http_body_util::BodyExt;
    use kelos_hooks_shared::api::{Phase, TaskSpec, TaskStatus};
    use kube::client::Body;

    fn task_json(rv: &str, deliveries: Option<&str>) -> Value {
        let mut t = Task::new("t1", TaskSpec::default());
        t.metadata.namespace = Some("ns".into());
        t.metadata.uid = Some("u1".into());
        t.metadata.resource_version = Some(rv.into());
        if let Some(d) = deliveries {
            t.metadata.annotations = Some([(DELIVERIES.to_owned(), d.to_owned())].into());
        }
        t.status = Some(TaskStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        serde_json::to_value(t).unwrap()
    }

    fn respond(code: u16, body: Value) -> http::Response<Body> {
        http::Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    #[tokio::test]
    async fn writes_merge_patch_and_retries_on_conflict_with_fresh_read() {
        let (mock, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let client = kube::Client::new(mock, "default");
        let api: Api<Task> = Api::namespaced(client, "ns");
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut ours = Deliveries::new(Phase::Succeeded);
        ours.record_success("a", 200, now);
        // Someone else (an earlier leader) recorded hook b in the meantime.
        let mut theirs = Deliveries::new(Phase::Succeeded);
        theirs.record_final_failure("b", Some(400), "HTTP 400", now);
        let theirs_text = theirs.encode();

        let server = tokio::spawn(async move {
            // 1: conditional patch with the watched resourceVersion → conflict.
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::PATCH);
            assert_eq!(
                req.uri().path(),
                "/apis/kelos.dev/v1alpha2/namespaces/ns/tasks/t1"
            );
            assert_eq!(
                req.headers()["content-type"],
                "application/merge-patch+json"
            );
            let body: Value =
                serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            assert_eq!(body["metadata"]["resourceVersion"], "7");
            let d = Deliveries::parse(
                body["metadata"]["annotations"][DELIVERIES]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(d.hooks.len(), 1);
            assert!(
                body["metadata"]["annotations"].get(REPORT_PHASE).is_none(),
                "b is not final yet as far as we knew"
            );
            send.send_response(respond(409, json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Conflict","code":409,"message":"conflict"})));
            // 2: fresh read.
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::GET);
            send.send_response(respond(200, task_json("9", Some(&theirs_text))));
            // 3: patch again with both hooks and the report phase.
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::PATCH);
            let body: Value =
                serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            assert_eq!(body["metadata"]["resourceVersion"], "9");
            assert_eq!(body["metadata"]["annotations"][REPORT_PHASE], "Succeeded");
            let d = Deliveries::parse(
                body["metadata"]["annotations"][DELIVERIES]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                d.state("a"),
                kelos_hooks_shared::deliveries::HookState::Delivered
            );
            assert_eq!(
                d.state("b"),
                kelos_hooks_shared::deliveries::HookState::Failed
            );
            send.send_response(respond(200, task_json("10", None)));
        });
        let known = Known {
            resource_version: Some("7".into()),
            deliveries: None,
            report_phase: None,
        };
        let Written {
            deliveries: merged,
            resource_version: rv,
        } = write(
            &api,
            "t1",
            "u1",
            &ours,
            &["a".into(), "b".into()],
            Some(known),
        )
        .await
        .unwrap();
        assert_eq!(merged.hooks.len(), 2);
        assert_eq!(rv.as_deref(), Some("10"));
        server.await.unwrap();
    }

    #[test]
    fn patch_body_shape() {
        let d = Deliveries::new(Phase::Failed);
        let body = patch_body(None, &d, true);
        assert_eq!(
            body,
            json!({"metadata": {"annotations": {DELIVERIES: d.encode(), REPORT_PHASE: "Failed"}}})
        );
    }
}
