//! Prometheus metrics. Per-request counters are created up front so the hot path only bumps
//! atomics (no label-map lookups).

use std::time::Duration;

use kelos_hooks_runtime::ProbeMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The admission endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /validate/taskspawners`
    ValidateTaskSpawners,
    /// `POST /mutate/tasks`
    MutateTasks,
    /// `POST /validate/tasks`
    ValidateTasks,
    /// `POST /mutate/taskspawners`
    MutateTaskSpawners,
    /// `POST /mutate/tasks/redeliver`
    StampRedelivery,
}

impl Endpoint {
    const ALL: [Endpoint; 5] = [
        Endpoint::ValidateTaskSpawners,
        Endpoint::MutateTasks,
        Endpoint::ValidateTasks,
        Endpoint::MutateTaskSpawners,
        Endpoint::StampRedelivery,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ValidateTaskSpawners => "validate-taskspawners",
            Endpoint::MutateTasks => "mutate-tasks",
            Endpoint::ValidateTasks => "validate-tasks",
            Endpoint::MutateTaskSpawners => "mutate-taskspawners",
            Endpoint::StampRedelivery => "stamp-redelivery",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Admission operations, as label values.
const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "other"];

fn operation_index(op: &str) -> usize {
    OPERATIONS
        .iter()
        .position(|o| *o == op)
        .unwrap_or(OPERATIONS.len() - 1)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    operation: &'static str,
    allowed: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

/// Label set of outcome counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Outcome.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50µs … ~0.8s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

/// Outcome of a cache-miss lookup (label `result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissResult {
    /// The spawner exists.
    Found,
    /// 404: no such spawner.
    NotFound,
    /// API error or timeout: allowed without patch.
    Error,
}

/// All metrics of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// [endpoint][operation][allowed]
    requests: Vec<Counter>,
    durations: Vec<Histogram>,
    /// TaskSpawners in the cache.
    pub cache_objects: Gauge,
    /// 1 once the cache has synced.
    pub cache_synced: Gauge,
    miss_lookups: Family<ResultLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    /// 1 while the TaskSpawner CRD lacks `spec.onCompletion`.
    pub crd_problem: Gauge,
    ca_bundle_patches: Family<KindLabels, Counter>,
    cert_secret_writes: Family<ActionLabels, Counter>,
    hooks_kept: Family<ActionLabels, Counter>,
    crd_extension_patches: Family<ActionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kelos_hooks");
        let requests_family = Family::<RequestLabels, Counter>::default();
        let mut requests = Vec::with_capacity(Endpoint::ALL.len() * OPERATIONS.len() * 2);
        for endpoint in Endpoint::ALL {
            for operation in OPERATIONS {
                for allowed in ["false", "true"] {
                    requests.push(requests_family.get_or_create_owned(&RequestLabels {
                        endpoint: endpoint.as_str(),
                        operation,
                        allowed,
                    }));
                }
            }
        }
        let duration_family: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let durations = Endpoint::ALL
            .iter()
            .map(|e| {
                duration_family.get_or_create_owned(&EndpointLabels {
                    endpoint: e.as_str(),
                })
            })
            .collect();
        let cache_objects = Gauge::default();
        let cache_synced = Gauge::default();
        let miss_lookups = Family::<ResultLabels, Counter>::default();
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        let crd_problem = Gauge::default();
        let ca_bundle_patches = Family::<KindLabels, Counter>::default();
        let cert_secret_writes = Family::<ActionLabels, Counter>::default();
        let hooks_kept = Family::<ActionLabels, Counter>::default();
        let crd_extension_patches = Family::<ActionLabels, Counter>::default();
        registry.register(
            "taskspawner_hooks_kept",
            "TaskSpawner writes that could not express spec.onCompletion: stored hooks put back \
             (action=restored, kelos's identities) or the write refused (action=refused, v1alpha1)",
            hooks_kept.clone(),
        );
        registry.register(
            "crd_extension_patches",
            "Patches of kelos's TaskSpawner CRD: spec.onCompletion added back (action=restored) or \
             taken out (action=removed), or a patch that failed (action=failed)",
            crd_extension_patches.clone(),
        );
        registry.register(
            "ca_bundle_patches",
            "Webhook configurations whose caBundle was patched (self-managed certificates)",
            ca_bundle_patches.clone(),
        );
        registry.register(
            "cert_secret_writes",
            "Certificate Secret creations and updates made by this replica (self-managed certificates)",
            cert_secret_writes.clone(),
        );
        registry.register(
            "admission_requests",
            "Admission reviews answered",
            requests_family,
        );
        registry.register(
            "admission_request_duration_seconds",
            "Time to answer a review",
            duration_family,
        );
        registry.register(
            "taskspawner_cache_objects",
            "TaskSpawners in the cache",
            cache_objects.clone(),
        );
        registry.register(
            "taskspawner_cache_synced",
            "1 once the TaskSpawner cache has synced",
            cache_synced.clone(),
        );
        registry.register(
            "cache_miss_lookups",
            "Direct TaskSpawner reads made because the cache did not know a spawner",
            miss_lookups.clone(),
        );
        registry.register(
            "tls_cert_reloads",
            "Serving certificate reload attempts",
            tls_reloads.clone(),
        );
        registry.register(
            "crd_problem",
            "1 while the installed TaskSpawner CRD would prune spec.onCompletion",
            crd_problem.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            cache_objects,
            cache_synced,
            miss_lookups,
            tls_reloads,
            crd_problem,
            ca_bundle_patches,
            cert_secret_writes,
            hooks_kept,
            crd_extension_patches,
        }
    }

    /// Records one TaskSpawner write whose stored hooks were kept (`restored` or `refused`).
    pub fn observe_hooks_kept(&self, action: &'static str) {
        self.hooks_kept
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Records one patch (or failed patch) of kelos's TaskSpawner CRD.
    pub fn observe_crd_extension_patch(&self, action: &'static str) {
        self.crd_extension_patches
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Records one `caBundle` patch of a webhook configuration (`kind`: validating|mutating).
    pub fn observe_ca_bundle_patch(&self, kind: &'static str) {
        self.ca_bundle_patches
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Records one successful write of the certificate Secret (`action`: what was done).
    pub fn observe_cert_secret_write(&self, action: &'static str) {
        self.cert_secret_writes
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Records one answered review.
    pub fn observe_request(
        &self,
        endpoint: Endpoint,
        operation: &str,
        allowed: bool,
        elapsed: Duration,
    ) {
        let i = (endpoint.index() * OPERATIONS.len() + operation_index(operation)) * 2
            + usize::from(allowed);
        if let Some(c) = self.requests.get(i) {
            c.inc();
        }
        if let Some(h) = self.durations.get(endpoint.index()) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Records one cache-miss lookup.
    pub fn observe_miss(&self, result: MissResult) {
        let result = match result {
            MissResult::Found => "found",
            MissResult::NotFound => "not_found",
            MissResult::Error => "error",
        };
        self.miss_lookups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records one certificate reload attempt.
    pub fn observe_tls_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

impl ProbeMetrics for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.observe_request(
            Endpoint::MutateTasks,
            "CREATE",
            true,
            Duration::from_micros(120),
        );
        m.observe_request(
            Endpoint::ValidateTasks,
            "UPDATE",
            false,
            Duration::from_micros(80),
        );
        m.observe_miss(MissResult::Error);
        m.observe_tls_reload(true);
        let text = m.encode();
        assert!(
            text.contains(
                r#"kelos_hooks_admission_requests_total{endpoint="mutate-tasks",operation="CREATE",allowed="true"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kelos_hooks_admission_requests_total{endpoint="validate-tasks",operation="UPDATE",allowed="false"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"kelos_hooks_admission_request_duration_seconds_count{endpoint="mutate-tasks"} 1"#
        ));
        assert!(text.contains(r#"kelos_hooks_cache_miss_lookups_total{result="error"} 1"#));
        assert!(text.contains(r#"kelos_hooks_tls_cert_reloads_total{result="success"} 1"#));
        assert!(text.contains("kelos_hooks_taskspawner_cache_synced 0"));
    }

    #[test]
    fn unknown_operation_is_counted_as_other() {
        let m = Metrics::new();
        m.observe_request(
            Endpoint::ValidateTaskSpawners,
            "PATCH",
            true,
            Duration::ZERO,
        );
        assert!(
            m.encode()
                .contains(r#"operation="other",allowed="true"} 1"#)
        );
    }
}
