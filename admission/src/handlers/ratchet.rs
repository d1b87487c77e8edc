//! TaskSpawner UPDATE ratcheting, as Kubernetes ratchets CRD validation: an error on a part of
//! `onCompletion` that the update leaves unchanged, and that the stored object already had under
//! today's rules, means a rule tightened after the hook was stored (e.g. an operator narrowed
//! `--allow-cidr`, or an upgrade added a rule). It must not block unrelated edits of the spawner,
//! so it comes back as a warning. New or changed hooks get every rule, and an error that the
//! update itself causes (e.g. a changed hook now sharing an unchanged hook's name) stays an
//! error because the stored object did not have it.

use kelos_hooks_shared::validation::{Context, FieldError, Report, validate_on_completion};
use serde_json::Value;

/// Field path of `onCompletion` in a TaskSpawner, which every error path starts with.
pub const PATH: &str = "spec.onCompletion";

/// `report` (the rules on `new`) with the errors on unchanged parts that `old` already had turned
/// into warnings. `new` and `old` are the `onCompletion` values of the object and the stored
/// object. Only called when `report` has errors, so the stored object is judged only then.
pub fn ratchet(report: Report, new: &Value, old: &Value, ctx: &Context) -> Report {
    let stored = validate_on_completion(old, PATH, ctx);
    let mut out = Report {
        errors: Vec::with_capacity(report.errors.len()),
        warnings: report.warnings,
    };
    for error in report.errors {
        if unchanged_at(&error.path, new, old) && stored.errors.contains(&error) {
            out.warnings.push(ratcheted(&error));
        } else {
            out.errors.push(error);
        }
    }
    out
}

/// The warning for an error allowed because its hook is unchanged.
fn ratcheted(error: &FieldError) -> String {
    format!(
        "allowed because unchanged since stored, but breaks a current rule (fix it before editing this hook): {error}"
    )
}

/// Whether the part of `onCompletion` an error at `path` is about is the same in `new` and `old`:
/// the hook at the same index for a path inside `hooks[i]`, else the whole block.
fn unchanged_at(path: &str, new: &Value, old: &Value) -> bool {
    match hook_index(path) {
        Some(i) => {
            let hook = |v: &Value| v.get("hooks").and_then(|h| h.get(i)).cloned();
            let before = hook(old);
            before.is_some() && before == hook(new)
        }
        None => new == old,
    }
}

/// `i` of a path `spec.onCompletion.hooks[i]` or `spec.onCompletion.hooks[i].…`.
fn hook_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix(PATH)?.strip_prefix(".hooks[")?;
    let (index, tail) = rest.split_once(']')?;
    if !(tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')) {
        return None;
    }
    index.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use kelos_hooks_shared::ip::IpPolicy;
    use serde_json::json;

    use super::*;

    fn hook(name: &str, url: &str) -> Value {
        json!({"name": name, "webhook": {"url": url}})
    }

    /// The warnings ratcheting added.
    fn ratcheted(r: &Report) -> Vec<&String> {
        r.warnings
            .iter()
            .filter(|w| w.contains("unchanged since stored"))
            .collect()
    }

    fn judge(new: &Value, old: &Value, policy: &IpPolicy) -> Report {
        let ctx = Context { ip_policy: policy };
        ratchet(validate_on_completion(new, PATH, &ctx), new, old, &ctx)
    }

    #[test]
    fn hook_indexes() {
        assert_eq!(
            hook_index("spec.onCompletion.hooks[3].webhook.url"),
            Some(3)
        );
        assert_eq!(hook_index("spec.onCompletion.hooks[12]"), Some(12));
        assert_eq!(hook_index("spec.onCompletion.hooks[0][x]"), Some(0));
        assert_eq!(hook_index("spec.onCompletion.hooks"), None);
        assert_eq!(hook_index("spec.onCompletion.hooks[1]x"), None);
        assert_eq!(hook_index("spec.onCompletion.hooks[a].name"), None);
        assert_eq!(hook_index("spec.onCompletion"), None);
    }

    /// The operator narrowed --allow-cidr: the stored hook stays, with a warning; touching it, or
    /// adding one like it, is refused.
    #[test]
    fn unchanged_hooks_breaking_a_tightened_rule_are_warnings() {
        let narrowed = IpPolicy::default();
        let old = json!({"hooks": [hook("internal", "https://10.1.2.3/x")]});
        let r = judge(&old, &old, &narrowed);
        assert!(r.is_valid(), "{r:?}");
        let warned = ratcheted(&r);
        assert_eq!(warned.len(), 1, "{r:?}");
        assert!(
            warned[0].contains("spec.onCompletion.hooks[0].webhook.url")
                && warned[0].contains("10.0.0.0/8"),
            "{warned:?}"
        );

        let added = json!({"hooks": [hook("internal", "https://10.1.2.3/x"),
                                     hook("other", "https://10.9.9.9/y")]});
        let r = judge(&added, &old, &narrowed);
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert_eq!(r.errors[0].path, "spec.onCompletion.hooks[1].webhook.url");
        assert_eq!(ratcheted(&r).len(), 1);

        let changed = json!({"hooks": [hook("internal", "https://10.1.2.4/x")]});
        let r = judge(&changed, &old, &narrowed);
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert!(ratcheted(&r).is_empty());

        // Moved to another index: a changed position counts as a changed hook.
        let moved = json!({"hooks": [hook("new", "https://hooks.example.com/"),
                                     hook("internal", "https://10.1.2.3/x")]});
        assert!(!judge(&moved, &old, &narrowed).is_valid());
    }

    /// An error the update causes is not the stored object's, even on an unchanged hook.
    #[test]
    fn errors_caused_by_the_update_stay_errors() {
        let policy = IpPolicy::default();
        let old = json!({"hooks": [hook("a", "https://hooks.example.com/1"),
                                   hook("b", "https://hooks.example.com/2")]});
        let new = json!({"hooks": [hook("b", "https://hooks.example.com/1"),
                                   hook("b", "https://hooks.example.com/2")]});
        let plain = validate_on_completion(&new, PATH, &Context { ip_policy: &policy });
        assert!(!plain.is_valid());
        let r = judge(&new, &old, &policy);
        assert_eq!(r.errors, plain.errors);
    }

    /// Block-level errors ratchet only when the whole block is unchanged.
    #[test]
    fn block_level_errors_ratchet_when_the_block_is_unchanged() {
        let policy = IpPolicy::default();
        let old = json!({"hooks": "not a list"});
        assert!(judge(&old, &old, &policy).is_valid());
        let new = json!({"hooks": "still not a list"});
        assert!(!judge(&new, &old, &policy).is_valid());
    }
}
