//! The response side: a [`Decision`] and its `admission.k8s.io/v1` encoding.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::{API_VERSION, KIND, warnings};
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
    /// Warnings shown by kubectl (capped in count and length when encoded, see
    /// [`warnings::bounded`]).
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

/// The response review.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

/// `response` of the review.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
    /// Base64 of the JSON Patch (the admission API's `[]byte`), as a JSON string.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: Cow<'a, [String]>,
}

/// Serialises the response review for `uid`, with the warnings bounded.
pub fn encode_response(uid: &str, decision: &Decision) -> Vec<u8> {
    let patch = decision.patch.as_ref().map(Patch::base64_json);
    let review = ResponseReview {
        api_version: API_VERSION,
        kind: KIND,
        response: Response {
            uid,
            allowed: decision.allowed,
            status: decision.status.as_ref(),
            patch,
            patch_type: patch.map(|_| "JSONPatch"),
            warnings: warnings::bounded(&decision.warnings),
        },
    };
    // Strings, bools and integers into a Vec: serialising cannot fail.
    serde_json::to_vec(&review).unwrap_or_default()
}

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
        assert!(v["response"].get("patch").is_none() && v["response"].get("warnings").is_none());
    }

    #[test]
    fn encoding_is_exact_json() {
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
