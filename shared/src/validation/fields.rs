//! Walking JSON values: paths, type names, objects and their allowed fields.

use std::fmt;

use serde_json::{Map, Value};

use super::Report;

/// A field path built lazily: the walk borrows one per level and only turns it into a `String`
/// (via `Display`) when it records an error or warning, so valid input allocates no paths.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path<'a> {
    /// A caller-given prefix such as `spec.onCompletion` (may be empty).
    Root(&'a str),
    /// `parent.key`, or `key` when the parent is empty.
    Field(&'a Path<'a>, &'a str),
    /// `parent[index]`.
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    /// `self.key`, or `key` at the root.
    pub(crate) fn field(&'a self, key: &'a str) -> Path<'a> {
        Path::Field(self, key)
    }

    /// `self[index]`.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    /// True when the path renders as `""` (warnings then carry no `path: ` prefix).
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Path::Root(root) => root.is_empty(),
            Path::Field(parent, key) => parent.is_empty() && key.is_empty(),
            Path::Index(..) => false,
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(root) => f.write_str(root),
            Path::Field(parent, key) if parent.is_empty() => f.write_str(key),
            Path::Field(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

impl From<&Path<'_>> for String {
    fn from(path: &Path<'_>) -> String {
        path.to_string()
    }
}

/// Items written `a, b, c`, for messages; formats only when a message is built.
#[derive(Clone, Copy)]
pub(crate) struct Joined<'a, T>(pub(crate) &'a [T]);

impl<T: fmt::Display> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            item.fmt(f)?;
        }
        Ok(())
    }
}

/// `path.key`, or `key` at the root.
#[cfg(test)]
pub(crate) fn join(path: &str, key: &str) -> String {
    Path::Root(path).field(key).to_string()
}

/// `path[index]`.
#[cfg(test)]
pub(crate) fn index(path: &str, index: usize) -> String {
    Path::Root(path).index(index).to_string()
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

/// `value`'s members, or an error at `path` saying what was expected (`what`, e.g.
/// "an object with name and key").
pub(crate) fn object<'v>(
    value: &'v Value,
    path: &Path<'_>,
    what: &str,
    report: &mut Report,
) -> Option<&'v Map<String, Value>> {
    match value {
        Value::Object(members) => Some(members),
        _ => {
            report.error(path, format!("must be {what}, got {}", kind(value)));
            None
        }
    }
}

/// Reports every key of `members` that is not in `allowed` (in the map's order), suggesting the
/// intended one for typos, and returns the values of the allowed ones, `null` included, in
/// `allowed` order.
pub(crate) fn known_fields<'v, const N: usize>(
    members: &'v Map<String, Value>,
    path: &Path<'_>,
    allowed: &[&str; N],
    report: &mut Report,
) -> [Option<&'v Value>; N] {
    for key in members.keys().filter(|k| !allowed.contains(&k.as_str())) {
        unknown_field(key, path, allowed, report);
    }
    allowed.map(|name| members.get(name))
}

/// Treats `null` like an absent field (as Kubernetes does for optional fields, and serde does for
/// `Option`).
pub(crate) fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// Reports `key` as unknown, suggesting the intended one of `allowed` for typos.
fn unknown_field(key: &str, path: &Path<'_>, allowed: &[&str], report: &mut Report) {
    let mut message = format!("unknown field; allowed: {}", Joined(allowed));
    if let Some(intended) = suggest(key, allowed) {
        message.push_str(&format!(" (did you mean {intended}?)"));
    }
    report.error(&path.field(key), message);
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
    fn lazy_paths_render_like_joined_strings() {
        let root = Path::Root("");
        let hooks = root.field("hooks");
        let first = hooks.index(0);
        assert_eq!(first.field("webhook").to_string(), "hooks[0].webhook");
        assert_eq!(
            first.to_string(),
            index(&join("", "hooks"), 0),
            "same text as the string helpers"
        );
        // An empty key at an empty root stays empty, as `join("", "")` does.
        let blank = root.field("");
        assert!(blank.is_empty() && root.is_empty());
        assert_eq!(blank.field("x").to_string(), join(&join("", ""), "x"));
        assert!(!root.index(0).is_empty());
        assert_eq!(
            String::from(&Path::Root("spec").field("a")),
            "spec.a".to_owned()
        );
        assert_eq!(Joined(&["a", "b", "c"]).to_string(), "a, b, c");
        assert_eq!(Joined::<&str>(&[]).to_string(), "");
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
