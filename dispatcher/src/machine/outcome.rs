//! What one attempt reports back, and how its result is classed: delivered, worth retrying, or
//! final. Every class decision of the contract (2xx, 3xx, 408/429/5xx, other 4xx, timeouts,
//! connection errors, refusals, setup failures) is made here, so the sender only reports facts.

use std::time::Duration;

/// The class of an attempt's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 2xx: delivered.
    Success,
    /// 408, 429, 5xx, timeouts, connection errors: try again later.
    Retry,
    /// Other 4xx, 410, 3xx (redirects are not followed), refusals: give up now.
    Final,
}

impl Class {
    /// The `result` label of the attempt-duration metric.
    pub fn label(self) -> &'static str {
        match self {
            Class::Success => "success",
            Class::Retry => "retry",
            Class::Final => "final",
        }
    }
}

/// Classes an HTTP status code.
pub fn classify_status(status: u16) -> Class {
    match status {
        200..=299 => Class::Success,
        408 | 429 => Class::Retry,
        500..=599 => Class::Retry,
        // 1xx never reaches us as a final answer; treat anything odd as final rather than loop.
        _ => Class::Final,
    }
}

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Delivered, retry or final.
    pub class: Class,
    /// HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Why it did not succeed (no secrets, no full URL).
    pub error: Option<String>,
    /// The receiver's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// Start of the body the receiver answered (lossy UTF-8).
    pub body_excerpt: String,
    /// How long the attempt took.
    pub elapsed: Duration,
    /// Things worth a Warning Event that did not stop the attempt (e.g. reserved Secret headers).
    pub warnings: Vec<String>,
}

impl Outcome {
    /// The receiver answered `status`.
    pub fn answered(
        status: u16,
        retry_after: Option<Duration>,
        body_excerpt: String,
        elapsed: Duration,
    ) -> Self {
        let class = classify_status(status);
        let error = match class {
            Class::Success => None,
            _ if (300..400).contains(&status) => {
                Some(format!("HTTP {status} (redirects are not followed)"))
            }
            _ => Some(format!("HTTP {status}")),
        };
        Outcome {
            class,
            status: Some(status),
            error,
            retry_after,
            body_excerpt,
            elapsed,
            warnings: Vec::new(),
        }
    }

    /// No answer within `timeout`: retried.
    pub fn timed_out(timeout: Duration, elapsed: Duration) -> Self {
        Self::unanswered(
            Class::Retry,
            format!("timed out after {}s", timeout.as_secs_f32()),
            elapsed,
        )
    }

    /// The connection or the exchange failed (`what` describes it without the URL): retried.
    pub fn unreachable(what: String, elapsed: Duration) -> Self {
        Self::unanswered(Class::Retry, what, elapsed)
    }

    /// The destination is not allowed (SSRF rules): final, nothing was sent.
    pub fn refused(why: impl std::fmt::Display, elapsed: Duration) -> Self {
        Self::unanswered(Class::Final, format!("refused: {why}"), elapsed)
    }

    /// The request could not be prepared (a Secret missing or unusable); `retry` when an operator
    /// may still fix it in time.
    pub fn not_sent(retry: bool, error: String) -> Self {
        let class = if retry { Class::Retry } else { Class::Final };
        Self::unanswered(class, error, Duration::ZERO)
    }

    fn unanswered(class: Class, error: String, elapsed: Duration) -> Self {
        Outcome {
            class,
            status: None,
            error: Some(error),
            retry_after: None,
            body_excerpt: String::new(),
            elapsed,
            warnings: Vec::new(),
        }
    }

    /// With Event-worthy warnings attached.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_status(s), Class::Success, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s), Class::Retry, "{s}");
        }
        for s in [
            300, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 409, 410, 413, 422, 499, 100,
            600,
        ] {
            assert_eq!(classify_status(s), Class::Final, "{s}");
        }
    }

    #[test]
    fn errors_say_what_happened() {
        let o = Outcome::answered(302, None, String::new(), Duration::ZERO);
        assert_eq!(o.class, Class::Final);
        assert_eq!(
            o.error.as_deref(),
            Some("HTTP 302 (redirects are not followed)")
        );
        let o = Outcome::answered(204, None, String::new(), Duration::ZERO);
        assert_eq!((o.class, o.error), (Class::Success, None));
        let o = Outcome::timed_out(Duration::from_secs(2), Duration::from_secs(2));
        assert_eq!(o.class, Class::Retry);
        assert_eq!(o.error.as_deref(), Some("timed out after 2s"));
        assert_eq!(o.status, None);
        assert_eq!(
            Outcome::refused("127.0.0.1 is in 127.0.0.0/8", Duration::ZERO).class,
            Class::Final
        );
        assert_eq!(
            Outcome::not_sent(true, "Secret missing".into()).class,
            Class::Retry
        );
        assert_eq!(
            Outcome::not_sent(false, "bad key".into()).class,
            Class::Final
        );
    }
}
