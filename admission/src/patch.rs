//! Minimal, idempotent JSON Patch for one annotation. Pure: no I/O.

use std::sync::Arc;

use base64::Engine;
use kelos_hooks_shared::annotations::ON_COMPLETION;
use serde_json::json;
use serde_json::value::RawValue;

use crate::review::StrMap;

/// A JSON Patch in its wire form: base64 (the admission API's `[]byte`), already written as a JSON
/// string, so a response embeds it as is instead of escaping 2.6 KB (8 hooks) on every Task CREATE.
#[derive(Clone, Debug)]
pub struct Patch {
    base64_json: Arc<RawValue>,
}

impl Patch {
    /// Wraps JSON Patch text, encoding it once.
    pub fn new(json: String) -> Self {
        let base64 = base64::engine::general_purpose::STANDARD.encode(json.as_bytes());
        // A base64 string is valid JSON once quoted (its alphabet needs no escaping).
        let base64_json = RawValue::from_string(format!("\"{base64}\""))
            .unwrap_or_else(|_| RawValue::NULL.to_owned());
        Patch {
            base64_json: base64_json.into(),
        }
    }

    /// The patch as JSON text (tests read it back).
    #[cfg(test)]
    pub fn json(&self) -> String {
        let bytes = base64::engine::general_purpose::STANDARD.decode(self.base64().as_bytes());
        String::from_utf8(bytes.unwrap_or_default()).unwrap_or_default()
    }

    /// The base64 text.
    pub fn base64(&self) -> &str {
        self.base64_json.get().trim_matches('"')
    }

    /// The base64 text as a JSON string, for the response.
    pub fn base64_json(&self) -> &RawValue {
        &self.base64_json
    }
}

impl PartialEq for Patch {
    fn eq(&self, other: &Self) -> bool {
        self.base64_json.get() == other.base64_json.get()
    }
}

impl Eq for Patch {}

/// A spawner's `kelos.dev/on-completion` value with both patches that can set it, computed once
/// per spawner change: every Task CREATE then answers without encoding anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    value: Arc<str>,
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
        Snapshot {
            value: value.into(),
            add_map: Patch::new(add_map),
            add_key: Patch::new(add_key),
        }
    }

    /// The annotation value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether an annotation value read from a review is this snapshot.
    pub fn matches(&self, annotation: &str) -> bool {
        *self.value == *annotation
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
    let current = annotations.and_then(|a| a.get(key)).map(|v| &**v);
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
    use serde_json::Value;

    use super::*;
    use crate::review::Str;

    const KEY: &str = "kelos.dev/on-completion";

    fn map(pairs: &[(&'static str, &'static str)]) -> StrMap<'static> {
        pairs
            .iter()
            .map(|(k, v)| (Str::from(*k), Str::from(*v)))
            .collect()
    }

    fn parsed(p: Option<String>) -> Value {
        serde_json::from_str(&p.unwrap()).unwrap()
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
