//! Prometheus metrics.

use std::sync::atomic::AtomicU64;

use kelos_hooks_runtime::ProbeMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of per-outcome counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `delivered`, `failed` or `skipped`.
    pub outcome: String,
}

/// Label of per-attempt-result histograms and counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success`, `retry` or `final`.
    pub result: String,
}

/// Labels of per-hook health gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    /// Namespace of the TaskSpawner (not `namespace`: Prometheus sets that to the scraped Pod's).
    pub spawner_namespace: String,
    /// TaskSpawner.
    pub spawner: String,
    /// Hook name.
    pub hook: String,
}

/// Every metric the dispatcher exports.
pub struct Metrics {
    /// Hooks that reached a final state, by outcome.
    pub deliveries: Family<OutcomeLabel, Counter>,
    /// Retries scheduled.
    pub retries: Counter,
    /// Duration of single attempts, by result.
    pub attempt_duration: Family<ResultLabel, Histogram>,
    /// Time from `status.completionTime` to a successful delivery.
    pub completion_to_delivery: Histogram,
    /// Hooks waiting to be sent or in flight.
    pub queue_depth: Gauge,
    /// Attempts in flight.
    pub in_flight: Gauge,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// 1 while the TaskSpawner CRD declares `spec.onCompletion`.
    pub crd_ok: Gauge,
    /// 1 while kelos's CRD declares `spec.onCompletion` itself (its own reporter).
    pub kelos_reporter: Gauge,
    /// Tasks left to kelos's own reporter (their snapshot is in kelos's format).
    pub left_to_kelos: Counter,
    /// Delivery-state writes that failed (retried).
    pub state_write_errors: Counter<u64, AtomicU64>,
    /// 1 while a spawner's hook is failing (several failed attempts in a row), else 0.
    pub hook_failing: Family<HookLabel, Gauge>,
    /// Test notifications sent, by result.
    pub tests: Family<ResultLabel, Counter>,
    /// Redelivery requests acted on.
    pub redeliveries: Counter,
    registry: Registry,
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kelos_hooks_dispatcher");
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        let retries = Counter::default();
        let attempt_duration = Family::<ResultLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let completion_to_delivery = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let queue_depth = Gauge::default();
        let in_flight = Gauge::default();
        let leader = Gauge::default();
        let crd_ok = Gauge::default();
        let kelos_reporter = Gauge::default();
        let left_to_kelos = Counter::default();
        let state_write_errors = Counter::default();
        registry.register(
            "deliveries",
            "Hooks that reached a final state, by outcome",
            deliveries.clone(),
        );
        registry.register(
            "retries",
            "Retries scheduled after a retryable failure",
            retries.clone(),
        );
        registry.register(
            "delivery_attempt_duration_seconds",
            "Duration of one delivery attempt, by result",
            attempt_duration.clone(),
        );
        registry.register(
            "completion_to_delivery_seconds",
            "Time from the Task's completionTime to the receiver's 2xx",
            completion_to_delivery.clone(),
        );
        registry.register(
            "queue_depth",
            "Hooks waiting for an attempt or in flight",
            queue_depth.clone(),
        );
        registry.register(
            "in_flight",
            "Delivery attempts in flight",
            in_flight.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "crd_ok",
            "1 while the TaskSpawner CRD declares spec.onCompletion",
            crd_ok.clone(),
        );
        registry.register(
            "kelos_reporter",
            "1 while kelos's TaskSpawner CRD declares spec.onCompletion itself (a kelos build with its own onCompletion reporter)",
            kelos_reporter.clone(),
        );
        registry.register(
            "left_to_kelos_reporter",
            "Terminal Tasks not delivered because kelos-spawner wrote their snapshot in kelos's format (kelos's own reporter delivers them)",
            left_to_kelos.clone(),
        );
        registry.register(
            "state_write_errors",
            "Failed writes of the delivery annotation",
            state_write_errors.clone(),
        );
        let hook_failing = Family::<HookLabel, Gauge>::default();
        registry.register(
            "hook_failing",
            "1 while a TaskSpawner's hook is failing (several failed attempts in a row across its Tasks)",
            hook_failing.clone(),
        );
        let tests = Family::<ResultLabel, Counter>::default();
        registry.register(
            "test_sends",
            "Test notifications sent (kelos.dev/webhook-test, send-test), by result",
            tests.clone(),
        );
        let redeliveries = Counter::default();
        registry.register(
            "redeliveries",
            "Redelivery requests (kelos.dev/webhook-redeliver) acted on",
            redeliveries.clone(),
        );
        Metrics {
            hook_failing,
            tests,
            redeliveries,
            deliveries,
            retries,
            attempt_duration,
            completion_to_delivery,
            queue_depth,
            in_flight,
            leader,
            crd_ok,
            kelos_reporter,
            left_to_kelos,
            state_write_errors,
            registry,
        }
    }

    /// Counts a hook reaching a final state.
    pub fn outcome(&self, outcome: &str) {
        self.deliveries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
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
    fn encodes_the_documented_names() {
        let m = Metrics::new();
        m.outcome("delivered");
        m.leader.set(1);
        let text = m.encode();
        assert!(
            text.contains("kelos_hooks_dispatcher_deliveries_total{outcome=\"delivered\"} 1"),
            "{text}"
        );
        assert!(text.contains("kelos_hooks_dispatcher_leader 1"), "{text}");
        m.hook_failing
            .get_or_create(&HookLabel {
                spawner_namespace: "n".into(),
                spawner: "s".into(),
                hook: "h".into(),
            })
            .set(1);
        let text = m.encode();
        assert!(
            text.contains(
                "kelos_hooks_dispatcher_hook_failing{spawner_namespace=\"n\",spawner=\"s\",hook=\"h\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("kelos_hooks_dispatcher_completion_to_delivery_seconds"),
            "{text}"
        );
    }
}
