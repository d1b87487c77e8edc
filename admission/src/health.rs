//! Liveness/readiness state and the plain-HTTP `/healthz`, `/readyz`, `/metrics` router.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What readiness depends on.
#[derive(Debug, Default)]
pub struct Health {
    cache_synced: AtomicBool,
    tls_loaded: AtomicBool,
    shutting_down: AtomicBool,
    crd_problem: RwLock<Option<String>>,
}

impl Health {
    /// The TaskSpawner cache finished its first list.
    pub fn set_cache_synced(&self) {
        self.cache_synced.store(true, Ordering::Release);
    }

    /// A serving certificate is loaded.
    pub fn set_tls_loaded(&self) {
        self.tls_loaded.store(true, Ordering::Release);
    }

    /// Shutdown began: report not ready from now on.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Records the TaskSpawner CRD check outcome (`None`: fine).
    pub fn set_crd_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.crd_problem.write() {
            *p = problem;
        }
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn readiness(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        if self.shutting_down.load(Ordering::Acquire) {
            reasons.push("shutting down".to_owned());
        }
        if !self.tls_loaded.load(Ordering::Acquire) {
            reasons.push("no serving certificate loaded yet".to_owned());
        }
        if !self.cache_synced.load(Ordering::Acquire) {
            reasons.push("TaskSpawner cache not synced yet".to_owned());
        }
        if let Ok(p) = self.crd_problem.read()
            && let Some(p) = p.as_ref()
        {
            reasons.push(p.clone());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("\n"))
        }
    }
}

#[derive(Clone)]
struct Probe {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// The router of the plain-HTTP port.
pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Probe { health, metrics })
}

async fn readyz(State(p): State<Probe>) -> impl IntoResponse {
    match p.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{why}\n"),
        ),
    }
}

async fn metrics_text(State(p): State<Probe>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ready_only_when_everything_is() {
        let h = Health::default();
        let why = h.readiness().unwrap_err();
        assert!(
            why.contains("certificate") && why.contains("cache"),
            "{why}"
        );
        h.set_tls_loaded();
        h.set_cache_synced();
        assert_eq!(h.readiness(), Ok(()));
        h.set_crd_problem(Some("CRD lacks onCompletion".into()));
        assert!(
            h.readiness()
                .unwrap_err()
                .contains("CRD lacks onCompletion")
        );
        h.set_crd_problem(None);
        assert_eq!(h.readiness(), Ok(()));
        h.set_shutting_down();
        assert!(h.readiness().unwrap_err().contains("shutting down"));
    }
}
