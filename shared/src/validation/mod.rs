//! The rules for `onCompletion`, as pure functions over what the user wrote.
//!
//! Validation walks the JSON as written (a `serde_json::Value`, not the typed structs), so wrong
//! types, unknown phases and misspelt fields (`signingSecretref`) are reported too, each with its
//! field path, all at once. Anything these functions accept deserialises into
//! [`crate::api::OnCompletion`].
//! Used by the admission server (TaskSpawners and the Task annotation), the offline `validate`
//! command and the dispatcher's fallback path.

mod fields;
mod formats;
mod hooks;
mod names;
mod url;

use std::fmt;

use serde_json::Value;

use crate::annotations::ON_COMPLETION;
use crate::api::{Hook, OnCompletion, Webhook};
use crate::ip::IpPolicy;
use crate::redact::redact;

pub use self::url::{UrlRejected, judge_hook_url, validate_url};

/// One rule violation at one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path as kubectl users know it: `spec.onCompletion.hooks[2].webhook.url`.
    pub path: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything validation found: errors (the object is refused) and warnings (legal but unwise;
/// shown by kubectl as `Warning:` lines). Each warning starts with its field path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Rule violations, in document order.
    pub errors: Vec<FieldError>,
    /// Advice, in document order, each `"{path}: {text}"`.
    pub warnings: Vec<String>,
}

impl Report {
    /// True when there is no error (warnings do not count).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// Every error as `path: message`, joined with `"; "` (for an admission denial or a log line).
    pub fn error_summary(&self) -> String {
        self.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Records an error at `path`.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: &str, message: impl fmt::Display) {
        self.warnings.push(if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        });
    }

    /// Records a warning at a lazily built path (rendered only here).
    pub(crate) fn warn_at(&mut self, path: &fields::Path<'_>, message: impl fmt::Display) {
        self.warnings.push(if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        });
    }

    /// Appends the errors and warnings of `other`.
    pub fn merge(&mut self, other: Report) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

/// What the rules depend on besides the object itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Blocked ranges and the operator's `--allow-cidr` list, for IP-literal hosts.
    pub ip_policy: &'a IpPolicy,
}

static NO_ALLOWLIST: IpPolicy = IpPolicy::EMPTY;

impl Default for Context<'_> {
    /// Every blocked range blocked, no allowlist.
    fn default() -> Self {
        Context {
            ip_policy: &NO_ALLOWLIST,
        }
    }
}

/// Validates a whole TaskSpawner object (as JSON). Only `spec.onCompletion` is judged — kelos's own
/// fields are kelos's business — and an absent or `null` `onCompletion` is valid. The `kind` is
/// not checked: callers pick which objects are TaskSpawners.
pub fn validate_task_spawner(obj: &Value, ctx: &Context) -> Report {
    let mut report = Report::default();
    let Some(obj) = obj.as_object() else {
        report.error(
            "",
            format!(
                "a TaskSpawner must be a JSON/YAML object, got {}",
                fields::kind(obj)
            ),
        );
        return report;
    };
    match obj.get("spec") {
        None | Some(Value::Null) => {}
        Some(Value::Object(spec)) => {
            if let Some(on_completion) = spec.get("onCompletion") {
                report.merge(validate_on_completion(
                    on_completion,
                    "spec.onCompletion",
                    ctx,
                ));
            }
        }
        Some(other) => report.error(
            "spec",
            format!("must be an object, got {}", fields::kind(other)),
        ),
    }
    report
}

/// Validates an `onCompletion` block; `path` prefixes every error path (e.g. `spec.onCompletion`).
/// `null` is valid (no hooks).
pub fn validate_on_completion(value: &Value, path: &str, ctx: &Context) -> Report {
    let mut report = Report::default();
    hooks::on_completion(value, &fields::Path::Root(path), ctx, &mut report);
    report
}

/// Validates an `onCompletion` block given as JSON text (as the admission review carries it),
/// as [`validate_on_completion`] does the parsed value. Text that is not JSON gets one error at
/// `path`: `unreadable: {serde_json's error}`. `null` is valid (no hooks).
pub fn validate_on_completion_json(json: &str, path: &str, ctx: &Context) -> Report {
    match serde_json::from_str::<Value>(json) {
        Ok(value) => validate_on_completion(&value, path, ctx),
        Err(e) => {
            let mut report = Report::default();
            report.error(path, format!("unreadable: {}", redact(&e.to_string())));
            report
        }
    }
}

/// Validates the text of the `kelos.dev/on-completion` Task annotation: JSON of the same shape as
/// `onCompletion`. Paths start with `metadata.annotations[kelos.dev/on-completion]`.
pub fn validate_snapshot(annotation: &str, ctx: &Context) -> Report {
    let path = format!("metadata.annotations[{ON_COMPLETION}]");
    let mut report = Report::default();
    match serde_json::from_str::<Value>(annotation) {
        Ok(Value::Null) => report.error(
            path,
            "must be a JSON object such as {\"hooks\":[…]}, got null; kelos-hooks writes this \
             annotation at Task creation, remove it",
        ),
        Ok(value) => hooks::on_completion(&value, &fields::Path::Root(&path), ctx, &mut report),
        Err(e) => report.error(
            path,
            format!(
                "not valid JSON ({}); kelos-hooks writes this annotation at Task creation, remove it \
                 rather than writing it by hand",
                redact(&e.to_string())
            ),
        ),
    }
    report
}

/// Validation of the typed API structs, by the same rules as the JSON they serialise to. Useful
/// where hooks arrive typed (the dispatcher's fallback to the spawner's current hooks).
pub trait Validate {
    /// Adds every violation under `path` to `report`.
    fn validate(&self, path: &str, ctx: &Context, report: &mut Report);
}

/// Serialises `typed` and runs `rule` over the result.
fn validate_typed<T: serde::Serialize>(
    typed: &T,
    path: &str,
    report: &mut Report,
    rule: impl FnOnce(&Value, &mut Report),
) {
    // Strings and enums always serialise; report rather than panic if that ever changes.
    match serde_json::to_value(typed) {
        Ok(value) => rule(&value, report),
        Err(e) => report.error(path, format!("cannot be serialised: {e}")),
    }
}

impl Validate for OnCompletion {
    fn validate(&self, path: &str, ctx: &Context, report: &mut Report) {
        validate_typed(self, path, report, |v, r| {
            hooks::on_completion(v, &fields::Path::Root(path), ctx, r);
        });
    }
}

impl Validate for Hook {
    fn validate(&self, path: &str, ctx: &Context, report: &mut Report) {
        validate_typed(self, path, report, |v, r| {
            hooks::hook(
                v,
                &fields::Path::Root(path),
                0,
                ctx,
                &mut hooks::Names::default(),
                r,
            );
        });
    }
}

impl Validate for Webhook {
    fn validate(&self, path: &str, ctx: &Context, report: &mut Report) {
        validate_typed(self, path, report, |v, r| {
            hooks::webhook(v, &fields::Path::Root(path), ctx, r);
        });
    }
}
