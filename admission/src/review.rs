//! The parts of an `admission.k8s.io/v1` AdmissionReview a decision needs, and the response.
//!
//! Deliberately minimal and borrowing: strings point into the request body wherever JSON escaping
//! allows, unknown fields (most of a kelos Task) are skipped without building values.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::patch::Patch;

/// The only review version served (the webhook configurations ask for `v1` only).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of a review.
pub const KIND: &str = "AdmissionReview";

/// Labels or annotations, borrowed from the body.
pub type StrMap<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// An incoming AdmissionReview.
#[derive(Debug, Deserialize)]
pub struct Review<'a> {
    /// Must be `admission.k8s.io/v1`.
    #[serde(rename = "apiVersion", borrow, default)]
    pub api_version: Option<Cow<'a, str>>,
    /// Must be `AdmissionReview`.
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// The request; a review without one is malformed.
    #[serde(borrow, default)]
    pub request: Option<Request<'a>>,
}

/// `request` of an AdmissionReview.
#[derive(Debug, Deserialize)]
pub struct Request<'a> {
    /// Echoed in the response.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// Kind of the object under review.
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    #[serde(borrow)]
    pub operation: Cow<'a, str>,
    /// Who asked.
    #[serde(rename = "userInfo", borrow, default)]
    pub user_info: UserInfo<'a>,
    /// Whether the request will be persisted; decisions do not depend on it (no side effects).
    #[serde(rename = "dryRun", default)]
    pub dry_run: Option<bool>,
    /// Namespace of the object.
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// The object as it would be stored (absent on DELETE).
    #[serde(borrow, default)]
    pub object: Option<Object<'a>>,
    /// The stored object (UPDATE and DELETE).
    #[serde(rename = "oldObject", borrow, default)]
    pub old_object: Option<Object<'a>>,
}

/// `request.kind`.
#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind<'a> {
    /// API group (`kelos.dev`).
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    /// API version.
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    /// Kind (`TaskSpawner`, `Task`).
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
}

/// `request.userInfo`.
#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    /// The authenticated user name.
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
}

/// An object under review: its metadata, and `spec` kept raw (parsed only by handlers that need it).
#[derive(Debug, Default, Deserialize)]
pub struct Object<'a> {
    /// `metadata`.
    #[serde(borrow, default)]
    pub metadata: Metadata<'a>,
    /// `spec`, unparsed.
    #[serde(borrow, default)]
    pub spec: Option<&'a RawValue>,
}

/// The metadata fields a decision reads.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata<'a> {
    /// `metadata.name` (may be empty with `generateName`).
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// `metadata.generateName`.
    #[serde(rename = "generateName", borrow, default)]
    pub generate_name: Option<Cow<'a, str>>,
    /// `metadata.namespace`.
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// `metadata.labels` (`null` reads as absent).
    #[serde(borrow, default)]
    pub labels: Option<StrMap<'a>>,
    /// `metadata.annotations` (`null` reads as absent).
    #[serde(borrow, default)]
    pub annotations: Option<StrMap<'a>>,
}

impl Metadata<'_> {
    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(|v| v.as_ref())
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(|v| v.as_ref())
    }

    /// A name for messages: `name`, else `generateName*`, else `<unnamed>`.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.generate_name) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => format!("{g}*"),
            _ => "<unnamed>".to_owned(),
        }
    }
}

impl<'a> Request<'a> {
    /// Namespace of the request (the request field, else the object's).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .or_else(|| self.object.as_ref()?.metadata.namespace.as_deref())
    }

    /// The requesting user name (empty when absent).
    pub fn username(&self) -> &str {
        self.user_info.username.as_deref().unwrap_or("")
    }
}

/// Why a body is not a usable review: answered with HTTP 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not shaped like a review.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
    /// Some other apiVersion.
    #[error("unsupported apiVersion {0:?}: only admission.k8s.io/v1 is served")]
    ApiVersion(String),
    /// Some other kind.
    #[error("unsupported kind {0:?}: expected AdmissionReview")]
    Kind(String),
    /// No `request`.
    #[error("AdmissionReview has no request")]
    MissingRequest,
}

/// Parses a review body, checking its apiVersion, kind and request.
pub fn parse(body: &[u8]) -> Result<Request<'_>, ParseError> {
    let review: Review<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            // On the error path only: a wrong apiVersion/kind explains more than a field error.
            if let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(body) {
                check_envelope(envelope.api_version.as_deref(), envelope.kind.as_deref())?;
            }
            return Err(ParseError::Malformed(e.to_string()));
        }
    };
    check_envelope(review.api_version.as_deref(), review.kind.as_deref())?;
    review.request.ok_or(ParseError::MissingRequest)
}

/// apiVersion and kind only, for error messages.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
}

fn check_envelope(api_version: Option<&str>, kind: Option<&str>) -> Result<(), ParseError> {
    if api_version != Some(API_VERSION) {
        return Err(ParseError::ApiVersion(api_version.unwrap_or("").to_owned()));
    }
    if kind != Some(KIND) {
        return Err(ParseError::Kind(kind.unwrap_or("").to_owned()));
    }
    Ok(())
}

/// An admission decision, independent of the wire format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Denial status (code and message); `None` when allowed.
    pub status: Option<Status>,
    /// JSON Patch, mutating only.
    pub patch: Option<Patch>,
    /// Warnings shown by kubectl.
    pub warnings: Vec<String>,
}

impl Decision {
    /// Allowed, nothing to say.
    pub fn allow() -> Self {
        Decision {
            allowed: true,
            ..Decision::default()
        }
    }

    /// Denied with `code` (400 invalid, 403 forbidden) and a message.
    pub fn deny(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            403 => "Forbidden",
            400 => "BadRequest",
            _ => "Invalid",
        };
        Decision {
            allowed: false,
            status: Some(Status {
                code,
                message: message.into(),
                reason,
            }),
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// Adds warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

/// `response.status` of a denial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// HTTP-style code shown to the client.
    pub code: u16,
    /// Human message (kubectl prints it).
    pub message: String,
    /// Machine reason.
    pub reason: &'static str,
}

/// The AdmissionReview sent back.
#[derive(Debug, Serialize)]
pub struct ReviewResponse<'a> {
    /// `admission.k8s.io/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// `AdmissionReview`.
    pub kind: &'static str,
    /// The answer.
    pub response: Response<'a>,
}

/// `response` of an AdmissionReview. `patch` is the base64 string the API documents for `[]byte`.
#[derive(Debug, Serialize)]
pub struct Response<'a> {
    /// The request's uid.
    pub uid: &'a str,
    /// The decision.
    pub allowed: bool,
    /// Denial detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a Status>,
    /// Base64 of the JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<&'a str>,
    /// `JSONPatch` whenever `patch` is set.
    #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Warnings for the client.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
}

/// Serialises the response review for `uid`.
pub fn encode_response(uid: &str, decision: &Decision) -> Vec<u8> {
    let patch = decision.patch.as_ref().map(Patch::base64);
    let patch_type = patch.as_ref().map(|_| "JSONPatch");
    let review = ReviewResponse {
        api_version: API_VERSION,
        kind: KIND,
        response: Response {
            uid,
            allowed: decision.allowed,
            status: decision.status.as_ref(),
            patch,
            patch_type,
            warnings: &decision.warnings,
        },
    };
    // Strings, bools and integers only: serialisation cannot fail.
    serde_json::to_vec(&review).unwrap_or_default()
}

/// The fixed response of the benchmark ceiling endpoint.
pub const CEILING_RESPONSE: &[u8] =
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixtures;

    #[test]
    fn parses_the_fields_a_decision_needs() {
        let old = fixtures::spawned_task(serde_json::json!({"a": "b"}));
        let new = fixtures::spawned_task(serde_json::json!({"a": "c\"quoted\""}));
        let body = fixtures::task_update(old, new, "alice");
        let r = parse(&body).unwrap();
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(
            (r.kind.group.as_ref(), r.kind.kind.as_ref()),
            ("kelos.dev", "Task")
        );
        assert_eq!(r.operation, "UPDATE");
        assert_eq!(r.username(), "alice");
        assert_eq!(r.namespace(), Some(fixtures::NS));
        assert_eq!(r.dry_run, Some(false));
        let o = r.object.as_ref().unwrap();
        assert_eq!(
            o.metadata.label("kelos.dev/taskspawner"),
            Some(fixtures::SPAWNER)
        );
        assert_eq!(o.metadata.annotation("a"), Some("c\"quoted\""));
        assert_eq!(
            r.old_object.as_ref().unwrap().metadata.annotation("a"),
            Some("b")
        );
        assert!(o.spec.is_some());
    }

    #[test]
    fn null_maps_and_missing_user_read_as_absent() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"operation":"CREATE",
            "object":{"metadata":{"name":"t","labels":null,"annotations":null}},"oldObject":null}}"#;
        let r = parse(body).unwrap();
        assert_eq!(r.username(), "");
        assert!(r.object.unwrap().metadata.annotations.is_none());
        assert!(r.old_object.is_none());
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err(),
            ParseError::MissingRequest
        );
        assert!(
            matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#), Err(ParseError::ApiVersion(v)) if v == "admission.k8s.io/v1beta1")
        );
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#),
            Err(ParseError::Kind(_))
        ));
        assert!(matches!(parse(b"\xff\xfe"), Err(ParseError::Malformed(_))));
        assert!(
            matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#), Err(ParseError::Malformed(m)) if m.contains("kind"))
        );
    }

    #[test]
    fn response_encoding() {
        let d = Decision {
            allowed: true,
            status: None,
            patch: Some(Patch::new("[]".into())),
            warnings: vec!["w".into()],
        };
        let v: serde_json::Value = serde_json::from_slice(&encode_response("u1", &d)).unwrap();
        assert_eq!(v["response"]["patch"], "W10=");
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        assert_eq!(v["response"]["warnings"][0], "w");
        let v: serde_json::Value =
            serde_json::from_slice(&encode_response("u2", &Decision::deny(403, "no"))).unwrap();
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["allowed"], false);
        let v: serde_json::Value = serde_json::from_slice(CEILING_RESPONSE).unwrap();
        assert_eq!(v["response"]["allowed"], true);
    }
}
