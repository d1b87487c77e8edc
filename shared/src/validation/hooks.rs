//! The rules for `onCompletion`, its hooks and their webhooks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::Value;

use super::fields::{Joined, Path, kind, known_fields, non_null, object};
use super::formats;
use super::names::{
    LABEL_MAX, SUBDOMAIN_MAX, is_dns1123_label, is_dns1123_subdomain, is_secret_key,
};
use super::url::judge_url;
use super::{Context, Report};
use crate::api::{MAX_HOOKS, Phase};

const ON_COMPLETION_FIELDS: &[&str; 1] = &["hooks"];
const HOOK_FIELDS: &[&str; 3] = &["name", "phases", "webhook"];
const WEBHOOK_FIELDS: &[&str; 6] = &[
    "url",
    "secretRef",
    "signingSecretRef",
    "format",
    "pagerDuty",
    "template",
];
const SECRET_REF_FIELDS: &[&str; 1] = &["name"];
const SIGNING_SECRET_REF_FIELDS: &[&str; 2] = &["name", "key"];
const FORMATS: &[&str] = &[
    "Generic",
    "CloudEvents",
    "Slack",
    "PagerDuty",
    "MSTeams",
    "Discord",
    "Template",
];

/// `onCompletion`: `null` (no hooks) or an object with an optional `hooks` list.
pub(crate) fn on_completion(value: &Value, path: &Path<'_>, ctx: &Context, report: &mut Report) {
    if value.is_null() {
        return;
    }
    let Some(map) = object(value, path, "an object with a hooks list", report) else {
        return;
    };
    let [hooks] = known_fields(map, path, ON_COMPLETION_FIELDS, report);
    let Some(hooks) = hooks else {
        return;
    };
    match hooks {
        Value::Array(items) => hook_list(items, &path.field("hooks"), ctx, report),
        // `hooks: null` is usually a list left empty by mistake; the typed API would refuse it too.
        _ => report.error(
            &path.field("hooks"),
            format!(
                "must be a list of hooks, got {}; add hooks or remove the field",
                kind(hooks)
            ),
        ),
    }
}

fn hook_list(hooks: &[Value], path: &Path<'_>, ctx: &Context, report: &mut Report) {
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
        hook(value, &path.index(i), i, ctx, &mut names, report);
    }
}

/// Hook names seen so far in a list, with the index that first used each.
#[derive(Default)]
pub(crate) struct Names<'v>(HashMap<&'v str, usize>);

impl<'v> Names<'v> {
    /// Records the name of hooks[`index`]; the error text when an earlier hook already has it.
    fn record(&mut self, name: &'v str, index: usize) -> Option<String> {
        match self.0.entry(name) {
            Entry::Occupied(first) => Some(format!(
                "duplicate name {name:?}, already used by hooks[{}]; hook names must be unique",
                first.get()
            )),
            Entry::Vacant(slot) => {
                slot.insert(index);
                None
            }
        }
    }
}

/// hooks[`position`]; `names` carries the names of the hooks before it (uniqueness).
pub(crate) fn hook<'v>(
    value: &'v Value,
    path: &Path<'_>,
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
    let [name, phases_value, webhook_value] = known_fields(map, path, HOOK_FIELDS, report);

    let name_path = path.field("name");
    match non_null(name) {
        None => report.error(&name_path, "required; name the hook, e.g. notify-team"),
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
                report.error(&name_path, duplicate);
            }
        }
        Some(other) => {
            report.error(
                &name_path,
                format!("must be a string, got {}; e.g. notify-team", kind(other)),
            );
        }
    }

    if let Some(phases_value) = non_null(phases_value) {
        phases(phases_value, &path.field("phases"), report);
    }

    let webhook_path = path.field("webhook");
    match non_null(webhook_value) {
        None => report.error(
            &webhook_path,
            "required; set webhook.url to the receiver's https:// URL",
        ),
        Some(value) => webhook(value, &webhook_path, ctx, report),
    }
    formats::pager_duty_phases(
        non_null(phases_value),
        non_null(webhook_value),
        path,
        report,
    );
}

fn phases(value: &Value, path: &Path<'_>, report: &mut Report) {
    let allowed = Joined(&Phase::ALL);
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
    // The index that first listed each phase, by its position in `Phase::ALL`.
    let mut seen = [None::<usize>; Phase::ALL.len()];
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        let Value::String(phase) = item else {
            report.error(
                &item_path,
                format!("must be a string, one of {allowed}; got {}", kind(item)),
            );
            continue;
        };
        let Some(slot) = Phase::from_status(phase)
            .and_then(|known| Phase::ALL.iter().position(|p| *p == known))
            .and_then(|position| seen.get_mut(position))
        else {
            report.error(
                &item_path,
                format!("unknown phase {phase:?}; allowed: {allowed}"),
            );
            continue;
        };
        if let Some(first) = slot {
            report.error(
                &item_path,
                format!(
                    "duplicate phase {phase:?}, already at phases[{first}]; list each phase once"
                ),
            );
        } else {
            *slot = Some(i);
        }
    }
}

/// A hook's `webhook` block.
pub(crate) fn webhook(value: &Value, path: &Path<'_>, ctx: &Context, report: &mut Report) {
    let Some(map) = object(
        value,
        path,
        "an object with url (and optionally secretRef, signingSecretRef, format)",
        report,
    ) else {
        return;
    };
    let [
        url,
        secret_ref,
        signing_secret_ref,
        format,
        pager_duty,
        template,
    ] = known_fields(map, path, WEBHOOK_FIELDS, report);

    let url_path = path.field("url");
    match non_null(url) {
        None => report.error(&url_path, "required; set the receiver's https:// URL"),
        Some(Value::String(url)) => judge_url(url, &url_path, ctx, report),
        Some(other) => report.error(
            &url_path,
            format!("must be a string (an https:// URL), got {}", kind(other)),
        ),
    }

    let secret_ref = non_null(secret_ref);
    if let Some(value) = secret_ref {
        secret_reference(value, &path.field("secretRef"), false, report);
    }
    let signing_secret_ref = non_null(signing_secret_ref);
    if let Some(value) = signing_secret_ref {
        secret_reference(value, &path.field("signingSecretRef"), true, report);
    }
    let format_name = non_null(format).and_then(Value::as_str);
    // A PagerDuty event authenticates with its routing key.
    if secret_ref.is_none() && signing_secret_ref.is_none() && format_name != Some("PagerDuty") {
        report.warn_at(
            path,
            "no signingSecretRef or secretRef, so the receiver cannot authenticate the sender; add \
             signingSecretRef (signed requests) or secretRef (auth headers)",
        );
    }

    if let Some(format) = non_null(format) {
        let format_path = path.field("format");
        let allowed = Joined(FORMATS);
        match format {
            Value::String(f) if FORMATS.contains(&f.as_str()) => {}
            Value::String(f) => report.error(
                &format_path,
                // Redacted: a URL pasted here by mistake may carry credentials.
                format!(
                    "unknown format {:?}; allowed: {allowed} (default Generic)",
                    crate::redact::redact(f)
                ),
            ),
            _ => report.error(
                &format_path,
                format!("must be a string, one of {allowed}; got {}", kind(format)),
            ),
        }
    }
    formats::options(format_name, pager_duty, template, path, report);
}

/// `secretRef` (`name`) or, `with_key`, `signingSecretRef` (`name`, `key`).
fn secret_reference(value: &Value, path: &Path<'_>, with_key: bool, report: &mut Report) {
    secret_key_reference(value, path, with_key, "the signing key (whsec_…)", report);
}

/// A Secret reference; `with_key`, its `key` holds `holds` (for messages).
pub(crate) fn secret_key_reference(
    value: &Value,
    path: &Path<'_>,
    with_key: bool,
    holds: &str,
    report: &mut Report,
) {
    let what = if with_key {
        "an object with name and key"
    } else {
        "an object with name"
    };
    let Some(map) = object(value, path, what, report) else {
        return;
    };
    // `key` is `None` for a secretRef (no such field) and `Some(value)` for a signingSecretRef.
    let (name, key) = if with_key {
        let [name, key] = known_fields(map, path, SIGNING_SECRET_REF_FIELDS, report);
        (name, Some(key))
    } else {
        let [name] = known_fields(map, path, SECRET_REF_FIELDS, report);
        (name, None)
    };

    let name_path = path.field("name");
    match non_null(name) {
        None => report.error(&name_path, "required; the name of a Secret in the Task's namespace"),
        Some(Value::String(name)) if is_dns1123_subdomain(name) => {}
        Some(Value::String(name)) if name.is_empty() => {
            report.error(&name_path, "must not be empty; the name of a Secret in the Task's namespace")
        }
        Some(Value::String(name)) => report.error(
            &name_path,
            format!(
                "{name:?} is not a valid Secret name: use lowercase letters, digits, '-' and '.', starting and \
                 ending with a letter or digit, at most {SUBDOMAIN_MAX} characters"
            ),
        ),
        Some(other) => report.error(&name_path, format!("must be a string (a Secret name), got {}", kind(other))),
    }

    let Some(key) = key else {
        return;
    };
    let key_path = path.field("key");
    match non_null(key) {
        None => report.error(
            &key_path,
            format!("required; the key in the Secret that holds {holds}"),
        ),
        Some(Value::String(key)) if is_secret_key(key) => {}
        Some(Value::String(key)) if key.is_empty() => report.error(
            &key_path,
            format!(
                "must not be empty; the key in the Secret that holds {}",
                holds.split(" (").next().unwrap_or(holds)
            ),
        ),
        Some(Value::String(key)) => report.error(
            &key_path,
            format!(
                "{key:?} is not a valid Secret key: use letters, digits, '-', '_' and '.', at most \
                 {SUBDOMAIN_MAX} characters, not starting with '..'"
            ),
        ),
        Some(other) => report.error(
            &key_path,
            format!("must be a string (a Secret key), got {}", kind(other)),
        ),
    }
}
