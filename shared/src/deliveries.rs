//! The `kelos.dev/webhook-deliveries` annotation: per-hook delivery state of one terminal phase.
//!
//! Pure transition functions over serde types, so the dispatcher's decisions are testable without a
//! cluster and a restarted dispatcher resumes exactly where the annotation says.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::Phase;

/// Where one hook's delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookState {
    /// Not attempted yet.
    Pending,
    /// At least one attempt failed in a retryable way; another is scheduled at `nextAttemptAt`.
    Retrying,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: final status, too many attempts, too old, or refused before sending.
    Failed,
    /// Deliberately not sent (e.g. the Task finished before `--max-age`).
    Skipped,
}

impl HookState {
    /// Whether no further attempt will be made.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            HookState::Delivered | HookState::Failed | HookState::Skipped
        )
    }

    /// The state's name as written in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Pending => "Pending",
            HookState::Retrying => "Retrying",
            HookState::Delivered => "Delivered",
            HookState::Failed => "Failed",
            HookState::Skipped => "Skipped",
        }
    }
}

/// The recorded delivery of one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookDelivery {
    /// Current state.
    pub state: HookState,
    /// Attempts made so far (requests sent or refused before sending).
    #[serde(default)]
    pub attempts: u32,
    /// HTTP status of the last answer, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt did not succeed, or why the hook was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due (state `Retrying`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the first attempt was made: the start of the retry window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When this entry last changed.
    pub updated_at: DateTime<Utc>,
}

impl HookDelivery {
    /// A hook that has not been attempted.
    pub fn pending(now: DateTime<Utc>) -> Self {
        HookDelivery {
            state: HookState::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_at: None,
            first_attempt_at: None,
            updated_at: now,
        }
    }

    /// Whether `self` is at least as far along as `other`: final beats non-final, then more
    /// attempts win. Used to never let a stale copy overwrite a newer record.
    pub fn supersedes(&self, other: &HookDelivery) -> bool {
        match (self.state.is_final(), other.state.is_final()) {
            (true, false) => true,
            (false, true) => false,
            _ => (self.attempts, self.updated_at) >= (other.attempts, other.updated_at),
        }
    }
}

/// The whole annotation: one terminal phase and the state of each hook for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deliveries {
    /// The terminal phase these deliveries are for.
    pub phase: Phase,
    /// Per hook name.
    #[serde(default)]
    pub hooks: BTreeMap<String, HookDelivery>,
}

impl Deliveries {
    /// Empty state for `phase`.
    pub fn new(phase: Phase) -> Self {
        Deliveries {
            phase,
            hooks: BTreeMap::new(),
        }
    }

    /// Parses an annotation value.
    pub fn parse(value: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(value)
    }

    /// The annotation value.
    pub fn encode(&self) -> String {
        // Maps of strings, numbers and timestamps always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The state to continue from for `phase`: the annotation's when it is for the same phase;
    /// otherwise (absent, unreadable, or a previous phase — a re-run) a fresh start.
    pub fn resume(annotation: Option<&str>, phase: Phase) -> Self {
        annotation
            .and_then(|v| Deliveries::parse(v).ok())
            .filter(|d| d.phase == phase)
            .unwrap_or_else(|| Deliveries::new(phase))
    }

    /// The record of `hook`, if any.
    pub fn get(&self, hook: &str) -> Option<&HookDelivery> {
        self.hooks.get(hook)
    }

    /// The state of `hook` (`Pending` when unrecorded).
    pub fn state(&self, hook: &str) -> HookState {
        self.get(hook).map_or(HookState::Pending, |d| d.state)
    }

    fn entry(&mut self, hook: &str, now: DateTime<Utc>) -> &mut HookDelivery {
        self.hooks
            .entry(hook.to_owned())
            .or_insert_with(|| HookDelivery::pending(now))
    }

    /// An attempt got a 2xx answer.
    pub fn record_success(&mut self, hook: &str, status: u16, now: DateTime<Utc>) {
        let d = self.entry(hook, now);
        d.first_attempt_at.get_or_insert(now);
        d.attempts += 1;
        d.state = HookState::Delivered;
        d.last_status = Some(status);
        d.last_error = None;
        d.next_attempt_at = None;
        d.updated_at = now;
    }

    /// An attempt failed in a retryable way; the next one is due at `next`.
    pub fn record_retry(
        &mut self,
        hook: &str,
        status: Option<u16>,
        error: impl Into<String>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let d = self.entry(hook, now);
        d.first_attempt_at.get_or_insert(now);
        d.attempts += 1;
        d.state = HookState::Retrying;
        d.last_status = status;
        d.last_error = Some(error.into());
        d.next_attempt_at = Some(next);
        d.updated_at = now;
    }

    /// An attempt failed and no further attempt will be made.
    pub fn record_final_failure(
        &mut self,
        hook: &str,
        status: Option<u16>,
        error: impl Into<String>,
        now: DateTime<Utc>,
    ) {
        let d = self.entry(hook, now);
        d.first_attempt_at.get_or_insert(now);
        d.attempts += 1;
        d.state = HookState::Failed;
        d.last_status = status;
        d.last_error = Some(error.into());
        d.next_attempt_at = None;
        d.updated_at = now;
    }

    /// Gives up without a new attempt (e.g. the retry window closed while nobody was leader).
    pub fn give_up(&mut self, hook: &str, error: impl Into<String>, now: DateTime<Utc>) {
        let d = self.entry(hook, now);
        d.state = HookState::Failed;
        d.last_error = Some(error.into());
        d.next_attempt_at = None;
        d.updated_at = now;
    }

    /// Marks `hook` deliberately not sent.
    pub fn skip(&mut self, hook: &str, reason: impl Into<String>, now: DateTime<Utc>) {
        let d = self.entry(hook, now);
        d.state = HookState::Skipped;
        d.last_error = Some(reason.into());
        d.next_attempt_at = None;
        d.updated_at = now;
    }

    /// Whether every one of `hooks` has reached a final state.
    pub fn all_final<'a>(&self, mut hooks: impl Iterator<Item = &'a str>) -> bool {
        hooks.all(|h| self.state(h).is_final())
    }

    /// Merges `ours` into `self` (a fresh read): per hook, the record that is further along wins.
    /// A different phase in `ours` means it is stale and is ignored.
    pub fn merge_from(&mut self, ours: &Deliveries) {
        if ours.phase != self.phase {
            return;
        }
        for (name, theirs) in &ours.hooks {
            match self.hooks.get(name) {
                Some(current) if !theirs.supersedes(current) => {}
                _ => {
                    self.hooks.insert(name.clone(), theirs.clone());
                }
            }
        }
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

    #[test]
    fn transitions_and_round_trip() {
        let mut d = Deliveries::new(Phase::Succeeded);
        d.record_retry("a", Some(500), "HTTP 500", t(10), t(0));
        d.record_success("a", 200, t(10));
        d.record_final_failure("b", Some(400), "HTTP 400", t(1));
        d.skip("c", "too old", t(2));
        let a = d.get("a").unwrap();
        assert_eq!(
            (a.state, a.attempts, a.last_status),
            (HookState::Delivered, 2, Some(200))
        );
        assert_eq!(a.first_attempt_at, Some(t(0)));
        assert_eq!(a.next_attempt_at, None);
        assert_eq!(d.state("b"), HookState::Failed);
        assert_eq!(d.get("c").unwrap().attempts, 0);
        assert!(d.all_final(["a", "b", "c"].into_iter()));
        assert!(!d.all_final(["a", "z"].into_iter()));
        let text = d.encode();
        assert!(text.contains(r#""phase":"Succeeded""#), "{text}");
        assert!(text.contains(r#""lastStatus":200"#), "{text}");
        assert_eq!(Deliveries::parse(&text).unwrap(), d);
    }

    #[test]
    fn resume_resets_on_other_phase_or_garbage() {
        let mut d = Deliveries::new(Phase::Failed);
        d.record_success("a", 200, t(0));
        let text = d.encode();
        assert_eq!(Deliveries::resume(Some(&text), Phase::Failed), d);
        assert!(
            Deliveries::resume(Some(&text), Phase::Succeeded)
                .hooks
                .is_empty()
        );
        assert!(
            Deliveries::resume(Some("{not json"), Phase::Failed)
                .hooks
                .is_empty()
        );
        assert!(Deliveries::resume(None, Phase::Failed).hooks.is_empty());
    }

    #[test]
    fn merge_never_regresses_a_final_state() {
        let mut fresh = Deliveries::new(Phase::Succeeded);
        fresh.record_success("a", 200, t(5));
        let mut ours = Deliveries::new(Phase::Succeeded);
        ours.record_retry("a", Some(503), "HTTP 503", t(20), t(6));
        ours.record_success("b", 204, t(6));
        fresh.merge_from(&ours);
        assert_eq!(fresh.state("a"), HookState::Delivered);
        assert_eq!(fresh.state("b"), HookState::Delivered);
        let other_phase = Deliveries::new(Phase::Failed);
        let before = fresh.clone();
        fresh.merge_from(&other_phase);
        assert_eq!(fresh, before);
    }
}
