//! Bounding the warnings of a response. The admission API advises short warnings, and the API
//! server keeps about 4096 characters of warnings per response: past that it cuts each to 256
//! characters and then drops the rest without saying so. Capping here (16 × 256 stays under that
//! budget) keeps what is sent intact and says how many were left out.

use std::borrow::Cow;

/// Most warnings sent in one response, counting the closing "N more … left out" line.
pub const MAX_WARNINGS: usize = 16;

/// Longest warning sent, in characters (longer ones end in `…`).
pub const MAX_WARNING_CHARS: usize = 256;

/// `warnings` within [`MAX_WARNINGS`] and [`MAX_WARNING_CHARS`]: borrowed unchanged when they
/// already are (the common case), else the first `MAX_WARNINGS - 1`, each shortened, then one line
/// saying how many more were left out.
pub fn bounded(warnings: &[String]) -> Cow<'_, [String]> {
    let short = |w: &String| w.chars().count() <= MAX_WARNING_CHARS;
    if warnings.len() <= MAX_WARNINGS && warnings.iter().all(short) {
        return Cow::Borrowed(warnings);
    }
    let keep = if warnings.len() <= MAX_WARNINGS {
        warnings.len()
    } else {
        MAX_WARNINGS - 1
    };
    let mut out: Vec<String> = warnings
        .iter()
        .take(keep)
        .map(|w| shorten(w).into_owned())
        .collect();
    let left_out = warnings.len() - keep;
    if left_out > 0 {
        let noun = if left_out == 1 { "warning" } else { "warnings" };
        out.push(format!(
            "{left_out} more {noun} left out; run `kelos-hooks-admission validate -f` on the object to see all"
        ));
    }
    Cow::Owned(out)
}

/// `warning` cut to [`MAX_WARNING_CHARS`] characters (on a character boundary, ending in `…`).
fn shorten(warning: &str) -> Cow<'_, str> {
    match warning.char_indices().nth(MAX_WARNING_CHARS - 1) {
        Some((cut, _)) if warning.chars().count() > MAX_WARNING_CHARS => {
            Cow::Owned(format!("{}…", &warning[..cut]))
        }
        _ => Cow::Borrowed(warning),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_short_warnings_pass_unchanged() {
        let w: Vec<String> = (0..MAX_WARNINGS).map(|i| format!("w{i}")).collect();
        assert!(matches!(bounded(&w), Cow::Borrowed(_)));
        assert!(bounded(&[]).is_empty());
        let exact = vec!["é".repeat(MAX_WARNING_CHARS)];
        assert_eq!(bounded(&exact).as_ref(), exact.as_slice());
    }

    #[test]
    fn many_warnings_are_capped_with_a_count() {
        let w: Vec<String> = (0..57).map(|i| format!("w{i}")).collect();
        let b = bounded(&w);
        assert_eq!(b.len(), MAX_WARNINGS);
        assert_eq!(b[..MAX_WARNINGS - 1], w[..MAX_WARNINGS - 1]);
        let last = &b[MAX_WARNINGS - 1];
        assert!(last.starts_with("42 more warnings left out"), "{last}");
        let w: Vec<String> = (0..=MAX_WARNINGS).map(|i| format!("w{i}")).collect();
        assert!(bounded(&w)[MAX_WARNINGS - 1].starts_with("2 more warnings left out"));
    }

    #[test]
    fn a_full_response_stays_within_the_api_servers_budget() {
        let w: Vec<String> = (0..100).map(|_| "w".repeat(1000)).collect();
        let total: usize = bounded(&w).iter().map(|w| w.chars().count()).sum();
        assert!(total <= 4096, "{total}");
    }

    #[test]
    fn long_warnings_are_cut_on_a_character_boundary() {
        let long = format!("{}✓tail", "é".repeat(MAX_WARNING_CHARS));
        let b = bounded(std::slice::from_ref(&long));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].chars().count(), MAX_WARNING_CHARS);
        assert!(b[0].ends_with("é…"), "{}", b[0]);
        assert!(!b[0].contains("tail"));
    }
}
