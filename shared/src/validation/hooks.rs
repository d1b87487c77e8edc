//! The rules for `onCompletion`, its hooks and their webhooks.

use std::collections::HashMap;

use serde_json::Value;

use super::fields::{field, index, join, kind, object, unknown_fields};
use super::names::{
    LABEL_MAX, SUBDOMAIN_MAX, is_dns1123_label, is_dns1123_subdomain, is_secret_key,
};
use super::url::validate_url;
use super::{Context, Report};
use crate::api::{MAX_HOOKS, Phase};

const ON_COMPLETION_FIELDS: &[&str] = &["hooks"];
const HOOK_FIELDS: &[&str] = &["name", "phases", "webhook"];
const WEBHOOK_FIELDS: &[&str] = &["url", "secretRef", "signingSecretRef", "format"];
const SECRET_REF_FIELDS: &[&str] = &["name"];
const SIGNING_SECRET_REF_FIELDS: &[&str] = &["name", "key"];
const FORMATS: &[&str] = &["Generic", "CloudEvents", "Slack"];

/// `onCompletion`: `null` (no hooks) or an object with an optional `hooks` list.
pub(crate) fn on_completion(value: &Value, path: &str, ctx: &Context, report: &mut Report) {
    if value.is_null() {
        return;
    }
    let Some(map) = object(value, path, "an object with a hooks list", report) else {
        return;
    };
    unknown_fields(map, path, ON_COMPLETION_FIELDS, report);
    match map.get("hooks") {
        None => {}
        Some(Value::Array(hooks)) => hook_list(hooks, &join(path, "hooks"), ctx, report),
        // `hooks: null` is usually a list left empty by mistake; the typed API would refuse it too.
        Some(other) => report.error(
            join(path, "hooks"),
            format!(
                "must be a list of hooks, got {}; add hooks or remove the field",
                kind(other)
            ),
        ),
    }
}

fn hook_list(hooks: &[Value], path: &str, ctx: &Context, report: &mut Report) {
    if hooks.len() > MAX_HOOKS {
        report.error(
            path,
            format!(
                "must have at most {MAX_HOOKS} hooks, has {}; remove {} or fan out from one receiver",
                hooks.len(),
                hooks.len() - MAX_HOOKS
            ),
        );
    }
    let mut names = Names::default();
    for (i, value) in hooks.iter().enumerate() {
        hook(value, &index(path, i), i, ctx, &mut names, report);
    }
}

/// Hook names seen so far in a list, with the index that first used each.
#[derive(Default)]
pub(crate) struct Names<'v> {
    first_use: HashMap<&'v str, usize>,
}

impl<'v> Names<'v> {
    /// Records the name of hooks[`index`]; the error text when an earlier hook already has it.
    fn record(&mut self, name: &'v str, index: usize) -> Option<String> {
        match self.first_use.get(name) {
            Some(first) => Some(format!(
                "duplicate name {name:?}, already used by hooks[{first}]; hook names must be unique"
            )),
            None => {
                self.first_use.insert(name, index);
                None
            }
        }
    }
}

/// hooks[`position`]; `names` carries the names of the hooks before it (uniqueness).
pub(crate) fn hook<'v>(
    value: &'v Value,
    path: &str,
    position: usize,
    ctx: &Context,
    names: &mut Names<'v>,
    report: &mut Report,
) {
    let Some(map) = object(
        value,
        path,
        "an object with name, phases and webhook",
        report,
    ) else {
        return;
    };
    unknown_fields(map, path, HOOK_FIELDS, report);

    let name_path = join(path, "name");
    match field(map, "name") {
        None => report.error(name_path, "required; name the hook, e.g. notify-team"),
        Some(Value::String(name)) => {
            if name.is_empty() {
                report.error(
                    &name_path,
                    "must not be empty; name the hook, e.g. notify-team",
                );
            } else if !is_dns1123_label(name) {
                report.error(
                    &name_path,
                    format!(
                        "{name:?} is not a DNS-1123 label: use lowercase letters, digits and '-', starting and \
                         ending with a letter or digit, at most {LABEL_MAX} characters (e.g. notify-team)"
                    ),
                );
            }
            if let Some(duplicate) = names.record(name, position) {
                report.error(name_path, duplicate);
            }
        }
        Some(other) => {
            report.error(
                name_path,
                format!("must be a string, got {}; e.g. notify-team", kind(other)),
            );
        }
    }

    if let Some(phases_value) = field(map, "phases") {
        phases(phases_value, &join(path, "phases"), report);
    }

    let webhook_path = join(path, "webhook");
    match field(map, "webhook") {
        None => report.error(
            webhook_path,
            "required; set webhook.url to the receiver's https:// URL",
        ),
        Some(value) => webhook(value, &webhook_path, ctx, report),
    }
}

fn phases(value: &Value, path: &str, report: &mut Report) {
    let allowed = Phase::ALL.map(Phase::as_str).join(", ");
    let Value::Array(items) = value else {
        report.error(
            path,
            format!("must be a list of phases ({allowed}), got {}", kind(value)),
        );
        return;
    };
    if items.is_empty() {
        report.error(
            path,
            format!("must not be empty; list some of {allowed}, or omit phases to fire on both"),
        );
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = index(path, i);
        let Value::String(phase) = item else {
            report.error(
                item_path,
                format!("must be a string, one of {allowed}; got {}", kind(item)),
            );
            continue;
        };
        if Phase::from_status(phase).is_none() {
            report.error(
                item_path,
                format!("unknown phase {phase:?}; allowed: {allowed}"),
            );
        } else if let Some((_, first)) = seen.iter().find(|(p, _)| p == phase) {
            report.error(
                item_path,
                format!(
                    "duplicate phase {phase:?}, already at phases[{first}]; list each phase once"
                ),
            );
        } else {
            seen.push((phase, i));
        }
    }
}

/// A hook's `webhook` block.
pub(crate) fn webhook(value: &Value, path: &str, ctx: &Context, report: &mut Report) {
    let Some(map) = object(
        value,
        path,
        "an object with url (and optionally secretRef, signingSecretRef, format)",
        report,
    ) else {
        return;
    };
    unknown_fields(map, path, WEBHOOK_FIELDS, report);

    let url_path = join(path, "url");
    match field(map, "url") {
        None => report.error(url_path, "required; set the receiver's https:// URL"),
        Some(Value::String(url)) => {
            validate_url(url, &url_path, ctx, report);
        }
        Some(other) => report.error(
            url_path,
            format!("must be a string (an https:// URL), got {}", kind(other)),
        ),
    }

    let secret_ref = field(map, "secretRef");
    if let Some(value) = secret_ref {
        secret_reference(value, &join(path, "secretRef"), SECRET_REF_FIELDS, report);
    }
    let signing_secret_ref = field(map, "signingSecretRef");
    if let Some(value) = signing_secret_ref {
        secret_reference(
            value,
            &join(path, "signingSecretRef"),
            SIGNING_SECRET_REF_FIELDS,
            report,
        );
    }
    if secret_ref.is_none() && signing_secret_ref.is_none() {
        report.warn(
            path,
            "no signingSecretRef or secretRef, so the receiver cannot authenticate the sender; add \
             signingSecretRef (signed requests) or secretRef (auth headers)",
        );
    }

    if let Some(format) = field(map, "format") {
        let format_path = join(path, "format");
        let allowed = FORMATS.join(", ");
        match format {
            Value::String(f) if FORMATS.contains(&f.as_str()) => {}
            Value::String(f) => report.error(
                format_path,
                format!("unknown format {f:?}; allowed: {allowed} (default Generic)"),
            ),
            other => report.error(
                format_path,
                format!("must be a string, one of {allowed}; got {}", kind(other)),
            ),
        }
    }
}

/// `secretRef` (`name`) or `signingSecretRef` (`name`, `key`), per `allowed`.
fn secret_reference(value: &Value, path: &str, allowed: &[&str], report: &mut Report) {
    let what = if allowed.contains(&"key") {
        "an object with name and key"
    } else {
        "an object with name"
    };
    let Some(map) = object(value, path, what, report) else {
        return;
    };
    unknown_fields(map, path, allowed, report);

    let name_path = join(path, "name");
    match field(map, "name") {
        None => report.error(name_path, "required; the name of a Secret in the Task's namespace"),
        Some(Value::String(name)) if is_dns1123_subdomain(name) => {}
        Some(Value::String(name)) if name.is_empty() => {
            report.error(name_path, "must not be empty; the name of a Secret in the Task's namespace")
        }
        Some(Value::String(name)) => report.error(
            name_path,
            format!(
                "{name:?} is not a valid Secret name: use lowercase letters, digits, '-' and '.', starting and \
                 ending with a letter or digit, at most {SUBDOMAIN_MAX} characters"
            ),
        ),
        Some(other) => report.error(name_path, format!("must be a string (a Secret name), got {}", kind(other))),
    }

    if !allowed.contains(&"key") {
        return;
    }
    let key_path = join(path, "key");
    match field(map, "key") {
        None => report.error(
            key_path,
            "required; the key in the Secret that holds the signing key (whsec_…)",
        ),
        Some(Value::String(key)) if is_secret_key(key) => {}
        Some(Value::String(key)) if key.is_empty() => report.error(
            key_path,
            "must not be empty; the key in the Secret that holds the signing key",
        ),
        Some(Value::String(key)) => report.error(
            key_path,
            format!(
                "{key:?} is not a valid Secret key: use letters, digits, '-', '_' and '.', at most \
                 {SUBDOMAIN_MAX} characters, not starting with '..'"
            ),
        ),
        Some(other) => report.error(
            key_path,
            format!("must be a string (a Secret key), got {}", kind(other)),
        ),
    }
}
