//! Standard Webhooks signing: `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{ts}.{body}"))>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of Standard Webhooks secrets.
const PREFIX: &str = "whsec_";

/// A decoded signing key. Never printed.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

/// Why a signing secret is unusable (no secret material in the message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// `whsec_` followed by something that is not base64.
    #[error("signing secret has the whsec_ prefix but its key is not valid base64")]
    NotBase64,
    /// Nothing to sign with.
    #[error("signing secret is empty")]
    Empty,
}

impl SigningKey {
    /// Parses a secret: `whsec_<base64>` as the spec defines; without the prefix, base64 if it
    /// decodes, else the raw bytes. Surrounding whitespace (a trailing newline from a file) is ignored.
    pub fn parse(secret: &[u8]) -> Result<Self, KeyError> {
        let text = String::from_utf8_lossy(secret);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(KeyError::Empty);
        }
        if let Some(b64) = trimmed.strip_prefix(PREFIX) {
            let key = STANDARD.decode(b64).map_err(|_| KeyError::NotBase64)?;
            if key.is_empty() {
                return Err(KeyError::Empty);
            }
            return Ok(SigningKey(key));
        }
        Ok(SigningKey(
            STANDARD
                .decode(trimmed)
                .unwrap_or_else(|_| trimmed.as_bytes().to_vec()),
        ))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        let key = SigningKey::parse(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // Without the prefix (and with a trailing newline) the same key results.
        let bare = SigningKey::parse(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        assert_eq!(
            bare.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            sig
        );
        // A different timestamp changes the signature.
        assert_ne!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265331,
                br#"{"test": 2432232314}"#
            ),
            sig
        );
    }

    #[test]
    fn bad_secrets_are_errors_and_never_printed() {
        assert_eq!(
            SigningKey::parse(b"whsec_!!!").unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(SigningKey::parse(b"  \n").unwrap_err(), KeyError::Empty);
        let raw = SigningKey::parse(b"not base64 at all!").unwrap();
        assert_eq!(format!("{raw:?}"), "SigningKey(…)");
        assert!(raw.sign("a", 1, b"b").starts_with("v1,"));
    }
}
