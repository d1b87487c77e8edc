//! Hook health per TaskSpawner and hook: the last outcome and the consecutive failed attempts
//! over all of the spawner's Tasks. A hook *starts failing* after [`FAILING_AFTER`] failed
//! attempts in a row and *recovers* at its next 2xx; each turn is one Event on the TaskSpawner
//! (never one per Task), at most one failing/recovered pair per [`QUIET`] so a flapping receiver
//! cannot flood the namespace, and always in pairs, so the latest Event tells the truth.
//!
//! Kept in memory by the leader: a new leader starts from "healthy" and says "failing" again
//! after [`FAILING_AFTER`] failures. The per-Task record stays the source of truth
//! (`kelos-hooks-dispatcher status` reads it).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;

use super::{Effect, Metric, Note};
use crate::cluster::events::reason;

/// Failed attempts in a row after which a hook is failing.
pub const FAILING_AFTER: u32 = 3;
/// Least time between two "starts failing" Events of one hook.
pub const QUIET: chrono::Duration = chrono::Duration::minutes(10);

/// One hook of one spawner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookHealth {
    /// Failed attempts since the last 2xx.
    pub consecutive_failures: u32,
    /// The last attempt's answer (`HTTP 503`, `timed out …`, `HTTP 200`).
    pub last: String,
    /// A "starts failing" Event was published and no "recovered" since.
    pub announced: bool,
    /// When the last "starts failing" Event was published.
    pub announced_at: Option<DateTime<Utc>>,
}

/// (namespace, spawner, hook) → health.
#[derive(Default)]
pub struct HealthBook {
    hooks: HashMap<(String, String, String), HookHealth>,
}

/// The TaskSpawner an Event about hook health is attached to.
pub fn spawner_ref(namespace: &str, spawner: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{}/{}", kelos_hooks_shared::api::GROUP, "v1alpha2")),
        kind: Some("TaskSpawner".into()),
        namespace: Some(namespace.to_owned()),
        name: Some(spawner.to_owned()),
        ..Default::default()
    }
}

impl HealthBook {
    /// The health of one hook, if any attempt was seen.
    #[cfg(test)]
    pub fn get(&self, namespace: &str, spawner: &str, hook: &str) -> Option<&HookHealth> {
        self.hooks
            .get(&(namespace.to_owned(), spawner.to_owned(), hook.to_owned()))
    }

    /// Takes one attempt's result (`ok`: a 2xx; `last`: how it was answered); the Events and
    /// metrics a turn calls for.
    pub fn observe(
        &mut self,
        namespace: &str,
        spawner: &str,
        hook: &str,
        ok: bool,
        last: String,
        now: DateTime<Utc>,
    ) -> Vec<Effect> {
        let key = (namespace.to_owned(), spawner.to_owned(), hook.to_owned());
        let h = self.hooks.entry(key).or_default();
        h.last = last;
        let mut out = Vec::new();
        let note = |warning: bool, reason: &'static str, message: String| {
            Effect::Event(Note {
                object: spawner_ref(namespace, spawner),
                warning,
                reason,
                hook: hook.to_owned(),
                message,
            })
        };
        let gauge = |failing: bool| {
            Effect::Metric(Metric::HookFailing {
                namespace: namespace.to_owned(),
                spawner: spawner.to_owned(),
                hook: hook.to_owned(),
                failing,
            })
        };
        if ok {
            let was = std::mem::take(&mut h.consecutive_failures);
            if was >= FAILING_AFTER {
                out.push(gauge(false));
            }
            if h.announced {
                h.announced = false;
                out.push(note(
                    false,
                    reason::HOOK_RECOVERED,
                    format!(
                        "hook {hook} recovered: {} after {was} failed attempt(s) in a row",
                        h.last
                    ),
                ));
            }
            return out;
        }
        h.consecutive_failures += 1;
        if h.consecutive_failures == FAILING_AFTER {
            out.push(gauge(true));
        }
        let quiet = h.announced_at.is_some_and(|at| now - at < QUIET);
        if h.consecutive_failures >= FAILING_AFTER && !h.announced && !quiet {
            h.announced = true;
            h.announced_at = Some(now);
            out.push(note(
                true,
                reason::HOOK_FAILING,
                format!(
                    "hook {hook} is failing: {} failed attempt(s) in a row across this spawner's Tasks; last: {}",
                    h.consecutive_failures, h.last
                ),
            ));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn reasons(e: &[Effect]) -> Vec<&'static str> {
        e.iter()
            .filter_map(|e| match e {
                Effect::Event(n) => Some(n.reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn failing_after_three_then_recovered_once() {
        let mut b = HealthBook::default();
        let fail = |b: &mut HealthBook, at| b.observe("ns", "s", "h", false, "HTTP 503".into(), at);
        assert!(fail(&mut b, t(0)).is_empty());
        assert!(fail(&mut b, t(1)).is_empty());
        let e = fail(&mut b, t(2));
        assert_eq!(reasons(&e), [reason::HOOK_FAILING]);
        let Effect::Event(n) = &e[1] else {
            panic!("{e:?}")
        };
        assert!(n.warning && n.message.contains("3 failed") && n.message.contains("HTTP 503"));
        assert_eq!(n.object.kind.as_deref(), Some("TaskSpawner"));
        assert_eq!(n.object.name.as_deref(), Some("s"));
        // More failures: no more Events (never one per Task).
        for i in 3..20 {
            assert!(reasons(&fail(&mut b, t(i))).is_empty());
        }
        assert_eq!(b.get("ns", "s", "h").unwrap().consecutive_failures, 20);
        let e = b.observe("ns", "s", "h", true, "HTTP 200".into(), t(30));
        assert_eq!(reasons(&e), [reason::HOOK_RECOVERED]);
        assert!(matches!(
            &e[0],
            Effect::Metric(Metric::HookFailing { failing: false, .. })
        ));
        assert!(
            b.observe("ns", "s", "h", true, "HTTP 200".into(), t(31))
                .is_empty()
        );
        // Other hooks and spawners are separate.
        assert!(
            b.observe("ns", "s", "other", false, "x".into(), t(32))
                .is_empty()
        );
    }

    #[test]
    fn a_flapping_hook_gets_at_most_one_pair_per_quiet_period() {
        let mut b = HealthBook::default();
        let mut events = Vec::new();
        // Fail three times, succeed once, every minute for half an hour.
        for minute in 0..30 {
            let at = t(minute * 60);
            let ok = minute % 4 == 3;
            let last = if ok { "HTTP 200" } else { "HTTP 500" };
            events.extend(reasons(&b.observe("ns", "s", "h", ok, last.into(), at)));
        }
        // Turns at minutes 2 (failing), 3 (recovered), then the next failing only at minute 14
        // (10 minutes on), recovered at 15, then 26/27.
        assert_eq!(
            events,
            [
                reason::HOOK_FAILING,
                reason::HOOK_RECOVERED,
                reason::HOOK_FAILING,
                reason::HOOK_RECOVERED,
                reason::HOOK_FAILING,
                reason::HOOK_RECOVERED
            ]
        );
        // Always in pairs: the last word matches the state.
        assert!(!b.get("ns", "s", "h").unwrap().announced);
    }
}
