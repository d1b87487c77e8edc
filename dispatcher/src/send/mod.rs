//! Everything that talks to receivers. [`Sender`] performs one [`Attempt`]: it waits for a
//! concurrency slot, reads the hook's Secrets, builds the payload, then [`post`]s it through the
//! SSRF-safe client.

pub mod client;
pub mod headers;
mod post;
pub mod resolve;
pub mod sign;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kelos_hooks_shared::api::Format;
use kelos_hooks_shared::payload;
use kelos_hooks_shared::redact::scheme_and_host;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cluster::secrets::Secrets;
use crate::error::Error;
use crate::machine::outcome::Outcome;
use crate::machine::{Attempt, completed_at};
use client::SafeClient;
use post::{Request, post};

/// Limits of a [`Sender`].
#[derive(Clone, Copy, Debug)]
pub struct SendLimits {
    /// Attempts in flight at once.
    pub max_concurrency: usize,
    /// Attempts in flight per scheme and host.
    pub max_per_host: usize,
    /// One attempt's timeout.
    pub timeout: Duration,
}

/// Performs attempts; shared by every attempt task.
pub struct Sender {
    http: SafeClient,
    secrets: Secrets,
    limits: SendLimits,
    global: Arc<Semaphore>,
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Cancelled at shutdown: attempts that have not started sending are not started.
    no_new: CancellationToken,
}

fn secret_failure(what: &str, e: Error) -> Outcome {
    let retry = match &e {
        Error::Secret { retryable, .. } => *retryable,
        _ => true,
    };
    Outcome::not_sent(retry, format!("{what}: {e}"))
}

impl Sender {
    /// A sender through `http`, reading Secrets with `secrets`; `no_new` stops new attempts.
    pub fn new(
        http: SafeClient,
        secrets: Secrets,
        limits: SendLimits,
        no_new: CancellationToken,
    ) -> Self {
        Sender {
            http,
            secrets,
            limits,
            global: Arc::new(Semaphore::new(limits.max_concurrency)),
            per_host: Mutex::new(HashMap::new()),
            no_new,
        }
    }

    fn host_slots(&self, url: &str) -> Arc<Semaphore> {
        let host = scheme_and_host(url);
        let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.max_per_host)))
            .clone()
    }

    /// Makes the attempt; `None` when shutdown came first (nothing was sent).
    pub async fn send(&self, a: &Attempt) -> Option<Outcome> {
        let _global = self.global.clone().acquire_owned().await.ok()?;
        let _host = self
            .host_slots(&a.hook.webhook.url)
            .acquire_owned()
            .await
            .ok()?;
        // Shutting down: what has not started yet is left to the next leader.
        if self.no_new.is_cancelled() {
            return None;
        }
        let ns = a.task.metadata.namespace.as_deref().unwrap_or("default");
        let webhook = &a.hook.webhook;
        // The URL rules first: a refused URL is final whatever its Secrets hold, and they are
        // not read for it. `post` judges again, so it stays safe on its own.
        if let Err(refusal) = resolve::vet_url(&webhook.url, &self.http.policy) {
            return Some(Outcome::refused(refusal, Duration::ZERO));
        }
        let signing_key = match &webhook.signing_secret_ref {
            Some(r) => match self.secrets.signing_key(ns, r).await {
                Ok(k) => Some(k),
                Err(e) => return Some(secret_failure("signing secret", e)),
            },
            None => None,
        };
        let mut warnings = Vec::new();
        let extra = match &webhook.secret_ref {
            Some(r) => {
                let data = match self.secrets.header_data(ns, r).await {
                    Ok(d) => d,
                    Err(e) => return Some(secret_failure("header Secret", e)),
                };
                match headers::from_secret(&data) {
                    Ok(h) => {
                        if !h.ignored.is_empty() {
                            warnings.push(format!(
                                "hook {}: Secret {} key(s) {} ignored: reserved headers cannot be overridden",
                                a.hook.name,
                                r.name,
                                h.ignored.join(", ")
                            ));
                        }
                        h.headers
                    }
                    Err(e) => {
                        return Some(secret_failure(&format!("header Secret {}", r.name), e));
                    }
                }
            }
            None => Vec::new(),
        };
        let routing_key = match webhook
            .pager_duty
            .as_ref()
            .map(|p| &p.routing_key_secret_ref)
        {
            Some(r) if webhook.format == Some(Format::PagerDuty) => {
                match self.secrets.routing_key(ns, r).await {
                    Ok(k) => Some(k),
                    Err(e) => return Some(secret_failure("PagerDuty routing key", e)),
                }
            }
            _ => None,
        };
        let now = Utc::now();
        let completed = completed_at(&a.task).unwrap_or(now);
        // A body that cannot be built for this Task (a template failing or rendering invalid
        // JSON) is final: the same Task would fail the same way on every retry. Nothing is sent.
        let body = match payload::build(
            &a.task,
            &a.hook,
            a.phase,
            &a.webhook_id,
            completed,
            routing_key.as_deref(),
        ) {
            Ok(b) => b,
            Err(e) => return Some(Outcome::not_sent(false, e.to_string()).with_warnings(warnings)),
        };
        let body = if a.test {
            crate::test_send::mark(body)
        } else {
            body
        };
        let req = Request {
            url: &webhook.url,
            id: &a.webhook_id,
            body: &body.bytes,
            content_type: &body.content_type,
            signing_key: signing_key.as_ref(),
            extra_headers: &extra,
            timeout: self.limits.timeout,
        };
        Some(post(&self.http, &req, now).await.with_warnings(warnings))
    }
}
