//! `kelos-hooks-dispatcher status -n N [--spawner S]`: recent Tasks and each hook's delivery state
//! (state, attempts, last status, next attempt or last error), then each hook's health across
//! them. Read-only and computed from the Tasks' own annotations, the record the dispatcher resumes
//! from, so it tells the same story whichever replica leads (or none).

use std::collections::BTreeMap;

use kelos_hooks_shared::annotations::{DELIVERIES, ON_COMPLETION, SPAWNER_LABEL, decode_snapshot};
use kelos_hooks_shared::api::Task;
use kelos_hooks_shared::deliveries::{Deliveries, HookDelivery, HookState};
use kube::api::{Api, ListParams};

use crate::cli::StatusArgs;

/// Most characters of an error shown in the table.
const DETAIL: usize = 60;

/// One line of the Task table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Task name.
    pub task: String,
    /// Its spawner (`-` without).
    pub spawner: String,
    /// Task phase (`-` without).
    pub phase: String,
    /// Hook name.
    pub hook: String,
    /// Hook state (`-` while the Task runs).
    pub state: String,
    /// Attempts made.
    pub attempts: String,
    /// Last HTTP status.
    pub last_status: String,
    /// Next attempt or last error.
    pub detail: String,
}

fn label<'a>(t: &'a Task, key: &str) -> Option<&'a String> {
    t.metadata.labels.as_ref()?.get(key)
}

fn annotation<'a>(t: &'a Task, key: &str) -> Option<&'a String> {
    t.metadata.annotations.as_ref()?.get(key)
}

/// The hook names of a Task: its snapshot's, then any others recorded.
fn hook_names(t: &Task, d: Option<&Deliveries>) -> Vec<String> {
    let mut names: Vec<String> = annotation(t, ON_COMPLETION)
        .and_then(|s| decode_snapshot(s).ok())
        .map(|s| s.hooks.into_iter().map(|h| h.name).collect())
        .unwrap_or_default();
    for name in d.into_iter().flat_map(|d| d.hooks.keys()) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The delivery record of a terminal Task for its phase.
fn deliveries(t: &Task) -> Option<Deliveries> {
    let phase = t.terminal_phase()?;
    Some(Deliveries::resume(
        annotation(t, DELIVERIES).map(String::as_str),
        phase,
    ))
}

fn short(s: &str) -> String {
    if s.chars().count() <= DETAIL {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(DETAIL - 1).collect();
    out.push('…');
    out
}

fn detail(d: &HookDelivery) -> String {
    match (d.state, d.next_attempt_at, &d.last_error) {
        (HookState::Retrying, Some(next), e) => format!(
            "next {}{}",
            next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.as_ref()
                .map(|e| format!(": {}", short(e)))
                .unwrap_or_default()
        ),
        (_, _, Some(e)) => short(e),
        _ => String::new(),
    }
}

/// Newest first: by completion time, then creation time (running Tasks first).
fn newest_first(tasks: &mut [Task]) {
    let key = |t: &Task| {
        (
            t.status
                .as_ref()
                .and_then(|s| s.completion_time.clone())
                .unwrap_or_else(|| "~".into()),
            t.metadata
                .creation_timestamp
                .as_ref()
                .map(|c| c.0.to_string())
                .unwrap_or_default(),
        )
    };
    tasks.sort_by_key(|t| std::cmp::Reverse(key(t)));
}

/// The table rows of `tasks` (already newest first).
pub fn rows(tasks: &[Task]) -> Vec<Row> {
    let mut out = Vec::new();
    for t in tasks {
        let d = deliveries(t);
        let phase = t
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "-".into());
        for hook in hook_names(t, d.as_ref()) {
            let rec = d.as_ref().and_then(|d| d.get(&hook));
            let (state, attempts, last_status, detail) = match (&d, rec) {
                (None, _) => ("-".into(), "-".into(), "-".into(), String::new()),
                (Some(_), None) => ("Pending".into(), "0".into(), "-".into(), String::new()),
                (Some(_), Some(r)) => (
                    r.state.as_str().to_owned(),
                    r.attempts.to_string(),
                    r.last_status.map_or("-".into(), |s| s.to_string()),
                    detail(r),
                ),
            };
            out.push(Row {
                task: t.metadata.name.clone().unwrap_or_default(),
                spawner: label(t, SPAWNER_LABEL)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                phase: phase.clone(),
                hook,
                state,
                attempts,
                last_status,
                detail,
            });
        }
    }
    out
}

/// One hook's health across the Tasks shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Spawner.
    pub spawner: String,
    /// Hook.
    pub hook: String,
    /// State on the newest Task that has one.
    pub last: String,
    /// Newest Tasks in a row on which the hook failed or is retrying.
    pub failing_in_a_row: usize,
}

/// Health per (spawner, hook) from table rows (newest first).
pub fn health(rows: &[Row]) -> Vec<Health> {
    let mut by: BTreeMap<(String, String), Health> = BTreeMap::new();
    let mut settled: BTreeMap<(String, String), bool> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.state != "-" && r.state != "Pending")
    {
        let key = (r.spawner.clone(), r.hook.clone());
        let h = by.entry(key.clone()).or_insert_with(|| Health {
            spawner: r.spawner.clone(),
            hook: r.hook.clone(),
            last: r.state.clone(),
            failing_in_a_row: 0,
        });
        let done = settled.entry(key).or_insert(false);
        if *done {
            continue;
        }
        match r.state.as_str() {
            "Failed" | "Retrying" => h.failing_in_a_row += 1,
            _ => *done = true,
        }
    }
    by.into_values().collect()
}

/// Columns padded to their widest cell.
fn table(header: &[&str], lines: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = fmt(header.iter().map(|h| (*h).to_owned()).collect());
    for l in lines {
        out.push_str(&fmt(l));
    }
    out
}

/// The whole report.
pub fn render(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "No Tasks with hooks found.\n".into();
    }
    let mut out = table(
        &[
            "TASK", "SPAWNER", "PHASE", "HOOK", "STATE", "ATTEMPTS", "LAST", "DETAIL",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.task.clone(),
                    r.spawner.clone(),
                    r.phase.clone(),
                    r.hook.clone(),
                    r.state.clone(),
                    r.attempts.clone(),
                    r.last_status.clone(),
                    r.detail.clone(),
                ]
            })
            .collect(),
    );
    let h = health(rows);
    if !h.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["SPAWNER", "HOOK", "HEALTH", "LAST", "FAILED TASKS IN A ROW"],
            h.into_iter()
                .map(|h| {
                    let health = if h.failing_in_a_row == 0 {
                        "Healthy"
                    } else {
                        "Failing"
                    };
                    vec![
                        h.spawner,
                        h.hook,
                        health.into(),
                        h.last,
                        h.failing_in_a_row.to_string(),
                    ]
                })
                .collect(),
        ));
    }
    out
}

/// Lists the namespace's Tasks (of the spawner) and renders the report.
pub async fn run(client: kube::Client, args: &StatusArgs) -> kube::Result<String> {
    let api: Api<Task> = Api::namespaced(client, &args.namespace);
    let lp = match &args.spawner {
        Some(s) => ListParams::default().labels(&format!("{SPAWNER_LABEL}={s}")),
        None => ListParams::default(),
    };
    let mut tasks: Vec<Task> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|t| label(t, SPAWNER_LABEL).is_some() || annotation(t, ON_COMPLETION).is_some())
        .collect();
    newest_first(&mut tasks);
    tasks.truncate(args.limit);
    Ok(render(&rows(&tasks)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use kelos_hooks_shared::annotations::encode_snapshot;
    use kelos_hooks_shared::api::{Hook, Phase, TaskSpec, TaskStatus, Webhook};

    fn hook(name: &str) -> Hook {
        Hook {
            name: name.into(),
            phases: None,
            webhook: Webhook::new("https://h.example/x", None),
        }
    }

    fn task(name: &str, done: i64, d: Option<Deliveries>) -> Task {
        let mut t = Task::new(name, TaskSpec::default());
        t.metadata.labels = Some([(SPAWNER_LABEL.to_owned(), "issues".to_owned())].into());
        let mut ann: BTreeMap<String, String> = [(
            ON_COMPLETION.to_owned(),
            encode_snapshot(&[hook("a"), hook("b")]),
        )]
        .into();
        if let Some(d) = d {
            ann.insert(DELIVERIES.to_owned(), d.encode());
        }
        t.metadata.annotations = Some(ann);
        t.status = Some(TaskStatus {
            phase: Some(if done > 0 { "Succeeded" } else { "Running" }.into()),
            completion_time: (done > 0).then(|| {
                Utc.timestamp_opt(1_700_000_000 + done, 0)
                    .unwrap()
                    .to_rfc3339()
            }),
            ..Default::default()
        });
        t
    }

    #[test]
    fn rows_and_health_from_the_annotations() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut old = Deliveries::new(Phase::Succeeded);
        old.record_success("a", 200, now);
        old.record_success("b", 200, now);
        let mut mid = Deliveries::new(Phase::Succeeded);
        mid.record_final_failure("a", Some(404), "HTTP 404", now);
        mid.record_success("b", 204, now);
        let mut new = Deliveries::new(Phase::Succeeded);
        new.record_retry("a", Some(503), "HTTP 503", now, now);
        let mut tasks = vec![
            task("t-old", 1, Some(old)),
            task("t-new", 3, Some(new)),
            task("t-running", 0, None),
            task("t-mid", 2, Some(mid)),
        ];
        newest_first(&mut tasks);
        let names: Vec<_> = tasks
            .iter()
            .map(|t| t.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["t-running", "t-new", "t-mid", "t-old"]);
        let r = rows(&tasks);
        assert_eq!(r.len(), 8);
        assert_eq!((r[0].state.as_str(), r[0].phase.as_str()), ("-", "Running"));
        let new_a = &r[2];
        assert_eq!(
            (
                new_a.task.as_str(),
                new_a.hook.as_str(),
                new_a.state.as_str()
            ),
            ("t-new", "a", "Retrying")
        );
        assert_eq!(
            (new_a.attempts.as_str(), new_a.last_status.as_str()),
            ("1", "503")
        );
        assert!(new_a.detail.starts_with("next ") && new_a.detail.contains("HTTP 503"));
        assert_eq!(r[3].state, "Pending", "b not attempted yet on t-new");
        let h = health(&r);
        assert_eq!(h.len(), 2);
        assert_eq!(
            (
                h[0].hook.as_str(),
                h[0].failing_in_a_row,
                h[0].last.as_str()
            ),
            ("a", 2, "Retrying")
        );
        assert_eq!(
            (
                h[1].hook.as_str(),
                h[1].failing_in_a_row,
                h[1].last.as_str()
            ),
            ("b", 0, "Delivered")
        );
        let text = render(&r);
        assert!(text.starts_with("TASK "), "{text}");
        assert!(text.contains("FAILED TASKS IN A ROW"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("issues") && l.contains("Failing")),
            "{text}"
        );
        assert_eq!(render(&[]), "No Tasks with hooks found.\n");
    }
}
