//! Prometheus metrics of the Spin host (OpenMetrics text on the admin listener).

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub component: String,
    pub route: String,
    pub status: u16,
}

/// Latency by route as well as component: one component may serve several routes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub component: String,
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub instantiation: Family<ComponentLabels, Histogram>,
    pub live_instances: Family<ComponentLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        // 50 µs … ~3 s: per-request latencies of components and their instantiation.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 17))
        });
        let instantiation = Family::<ComponentLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000005, 2.0, 16))
        });
        let live_instances = Family::<ComponentLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("wattlet_http");
        registry.register(
            "requests",
            "HTTP requests by component, route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by component and route",
            duration.clone(),
        );
        registry.register(
            "instantiation_seconds",
            "Time to instantiate a component for one request",
            instantiation.clone(),
        );
        registry.register(
            "live_instances",
            "Component instances currently handling a request",
            live_instances.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            instantiation,
            live_instances,
        }
    }
}

impl Metrics {
    /// The instance metrics of one component.
    pub fn instances(&self, component: &str) -> InstanceMetrics {
        let labels = ComponentLabels {
            component: component.to_owned(),
        };
        InstanceMetrics {
            instantiation: self.instantiation.get_or_create(&labels).clone(),
            live: self.live_instances.get_or_create(&labels).clone(),
        }
    }
}

/// What an executor records about the instances of one component.
#[derive(Clone)]
pub struct InstanceMetrics {
    instantiation: Histogram,
    live: Gauge,
}

impl InstanceMetrics {
    /// Records an instantiation that began at `started`; the instance counts as live until the
    /// returned guard is dropped.
    pub fn instantiated(&self, started: Instant) -> LiveInstance {
        self.instantiation.observe(started.elapsed().as_secs_f64());
        self.live.inc();
        LiveInstance(self.live.clone())
    }
}

/// One live instance in `live_instances`, until dropped (also when its task panics).
pub struct LiveInstance(Gauge);

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl wattlet_runtime::metrics::MetricsSource for Metrics {
    fn encode(&self) -> String {
        wattlet_runtime::metrics::encode_registry(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
