//! Writes a redelivery: the reset delivery state in place of the Task's, the request and the report
//! phase removed, in one JSON merge patch conditional on the resourceVersion the decision was made
//! on (a newer version is decided again from the watch).

use kelos_hooks_shared::annotations::{DELIVERIES, REDELIVER, REDELIVER_BY, REPORT_PHASE};
use kelos_hooks_shared::api::Task;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::machine::{Redelivery, Written};

/// The merge patch of a redelivery.
pub fn patch_body(r: &Redelivery) -> Value {
    let mut metadata = json!({ "annotations": {
        DELIVERIES: r.deliveries.encode(),
        REPORT_PHASE: null,
        REDELIVER: null,
        REDELIVER_BY: null,
    }});
    if let Some(rv) = &r.task.metadata.resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({ "metadata": metadata })
}

/// Performs the write; [`Error::WriteConflicts`] when the Task changed since it was seen.
pub async fn write(api: &Api<Task>, r: &Redelivery) -> Result<Written> {
    let name = r.task.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch_body(r)))
        .await
    {
        Ok(task) if task.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Written {
            deliveries: r.deliveries.clone(),
            resource_version: task.metadata.resource_version,
        }),
        Ok(_) => Err(Error::TaskGone),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::WriteConflicts),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::TaskGone),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kelos_hooks_shared::api::{Phase, TaskSpec};
    use kelos_hooks_shared::deliveries::Deliveries;
    use std::sync::Arc;

    #[test]
    fn removes_the_request_and_the_report_phase_conditionally() {
        let mut t = Task::new("t", TaskSpec::default());
        t.metadata.resource_version = Some("42".into());
        let r = Redelivery {
            uid: "u".into(),
            phase: Phase::Failed,
            task: Arc::new(t),
            deliveries: Deliveries::new(Phase::Failed),
            hooks: vec![],
            unknown: vec![],
            by: "alice".into(),
        };
        let body = patch_body(&r);
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        let ann = &body["metadata"]["annotations"];
        assert!(
            ann[REPORT_PHASE].is_null() && ann[REDELIVER].is_null() && ann[REDELIVER_BY].is_null()
        );
        assert!(
            ann.get(REDELIVER_BY).is_some(),
            "null removes the key in a merge patch"
        );
        assert_eq!(ann[DELIVERIES], r.deliveries.encode());
    }
}
