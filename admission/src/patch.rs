//! Minimal, idempotent JSON Patch for one annotation. Pure: no I/O.

use std::sync::Arc;

use base64::Engine;
use kelos_hooks_shared::annotations::ON_COMPLETION;
use serde_json::json;

use crate::review::{JsonStr, StrMap};

/// A JSON Patch with its base64 wire form (what the AdmissionReview response carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    base64: Arc<str>,
}

impl Patch {
    /// Wraps JSON Patch text, encoding it once.
    pub fn new(json: String) -> Self {
        let base64 = base64::engine::general_purpose::STANDARD.encode(json.as_bytes());
        Patch {
            base64: base64.into(),
        }
    }

    /// The patch as JSON text (tests read it back).
    #[cfg(test)]
    pub fn json(&self) -> String {
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.base64.as_bytes());
        String::from_utf8(bytes.unwrap_or_default()).unwrap_or_default()
    }

    /// The patch as the base64 string the admission API documents for `[]byte`.
    pub fn base64(&self) -> &str {
        &self.base64
    }
}

/// A spawner's `kelos.dev/on-completion` value with both patches that can set it, computed once
/// per spawner change: every Task CREATE then answers without escaping or encoding anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    value: Arc<str>,
    /// The value as it appears between quotes in a review: as serde_json escapes it, and as Go's
    /// encoding/json does (which also escapes `<`, `>`, `&`, U+2028 and U+2029).
    escaped: [Arc<str>; 2],
    add_map: Patch,
    add_key: Patch,
}

impl Snapshot {
    /// Precomputes the patches for the annotation value `value`.
    pub fn new(value: &str) -> Self {
        let some = StrMap::default();
        // `annotation_patch` never returns None for a wanted value on an object without it.
        let add_map = annotation_patch(None, ON_COMPLETION, Some(value)).unwrap_or_default();
        let add_key = annotation_patch(Some(&some), ON_COMPLETION, Some(value)).unwrap_or_default();
        let quoted = serde_json::Value::from(value).to_string();
        let minimal = quoted
            .get(1..quoted.len().saturating_sub(1))
            .unwrap_or_default();
        let go = minimal
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        Snapshot {
            value: value.into(),
            escaped: [minimal.into(), go.into()],
            add_map: Patch::new(add_map),
            add_key: Patch::new(add_key),
        }
    }

    /// The annotation value.
    #[cfg(test)]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether an annotation value read from a review is this snapshot (see [`JsonStr::is`]).
    pub fn matches(&self, annotation: &JsonStr<'_>) -> bool {
        annotation.is(&self.value, &[&self.escaped[0], &self.escaped[1]])
    }
}

impl From<&str> for Snapshot {
    fn from(value: &str) -> Self {
        Snapshot::new(value)
    }
}

/// The patch making `kelos.dev/on-completion` equal `desired` (`None`: absent): the same answer as
/// [`annotation_patch`], from the precomputed forms where there are some.
pub fn snapshot_patch(
    annotations: Option<&StrMap<'_>>,
    desired: Option<&Snapshot>,
) -> Option<Patch> {
    let current = annotations.and_then(|a| a.get(ON_COMPLETION));
    match (annotations, desired) {
        (_, Some(want)) if current.is_some_and(|c| want.matches(c)) => None,
        (None, Some(want)) => Some(want.add_map.clone()),
        (Some(_), Some(want)) => Some(want.add_key.clone()),
        (_, None) => annotation_patch(annotations, ON_COMPLETION, None).map(Patch::new),
    }
}

/// Escapes a JSON Pointer token (RFC 6901): `~` → `~0`, `/` → `~1`.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The JSON Patch (as JSON text) that makes annotation `key` equal `desired` (`None`: absent),
/// given the object's current annotations; `None` when nothing needs to change.
///
/// - no annotations map and a value wanted → `add /metadata/annotations {key: value}`;
/// - map present → `add /metadata/annotations/<key>` (`add` replaces an existing member);
/// - value present but unwanted → `remove`;
/// - already as wanted → no patch.
pub fn annotation_patch(
    annotations: Option<&StrMap<'_>>,
    key: &str,
    desired: Option<&str>,
) -> Option<String> {
    let current = annotations.and_then(|a| a.get(key)).map(|v| v.as_ref());
    let ops = match (annotations, current, desired) {
        (_, Some(cur), Some(want)) if cur == want => return None,
        (_, None, None) => return None,
        (None, _, Some(want)) => json!([{
            "op": "add",
            "path": "/metadata/annotations",
            "value": { key: want },
        }]),
        (Some(_), _, Some(want)) => json!([{
            "op": "add",
            "path": format!("/metadata/annotations/{}", escape_pointer_token(key)),
            "value": want,
        }]),
        (_, Some(_), None) => json!([{
            "op": "remove",
            "path": format!("/metadata/annotations/{}", escape_pointer_token(key)),
        }]),
    };
    Some(ops.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::borrow::Cow;

    use serde_json::Value;

    use super::*;

    const KEY: &str = "kelos.dev/on-completion";

    fn map(pairs: &[(&'static str, &'static str)]) -> StrMap<'static> {
        pairs
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), JsonStr::from(*v)))
            .collect()
    }

    fn parsed(p: Option<String>) -> Value {
        serde_json::from_str(&p.unwrap()).unwrap()
    }

    #[test]
    fn snapshot_recognises_both_escapings_without_decoding() {
        let value = "{\"hooks\":[{\"name\":\"a\",\"webhook\":{\"url\":\"https://h.example.com/x?a=1&b=<2>\"}}]} \\ \u{2028}";
        let snap = Snapshot::new(value);
        let serde = serde_json::to_string(value).unwrap();
        let go = serde
            .replace('&', "\\u0026")
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('\u{2028}', "\\u2028");
        assert_ne!(serde, go);
        for quoted in [&serde, &go] {
            let raw = &quoted[1..quoted.len() - 1];
            let read = JsonStr::escaped(raw);
            assert!(snap.matches(&read), "{raw}");
            // Recognised from the text alone: nothing was decoded.
            assert!(matches!(&read, JsonStr::Escaped { decoded, .. } if decoded.get().is_none()));
        }
        // Another escaping of the same value: decoded, and still equal.
        let other = serde.replace("hooks", "\\u0068ooks");
        let read = JsonStr::escaped(&other[1..other.len() - 1]);
        assert!(snap.matches(&read));
        assert!(!Snapshot::new("{}").matches(&read));
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(
            escape_pointer_token("kelos.dev/on-completion"),
            "kelos.dev~1on-completion"
        );
        assert_eq!(escape_pointer_token("a~b/c"), "a~0b~1c");
    }

    #[test]
    fn no_annotations_adds_the_map() {
        let p = parsed(annotation_patch(None, KEY, Some("{\"hooks\":[]}")));
        assert_eq!(
            p,
            json!([{"op": "add", "path": "/metadata/annotations", "value": {KEY: "{\"hooks\":[]}"}}])
        );
    }

    #[test]
    fn other_annotations_add_one_member() {
        let m = map(&[("team", "a")]);
        let p = parsed(annotation_patch(Some(&m), KEY, Some("v")));
        assert_eq!(
            p,
            json!([{"op": "add", "path": "/metadata/annotations/kelos.dev~1on-completion", "value": "v"}])
        );
    }

    #[test]
    fn empty_map_adds_one_member() {
        let m = map(&[]);
        let p = parsed(annotation_patch(Some(&m), KEY, Some("v")));
        assert_eq!(
            p[0]["path"],
            "/metadata/annotations/kelos.dev~1on-completion"
        );
    }

    #[test]
    fn forged_value_is_replaced() {
        let m = map(&[(KEY, "forged")]);
        let p = parsed(annotation_patch(Some(&m), KEY, Some("real")));
        assert_eq!(p[0]["op"], "add");
        assert_eq!(p[0]["value"], "real");
    }

    #[test]
    fn equal_value_needs_no_patch() {
        let m = map(&[(KEY, "real"), ("x", "y")]);
        assert_eq!(annotation_patch(Some(&m), KEY, Some("real")), None);
    }

    #[test]
    fn unwanted_value_is_removed() {
        let m = map(&[(KEY, "forged")]);
        let p = parsed(annotation_patch(Some(&m), KEY, None));
        assert_eq!(
            p,
            json!([{"op": "remove", "path": "/metadata/annotations/kelos.dev~1on-completion"}])
        );
    }

    #[test]
    fn absent_and_unwanted_needs_no_patch() {
        assert_eq!(annotation_patch(None, KEY, None), None);
        let m = map(&[("x", "y")]);
        assert_eq!(annotation_patch(Some(&m), KEY, None), None);
    }

    #[test]
    fn precomputed_patches_equal_the_reference() {
        let snap = Snapshot::new("{\"hooks\":[]}");
        let cases: [Option<StrMap<'static>>; 4] = [
            None,
            Some(map(&[])),
            Some(map(&[(KEY, "forged"), ("x", "y")])),
            Some(map(&[(KEY, "{\"hooks\":[]}")])),
        ];
        for annotations in &cases {
            for desired in [Some(&snap), None] {
                let fast = snapshot_patch(annotations.as_ref(), desired);
                let reference =
                    annotation_patch(annotations.as_ref(), KEY, desired.map(Snapshot::value));
                assert_eq!(
                    fast.as_ref().map(Patch::json),
                    reference,
                    "{annotations:?} {desired:?}"
                );
            }
        }
    }
}
