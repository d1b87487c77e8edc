//! One HTTPS POST to a receiver: vet the URL, set the Standard Webhooks headers, sign, send, read a
//! little of the answer. What the result means is [`Outcome`]'s business.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

use kelos_hooks_shared::redact::{redact, redact_known};

use super::client::SafeClient;
use super::resolve::{find_refusal, vet_url};
use super::sign::SigningKey;
use crate::machine::outcome::Outcome;
use kelos_hooks_shared::retry_after::parse_retry_after;

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
    pub content_type: &'a str,
    /// Signing key, when configured.
    pub signing_key: Option<&'a SigningKey>,
    /// Headers from the hook's Secret (already filtered).
    pub extra_headers: &'a [(HeaderName, HeaderValue)],
    /// Whole-attempt timeout.
    pub timeout: Duration,
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
        // Sources may quote the URL or what the receiver sent.
        let s = redact(&e.to_string()).into_owned();
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

/// Makes one attempt. Never panics; every failure is an [`Outcome`].
pub async fn post(client: &SafeClient, req: &Request<'_>, now: DateTime<Utc>) -> Outcome {
    let started = Instant::now();
    if let Err(refusal) = vet_url(req.url, &client.policy) {
        return Outcome::refused(refusal, started.elapsed());
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
        // The answer goes into Events: a receiver may echo what it got, Secret headers included.
        let known: Vec<&str> = req
            .extra_headers
            .iter()
            .filter_map(|(_, v)| v.to_str().ok())
            .collect();
        let excerpt = redact_known(&String::from_utf8_lossy(&excerpt), &known).into_owned();
        Ok::<_, reqwest::Error>((status, retry_after, excerpt))
    };
    match tokio::time::timeout(req.timeout, send).await {
        Err(_) => Outcome::timed_out(req.timeout, started.elapsed()),
        Ok(Err(err)) => match find_refusal(&err) {
            Some(refusal) => Outcome::refused(refusal, started.elapsed()),
            None => Outcome::unreachable(describe(&err), started.elapsed()),
        },
        Ok(Ok((status, retry_after, body_excerpt))) => {
            Outcome::answered(status, retry_after, body_excerpt, started.elapsed())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::machine::outcome::Class;
    use crate::send::resolve::system_lookup;
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
        let r = post(&client, &req("https://127.0.0.1:9/x?token=t"), Utc::now()).await;
        assert_eq!(r.class, Class::Final);
        let e = r.error.unwrap();
        assert!(e.contains("127.0.0.0/8") && !e.contains("token"), "{e}");
        // localhost: always loopback, refused by the URL rules before any lookup.
        let r = post(&client, &req("https://localhost:9/x"), Utc::now()).await;
        assert_eq!(r.class, Class::Final, "{:?}", r.error);
        assert!(
            r.error
                .unwrap()
                .contains("host localhost always means the local host")
        );
        // A name: judged by our resolver inside reqwest, and recognised through its error chain.
        let internal: crate::send::resolve::Lookup = std::sync::Arc::new(|_host: String| {
            Box::pin(async { Ok(vec!["10.1.2.3".parse().unwrap()]) })
                as crate::send::resolve::LookupFuture
        });
        let client =
            SafeClient::new(IpPolicy::default(), internal, &[], Duration::from_secs(1)).unwrap();
        let r = post(&client, &req("https://internal.example:9/x"), Utc::now()).await;
        assert_eq!(r.class, Class::Final, "{:?}", r.error);
        assert!(
            r.error
                .unwrap()
                .contains("internal.example resolves to 10.1.2.3 is in blocked range 10.0.0.0/8")
        );
        // User-info: refused at delivery as at admission, and not echoed.
        let open = IpPolicy::from_cidrs(&["127.0.0.0/8"]).unwrap();
        let client = SafeClient::new(open, system_lookup(), &[], Duration::from_secs(1)).unwrap();
        let r = post(&client, &req("https://u:hunter2@127.0.0.1:9/x"), Utc::now()).await;
        assert_eq!(r.class, Class::Final);
        let e = r.error.unwrap();
        assert!(
            e.contains("must not contain credentials") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn allowed_but_unreachable_is_retried() {
        // localhost is both loopbacks: allowing it takes both.
        let policy = IpPolicy::from_cidrs(&["127.0.0.0/8", "::1/128"]).unwrap();
        let client = SafeClient::new(policy, system_lookup(), &[], Duration::from_secs(1)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("https://localhost:{port}/x");
        let r = post(&client, &req(&url), Utc::now()).await;
        assert_eq!(r.class, Class::Retry, "{:?}", r.error);
        assert!(r.error.unwrap().starts_with("connection failed"));
    }
}
