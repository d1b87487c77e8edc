//! The rules of the format options: `webhook.pagerDuty` (with `format: PagerDuty`) and
//! `webhook.template` (with `format: Template`, checked by rendering over sample Tasks).

use serde_json::Value;

use super::Report;
use super::fields::{Path, kind, known_fields, non_null, object};
use super::hooks::secret_key_reference;
use crate::payload::{JSON, template, template_samples};

const PAGER_DUTY_FIELDS: &[&str; 2] = &["routingKeySecretRef", "triggerOnSucceeded"];
const TEMPLATE_FIELDS: &[&str; 2] = &["body", "contentType"];

/// `pagerDuty` and `template` of a webhook whose `format` is `format` (`None`: omitted or not a
/// string; the format rule reports the latter).
pub(crate) fn options(
    format: Option<&str>,
    pager_duty: Option<&Value>,
    template: Option<&Value>,
    path: &Path<'_>,
    report: &mut Report,
) {
    let shown = format.unwrap_or("Generic");
    let pd_path = path.field("pagerDuty");
    match (format == Some("PagerDuty"), non_null(pager_duty)) {
        (true, None) => report.error(
            &pd_path,
            "required with format PagerDuty; set pagerDuty.routingKeySecretRef to the Secret key \
             holding the Events API v2 integration's routing key",
        ),
        (true, Some(value)) => pager_duty_options(value, &pd_path, report),
        (false, Some(_)) => report.error(
            &pd_path,
            format!("only for format PagerDuty, but format is {shown}; remove pagerDuty or set format: PagerDuty"),
        ),
        (false, None) => {}
    }
    let t_path = path.field("template");
    match (format == Some("Template"), non_null(template)) {
        (true, None) => report.error(
            &t_path,
            "required with format Template; set template.body to the body to send, e.g. \
             {\"text\": {{ task.name | tojson }}}",
        ),
        (true, Some(value)) => template_options(value, &t_path, report),
        (false, Some(_)) => report.error(
            &t_path,
            format!("only for format Template, but format is {shown}; remove template or set format: Template"),
        ),
        (false, None) => {}
    }
}

fn pager_duty_options(value: &Value, path: &Path<'_>, report: &mut Report) {
    let Some(map) = object(
        value,
        path,
        "an object with routingKeySecretRef (and optionally triggerOnSucceeded)",
        report,
    ) else {
        return;
    };
    let [key_ref, trigger] = known_fields(map, path, PAGER_DUTY_FIELDS, report);
    let key_path = path.field("routingKeySecretRef");
    match non_null(key_ref) {
        None => report.error(
            &key_path,
            "required; the Secret (name, key) holding the routing key, which must never be in the URL",
        ),
        Some(v) => secret_key_reference(v, &key_path, true, "the PagerDuty routing key", report),
    }
    if let Some(t) = non_null(trigger)
        && !t.is_boolean()
    {
        report.error(
            &path.field("triggerOnSucceeded"),
            format!("must be true or false, got {}", kind(t)),
        );
    }
}

fn template_options(value: &Value, path: &Path<'_>, report: &mut Report) {
    let Some(map) = object(
        value,
        path,
        "an object with body (and optionally contentType)",
        report,
    ) else {
        return;
    };
    let [body, content_type] = known_fields(map, path, TEMPLATE_FIELDS, report);
    let ct_path = path.field("contentType");
    let content_type = match non_null(content_type) {
        None => Some(JSON),
        Some(Value::String(ct)) => match template::content_type_problem(ct) {
            None => Some(ct.as_str()),
            Some(problem) => {
                report.error(&ct_path, problem);
                None
            }
        },
        Some(other) => {
            report.error(
                &ct_path,
                format!(
                    "must be a string such as application/json, got {}",
                    kind(other)
                ),
            );
            None
        }
    };
    let body_path = path.field("body");
    match non_null(body) {
        None => report.error(
            &body_path,
            "required; the template of the body to send, e.g. {\"text\": {{ task.name | tojson }}}",
        ),
        Some(Value::String(source)) => {
            // Without a usable content type the render check would judge the wrong thing.
            if let Some(ct) = content_type {
                for problem in template::check(source, ct, &template_samples()) {
                    report.error(&body_path, problem);
                }
            }
        }
        Some(other) => report.error(
            &body_path,
            format!("must be a string (the template), got {}", kind(other)),
        ),
    }
}

/// A PagerDuty hook listing only `Succeeded` never fires unless it opts in: refuse it.
pub(crate) fn pager_duty_phases(
    phases: Option<&Value>,
    webhook: Option<&Value>,
    path: &Path<'_>,
    report: &mut Report,
) {
    let Some(webhook) = webhook else {
        return;
    };
    if webhook["format"] != "PagerDuty" || webhook["pagerDuty"]["triggerOnSucceeded"] == true {
        return;
    }
    let only_succeeded = phases
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty() && p.iter().all(|v| v == "Succeeded"));
    if only_succeeded {
        report.error(
            &path.field("phases"),
            "a PagerDuty hook opens incidents for Failed Tasks only, so [Succeeded] would never \
             fire; add Failed, or set webhook.pagerDuty.triggerOnSucceeded: true",
        );
    }
}
