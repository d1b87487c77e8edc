//! One delivery attempt: vet, build the request, sign, send, read a little of the answer, classify.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

use crate::backoff::parse_retry_after;
use crate::client::SafeClient;
use crate::outcome::{Class, classify_status};
use crate::resolve::{Refusal, find_refusal, vet_url};
use crate::sign::SigningKey;

/// Most bytes of a response body kept for Events and logs.
pub const BODY_EXCERPT: usize = 4096;

/// Everything one attempt needs.
pub struct Request<'a> {
    /// Target URL (full; never logged).
    pub url: &'a str,
    /// `webhook-id`.
    pub id: &'a str,
    /// Body bytes.
    pub body: &'a [u8],
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Signing key, when configured.
    pub signing_key: Option<&'a SigningKey>,
    /// Headers from the hook's Secret (already filtered).
    pub extra_headers: &'a [(HeaderName, HeaderValue)],
    /// Whole-attempt timeout.
    pub timeout: Duration,
}

/// The result of one attempt.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    /// Delivered, retry or final.
    pub class: Class,
    /// HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Why it did not succeed (no secrets, no full URL).
    pub error: Option<String>,
    /// The receiver's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// Start of the body the receiver answered (at most [`BODY_EXCERPT`] bytes, lossy UTF-8).
    pub body_excerpt: String,
    /// How long the attempt took.
    pub elapsed: Duration,
}

impl AttemptResult {
    fn failed(class: Class, error: String, started: Instant) -> Self {
        AttemptResult {
            class,
            status: None,
            error: Some(error),
            retry_after: None,
            body_excerpt: String::new(),
            elapsed: started.elapsed(),
        }
    }
}

/// Describes a transport error without the URL (reqwest's Display includes it).
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_request() {
        "request failed"
    } else if err.is_body() || err.is_decode() {
        "reading the answer failed"
    } else {
        "HTTP error"
    };
    let mut detail = Vec::new();
    let mut cur = std::error::Error::source(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !detail.contains(&s) {
            detail.push(s);
        }
        cur = e.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", detail.join(": "))
    }
}

/// Makes one attempt. Never panics; every failure is a classed result.
pub async fn attempt(client: &SafeClient, req: &Request<'_>, now: DateTime<Utc>) -> AttemptResult {
    let started = Instant::now();
    if let Err(refusal) = vet_url(req.url, &client.policy) {
        return AttemptResult::failed(Class::Final, format!("refused: {refusal}"), started);
    }
    let timestamp = now.timestamp();
    let mut builder = client
        .http
        .post(req.url)
        .timeout(req.timeout)
        .header(CONTENT_TYPE, req.content_type)
        .header("webhook-id", req.id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(key) = req.signing_key {
        builder = builder.header("webhook-signature", key.sign(req.id, timestamp, req.body));
    }
    for (name, value) in req.extra_headers {
        builder = builder.header(name.clone(), value.clone());
    }
    let send = async {
        let resp = builder.body(req.body.to_vec()).send().await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let mut excerpt = Vec::new();
        let mut resp = resp;
        while excerpt.len() < BODY_EXCERPT {
            match resp.chunk().await.transpose() {
                Some(Ok(chunk)) => excerpt
                    .extend_from_slice(&chunk[..chunk.len().min(BODY_EXCERPT - excerpt.len())]),
                // The status is what counts; a broken body after it does not change the outcome.
                Some(Err(_)) | None => break,
            }
        }
        Ok::<_, reqwest::Error>((
            status,
            retry_after,
            String::from_utf8_lossy(&excerpt).into_owned(),
        ))
    };
    match tokio::time::timeout(req.timeout, send).await {
        Err(_) => AttemptResult::failed(
            Class::Retry,
            format!("timed out after {}s", req.timeout.as_secs_f32()),
            started,
        ),
        Ok(Err(err)) => match find_refusal(&err) {
            Some(r @ Refusal::Blocked { .. }) => {
                AttemptResult::failed(Class::Final, format!("refused: {r}"), started)
            }
            Some(r) => AttemptResult::failed(Class::Final, format!("refused: {r}"), started),
            None => AttemptResult::failed(Class::Retry, describe(&err), started),
        },
        Ok(Ok((status, retry_after, body_excerpt))) => {
            let class = classify_status(status);
            let error = match class {
                Class::Success => None,
                _ if (300..400).contains(&status) => {
                    Some(format!("HTTP {status} (redirects are not followed)"))
                }
                _ => Some(format!("HTTP {status}")),
            };
            AttemptResult {
                class,
                status: Some(status),
                error,
                retry_after,
                body_excerpt,
                elapsed: started.elapsed(),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::resolve::system_lookup;
    use kelos_hooks_shared::ip::IpPolicy;

    fn req(url: &str) -> Request<'_> {
        Request {
            url,
            id: "uid_Succeeded_h",
            body: b"{}",
            content_type: "application/json",
            signing_key: None,
            extra_headers: &[],
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn blocked_destinations_are_final_and_never_connected() {
        let client = SafeClient::new(
            IpPolicy::default(),
            system_lookup(),
            &[],
            Duration::from_secs(1),
        )
        .unwrap();
        // IP literal: judged before the request is built.
        let r = attempt(&client, &req("https://127.0.0.1:9/x?token=t"), Utc::now()).await;
        assert_eq!(r.class, Class::Final);
        let e = r.error.unwrap();
        assert!(e.contains("127.0.0.0/8") && !e.contains("token"), "{e}");
        // A name: judged by our resolver inside reqwest, and recognised through its error chain.
        let r = attempt(&client, &req("https://localhost:9/x"), Utc::now()).await;
        assert_eq!(r.class, Class::Final, "{:?}", r.error);
        assert!(r.error.unwrap().contains("localhost resolves to 127.0.0.1"));
    }

    #[tokio::test]
    async fn allowed_but_unreachable_is_retried() {
        let policy = IpPolicy::from_cidrs(&["127.0.0.0/8"]).unwrap();
        let client = SafeClient::new(policy, system_lookup(), &[], Duration::from_secs(1)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("https://localhost:{port}/x");
        let r = attempt(&client, &req(&url), Utc::now()).await;
        assert_eq!(r.class, Class::Retry, "{:?}", r.error);
        assert!(r.error.unwrap().starts_with("connection failed"));
    }
}
