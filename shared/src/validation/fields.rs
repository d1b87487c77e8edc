//! Walking JSON values: paths, type names, objects and their allowed fields.

use serde_json::{Map, Value};

use super::Report;

/// `path.key`, or `key` at the root.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[index]`.
pub(crate) fn index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The JSON type of `value` with its article, for "must be a string, got a number".
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` as an object, or an error at `path` saying what was expected (`what`, e.g.
/// "an object with name and key").
pub(crate) fn object<'v>(
    value: &'v Value,
    path: &str,
    what: &str,
    report: &mut Report,
) -> Option<&'v Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        other => {
            report.error(path, format!("must be {what}, got {}", kind(other)));
            None
        }
    }
}

/// The value of `key`, treating `null` like an absent field (as Kubernetes does for optional
/// fields, and serde does for `Option`).
pub(crate) fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// Reports every key of `map` that is not in `allowed`, suggesting the intended one for typos.
pub(crate) fn unknown_fields(
    map: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
    report: &mut Report,
) {
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let mut message = format!("unknown field; allowed: {}", allowed.join(", "));
        if let Some(intended) = suggest(key, allowed) {
            message.push_str(&format!(" (did you mean {intended}?)"));
        }
        report.error(join(path, key), message);
    }
}

/// The allowed name `key` was probably meant to be: same letters in another case, or at most two
/// edits away.
fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    allowed
        .iter()
        .map(|candidate| (edit_distance(&lower, &candidate.to_lowercase()), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars (inputs are short field names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let allowed = ["url", "secretRef", "signingSecretRef", "format"];
        assert_eq!(
            suggest("signingSecretref", &allowed),
            Some("signingSecretRef")
        );
        assert_eq!(suggest("secretref", &allowed), Some("secretRef"));
        assert_eq!(suggest("URL", &allowed), Some("url"));
        assert_eq!(suggest("formt", &allowed), Some("format"));
        assert_eq!(suggest("headers", &allowed), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn paths() {
        assert_eq!(join("", "hooks"), "hooks");
        assert_eq!(
            join("spec.onCompletion", "hooks"),
            "spec.onCompletion.hooks"
        );
        assert_eq!(
            index("spec.onCompletion.hooks", 2),
            "spec.onCompletion.hooks[2]"
        );
    }
}
