//! Kubernetes name syntaxes (as apimachinery's `validation` package defines them).

/// Longest DNS-1123 label.
pub(crate) const LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain, and longest Secret key.
pub(crate) const SUBDOMAIN_MAX: usize = 253;

/// DNS-1123 label: lowercase letters, digits and `-`, starting and ending with a letter or digit,
/// at most 63 characters.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= LABEL_MAX
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

/// DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters (Secret names).
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    if s.is_empty() || s.len() > SUBDOMAIN_MAX {
        return false;
    }
    // One pass, checking each label (as `is_dns1123_label` would) when its `.` or the end comes.
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let label_ok = |len: usize, last: u8| len > 0 && len <= LABEL_MAX && alnum(last);
    let (mut len, mut last) = (0, 0);
    for b in s.bytes() {
        if b == b'.' {
            if !label_ok(len, last) {
                return false;
            }
            len = 0;
        } else if alnum(b) || (b == b'-' && len > 0) {
            len += 1;
            last = b;
        } else {
            return false;
        }
    }
    label_ok(len, last)
}

/// A Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.`, `..` or `..`-prefixed.
pub(crate) fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SUBDOMAIN_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && s != "."
        && !s.starts_with("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "0", "notify-team", "a-b-c", "x1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "notify_team",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        for ok in [
            "a",
            "team-hook-headers",
            "a.b.c",
            "0.example-1",
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        let too_long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "A",
            "a_b",
            "-a.b",
            too_long.as_str(),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn subdomain_single_pass_agrees_with_labels() {
        // Every string up to 5 characters over an alphabet that hits each rule.
        let alphabet = ['a', '0', '-', '.', 'A'];
        let mut words = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            words.extend(longer);
        }
        words.extend([
            format!("{}.b", "a".repeat(63)),
            format!("{}.b", "a".repeat(64)),
            format!("b.{}", "a".repeat(64)),
        ]);
        words.sort();
        words.dedup();
        for word in &words {
            let by_labels = !word.is_empty()
                && word.len() <= SUBDOMAIN_MAX
                && word.split('.').all(is_dns1123_label);
            assert_eq!(is_dns1123_subdomain(word), by_labels, "{word:?}");
        }
        assert!(words.iter().filter(|w| is_dns1123_subdomain(w)).count() > 100);
    }

    #[test]
    fn secret_keys() {
        for ok in [
            "secret",
            "SIGNING_KEY",
            "tls.crt",
            "a-b.c_d",
            ".hidden",
            ".a",
            &"k".repeat(253),
        ] {
            assert!(is_secret_key(ok), "{ok}");
        }
        for bad in ["", ".", "..", "..a", "a/b", "a b", "ключ", &"k".repeat(254)] {
            assert!(!is_secret_key(bad), "{bad}");
        }
    }
}
