//! Minimal, idempotent JSON Patch for one annotation. Pure: no I/O.

use serde_json::json;

use crate::review::StrMap;

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
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
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
}
