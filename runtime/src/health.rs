//! Readiness and the plain-HTTP probe port: `/healthz`, `/readyz` (with every reason it is not
//! ready), `/metrics` (Prometheus/OpenMetrics text).
//!
//! Readiness is a set of named checks, each either fine or holding the reason it is not: a
//! component registers what it waits for at start and clears it when done, so `/readyz` always
//! says what is missing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Content type of the text exposition `prometheus_client` writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness: ready when no check holds a problem.
#[derive(Debug, Default)]
pub struct Health {
    problems: RwLock<BTreeMap<&'static str, String>>,
    notes: RwLock<BTreeMap<&'static str, String>>,
}

/// Why the process is not ready: one line per failing check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NotReady(pub Vec<String>);

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// Name of the check [`Health::set_shutting_down`] sets.
pub const SHUTTING_DOWN: &str = "shutdown";

impl Health {
    /// Health that waits for each `(check, reason)` of `pending` until it is cleared.
    pub fn waiting_for(pending: &[(&'static str, &str)]) -> Self {
        let health = Health::default();
        for (check, reason) in pending {
            health.set(check, Some((*reason).to_owned()));
        }
        health
    }

    /// Records the state of `check`: `None` when fine, else why the process is not ready.
    pub fn set(&self, check: &'static str, problem: Option<String>) {
        let mut problems = self.problems.write().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => problems.insert(check, p),
            None => problems.remove(check),
        };
    }

    /// `check` is fine.
    pub fn clear(&self, check: &'static str) {
        self.set(check, None);
    }

    /// Shutdown began: not ready from now on (load balancers stop sending first).
    pub fn set_shutting_down(&self) {
        self.set(SHUTTING_DOWN, Some("shutting down".into()));
    }

    /// The problem `check` holds, if any.
    pub fn problem(&self, check: &'static str) -> Option<String> {
        let problems = self.problems.read().unwrap_or_else(|e| e.into_inner());
        problems.get(check).cloned()
    }

    /// Something `/readyz` should say about `check` that is not a problem (e.g. a repair made);
    /// `None` removes it.
    pub fn set_note(&self, check: &'static str, note: Option<String>) {
        let mut notes = self.notes.write().unwrap_or_else(|e| e.into_inner());
        match note {
            Some(n) => notes.insert(check, n),
            None => notes.remove(check),
        };
    }

    /// The notes, one line each (`""` when none).
    pub fn notes(&self) -> String {
        let notes = self.notes.read().unwrap_or_else(|e| e.into_inner());
        notes.values().map(|n| format!("{n}\n")).collect()
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let problems = self.problems.read().unwrap_or_else(|e| e.into_inner());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NotReady(problems.values().cloned().collect()))
        }
    }
}

/// What the probe port exposes under `/metrics`.
pub trait ProbeMetrics: Send + Sync + 'static {
    /// The registry holding every metric.
    fn registry(&self) -> &Registry;

    /// The text exposition.
    fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, self.registry());
        out
    }
}

struct Probe<M> {
    health: Arc<Health>,
    metrics: Arc<M>,
}

impl<M> Clone for Probe<M> {
    fn clone(&self) -> Self {
        Probe {
            health: self.health.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The router of the probe port.
pub fn router<M: ProbeMetrics>(health: Arc<Health>, metrics: Arc<M>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<M>))
        .route("/metrics", get(metrics_text::<M>))
        .with_state(Probe { health, metrics })
}

/// Serves the probe port on `listener` until `shutdown` completes.
pub async fn serve<M: ProbeMetrics>(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<M>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz<M: ProbeMetrics>(State(p): State<Probe<M>>) -> impl IntoResponse {
    let notes = p.health.notes();
    match p.health.readiness() {
        Ok(()) => (StatusCode::OK, format!("ready\n{notes}")),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{why}\n{notes}"),
        ),
    }
}

async fn metrics_text<M: ProbeMetrics>(State(p): State<Probe<M>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        p.metrics.encode(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt as _;

    #[test]
    fn ready_only_when_every_check_is() {
        let h =
            Health::waiting_for(&[("tls", "no certificate yet"), ("cache", "cache not synced")]);
        assert_eq!(
            h.readiness(),
            Err(NotReady(vec![
                "cache not synced".into(),
                "no certificate yet".into()
            ]))
        );
        h.clear("tls");
        h.clear("cache");
        assert_eq!(h.readiness(), Ok(()));
        h.set("crd", Some("CRD lacks onCompletion".into()));
        assert_eq!(h.problem("crd").as_deref(), Some("CRD lacks onCompletion"));
        assert!(
            h.readiness()
                .unwrap_err()
                .to_string()
                .contains("onCompletion")
        );
        h.set("crd", None);
        assert_eq!(h.readiness(), Ok(()));
        h.set_note("crd", Some("spec.onCompletion restored".into()));
        assert_eq!(h.readiness(), Ok(()), "a note is not a problem");
        assert_eq!(h.notes(), "spec.onCompletion restored\n");
        h.set_note("crd", None);
        assert_eq!(h.notes(), "");
        h.set_shutting_down();
        assert_eq!(h.readiness(), Err(NotReady(vec!["shutting down".into()])));
    }

    struct Fixture(Registry);
    impl ProbeMetrics for Fixture {
        fn registry(&self) -> &Registry {
            &self.0
        }
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, String, Option<String>) {
        let resp = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap(), ct)
    }

    #[tokio::test]
    async fn probe_port() {
        let mut registry = Registry::with_prefix("kh_test");
        let c = Counter::<u64>::default();
        registry.register("things", "Things", c.clone());
        c.inc();
        let health = Arc::new(Health::waiting_for(&[("sync", "watch not synced yet")]));
        let router = router(health.clone(), Arc::new(Fixture(registry)));
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
        let (code, body, _) = get(&router, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready:\nwatch not synced yet\n");
        health.clear("sync");
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
        let (code, body, ct) = get(&router, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("kh_test_things_total 1"), "{body}");
        assert_eq!(ct.as_deref(), Some(METRICS_CONTENT_TYPE));
    }
}
