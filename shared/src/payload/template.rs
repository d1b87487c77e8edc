//! `format: Template`: the user's minijinja template rendered over the Generic payload's
//! variables (`type`, `id`, `hook`, `timestamp`, `task.*`).
//!
//! Sandboxed: the environment has no loader, so `include`/`import`/`extends` reach no file; no
//! function touches the network or the clock; rendering is bounded by [`FUEL`] (instructions),
//! [`RECURSION_LIMIT`] and [`OUTPUT_MAX`] bytes. A JSON content type means the output must parse
//! before anything is sent. The same checks run at apply time ([`check`]) over sample Tasks.

use std::io;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

use super::JSON;

/// Longest template source (bytes): eight of them still fit in the Task annotation.
pub const SOURCE_MAX: usize = 16 * 1024;
/// Longest rendered body (bytes).
pub const OUTPUT_MAX: usize = 256 * 1024;
/// Instructions one render may execute (minijinja fuel; also bounds what it allocates).
pub const FUEL: u64 = 50_000;
/// Deepest nesting of macro calls, loops and blocks.
pub const RECURSION_LIMIT: usize = 64;
/// Longest `contentType`.
pub const CONTENT_TYPE_MAX: usize = 127;

/// The variables a template may use: the Generic payload's top-level keys.
pub const VARIABLES: &[&str] = &["type", "id", "hook", "timestamp", "task"];
/// The fields of `task`.
pub const TASK_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "spawner",
    "phase",
    "message",
    "agentType",
    "model",
    "startTime",
    "completionTime",
    "outputs",
    "results",
    "usage",
];
/// The fields of `task.usage`.
pub const USAGE_FIELDS: &[&str] = &["costUSD", "inputTokens", "outputTokens"];

/// The sandboxed environment every template renders in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    // Printing or iterating a name that is not there is an error, not an empty string that
    // would send a half-filled message; `is defined` and `default` still work.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // Output is sent as written: JSON authors use `| tojson` where a value needs quoting.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

/// Whether `content_type` is JSON (`application/json`, `…+json`), so output must parse.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == JSON || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why a `contentType` is not a usable `type/subtype` header value, if it is not.
pub fn content_type_problem(content_type: &str) -> Option<String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    if content_type.len() > CONTENT_TYPE_MAX {
        return Some(format!("must be at most {CONTENT_TYPE_MAX} characters"));
    }
    let mut parts = content_type.splitn(2, ';');
    let essence = parts.next().unwrap_or_default().trim();
    let params_ok = parts.next().is_none_or(|p| {
        p.chars()
            .all(|c| c.is_ascii_graphic() || c == ' ' || c == '\t')
    });
    match essence.split_once('/') {
        Some((t, s)) if token(t) && token(s) && params_ok => None,
        _ => Some(
            "must be a media type such as application/json or text/plain; charset=utf-8".into(),
        ),
    }
}

/// A writer that refuses to grow past [`OUTPUT_MAX`]: an oversized render stops early.
struct Capped(Vec<u8>);

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > OUTPUT_MAX {
            return Err(io::Error::other(format!(
                "output is larger than {OUTPUT_MAX} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A minijinja error as one line: what, where.
fn describe(e: &minijinja::Error) -> String {
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

/// Renders `source` over `vars` (a Generic payload object). JSON output is parsed before it is
/// returned; the error says why nothing can be sent.
pub fn render(source: &str, vars: &Value, content_type: &str) -> Result<Vec<u8>, String> {
    if source.len() > SOURCE_MAX {
        return Err(format!(
            "template is {} bytes, more than {SOURCE_MAX}",
            source.len()
        ));
    }
    let env = environment();
    let template = env.template_from_str(source).map_err(|e| describe(&e))?;
    let mut out = Capped(Vec::new());
    template.render_captured_to(Serde(vars), &mut out).map_err(
        |e| match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>()) {
            Some(io) => io.to_string(),
            None => describe(&e),
        },
    )?;
    let bytes = out.0;
    if bytes.len() > OUTPUT_MAX {
        return Err(format!("output is larger than {OUTPUT_MAX} bytes"));
    }
    if is_json(content_type)
        && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
    {
        return Err(format!(
            "rendered body is not valid JSON ({e}); insert strings with the tojson filter, e.g. \
             {{{{ task.message | tojson }}}}"
        ));
    }
    Ok(bytes)
}

/// Whether `name` (a dotted path from the template, e.g. `task.usage.costUSD`) is one of the
/// Generic payload's variables.
fn known_variable(name: &str, globals: &[String]) -> bool {
    let mut parts = name.split('.');
    let top = parts.next().unwrap_or_default();
    if globals.iter().any(|g| g == top) {
        return true;
    }
    if !VARIABLES.contains(&top) {
        return false;
    }
    if top != "task" {
        // `id.foo`-style lookups on a string fail at render; only the name itself is a variable.
        return parts.next().is_none();
    }
    match parts.next() {
        None => true,
        Some("usage") => parts.next().is_none_or(|f| USAGE_FIELDS.contains(&f)),
        // `results` is a map of the agent's own keys; `outputs` a list.
        Some(field) => TASK_FIELDS.contains(&field),
    }
}

/// The problems of a template source found without a Task: size, syntax, unknown variables.
/// `samples` are Generic payloads it must render for (a JSON content type must also parse).
pub fn check(source: &str, content_type: &str, samples: &[Value]) -> Vec<String> {
    if source.trim().is_empty() {
        return vec![
            "must not be empty; write the body to send, e.g. {\"text\": {{ task.name | tojson }}}"
                .into(),
        ];
    }
    if source.len() > SOURCE_MAX {
        return vec![format!(
            "is {} bytes, more than {SOURCE_MAX}; shorten the template",
            source.len()
        )];
    }
    let env = environment();
    let template = match env.template_from_str(source) {
        Ok(t) => t,
        Err(e) => return vec![format!("syntax error: {}", describe(&e))],
    };
    let globals: Vec<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    let mut unknown: Vec<String> = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| !known_variable(v, &globals))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        return vec![format!(
            "unknown variable(s) {}; available: {}, task.{{{}}}, task.usage.{{{}}}",
            unknown.join(", "),
            VARIABLES.join(", "),
            TASK_FIELDS.join(","),
            USAGE_FIELDS.join(","),
        )];
    }
    // The first sample that fails says enough.
    samples
        .iter()
        .filter_map(|vars| {
            render(source, vars, content_type).err().map(|e| {
                format!(
                    "fails for a sample {} Task (message with quotes and a line break): {e}",
                    vars["task"]["phase"].as_str().unwrap_or_default()
                )
            })
        })
        .take(1)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::{Format, Phase, TemplateOptions};
    use crate::payload::tests::{hook, task, ts};
    use crate::payload::{build, generic, template_samples};

    fn vars() -> Value {
        generic(
            &task(),
            &hook(None),
            Phase::Failed,
            "uid_Failed_notify-team",
            ts(),
        )
    }

    fn rendered(source: &str) -> Result<String, String> {
        render(source, &vars(), JSON).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn renders_the_generic_variables() {
        let out = rendered(
            r#"{"text": {{ ("Task " ~ task.name ~ " " ~ task.phase) | tojson }}, "msg": {{ task.message | tojson }}, "id": "{{ id }}", "cost": {{ task.usage.costUSD | tojson }}, "pr": "{{ task.results.pr }}", "n": {{ task.outputs | length }}}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["text"], "Task fix-123 Failed");
        assert_eq!(v["msg"], "Opened <PR> & done", "no HTML escaping");
        assert_eq!(v["id"], "uid_Failed_notify-team");
        assert_eq!(v["cost"], "0.42");
        assert_eq!(v["pr"], "1");
        assert_eq!(v["n"], 2);
        let text = render(
            "{{ type }} {{ hook }} at {{ timestamp }}",
            &vars(),
            "text/plain",
        )
        .unwrap();
        assert_eq!(
            text,
            b"kelos.task.failed notify-team at 2026-01-01T10:05:00Z"
        );
    }

    #[test]
    fn json_output_must_parse() {
        let err = rendered(r#"{"text": "{{ task.message }}"#).unwrap_err();
        assert!(
            err.contains("not valid JSON") && err.contains("tojson"),
            "{err}"
        );
        // Not JSON: sent as written.
        assert!(render("not json", &vars(), "text/plain").is_ok());
        assert!(render("not json", &vars(), "application/vnd.x+json; charset=utf-8").is_err());
    }

    #[test]
    fn the_sandbox_bounds_work_and_reaches_nothing() {
        // Fuel: a loop that runs too long.
        let err = rendered(
            "{% for i in range(100000) %}{% for j in range(100) %}{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        // Output cap.
        let err = render(
            &format!(
                "{{% for i in range(3000) %}}{}{{% endfor %}}",
                "x".repeat(100)
            ),
            &vars(),
            "text/plain",
        )
        .unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        // Recursion.
        let err = rendered("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
        assert!(err.contains("recursion") || err.contains("fuel"), "{err}");
        // No loader, not even the statements: no file can be read.
        for reach in [
            r#"{% include "/etc/passwd" %}"#,
            r#"{% import "x" as y %}"#,
            r#"{% extends "x" %}"#,
        ] {
            let err = rendered(reach).unwrap_err();
            assert!(err.contains("unknown statement"), "{err}");
        }
        // A name that is not there fails instead of printing nothing.
        let err = rendered(r#"{"x": "{{ task.results.missing }}"}"#).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(rendered(r#"{"x": "{{ task.results.missing | default('') }}"}"#).is_ok());
        assert!(render(&"x".repeat(SOURCE_MAX + 1), &vars(), "text/plain").is_err());
    }

    #[test]
    fn apply_time_checks_find_syntax_unknown_names_and_unsafe_json() {
        let samples = template_samples();
        assert_eq!(samples.len(), 2);
        let ok = r#"{"text": {{ task.message | tojson }}, "who": {{ task.spawner | tojson }}, "u": {{ task.usage.inputTokens | tojson }}, "r": {{ task.results | tojson }}}{% set x = 1 %}{{ "" if x else "" }}"#;
        assert_eq!(check(ok, JSON, &samples), Vec::<String>::new());
        let syntax = check("{{ task.name ", JSON, &samples);
        assert!(
            syntax[0].starts_with("syntax error") && syntax[0].contains("line 1"),
            "{syntax:?}"
        );
        let unknown = check(
            r#"{"a": {{ taks.name | tojson }}, "b": {{ task.nme | tojson }}, "c": {{ task.usage.cost | tojson }}}"#,
            JSON,
            &samples,
        );
        assert!(
            unknown[0].contains("taks.name, task.nme, task.usage.cost"),
            "{unknown:?}"
        );
        let naive = check(r#"{"text": "{{ task.message }}"}"#, JSON, &samples);
        assert!(
            naive[0].contains("sample") && naive[0].contains("tojson"),
            "{naive:?}"
        );
        assert_eq!(
            check(r#"{{ task.message }}"#, "text/plain", &samples),
            Vec::<String>::new()
        );
        assert!(check("  ", JSON, &samples)[0].contains("must not be empty"));
        assert!(check(&"x".repeat(SOURCE_MAX + 1), JSON, &samples)[0].contains("bytes"));
    }

    #[test]
    fn content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("text/plain"));
        assert_eq!(content_type_problem("text/plain; charset=utf-8"), None);
        assert_eq!(
            content_type_problem("application/x-www-form-urlencoded"),
            None
        );
        for bad in [
            "json",
            "text/",
            "/x",
            "text/plain\r\nX-Evil: 1",
            "a b/c",
            &"a/".repeat(100),
        ] {
            assert!(content_type_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn build_sends_the_template_with_its_content_type_or_nothing() {
        let mut h = hook(Some(Format::Template));
        h.webhook.template = Some(TemplateOptions {
            body: "{{ task.name }} {{ task.phase }}".into(),
            content_type: Some("text/plain; charset=utf-8".into()),
        });
        let body = build(&task(), &h, Phase::Failed, "id", ts(), None).unwrap();
        assert_eq!(body.content_type, "text/plain; charset=utf-8");
        assert_eq!(body.bytes, b"fix-123 Failed");
        h.webhook.template = Some(TemplateOptions {
            body: "{{ task.name }}".into(),
            content_type: None,
        });
        let err = build(&task(), &h, Phase::Failed, "id", ts(), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot build the Template body: rendered body is not valid JSON"),
            "{err}"
        );
    }
}
