//! `/healthz`, `/readyz` and `/metrics` on a plain-HTTP port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::RwLock;

use crate::metrics::Metrics;

/// What readiness depends on.
#[derive(Default)]
pub struct Health {
    /// The Task watch has listed everything once.
    pub synced: AtomicBool,
    /// `None` while the CRD is fine, otherwise what is wrong.
    pub crd_problem: RwLock<Option<String>>,
}

impl Health {
    /// Readiness and its explanation.
    pub async fn readiness(&self) -> (bool, String) {
        let mut problems = Vec::new();
        if !self.synced.load(Ordering::Relaxed) {
            problems.push("Task watch not synced yet".to_owned());
        }
        if let Some(p) = self.crd_problem.read().await.clone() {
            problems.push(p);
        }
        if problems.is_empty() {
            (true, "ok\n".into())
        } else {
            (false, problems.join("\n") + "\n")
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// The router (separate for tests).
pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                let (ready, detail) = s.health.readiness().await;
                let code = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, detail)
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
                    .into_response()
            }),
        )
        .with_state(AppState { health, metrics })
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
