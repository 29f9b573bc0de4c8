//! Prometheus metrics (OpenMetrics text via prometheus-client).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~4 s: admission answers are fast, the apiserver gives up at 5 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    appimages: Gauge,
    signature_failures: Counter,
    tls_reloads: Counter,
    tls_reload_failures: Counter,
    trusted_keys: Gauge,
    trusted_key_reloads: Counter,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    leader: Gauge,
    leading: AtomicBool,
}

/// The controllers' metrics, by controller.
struct ControllerMetrics {
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    leader: Gauge,
}

/// The controllers' metrics: reconciles by controller and result, errors by controller and
/// reason, their latency, and leadership.
fn register_controllers(registry: &mut Registry) -> ControllerMetrics {
    let m = ControllerMetrics {
        reconciles: Family::default(),
        errors: Family::default(),
        durations: Family::new_with_constructor(duration_histogram),
        leader: Gauge::default(),
    };
    registry.register(
        "appimage_webhook_leader",
        "1 while this replica holds the Lease and runs the controllers, else 0",
        m.leader.clone(),
    );
    registry.register(
        "appimage_webhook_reconciles",
        "Reconciles by controller (services, workloads, revisions, start, batch) and result",
        m.reconciles.clone(),
    );
    registry.register(
        "appimage_webhook_reconcile_errors",
        "Reconciles that failed, by controller and reason (conflict, forbidden, apply, delete, request, transport)",
        m.errors.clone(),
    );
    registry.register(
        "appimage_webhook_reconcile_duration_seconds",
        "Time to reconcile one object, by controller",
        m.durations.clone(),
    );
    m
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

/// Cheap to clone; every clone updates the same metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let appimages = Gauge::default();
        let signature_failures = Counter::default();
        let tls_reloads = Counter::default();
        let tls_reload_failures = Counter::default();
        let trusted_keys = Gauge::default();
        let trusted_key_reloads = Counter::default();
        let controllers = register_controllers(&mut registry);
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "appimage_webhook_requests",
            "Admission requests by endpoint and outcome",
            requests.clone(),
        );
        registry.register(
            "appimage_webhook_request_duration_seconds",
            "Time to answer an admission request",
            durations.clone(),
        );
        registry.register(
            "appimage_webhook_appimages_cached",
            "AppImages in the watch cache",
            appimages.clone(),
        );
        registry.register(
            "appimage_webhook_signature_failures",
            "AppImage signature checks that failed",
            signature_failures.clone(),
        );
        registry.register(
            "appimage_webhook_tls_reloads",
            "Serving certificate reloads from disk",
            tls_reloads.clone(),
        );
        registry.register(
            "appimage_webhook_tls_reload_failures",
            "Serving certificate reloads that failed (the old pair is kept)",
            tls_reload_failures.clone(),
        );
        registry.register(
            "appimage_webhook_trusted_keys",
            "Trusted public keys loaded",
            trusted_keys.clone(),
        );
        registry.register(
            "appimage_webhook_trusted_key_reloads",
            "Reloads of the trusted keys directory that changed the key set",
            trusted_key_reloads.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            requests,
            durations,
            appimages,
            signature_failures,
            tls_reloads,
            tls_reload_failures,
            trusted_keys,
            trusted_key_reloads,
            reconciles: controllers.reconciles,
            reconcile_errors: controllers.errors,
            reconcile_durations: controllers.durations,
            leader: controllers.leader,
            leading: AtomicBool::new(false),
        }))
    }

    /// One reconcile by `controller`: `result` is "ok" or "error".
    pub fn observe_reconcile(
        &self,
        controller: &'static str,
        result: &'static str,
        elapsed: Duration,
    ) {
        self.0
            .reconciles
            .get_or_create(&ResultLabels { controller, result })
            .inc();
        self.0
            .reconcile_durations
            .get_or_create(&ControllerLabels { controller })
            .observe(elapsed.as_secs_f64());
    }

    /// One failed reconcile by `controller`, for `reason` (`controllers::Error::metric_label`).
    pub fn reconcile_error(&self, controller: &'static str, reason: &'static str) {
        self.0
            .reconcile_errors
            .get_or_create(&ErrorLabels { controller, reason })
            .inc();
    }

    /// One admission request: `outcome` is what became of it (allowed, patched, denied, error).
    pub fn observe(&self, endpoint: &'static str, outcome: &'static str, elapsed: Duration) {
        self.0
            .requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
        self.0
            .durations
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    /// Whether this replica leads (runs the controllers).
    pub fn set_leader(&self, leader: bool) {
        self.0.leading.store(leader, Ordering::Relaxed);
        self.0.leader.set(i64::from(leader));
    }

    pub fn is_leader(&self) -> bool {
        self.0.leading.load(Ordering::Relaxed)
    }

    pub fn signature_failure(&self) {
        self.0.signature_failures.inc();
    }

    pub fn set_appimages(&self, n: usize) {
        self.0.appimages.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn tls_reloaded(&self, ok: bool) {
        if ok {
            self.0.tls_reloads.inc();
        } else {
            self.0.tls_reload_failures.inc();
        }
    }

    pub fn tls_reloads(&self) -> u64 {
        self.0.tls_reloads.get()
    }

    pub fn trusted_keys_loaded(&self, n: usize, reload: bool) {
        self.0
            .trusted_keys
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        if reload {
            self.0.trusted_key_reloads.inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}
