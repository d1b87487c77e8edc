//! A JSON string value as read from a review: borrowed, and decoded only when somebody asks.
//!
//! A Task's `kelos.dev/on-completion` annotation is JSON inside a JSON string, a few KB with an
//! escape every few bytes; decoding it costs more than reading the rest of the review. The usual
//! question about it ("is it the snapshot we wrote?") is answered by comparing the escaped text
//! with the escaped forms of the snapshot, which needs no decoding.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

/// A string value: plain, or with escapes still in place until first read.
#[derive(Clone)]
pub enum JsonStr<'a> {
    /// Without escapes (borrowed), or already decoded.
    Plain(Cow<'a, str>),
    /// The text between the quotes, escapes included (already checked to decode).
    Escaped {
        /// Exactly as in the body.
        raw: &'a str,
        /// Filled on first [`JsonStr::as_str`].
        decoded: OnceLock<String>,
    },
}

impl<'a> JsonStr<'a> {
    /// A string whose text between the quotes is `raw`, which the reader checked decodes.
    pub fn escaped(raw: &'a str) -> Self {
        JsonStr::Escaped {
            raw,
            decoded: OnceLock::new(),
        }
    }

    /// The value, decoded (once) if needed.
    pub fn as_str(&self) -> &str {
        match self {
            JsonStr::Plain(s) => s,
            // The reader checked every escape, so decoding cannot fail; the raw text is only a
            // defensive answer that no test has ever seen.
            JsonStr::Escaped { raw, decoded } => {
                decoded.get_or_init(|| unescape(raw).unwrap_or_else(|| (*raw).to_owned()))
            }
        }
    }

    /// Whether the value is `value`, given texts that `value` is known to be escaped as:
    /// an escaped text equal to one of them needs no decoding; any other is decoded and compared.
    pub fn is(&self, value: &str, escaped_as: &[&str]) -> bool {
        match self {
            JsonStr::Escaped { raw, .. } if escaped_as.contains(raw) => true,
            _ => self.as_str() == value,
        }
    }
}

impl AsRef<str> for JsonStr<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for JsonStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Equal values; two equal escaped texts are equal without decoding.
impl PartialEq for JsonStr<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (JsonStr::Escaped { raw: a, .. }, JsonStr::Escaped { raw: b, .. }) if a == b => true,
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl<'a> From<&'a str> for JsonStr<'a> {
    fn from(s: &'a str) -> Self {
        JsonStr::Plain(Cow::Borrowed(s))
    }
}

impl<'a> From<Cow<'a, str>> for JsonStr<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        JsonStr::Plain(s)
    }
}

/// Shows the decoded value: both readers' results compare equal however they stored it.
impl fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(transparent)]
        struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
        Borrowed::deserialize(d).map(|b| JsonStr::Plain(b.0))
    }
}

/// Decodes the text between a JSON string's quotes; `None` for a bad escape, a lone surrogate or
/// a control character.
pub fn unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let run_end = kelos_hooks_shared::json_scan::string_stop(bytes, i).unwrap_or(bytes.len());
        out.extend_from_slice(bytes.get(i..run_end)?);
        i = run_end;
        if i == bytes.len() {
            break;
        }
        if bytes.get(i) != Some(&b'\\') {
            return None; // a quote or a control character inside the text
        }
        i += 1;
        let byte = match *bytes.get(i)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (c, used) = unicode_escape(bytes, i + 1)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 1 + used;
                continue;
            }
            _ => return None,
        };
        out.push(byte);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The character of the `\u` escape whose four hex digits start at `at` (a surrogate pair
/// takes the `\uXXXX` after it too), and how many bytes after the `u` it used.
pub fn unicode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let hex4 = |at: usize| {
        let digits = bytes.get(at..at + 4)?;
        digits
            .iter()
            .try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
    };
    let high = hex4(at)?;
    match high {
        0xD800..=0xDBFF => {
            if bytes.get(at + 4..at + 6) != Some(b"\\u") {
                return None;
            }
            let low = hex4(at + 6)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            Some((char::from_u32(code)?, 10))
        }
        0xDC00..=0xDFFF => None,
        code => Some((char::from_u32(code)?, 4)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unescape_agrees_with_serde_json() {
        for text in [
            "",
            "plain",
            r#"{\"hooks\":[{\"name\":\"a\"}]}"#,
            r#"tab\tnew\nline \\ \/ \b\f\r"#,
            r#"\u00e9\u2713 \ud83d\ude00 \u0000"#,
            r#"x\"y"#,
        ] {
            let want: String = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(unescape(text).as_deref(), Some(want.as_str()), "{text}");
        }
        for bad in [
            r#"\x"#,
            r#"\ud800"#,
            r#"\udc00"#,
            r#"\ud800\u0041"#,
            "\u{1}",
            r#"\u12"#,
            "\\",
            "\"",
        ] {
            assert!(unescape(bad).is_none(), "{bad}");
            assert!(
                serde_json::from_str::<String>(&format!("\"{bad}\"")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn comparison_uses_the_escaped_forms_first() {
        let v = JsonStr::escaped(r#"{\"a\":1}"#);
        assert!(v.is(r#"{"a":1}"#, &[r#"{\"a\":1}"#]));
        // Without a matching form it decodes, and still compares right.
        assert!(v.is(r#"{"a":1}"#, &[]));
        assert!(!v.is(r#"{"a":2}"#, &[]));
        assert_eq!(v.as_str(), r#"{"a":1}"#);
        assert!(JsonStr::from("x").is("x", &["y"]));
        assert_eq!(format!("{v:?}"), format!("{:?}", r#"{"a":1}"#));
    }
}
