//! Headers from a hook's `secretRef` Secret: every key is a header, except the ones we own.

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};

use crate::error::{Error, Result};

/// Headers a Secret may not set: the Standard Webhooks ones and the framing ones.
pub const RESERVED: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "host",
    "content-length",
];

/// Headers to add, and the reserved keys that were ignored (to warn about).
#[derive(Debug, Default)]
pub struct SecretHeaders {
    /// Valid, non-reserved headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Keys ignored because they are reserved.
    pub ignored: Vec<String>,
}

/// An unusable header Secret: final (retrying cannot fix it before someone edits the Secret).
fn unusable(message: String) -> Error {
    Error::Secret {
        message,
        retryable: false,
    }
}

/// Turns a Secret's data into headers. Values are trimmed of surrounding whitespace (files often end
/// in a newline). An invalid name or value is an error naming the key, never the value.
pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<SecretHeaders> {
    let mut out = SecretHeaders::default();
    for (key, value) in data {
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(key)) {
            out.ignored.push(key.clone());
            continue;
        }
        let name = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| unusable(format!("key {key:?} is not a valid HTTP header name")))?;
        let value = HeaderValue::from_bytes(value.trim_ascii()).map_err(|_| {
            unusable(format!(
                "key {key:?} holds a value that is not a valid HTTP header value"
            ))
        })?;
        out.headers.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn reserved_headers_cannot_be_overridden() {
        let h = from_secret(&data(&[
            ("Authorization", b"Bearer t0k3n\n"),
            ("Webhook-Id", b"forged"),
            ("HOST", b"evil"),
            ("content-length", b"1"),
            ("Content-Type", b"text/plain"),
            ("webhook-signature", b"v1,x"),
            ("webhook-timestamp", b"1"),
            ("x-team", b"a"),
        ]))
        .unwrap();
        let names: Vec<&str> = h.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["authorization", "x-team"]);
        assert_eq!(h.headers[0].1, "Bearer t0k3n");
        assert_eq!(h.ignored.len(), 6);
    }

    #[test]
    fn invalid_names_and_values_are_errors_without_the_value() {
        let e = from_secret(&data(&[("bad header", b"v")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"bad header\""), "{e}");
        let e = from_secret(&data(&[("x-token", b"zq9\nxw")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x-token") && !e.contains("zq9"), "{e}");
    }
}
