//! Durations of command-line flags (`500ms`, `10s`, `5m`, `1h`, or bare seconds), one parser for
//! both binaries.

use std::time::Duration;

/// Parses `1500ms`, `10s`, `5m`, `1h` or a bare number of seconds; an error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 10s, 5m, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    // try_from: values too large for a Duration are an error, not a panic.
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5x", "s", "1d", "-1s", "99999999999999999999999h"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
