//! "May this user ask for a redelivery?" for the /validate/tasks webhook (`webhooks.tasks.guard=
//! Webhook`, clusters before 1.30): a SubjectAccessReview for the verb `redeliver` on the Task,
//! with the requester's username, groups, uid and extra from the review, the same question the
//! ValidatingAdmissionPolicy asks the authorizer in-process.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::review::Request;

/// The custom verb granting redelivery requests.
pub const VERB: &str = "redeliver";

/// Asks the API server (none: every request is refused, e.g. in unit tests).
#[derive(Clone, Default)]
pub struct Authorizer {
    client: Option<kube::Client>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("enabled", &self.client.is_some())
            .finish()
    }
}

/// The review asking whether the request's user may redeliver its Task.
pub fn review(req: &Request<'_>) -> SubjectAccessReview {
    let u = &req.user_info;
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(req.username().to_owned()),
            groups: Some(u.groups.iter().map(|g| g.to_string()).collect()),
            uid: u.uid.as_ref().map(|s| s.to_string()),
            extra: u.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some(kelos_hooks_shared::api::GROUP.to_owned()),
                resource: Some("tasks".into()),
                verb: Some(VERB.into()),
                namespace: req.namespace().map(str::to_owned),
                name: req.name.as_ref().map(|n| n.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Authorizer {
    /// Asking through `client`.
    pub fn new(client: kube::Client) -> Self {
        Authorizer {
            client: Some(client),
        }
    }

    /// Whether the user may; `Err` says why nobody could tell (the webhook then refuses).
    pub async fn may_redeliver(&self, req: &Request<'_>) -> Result<bool, String> {
        let Some(client) = &self.client else {
            return Ok(false);
        };
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let answer = api
            .create(&PostParams::default(), &review(req))
            .await
            .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::fixtures;
    use crate::review::parse;

    #[test]
    fn asks_about_the_requester_and_the_task() {
        let t = fixtures::spawned_task(json!({}));
        let mut body: serde_json::Value =
            serde_json::from_slice(&fixtures::task_update(t.clone(), t, "alice")).unwrap();
        body["request"]["userInfo"]["groups"] = json!(["team", "system:authenticated"]);
        body["request"]["userInfo"]["uid"] = json!("u-1");
        body["request"]["userInfo"]["extra"] = json!({"scopes": ["a"]});
        let bytes = serde_json::to_vec(&body).unwrap();
        let req = parse(&bytes).unwrap();
        let spec = review(&req).spec;
        assert_eq!(spec.user.as_deref(), Some("alice"));
        assert_eq!(spec.groups.unwrap(), ["team", "system:authenticated"]);
        assert_eq!(spec.uid.as_deref(), Some("u-1"));
        assert_eq!(spec.extra.unwrap()["scopes"], ["a"]);
        let ra = spec.resource_attributes.unwrap();
        assert_eq!(
            (
                ra.group.as_deref(),
                ra.resource.as_deref(),
                ra.verb.as_deref()
            ),
            (Some("kelos.dev"), Some("tasks"), Some("redeliver"))
        );
        assert_eq!(ra.namespace.as_deref(), Some(fixtures::NS));
    }
}
