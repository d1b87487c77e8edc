//! Durations of command-line flags, one syntax for every flag of both binaries: humantime's
//! (`500ms`, `10s`, `5m`, `1h`, `2m30s`, `90d`).

use std::time::Duration;

/// A flag value that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDuration {
    /// Not humantime syntax.
    #[error("invalid duration {input:?} ({reason}; use e.g. 500ms, 10s, 5m, 2m30s, 1h, 90d)")]
    Syntax {
        /// The value as given.
        input: String,
        /// What humantime said.
        reason: String,
    },
    /// Zero where only a positive duration makes sense.
    #[error("duration {0:?} must be positive")]
    NotPositive(String),
}

/// Parses a humantime duration (`500ms`, `10s`, `5m`, `2m30s`, `1h`, `90d`); zero is allowed.
pub fn parse(s: &str) -> Result<Duration, InvalidDuration> {
    humantime::parse_duration(s.trim()).map_err(|e| InvalidDuration::Syntax {
        input: s.to_owned(),
        reason: e.to_string(),
    })
}

/// [`parse`], refusing zero (certificate lifetimes, check intervals).
pub fn parse_positive(s: &str) -> Result<Duration, InvalidDuration> {
    match parse(s)? {
        d if d.is_zero() => Err(InvalidDuration::NotPositive(s.to_owned())),
        d => Ok(d),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse("365d"), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        for bad in ["", "5x", "s", "-1s", "3", "99999999999999999999999h"] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("use e.g."), "{bad:?}: {err}");
        }
    }

    #[test]
    fn positive() {
        assert_eq!(parse_positive("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(
            parse_positive("0s"),
            Err(InvalidDuration::NotPositive("0s".into()))
        );
        assert!(parse_positive("soon").is_err());
    }
}
