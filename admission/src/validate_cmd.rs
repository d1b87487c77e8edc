//! `validate -f FILE…`: the TaskSpawner rules offline, for CI pipelines.

use std::io::{Read, Write};
use std::path::Path;

use kelos_hooks_shared::ip::IpPolicy;
use kelos_hooks_shared::redact::redact;
use kelos_hooks_shared::validation::{Context, validate_task_spawner};
use serde_json::Value;

use crate::cli::ValidateArgs;
use crate::error::{Error, Result};

/// Exit status: every TaskSpawner valid.
pub const EXIT_VALID: i32 = 0;
/// Exit status: at least one TaskSpawner invalid.
pub const EXIT_INVALID: i32 = 1;
/// Exit status: usage, I/O or YAML error.
pub const EXIT_ERROR: i32 = 2;

/// What one input held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// TaskSpawners judged.
    pub checked: usize,
    /// Of those, invalid.
    pub invalid: usize,
}

fn is_task_spawner(doc: &Value) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some("TaskSpawner")
        && doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("kelos.dev/"))
}

/// Judges every TaskSpawner among `docs` (descending into `kind: List` items), writing
/// `LABEL: TaskSpawner/NAME: path: message` lines (and `…: warning: …`) to `out`.
pub fn judge_documents(
    label: &str,
    docs: &[Value],
    ctx: &Context,
    verbose: bool,
    out: &mut dyn Write,
) -> Tally {
    let mut tally = Tally::default();
    for (i, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        if doc.get("kind").and_then(Value::as_str) == Some("List")
            && let Some(items) = doc.get("items").and_then(Value::as_array)
        {
            let sub = judge_documents(label, items, ctx, verbose, out);
            tally.checked += sub.checked;
            tally.invalid += sub.invalid;
            continue;
        }
        if !is_task_spawner(doc) {
            if verbose {
                let kind = doc
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("<no kind>");
                let _ = writeln!(
                    out,
                    "{label}: document {}: skipped ({kind}, not a kelos.dev TaskSpawner)",
                    i + 1
                );
            }
            continue;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        let report = validate_task_spawner(doc, ctx);
        tally.checked += 1;
        for w in &report.warnings {
            let _ = writeln!(out, "{label}: TaskSpawner/{name}: warning: {w}");
        }
        for e in &report.errors {
            let _ = writeln!(out, "{label}: TaskSpawner/{name}: {e}");
        }
        if !report.is_valid() {
            tally.invalid += 1;
        } else if verbose {
            let _ = writeln!(out, "{label}: TaskSpawner/{name}: valid");
        }
    }
    tally
}

/// Parses multi-document YAML (JSON is YAML too).
pub fn parse_documents(text: &str) -> Result<Vec<Value>> {
    Ok(serde_saphyr::from_multiple::<Value>(text)?)
}

/// The label and text of one input (`-` is stdin).
fn read_input(path: &Path) -> Result<(String, String)> {
    let (label, read) = if path == Path::new("-") {
        let mut s = String::new();
        let read = std::io::stdin().read_to_string(&mut s).map(|_| s);
        ("<stdin>".to_owned(), read)
    } else {
        (path.display().to_string(), std::fs::read_to_string(path))
    };
    let text = read.map_err(|source| Error::Input {
        label: label.clone(),
        source,
    })?;
    Ok((label, text))
}

/// Runs the command; returns the exit status.
pub fn run(args: &ValidateArgs) -> i32 {
    let stderr = std::io::stderr();
    let mut out = stderr.lock();
    let policy = match IpPolicy::from_cidrs(&args.policy.allow_cidr) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: --allow-cidr {:?}: {}", e.input, e.reason);
            return EXIT_ERROR;
        }
    };
    let ctx = Context { ip_policy: &policy };
    let mut failed_io = false;
    let mut total = Tally::default();
    for path in &args.files {
        let (label, text) = match read_input(path) {
            Ok(x) => x,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                failed_io = true;
                continue;
            }
        };
        let docs = match parse_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                // The YAML reader may quote the document (CI logs keep this output).
                let _ = writeln!(
                    out,
                    "error: {label}: not valid YAML: {}",
                    redact(&e.to_string())
                );
                failed_io = true;
                continue;
            }
        };
        let t = judge_documents(&label, &docs, &ctx, args.verbose, &mut out);
        total.checked += t.checked;
        total.invalid += t.invalid;
    }
    if args.verbose {
        let _ = writeln!(
            out,
            "{} TaskSpawner(s) checked, {} invalid",
            total.checked, total.invalid
        );
    }
    if failed_io {
        EXIT_ERROR
    } else if total.invalid > 0 {
        EXIT_INVALID
    } else {
        EXIT_VALID
    }
}

/// `crds`: every CRD as multi-document YAML.
pub fn crds_yaml() -> Result<String> {
    let mut out = String::new();
    for crd in kelos_hooks_shared::crd::all() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: kelos.dev/v1alpha2
kind: TaskSpawner
metadata: {name: good}
spec:
  when: {cron: {schedule: "0 * * * *"}}
  onCompletion:
    hooks:
    - name: a
      webhook: {url: "https://hooks.example.com/x?token=abcdef123456"}
---
apiVersion: kelos.dev/v1alpha2
kind: TaskSpawner
metadata: {name: bad}
spec:
  onCompletion:
    hooks:
    - name: a
      webhook: {url: "http://hooks.example.com/x"}
"#;

    fn judge(text: &str, verbose: bool) -> (Tally, String) {
        let docs = parse_documents(text).unwrap();
        let mut out = Vec::new();
        let t = judge_documents("f.yaml", &docs, &Context::default(), verbose, &mut out);
        (t, String::from_utf8(out).unwrap())
    }

    #[test]
    fn every_spawner_is_judged_with_file_name_and_path() {
        let (t, out) = judge(MANIFEST, false);
        assert_eq!(
            t,
            Tally {
                checked: 2,
                invalid: 1
            }
        );
        assert!(
            out.contains("f.yaml: TaskSpawner/bad: spec.onCompletion.hooks[0].webhook.url: "),
            "{out}"
        );
        assert!(
            out.contains(
                "f.yaml: TaskSpawner/good: warning: spec.onCompletion.hooks[0].webhook.url"
            ),
            "{out}"
        );
        assert!(
            !out.contains("ConfigMap"),
            "skips are silent without --verbose: {out}"
        );
    }

    #[test]
    fn format_options_are_judged_offline_too() {
        let text = r#"
apiVersion: kelos.dev/v1alpha2
kind: TaskSpawner
metadata: {name: formats}
spec:
  onCompletion:
    hooks:
    - name: dash
      webhook:
        url: https://dash.example.com/kelos
        format: Template
        template: {body: '{"text": {{ task.nme | tojson }}}'}
    - name: page
      webhook: {url: "https://events.pagerduty.com/v2/enqueue", format: PagerDuty}
"#;
        let (t, out) = judge(text, false);
        assert_eq!(t.invalid, 1, "{out}");
        assert!(
            out.contains(
                "TaskSpawner/formats: spec.onCompletion.hooks[0].webhook.template.body: unknown variable(s) task.nme"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "TaskSpawner/formats: spec.onCompletion.hooks[1].webhook.pagerDuty: required with format PagerDuty"
            ),
            "{out}"
        );
    }

    #[test]
    fn verbose_names_skipped_documents() {
        let (_, out) = judge(MANIFEST, true);
        assert!(out.contains("document 1: skipped (ConfigMap"), "{out}");
    }

    #[test]
    fn lists_are_descended() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"kelos.dev/v1alpha2","kind":"TaskSpawner","metadata":{"name":"x"},
             "spec":{"onCompletion":{"hooks":[{"name":"a","webhook":{"url":"ftp://x"}}]}}}]}"#;
        let (t, out) = judge(list, false);
        assert_eq!(
            t,
            Tally {
                checked: 1,
                invalid: 1
            }
        );
        assert!(
            out.contains("TaskSpawner/x: spec.onCompletion.hooks[0].webhook.url"),
            "{out}"
        );
    }

    #[test]
    fn bad_yaml_is_an_error() {
        assert!(parse_documents("a: [unclosed").is_err());
    }

    #[test]
    fn crds_are_yaml_documents() {
        let y = crds_yaml().unwrap();
        assert!(y.starts_with("---\n"));
        assert!(y.contains("taskspawners.kelos.dev"));
        let docs = parse_documents(&y).unwrap();
        assert_eq!(docs.len(), kelos_hooks_shared::crd::all().len());
    }
}
