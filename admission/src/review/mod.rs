//! The parts of an `admission.k8s.io/v1` AdmissionReview a decision reads, and the response.
//!
//! Plain serde derives over the request body: strings borrow from the body unless they hold
//! escapes, every field no decision reads is skipped by serde (a Task's prompt is scanned once,
//! never copied), and a TaskSpawner's `spec.onCompletion` is kept as raw JSON text (`&RawValue`)
//! until the rules read it.

pub mod response;
pub mod warnings;

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use kelos_hooks_shared::redact::redact;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

pub use self::response::{Decision, encode_response};

/// The only review version served (the webhook configurations ask for `v1` only).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of a review.
pub const KIND: &str = "AdmissionReview";

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

/// A JSON string, borrowed from the body unless it holds escapes (then decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets maps keyed by [`Str`] be searched with a `&str`.
impl Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

/// Labels or annotations.
pub type StrMap<'a> = BTreeMap<Str<'a>, Str<'a>>;

/// `null` reads as the type's default, like an absent field.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// The review envelope.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    #[serde(borrow, default)]
    api_version: Option<Str<'a>>,
    #[serde(borrow, default)]
    kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
}

/// apiVersion and kind only: read again when a body fails to parse, as a wrong version or kind
/// explains more than the field error it led to.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow, default)]
    api_version: Option<Str<'a>>,
    #[serde(borrow, default)]
    kind: Option<Str<'a>>,
}

impl Envelope<'_> {
    fn check(&self) -> Result<(), ParseError> {
        let api_version = self.api_version.as_deref();
        if api_version != Some(API_VERSION) {
            return Err(ParseError::ApiVersion(api_version.unwrap_or("").to_owned()));
        }
        let kind = self.kind.as_deref();
        if kind != Some(KIND) {
            return Err(ParseError::Kind(kind.unwrap_or("").to_owned()));
        }
        Ok(())
    }
}

/// Parses a review body, checking its apiVersion, kind and request.
pub fn parse(body: &[u8]) -> Result<Request<'_>, ParseError> {
    let review: Review<'_> =
        serde_json::from_slice(body).map_err(
            |e| match serde_json::from_slice::<Envelope<'_>>(body).map(|envelope| envelope.check())
            {
                Ok(Err(wrong)) => wrong,
                // serde quotes offending values, which may hold a credential.
                _ => ParseError::Malformed(redact(&e.to_string()).into_owned()),
            },
        )?;
    Envelope {
        api_version: review.api_version,
        kind: review.kind,
    }
    .check()?;
    review.request.ok_or(ParseError::MissingRequest)
}

/// `request` of an AdmissionReview.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    /// Echoed in the response.
    #[serde(borrow)]
    pub uid: Str<'a>,
    /// Kind of the object under review.
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    /// Kind the client wrote in (differs from `kind` when the API server converted the request
    /// for a webhook matched by `matchPolicy: Equivalent`).
    #[serde(borrow, default)]
    pub request_kind: Option<GroupVersionKind<'a>>,
    /// `status` for a status write, else absent or empty.
    #[serde(borrow, default)]
    pub sub_resource: Option<Str<'a>>,
    /// Name of the object.
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    #[serde(borrow)]
    pub operation: Str<'a>,
    /// Who asked.
    #[serde(borrow, default, deserialize_with = "null_as_default")]
    pub user_info: UserInfo<'a>,
    /// Whether the request will be persisted; decisions do not depend on it (no side effects).
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Namespace of the object.
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    /// The object as it would be stored (absent on DELETE).
    #[serde(borrow, default)]
    pub object: Option<Object<'a>>,
    /// The stored object (UPDATE and DELETE).
    #[serde(borrow, default)]
    pub old_object: Option<Object<'a>>,
}

/// `request.kind`.
#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind<'a> {
    /// API group (`kelos.dev`).
    #[serde(borrow, default)]
    pub group: Str<'a>,
    /// API version.
    #[serde(borrow, default)]
    pub version: Str<'a>,
    /// Kind (`TaskSpawner`, `Task`).
    #[serde(borrow, default)]
    pub kind: Str<'a>,
}

/// `request.userInfo`.
#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    /// The authenticated user name.
    #[serde(borrow, default)]
    pub username: Option<Str<'a>>,
    /// The user's groups (a SubjectAccessReview for the requester needs them).
    #[serde(borrow, default, deserialize_with = "null_as_default")]
    pub groups: Vec<Str<'a>>,
    /// The user's UID.
    #[serde(borrow, default)]
    pub uid: Option<Str<'a>>,
    /// Extra attributes of the user (authenticator-specific).
    #[serde(default)]
    pub extra: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// An object under review: its metadata, and what a decision reads of its `spec`.
#[derive(Debug, Default, Deserialize)]
pub struct Object<'a> {
    /// `metadata`.
    #[serde(borrow, default, deserialize_with = "null_as_default")]
    pub metadata: Metadata<'a>,
    /// `spec` (`null` or absent reads as empty, [`Spec::present`] false).
    #[serde(borrow, default, deserialize_with = "present_spec")]
    pub spec: Spec<'a>,
}

/// The one `spec` field a decision reads: a TaskSpawner's `onCompletion` (a Task has none).
/// Everything else of the spec, kelos's own fields, is skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an object (the spec)")]
pub struct Spec<'a> {
    /// `spec.onCompletion`, exactly as in the body, for the rules to read as written.
    #[serde(rename = "onCompletion", borrow, default)]
    pub on_completion: Option<&'a RawValue>,
    /// Whether the object has a `spec` object at all: a JSON patch can add under `/spec` only
    /// then (found by fuzzing, `fuzz/regressions/mutate_taskspawners/`).
    #[serde(skip)]
    pub present: bool,
}

/// A `spec` object marked [`Spec::present`]; `null` reads as absent.
fn present_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Spec<'de>, D::Error> {
    let spec = Option::<Spec<'de>>::deserialize(d)?;
    Ok(spec
        .map(|s| Spec { present: true, ..s })
        .unwrap_or_default())
}

/// The metadata fields a decision reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// `metadata.name` (may be empty with `generateName`).
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    /// `metadata.generateName`.
    #[serde(borrow, default)]
    pub generate_name: Option<Str<'a>>,
    /// `metadata.namespace`.
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    /// `metadata.resourceVersion`.
    #[serde(borrow, default)]
    pub resource_version: Option<Str<'a>>,
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
        self.labels.as_ref()?.get(key).map(Deref::deref)
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(Deref::deref)
    }

    /// A name for messages: `name`, else `generateName*`, else `<unnamed>`.
    pub fn display_name(&self) -> String {
        match (self.name.as_deref(), self.generate_name.as_deref()) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(g)) if !g.is_empty() => format!("{g}*"),
            _ => "<unnamed>".to_owned(),
        }
    }
}

impl Request<'_> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::fixtures;

    #[test]
    fn parses_the_fields_a_decision_needs() {
        let old = fixtures::spawned_task(json!({"a": "b"}));
        let new = fixtures::spawned_task(json!({"a": "c\"quoted\""}));
        let body = fixtures::task_update(old, new, "alice");
        let r = parse(&body).unwrap();
        assert_eq!(&*r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!((&*r.kind.group, &*r.kind.kind), ("kelos.dev", "Task"));
        assert_eq!(&*r.operation, "UPDATE");
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
        // A Task's spec holds nothing a decision reads.
        assert!(o.spec.on_completion.is_none());
        // A TaskSpawner's onCompletion is kept as written.
        let body = fixtures::spawner_review("CREATE", fixtures::valid_hooks());
        let r = parse(&body).unwrap();
        let raw = r.object.unwrap().spec.on_completion.unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(raw.get()).unwrap(),
            fixtures::valid_hooks()
        );
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let body =
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"operation":"CREATE",
            "object":{"metadata":{"labels":{"kelos.dev/task\u0073pawner":"s\"p","plain":"v"}}}}}"#;
        let r = parse(body).unwrap();
        let labels = r.object.unwrap().metadata.labels.unwrap();
        assert_eq!(
            labels.get("kelos.dev/taskspawner").map(|s| &*s.0),
            Some("s\"p")
        );
        assert!(matches!(labels.get("plain"), Some(Str(Cow::Borrowed("v")))));
        assert!(matches!(r.uid, Str(Cow::Borrowed("u"))));
    }

    #[test]
    fn any_field_order_reads_the_same() {
        let body = r#"{"request":{"object":{"spec":{"x":1},"metadata":{"name":"t","annotations":{"a":"b"}}},
            "oldObject":{"metadata":{"annotations":{"a":"c"}}},"userInfo":{"username":"bob"},"operation":"UPDATE",
            "namespace":"ns","kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"uid":"u","dryRun":true},
            "kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#;
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!((&*r.uid, r.username(), r.dry_run), ("u", "bob", Some(true)));
        assert_eq!(
            r.object.as_ref().unwrap().metadata.annotation("a"),
            Some("b")
        );
        assert_eq!(r.old_object.unwrap().metadata.annotation("a"), Some("c"));
        // The envelope is checked even though it came last.
        let wrong = body.replace("admission.k8s.io/v1\"", "admission.k8s.io/v1beta1\"");
        assert!(matches!(
            parse(wrong.as_bytes()),
            Err(ParseError::ApiVersion(_))
        ));
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
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"operation":"DELETE","namespace":null,
            "userInfo":null,"object":null,"oldObject":{"metadata":null}}}"#;
        let r = parse(body).unwrap();
        assert!(r.object.is_none() && r.namespace().is_none());
        assert!(r.old_object.unwrap().metadata.annotations.is_none());
    }

    #[test]
    fn envelope_and_malformed_bodies() {
        assert_eq!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err(),
            ParseError::MissingRequest
        );
        assert_eq!(
            parse(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#
            )
            .unwrap_err(),
            ParseError::MissingRequest
        );
        assert!(
            matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#), Err(ParseError::ApiVersion(v)) if v == "admission.k8s.io/v1beta1")
        );
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#),
            Err(ParseError::Kind(_))
        ));
        for body in [&b"\xff\xfe"[..], b"[1,2,3]", b"", b"{not json"] {
            assert!(
                matches!(parse(body), Err(ParseError::Malformed(_))),
                "{body:?}"
            );
        }
        let malformed = |body: &[u8], needle: &str| {
            assert!(
                matches!(parse(body), Err(ParseError::Malformed(m)) if m.contains(needle)),
                "{needle}: {:?}",
                parse(body)
            );
        };
        malformed(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#,
            "kind",
        );
        malformed(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#,
            "invalid type",
        );
        malformed(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
                "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"operation":"CREATE"}} x"#,
            "trailing",
        );
        // The CRD schema makes spec an object before any validating webhook runs.
        let spec_5 = fixtures::review_json(
            "CREATE",
            "TaskSpawner",
            json!({"metadata": {"name": "x"}, "spec": 5}),
            None,
            "u",
        );
        malformed(
            &spec_5,
            "invalid type: integer `5`, expected an object (the spec)",
        );
    }

    #[test]
    fn truncated_and_deeply_nested_bodies_are_errors_not_panics() {
        let body = fixtures::task_create(fixtures::spawned_task(json!({"k": "v"})), "kelos");
        for cut in [1, body.len() / 3, body.len() / 2, body.len() - 1] {
            assert!(
                matches!(parse(&body[..cut]), Err(ParseError::Malformed(m)) if m.contains("EOF")),
                "cut at {cut}"
            );
        }
        // Nesting deeper than any stack: skipped fields are skipped without recursion, parsed
        // fields stop at serde_json's recursion limit.
        let deep = "[".repeat(200_000) + &"]".repeat(200_000);
        let in_spec = String::from_utf8(body.clone()).unwrap().replacen(
            r#""spec":{"#,
            &format!(r#""spec":{{"deep":{deep},"#),
            1,
        );
        assert!(parse(in_spec.as_bytes()).is_ok());
        let in_metadata = String::from_utf8(body).unwrap().replacen(
            r#""metadata":{"#,
            &format!(r#""metadata":{{"labels":{deep},"#),
            1,
        );
        assert!(matches!(
            parse(in_metadata.as_bytes()),
            Err(ParseError::Malformed(_))
        ));
        let unclosed = "[".repeat(200_000);
        assert!(matches!(
            parse(unclosed.as_bytes()),
            Err(ParseError::Malformed(_))
        ));
    }
}
