//! The parts of an `admission.k8s.io/v1` AdmissionReview a decision needs, and the response.
//!
//! Deliberately minimal and borrowing: strings point into the request body wherever JSON escaping
//! allows, and [`parse`] reads the body only as far as the endpoint's decision needs
//! (`request.object.metadata` for Tasks), so the bulk of a kelos Task is never scanned.

pub mod json_str;
pub mod parse;
pub mod response;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use kelos_hooks_shared::validation::ParsedJson;
use serde::Deserialize;

pub use self::json_str::JsonStr;
pub use self::parse::{Needs, parse};
pub use self::response::{CEILING_RESPONSE, Decision, encode_response};

/// The only review version served (the webhook configurations ask for `v1` only).
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of a review.
pub const KIND: &str = "AdmissionReview";

/// Labels or annotations, borrowed from the body (values decoded when read).
pub type StrMap<'a> = BTreeMap<Cow<'a, str>, JsonStr<'a>>;

/// `request` of an AdmissionReview, as far as it was read (see [`Needs`]).
#[derive(Debug)]
pub struct Request<'a> {
    /// Echoed in the response.
    pub uid: Cow<'a, str>,
    /// Kind of the object under review.
    pub kind: GroupVersionKind<'a>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: Cow<'a, str>,
    /// Who asked.
    pub user_info: UserInfo<'a>,
    /// Whether the request will be persisted; decisions do not depend on it (no side effects),
    /// so it is `None` when reading stopped before it (the API server sends it last).
    pub dry_run: Option<bool>,
    /// Namespace of the object.
    pub namespace: Option<Cow<'a, str>>,
    /// The object as it would be stored (absent on DELETE).
    pub object: Option<Object<'a>>,
    /// The stored object (UPDATE and DELETE); only read when [`Needs::old_metadata`].
    pub old_object: Option<Object<'a>>,
    /// How many bytes of the body were parsed (logged: shows where reading stopped).
    pub read: usize,
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

/// An object under review: its metadata, and what [`Needs::spec`] asks of `spec`.
#[derive(Debug, Default)]
pub struct Object<'a> {
    /// `metadata`.
    pub metadata: Metadata<'a>,
    /// `spec` (only read when [`Needs::spec`]).
    pub spec: Spec<'a>,
}

/// `spec` as far as TaskSpawner validation reads it.
#[derive(Debug, Default)]
pub enum Spec<'a> {
    /// Absent, `null`, or not read.
    #[default]
    Absent,
    /// An object, with its `onCompletion` (`None` when absent or `null`).
    Object {
        /// `spec.onCompletion`.
        on_completion: Option<OnCompletionJson<'a>>,
    },
    /// Something else (the CRD schema refuses that first; judged anyway): its JSON type.
    NotObject(&'static str),
}

/// `spec.onCompletion` as read: its text, or already parsed when the reader could do that in the
/// same pass.
pub enum OnCompletionJson<'a> {
    /// The JSON text, exactly as in the body.
    Text(&'a str),
    /// Parsed by the fast reader (the plain form).
    Parsed(ParsedJson<'a>),
}

impl<'a> OnCompletionJson<'a> {
    /// The JSON text, exactly as in the body.
    pub fn text(&self) -> &'a str {
        match self {
            OnCompletionJson::Text(t) => t,
            OnCompletionJson::Parsed(p) => p.text(),
        }
    }
}

/// Shows the text: however it was read, the same value looks the same.
impl fmt::Debug for OnCompletionJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.text(), f)
    }
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
        self.labels.as_ref()?.get(key).map(JsonStr::as_str)
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(JsonStr::as_str)
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
