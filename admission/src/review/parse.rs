//! Reading a review body as far as a decision needs, and no further.
//!
//! A kelos Task review is ~5 KB, nearly all of it `spec` (the prompt) which no decision reads;
//! skipping it still costs a scan of every byte. The API server writes `request` fields in a fixed
//! order (`uid`, `kind`, …, `namespace`, `operation`, `userInfo`, `object`, `oldObject`, `dryRun`)
//! and objects with sorted keys (`apiVersion`, `kind`, `metadata`, `spec`, `status`), so once
//! `object.metadata` is read everything a Task decision needs is known and reading stops there.
//! Nothing depends on that order for correctness: a body in any other order is read further (to
//! its end at most) and judged the same.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

mod fast;

use super::{
    API_VERSION, GroupVersionKind, KIND, Metadata, Object, OnCompletionJson, Request, Spec,
    UserInfo,
};

/// What an endpoint's decision reads beyond the request header and `object.metadata`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// `object.spec` (raw), for TaskSpawner validation.
    pub spec: bool,
    /// `oldObject.metadata` on UPDATE, for Task validation.
    pub old_metadata: bool,
}

impl Needs {
    /// Task mutation.
    pub const METADATA: Needs = Needs {
        spec: false,
        old_metadata: false,
    };
    /// Task validation.
    pub const METADATA_AND_OLD: Needs = Needs {
        spec: false,
        old_metadata: true,
    };
    /// TaskSpawner validation.
    pub const SPEC: Needs = Needs {
        spec: true,
        old_metadata: false,
    };
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

/// Parses a review body as far as `needs` requires, checking its apiVersion, kind and request.
///
/// When reading stops early the rest of the body is not parsed (the decision cannot depend on
/// it); a body cut off mid-way is still refused, as it cannot end with `}`.
pub fn parse(body: &[u8], needs: Needs) -> Result<Request<'_>, ParseError> {
    let mut state = State::new(needs);
    let mut lexer = fast::Lexer::new(body);
    let read = match fast::review(&mut lexer, &mut state) {
        Ok(()) => body.len(),
        Err(fast::Halt::Done) => {
            state.stopped = true;
            lexer.pos
        }
        Err(fast::Halt::Fallback) => {
            state = State::new(needs);
            read_with_serde(body, &mut state)?
        }
    };
    if state.stopped && body.trim_ascii_end().last() != Some(&b'}') {
        return Err(ParseError::Malformed(
            "truncated: the body does not end with `}`".to_owned(),
        ));
    }
    check_envelope(state.api_version.as_deref(), state.kind.as_deref())?;
    state.into_request(read)
}

/// The serde reader: into `state`, how many bytes it read.
fn read_with_serde<'a>(body: &'a [u8], state: &mut State<'a>) -> Result<usize, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let outcome = ReviewSeed(state)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match outcome {
        Ok(()) => Ok(body.len()),
        Err(stop) if state.stopped => Ok(offset_of(body, stop.line(), stop.column())),
        Err(e) => {
            // On the error path only: a wrong apiVersion/kind explains more than a field error.
            if let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(body) {
                check_envelope(envelope.api_version.as_deref(), envelope.kind.as_deref())?;
            }
            Err(ParseError::Malformed(e.to_string()))
        }
    }
}

/// The byte offset of serde_json's (1-based line, column) position in `body`.
fn offset_of(body: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        body.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(body.len(), |(i, _)| i + 1)
    };
    (line_start + column).min(body.len())
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

/// A string borrowed from the body unless it holds escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct CowStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// How far one object (`object` or `oldObject`) was read.
#[derive(Clone, Copy, Default)]
struct Progress {
    metadata: bool,
    spec: bool,
}

impl Progress {
    const DONE: Progress = Progress {
        metadata: true,
        spec: true,
    };
}

/// Everything read so far.
struct State<'de> {
    needs: Needs,
    api_version: Option<Cow<'de, str>>,
    kind: Option<Cow<'de, str>>,
    has_request: bool,
    uid: Option<Cow<'de, str>>,
    gvk: Option<GroupVersionKind<'de>>,
    operation: Option<Cow<'de, str>>,
    user_info: Option<UserInfo<'de>>,
    dry_run: Option<bool>,
    /// `Some` once the field was seen (its value may be `null`).
    namespace: Option<Option<Cow<'de, str>>>,
    object: Option<Object<'de>>,
    old_object: Option<Object<'de>>,
    new: Progress,
    old: Progress,
    /// Reading ended early on purpose (the error that unwound the reader is not a failure).
    stopped: bool,
}

impl<'de> State<'de> {
    fn new(needs: Needs) -> Self {
        State {
            needs,
            api_version: None,
            kind: None,
            has_request: false,
            uid: None,
            gvk: None,
            operation: None,
            user_info: None,
            dry_run: None,
            namespace: None,
            object: None,
            old_object: None,
            new: Progress::default(),
            old: Progress::default(),
            stopped: false,
        }
    }

    /// Whether every field the decision reads has been read.
    fn complete(&self) -> bool {
        let needs_old = self.needs.old_metadata && self.operation.as_deref() == Some("UPDATE");
        self.api_version.is_some()
            && self.kind.is_some()
            && self.uid.is_some()
            && self.gvk.is_some()
            && self.operation.is_some()
            && self.user_info.is_some()
            && self.namespace.is_some()
            && self.new.metadata
            && (self.new.spec || !self.needs.spec)
            && (self.old.metadata || !needs_old)
    }

    /// Unwinds the reader once complete: serde has no other way to leave a map half read.
    fn stop_if_complete<E: de::Error>(&mut self) -> Result<(), E> {
        if self.complete() {
            self.stopped = true;
            return Err(E::custom("kelos-hooks: read what the decision needs"));
        }
        Ok(())
    }

    fn into_request(self, read: usize) -> Result<Request<'de>, ParseError> {
        if !self.has_request {
            return Err(ParseError::MissingRequest);
        }
        let missing = |f: &str| ParseError::Malformed(format!("missing field `{f}` in request"));
        Ok(Request {
            uid: self.uid.ok_or_else(|| missing("uid"))?,
            kind: self.gvk.ok_or_else(|| missing("kind"))?,
            operation: self.operation.ok_or_else(|| missing("operation"))?,
            user_info: self.user_info.unwrap_or_default(),
            dry_run: self.dry_run,
            namespace: self.namespace.flatten(),
            object: self.object,
            old_object: self.old_object,
            read,
        })
    }
}

/// Reads `null` as `None`, anything else with the inner seed.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ReviewField {
    #[serde(rename = "apiVersion")]
    ApiVersion,
    #[serde(rename = "kind")]
    Kind,
    #[serde(rename = "request")]
    Request,
    #[serde(other)]
    Other,
}

/// The AdmissionReview object.
struct ReviewSeed<'s, 'de>(&'s mut State<'de>);

impl<'de> DeserializeSeed<'de> for ReviewSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReviewSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionReview object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.0;
        while let Some(field) = map.next_key::<ReviewField>()? {
            match field {
                ReviewField::ApiVersion => {
                    st.api_version = map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0);
                }
                ReviewField::Kind => {
                    st.kind = map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0)
                }
                ReviewField::Request => {
                    map.next_value_seed(Nullable(RequestSeed(&mut *st)))?;
                }
                ReviewField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            st.stop_if_complete()?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    Operation,
    UserInfo,
    DryRun,
    Namespace,
    Object,
    OldObject,
    #[serde(other)]
    Other,
}

/// `request`.
struct RequestSeed<'s, 'de>(&'s mut State<'de>);

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.0;
        // Set first: reading may stop inside the request.
        st.has_request = true;
        while let Some(field) = map.next_key::<RequestField>()? {
            match field {
                RequestField::Uid => st.uid = Some(map.next_value::<CowStr<'de>>()?.0),
                RequestField::Kind => st.gvk = Some(map.next_value()?),
                RequestField::Operation => {
                    st.operation = Some(map.next_value::<CowStr<'de>>()?.0);
                }
                RequestField::UserInfo => {
                    st.user_info = Some(
                        map.next_value::<Option<UserInfo<'de>>>()?
                            .unwrap_or_default(),
                    );
                }
                RequestField::DryRun => st.dry_run = map.next_value()?,
                RequestField::Namespace => {
                    st.namespace = Some(map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0));
                }
                RequestField::Object => read_object(&mut map, st, Side::New)?,
                RequestField::OldObject => read_object(&mut map, st, Side::Old)?,
                RequestField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            st.stop_if_complete()?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    New,
    Old,
}

/// Reads `object` or `oldObject` (`null` = absent). The old one is only read when needed.
fn read_object<'de, A: MapAccess<'de>>(
    map: &mut A,
    st: &mut State<'de>,
    side: Side,
) -> Result<(), A::Error> {
    if side == Side::Old && !st.needs.old_metadata {
        map.next_value::<IgnoredAny>()?;
        st.old = Progress::DONE;
        return Ok(());
    }
    let present = map.next_value_seed(Nullable(ObjectSeed { st: &mut *st, side }))?;
    if present.is_none() {
        *st.slot(side) = None;
    }
    *st.progress(side) = Progress::DONE;
    Ok(())
}

impl<'de> State<'de> {
    fn slot(&mut self, side: Side) -> &mut Option<Object<'de>> {
        match side {
            Side::New => &mut self.object,
            Side::Old => &mut self.old_object,
        }
    }

    fn progress(&mut self, side: Side) -> &mut Progress {
        match side {
            Side::New => &mut self.new,
            Side::Old => &mut self.old,
        }
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ObjectField {
    Metadata,
    Spec,
    #[serde(other)]
    Other,
}

/// An object under review, written into the state as it is read so reading can stop inside it.
struct ObjectSeed<'s, 'de> {
    st: &'s mut State<'de>,
    side: Side,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (st, side) = (self.st, self.side);
        *st.slot(side) = Some(Object::default());
        let read_spec = st.needs.spec && side == Side::New;
        while let Some(field) = map.next_key::<ObjectField>()? {
            match field {
                ObjectField::Metadata => {
                    let metadata = map
                        .next_value::<Option<Metadata<'de>>>()?
                        .unwrap_or_default();
                    if let Some(object) = st.slot(side) {
                        object.metadata = metadata;
                    }
                    st.progress(side).metadata = true;
                }
                ObjectField::Spec if read_spec => map.next_value_seed(SpecSeed(&mut *st))?,
                ObjectField::Spec | ObjectField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            st.stop_if_complete()?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum SpecField {
    OnCompletion,
    #[serde(other)]
    Other,
}

/// `object.spec` of a TaskSpawner: `onCompletion` captured raw, reading stops right after it.
struct SpecSeed<'s, 'de>(&'s mut State<'de>);

impl SpecSeed<'_, '_> {
    fn not_object(self, kind: &'static str) {
        if let Some(object) = &mut self.0.object {
            object.spec = Spec::NotObject(kind);
        }
        self.0.new.spec = true;
    }
}

impl<'de> DeserializeSeed<'de> for SpecSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpecSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a spec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.0;
        if let Some(object) = &mut st.object {
            object.spec = Spec::Object {
                on_completion: None,
            };
        }
        while let Some(field) = map.next_key::<SpecField>()? {
            match field {
                SpecField::OnCompletion => {
                    let raw = map
                        .next_value::<Option<&'de RawValue>>()?
                        .map(|r| OnCompletionJson::Text(r.get()));
                    if let Some(Object {
                        spec: Spec::Object { on_completion },
                        ..
                    }) = &mut st.object
                    {
                        *on_completion = raw;
                    }
                    st.new.spec = true;
                }
                SpecField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            st.stop_if_complete()?;
        }
        st.new.spec = true;
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.new.spec = true;
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_object("a boolean");
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_object("a number");
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_object("a number");
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_object("a number");
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_object("a string");
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_object("a list");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures;

    const ALL: [Needs; 3] = [Needs::METADATA, Needs::METADATA_AND_OLD, Needs::SPEC];

    #[test]
    fn parses_the_fields_a_decision_needs() {
        let old = fixtures::spawned_task(json!({"a": "b"}));
        let new = fixtures::spawned_task(json!({"a": "c\"quoted\""}));
        let body = fixtures::task_update(old, new, "alice");
        let r = parse(&body, Needs::METADATA_AND_OLD).unwrap();
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(
            (r.kind.group.as_ref(), r.kind.kind.as_ref()),
            ("kelos.dev", "Task")
        );
        assert_eq!(r.operation, "UPDATE");
        assert_eq!(r.username(), "alice");
        assert_eq!(r.namespace(), Some(fixtures::NS));
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
        // Not needed by Task decisions, so not read.
        assert!(matches!(o.spec, Spec::Absent));
        let r = parse(&body, Needs::SPEC).unwrap();
        assert!(matches!(
            r.object.unwrap().spec,
            Spec::Object {
                on_completion: None
            }
        ));
        assert!(
            r.old_object.is_none(),
            "TaskSpawner validation never reads oldObject"
        );
    }

    /// A review in the API server's field order, with a tail that would fail to parse.
    fn review_with_tail(object: &str, tail: &str) -> String {
        format!(
            r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"u",
            "kind":{{"group":"kelos.dev","version":"v1alpha2","kind":"Task"}},"namespace":"ns",
            "operation":"CREATE","userInfo":{{"username":"kelos"}},"object":{object}{tail}"#
        )
    }

    #[test]
    fn task_reading_stops_after_metadata() {
        // Everything after object.metadata is garbage, yet well delimited: not read at all.
        let body = review_with_tail(
            r#"{"apiVersion":"kelos.dev/v1alpha2","kind":"Task","metadata":{"name":"t","labels":{"x":"y"}},"spec":{"prompt": NOT JSON"#,
            "}}}",
        );
        for needs in [Needs::METADATA, Needs::METADATA_AND_OLD] {
            let r = parse(body.as_bytes(), needs).unwrap();
            assert_eq!(r.object.unwrap().metadata.label("x"), Some("y"));
            assert_eq!(r.dry_run, None);
        }
        // The spawner endpoint needs spec, so it reads on and finds the garbage.
        assert!(matches!(
            parse(body.as_bytes(), Needs::SPEC),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn read_counts_the_bytes_parsed() {
        let body = review_with_tail(
            r#"{"metadata":{"name":"t"},"spec":{"prompt":"long"}}"#,
            "}}",
        );
        let stop = body.find(r#","spec""#).unwrap();
        let r = parse(body.as_bytes(), Needs::METADATA).unwrap();
        assert!((stop..stop + 2).contains(&r.read), "{} vs {stop}", r.read);
        // The spawner endpoint reads spec too, up to the braces closing object and request;
        // a body in another order is read to its end.
        let r = parse(body.as_bytes(), Needs::SPEC).unwrap();
        let spec_end = body.find(r#""long"}"#).unwrap() + 7;
        assert!(
            (spec_end..body.len()).contains(&r.read),
            "{} vs {spec_end}",
            r.read
        );
        let without_uid = body.replacen(r#""uid":"u","#, "", 1);
        let late = format!(r#"{},"uid":"u"}}}}"#, &without_uid[..without_uid.len() - 2]);
        let r = parse(late.as_bytes(), Needs::METADATA).unwrap();
        assert!(r.read >= late.len() - 2, "{} of {}", r.read, late.len());
    }

    #[test]
    fn truncated_body_is_refused_even_when_stopping_early() {
        let body = review_with_tail(r#"{"metadata":{"name":"t"},"spec":{"prompt":"cut"#, "");
        for needs in ALL {
            assert!(
                matches!(parse(body.as_bytes(), needs), Err(ParseError::Malformed(m)) if m.contains("truncated") || m.contains("EOF")),
                "{needs:?}"
            );
        }
    }

    #[test]
    fn spawner_reading_stops_after_on_completion() {
        let body = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"TaskSpawner"},"namespace":"ns",
            "operation":"UPDATE","userInfo":{"username":"x"},"object":{"metadata":{"name":"s"},
            "spec":{"maxConcurrency":3,"onCompletion":{"hooks":[]},"taskTemplate": NOT JSON }}}}"#;
        let r = parse(body.as_bytes(), Needs::SPEC).unwrap();
        let Some(Object {
            spec: Spec::Object {
                on_completion: Some(raw),
            },
            ..
        }) = r.object
        else {
            panic!("onCompletion not read");
        };
        assert_eq!(raw.text(), r#"{"hooks":[]}"#);
    }

    #[test]
    fn spec_shapes() {
        for (spec, want) in [
            ("null", "Absent"),
            ("5", "NotObject(\"a number\")"),
            ("[1,[2]]", "NotObject(\"a list\")"),
            ("\"s\"", "NotObject(\"a string\")"),
            ("true", "NotObject(\"a boolean\")"),
            ("{}", "Object { on_completion: None }"),
            (r#"{"onCompletion":null}"#, "Object { on_completion: None }"),
        ] {
            let body = review_with_tail(&format!(r#"{{"metadata":{{}},"spec":{spec}}}"#), "}}");
            let r = parse(body.as_bytes(), Needs::SPEC).unwrap();
            assert_eq!(format!("{:?}", r.object.unwrap().spec), want, "{spec}");
        }
    }

    #[test]
    fn update_reads_on_to_the_old_object() {
        let body = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"namespace":"ns","operation":"UPDATE",
            "userInfo":{"username":"x"},"object":{"metadata":{"annotations":{"k":"new"}},"spec":{"p":"long"}},
            "oldObject":{"metadata":{"annotations":{"k":"old"}},"spec": NOT JSON }}"#;
        let r = parse(body.as_bytes(), Needs::METADATA_AND_OLD).unwrap();
        assert_eq!(r.old_object.unwrap().metadata.annotation("k"), Some("old"));
        let r = parse(body.as_bytes(), Needs::METADATA).unwrap();
        assert!(r.old_object.is_none());
    }

    #[test]
    fn any_field_order_reads_the_same() {
        // Envelope last, object before the header fields: nothing can stop early, same result.
        let body = r#"{"request":{"object":{"spec":{"x":1},"metadata":{"name":"t","annotations":{"a":"b"}}},
            "oldObject":{"metadata":{"annotations":{"a":"c"}}},"userInfo":{"username":"bob"},"operation":"UPDATE",
            "namespace":"ns","kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"uid":"u","dryRun":true},
            "kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#;
        for needs in ALL {
            let r = parse(body.as_bytes(), needs).unwrap();
            assert_eq!(
                (r.uid.as_ref(), r.username(), r.dry_run),
                ("u", "bob", Some(true))
            );
            assert_eq!(
                r.object.as_ref().unwrap().metadata.annotation("a"),
                Some("b")
            );
            assert_eq!(
                matches!(r.object.as_ref().unwrap().spec, Spec::Object { .. }),
                needs.spec
            );
            assert_eq!(r.old_object.is_some(), needs.old_metadata);
        }
        // The envelope is checked even though it came last.
        let wrong = body.replace("admission.k8s.io/v1\"", "admission.k8s.io/v1beta1\"");
        assert!(matches!(
            parse(wrong.as_bytes(), Needs::METADATA),
            Err(ParseError::ApiVersion(_))
        ));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body = review_with_tail(
            r#"{"metadata":{"labels":{"kelos.dev/task\u0073pawner":"s\"p"}}}"#,
            "}}",
        );
        let r = parse(body.as_bytes(), Needs::METADATA).unwrap();
        assert_eq!(
            r.object.unwrap().metadata.label("kelos.dev/taskspawner"),
            Some("s\"p")
        );
    }

    #[test]
    fn null_maps_and_missing_user_read_as_absent() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"operation":"CREATE",
            "object":{"metadata":{"name":"t","labels":null,"annotations":null}},"oldObject":null}}"#;
        for needs in ALL {
            let r = parse(body, needs).unwrap();
            assert_eq!(r.username(), "");
            assert!(r.object.unwrap().metadata.annotations.is_none());
            assert!(r.old_object.is_none());
        }
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
            "kind":{"group":"kelos.dev","version":"v1alpha2","kind":"Task"},"operation":"DELETE","namespace":null,
            "userInfo":null,"object":null,"oldObject":{"metadata":null}}}"#;
        let r = parse(body, Needs::METADATA_AND_OLD).unwrap();
        assert!(r.object.is_none() && r.namespace().is_none());
    }

    #[test]
    fn envelope_errors() {
        for needs in ALL {
            assert_eq!(
                parse(
                    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                    needs
                )
                .unwrap_err(),
                ParseError::MissingRequest
            );
            assert_eq!(
                parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#, needs).unwrap_err(),
                ParseError::MissingRequest
            );
            assert!(
                matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#, needs), Err(ParseError::ApiVersion(v)) if v == "admission.k8s.io/v1beta1")
            );
            assert!(matches!(
                parse(
                    br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
                    needs
                ),
                Err(ParseError::Kind(_))
            ));
            assert!(matches!(
                parse(b"\xff\xfe", needs),
                Err(ParseError::Malformed(_))
            ));
            assert!(matches!(
                parse(b"[1,2,3]", needs),
                Err(ParseError::Malformed(_))
            ));
            assert!(matches!(parse(b"", needs), Err(ParseError::Malformed(_))));
            assert!(
                matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#, needs), Err(ParseError::Malformed(m)) if m.contains("kind"))
            );
            assert!(
                matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#, needs), Err(ParseError::Malformed(_)))
            );
            // Trailing garbage after a fully read review.
            assert!(
                matches!(parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}} x"#, needs), Err(ParseError::Malformed(m)) if m.contains("trailing"))
            );
        }
    }

    #[test]
    fn every_realistic_body_reads_as_with_a_full_parse() {
        // The fixtures' reviews (serde_json's key order, not the API server's) must give the same
        // request whichever needs, and the same as a plain serde_json read.
        let bodies = [
            fixtures::task_create(fixtures::spawned_task(json!({"k": "v"})), "kelos"),
            fixtures::task_update(
                fixtures::spawned_task(json!({"k": "old"})),
                fixtures::spawned_task(json!({"k": "new"})),
                "kelos",
            ),
            fixtures::spawner_review("CREATE", fixtures::valid_hooks()),
        ];
        for body in bodies {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let req = &v["request"];
            for needs in ALL {
                let r = parse(&body, needs).unwrap();
                assert_eq!(r.uid, req["uid"].as_str().unwrap());
                assert_eq!(r.operation, req["operation"].as_str().unwrap());
                let object = r.object.as_ref().unwrap();
                assert_eq!(
                    object.metadata.name.as_deref(),
                    req["object"]["metadata"]["name"].as_str()
                );
                if needs.spec {
                    let Spec::Object { on_completion } = &object.spec else {
                        panic!("spec not read: {:?}", object.spec);
                    };
                    let read: Value = on_completion
                        .as_ref()
                        .map(|raw| serde_json::from_str(raw.text()).unwrap())
                        .unwrap_or(Value::Null);
                    assert_eq!(read, req["object"]["spec"]["onCompletion"]);
                }
            }
        }
    }
}
