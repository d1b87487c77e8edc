//! The response side: a [`Decision`] and its `admission.k8s.io/v1` encoding.

use serde::Serialize;

use super::{API_VERSION, KIND};
use crate::patch::Patch;

/// An admission decision, independent of the wire format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Denial status (code and message); `None` when allowed.
    pub status: Option<Status>,
    /// JSON Patch, mutating only.
    pub patch: Option<Patch>,
    /// Warnings shown by kubectl.
    pub warnings: Vec<String>,
}

impl Decision {
    /// Allowed, nothing to say.
    pub fn allow() -> Self {
        Decision {
            allowed: true,
            ..Decision::default()
        }
    }

    /// Denied with `code` (400 invalid, 403 forbidden) and a message.
    pub fn deny(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            403 => "Forbidden",
            400 => "BadRequest",
            _ => "Invalid",
        };
        Decision {
            allowed: false,
            status: Some(Status {
                code,
                message: message.into(),
                reason,
            }),
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// Adds warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

/// `response.status` of a denial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// HTTP-style code shown to the client.
    pub code: u16,
    /// Human message (kubectl prints it).
    pub message: String,
    /// Machine reason.
    pub reason: &'static str,
}

/// Serialises the response review for `uid`.
///
/// Written by hand rather than through a derived `Serialize`: the patch is already base64, whose
/// alphabet (`A–Z a–z 0–9 + / =`) never needs JSON escaping, so it is copied as is instead of
/// being scanned character by character (2.6 KB for a spawner with 8 hooks, on every Task CREATE).
/// Strings that may need escaping (uid, status, warnings) still go through serde_json.
pub fn encode_response(uid: &str, decision: &Decision) -> Vec<u8> {
    let patch = decision.patch.as_ref().map(Patch::base64);
    let mut out = Vec::with_capacity(160 + uid.len() + patch.map_or(0, str::len));
    out.extend_from_slice(br#"{"apiVersion":""#);
    out.extend_from_slice(API_VERSION.as_bytes());
    out.extend_from_slice(br#"","kind":""#);
    out.extend_from_slice(KIND.as_bytes());
    out.extend_from_slice(br#"","response":{"uid":"#);
    // Writing strings, bools and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, uid);
    out.extend_from_slice(if decision.allowed {
        br#","allowed":true"#
    } else {
        br#","allowed":false"#
    });
    if let Some(status) = &decision.status {
        out.extend_from_slice(br#","status":"#);
        let _ = serde_json::to_writer(&mut out, status);
    }
    if let Some(patch) = patch {
        out.extend_from_slice(br#","patch":""#);
        out.extend_from_slice(patch.as_bytes());
        out.extend_from_slice(br#"","patchType":"JSONPatch""#);
    }
    if !decision.warnings.is_empty() {
        out.extend_from_slice(br#","warnings":"#);
        let _ = serde_json::to_writer(&mut out, &decision.warnings);
    }
    out.extend_from_slice(b"}}");
    out
}

/// The fixed response of the benchmark ceiling endpoint.
pub const CEILING_RESPONSE: &[u8] =
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn response_encoding() {
        let d = Decision {
            allowed: true,
            status: None,
            patch: Some(Patch::new("[]".into())),
            warnings: vec!["w".into()],
        };
        let v: serde_json::Value = serde_json::from_slice(&encode_response("u1", &d)).unwrap();
        assert_eq!(v["response"]["patch"], "W10=");
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        assert_eq!(v["response"]["warnings"][0], "w");
        let v: serde_json::Value =
            serde_json::from_slice(&encode_response("u2", &Decision::deny(403, "no"))).unwrap();
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["allowed"], false);
        let v: serde_json::Value = serde_json::from_slice(CEILING_RESPONSE).unwrap();
        assert_eq!(v["response"]["allowed"], true);
    }

    #[test]
    fn hand_written_encoding_is_exact_json() {
        let tricky = "q\"uote\\ \u{1} \n é ✓ </script>";
        let d = Decision::deny(400, tricky).with_warnings(vec![tricky.into(), String::new()]);
        let patch = Patch::new(format!(
            "[{{\"op\":\"add\",\"value\":{}}}]",
            serde_json::json!(tricky)
        ));
        for decision in [
            d.clone(),
            Decision {
                patch: Some(patch.clone()),
                ..d
            },
            Decision::allow(),
        ] {
            let v: serde_json::Value =
                serde_json::from_slice(&encode_response(tricky, &decision)).unwrap();
            let mut want = serde_json::json!({"uid": tricky, "allowed": decision.allowed});
            if let Some(s) = &decision.status {
                want["status"] =
                    serde_json::json!({"code": s.code, "message": s.message, "reason": s.reason});
            }
            if let Some(p) = &decision.patch {
                want["patch"] = p.base64().into();
                want["patchType"] = "JSONPatch".into();
            }
            if !decision.warnings.is_empty() {
                want["warnings"] = serde_json::json!(decision.warnings);
            }
            assert_eq!(
                v,
                serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "response": want})
            );
        }
    }
}
