//! What must hold after the soak: every hook of every Task final (Delivered, or Failed with a
//! Warning Event saying why), one `webhook-id` per hook across all its requests, every delivery
//! seen by the receiver, no panic in any log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::Result;
use k8s_openapi::api::events::v1::Event;
use kelos_hooks_shared::api::Task;
use kelos_hooks_shared::deliveries::HookState;
use kelos_hooks_tests::faulty_receiver::{Fault, Hit};
use kelos_hooks_tests::tasks::deliveries;
use kube::api::{Api, ListParams};

use crate::load::Planned;

/// What the checks counted.
#[derive(Debug, Default)]
pub struct Tally {
    /// Hooks in the plan.
    pub hooks: usize,
    /// Hooks `Delivered`.
    pub delivered: usize,
    /// Hooks `Failed`, each with its Warning Event.
    pub failed: usize,
    /// Per fault: (delivered, failed, duplicates).
    pub by_fault: BTreeMap<&'static str, (usize, usize, usize)>,
    /// One Warning note per fault (what the dispatcher said).
    pub why: BTreeMap<&'static str, String>,
    /// Requests the receiver got whole.
    pub requests: usize,
    /// 2xx answers beyond the first one for a `webhook-id` (re-sends after a success).
    pub duplicates: usize,
    /// Hooks not accounted for: not final, gone, or Delivered without a 2xx (must be 0).
    pub lost: usize,
    /// Hooks Failed without a WebhookFailed Warning Event (must be 0).
    pub failed_silently: usize,
    /// Every broken rule, one line each.
    pub violations: Vec<String>,
}

/// Lists every object of `api` (paged).
async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return Ok(out),
        }
    }
}

/// How many hooks of `planned` are not final yet.
pub async fn unfinished(api: &Api<Task>, planned: &[Planned]) -> Result<usize> {
    let by_name: HashMap<String, Task> = list_all(api)
        .await?
        .into_iter()
        .filter_map(|t| Some((t.metadata.name.clone()?, t)))
        .collect();
    Ok(planned
        .iter()
        .flat_map(|p| p.hooks.iter().map(move |(h, _)| (p, *h)))
        .filter(|(p, h)| {
            !by_name
                .get(&p.name)
                .is_some_and(|t| deliveries(t).state(h).is_final())
        })
        .count())
}

/// Runs every check.
pub async fn check(
    tasks: &Api<Task>,
    events: &Api<Event>,
    planned: &[Planned],
    hits: &[Hit],
) -> Result<Tally> {
    let mut t = Tally {
        requests: hits.len(),
        ..Tally::default()
    };
    let by_name: HashMap<String, Task> = list_all(tasks)
        .await?
        .into_iter()
        .filter_map(|t| Some((t.metadata.name.clone()?, t)))
        .collect();
    // (Task, "Deliver:<hook>") → note of a WebhookFailed Warning.
    let warnings: HashMap<(String, String), String> = list_all(events)
        .await?
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.reason.as_deref() == Some("WebhookFailed"))
        .filter_map(|e| {
            let task = e.regarding.as_ref()?.name.clone()?;
            Some((
                (task, e.action.clone()?),
                e.note.clone().unwrap_or_default(),
            ))
        })
        .collect();
    let mut by_path: HashMap<&str, Vec<&Hit>> = HashMap::new();
    for h in hits {
        by_path.entry(h.path.as_str()).or_default().push(h);
        if h.body_id != h.webhook_id {
            t.violations.push(format!(
                "{}: body id {:?} != webhook-id {:?}",
                h.path, h.body_id, h.webhook_id
            ));
        }
    }
    for p in planned {
        let Some(task) = by_name.get(&p.name) else {
            t.lost += p.hooks.len();
            t.violations.push(format!("Task {} is gone", p.name));
            continue;
        };
        let uid = task.metadata.uid.clone().unwrap_or_default();
        let d = deliveries(task);
        for (hook, fault) in &p.hooks {
            t.hooks += 1;
            let path = format!("/{}/{}/{hook}", fault.as_str(), p.name);
            let id = format!("{uid}_{}_{hook}", p.phase.as_str());
            let mine = by_path.remove(path.as_str()).unwrap_or_default();
            let ids: HashSet<&str> = mine.iter().map(|h| h.webhook_id.as_str()).collect();
            if ids.iter().any(|i| *i != id) {
                t.violations
                    .push(format!("{path}: webhook-ids {ids:?}, expected only {id}"));
            }
            let ok = mine
                .iter()
                .filter(|h| h.status.is_some_and(|s| (200..300).contains(&s)))
                .count();
            t.duplicates += ok.saturating_sub(1);
            let complete_ok = mine
                .iter()
                .any(|h| h.complete && h.status.is_some_and(|s| (200..300).contains(&s)));
            let counts = t.by_fault.entry(fault.as_str()).or_default();
            counts.2 += ok.saturating_sub(1);
            match d.state(hook) {
                HookState::Delivered => {
                    t.delivered += 1;
                    counts.0 += 1;
                    if ok == 0 {
                        t.lost += 1;
                        t.violations.push(format!(
                            "{}/{hook}: Delivered but the receiver never answered 2xx",
                            p.name
                        ));
                    }
                }
                HookState::Failed => {
                    counts.1 += 1;
                    match warnings.get(&(p.name.clone(), format!("Deliver:{hook}"))) {
                        Some(note) if !note.is_empty() => {
                            t.failed += 1;
                            t.why.entry(fault.as_str()).or_insert_with(|| note.clone());
                        }
                        _ => {
                            t.failed_silently += 1;
                            t.violations.push(format!(
                                "{}/{hook}: Failed without a WebhookFailed Warning Event",
                                p.name
                            ));
                        }
                    }
                    if complete_ok {
                        t.violations.push(format!(
                            "{}/{hook}: Failed although the receiver answered 200 in full",
                            p.name
                        ));
                    }
                    if !fault.always_fails() {
                        eprintln!(
                            "[soak] note: {}/{hook} ({}) Failed: {:?}",
                            p.name,
                            fault.as_str(),
                            d.get(hook).map(|h| &h.last_error)
                        );
                    }
                }
                other => {
                    t.lost += 1;
                    t.violations
                        .push(format!("{}/{hook}: state {other:?}, not final", p.name));
                }
            }
            if *fault == Fault::TlsFailure && !mine.is_empty() {
                t.violations
                    .push(format!("{path}: a request got through a failed handshake"));
            }
        }
    }
    for path in by_path.keys() {
        t.violations
            .push(format!("{path}: requests for no planned hook"));
    }
    Ok(t)
}

/// Lines reporting a panic in any of `logs`: Rust's "panicked at", Go's "panic:" crash header,
/// a panic recovered by the API server ("Observed a panic", "panicked: true"). The API server's
/// routine "panicked: false" of a request cancelled by a restart is not one.
pub fn panics(logs: &[PathBuf]) -> Vec<String> {
    const SIGNS: [&str; 4] = [
        "panicked at",
        "observed a panic",
        "panicked: true",
        "panic: ",
    ];
    let mut found = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let lower = line.to_lowercase();
            if SIGNS.iter().any(|s| lower.contains(s)) {
                found.push(format!("{}: {}", log.display(), line.trim()));
            }
        }
    }
    found
}
