//! Prometheus metrics at `/metrics` (text exposition format).
//!
//! - `ewii_hub_connected_deployments`: live tunnels.
//! - `ewii_hub_tool_calls_total{outcome}`: agent `tools/call`s by outcome
//!   (`ok`, `tool_error`, `offline`, `unknown_tool`, `failed`).
//! - `ewii_hub_tool_call_duration_seconds`: their latency, hub in to hub out.
//! - `ewii_hub_handshake_failures_total{layer,reason}`: refused tunnels, by
//!   layer (`svid`: the SVID verifier refused the certificate, in TLS or in the
//!   app layer; `app`: any other app-layer handshake failure, e.g.
//!   `identity_mismatch`) and reason code.
//! - `ewii_hub_svids_issued_total{kind}` (`enrolment`, `renewal`) and
//!   `ewii_hub_enrolments_refused_total{reason}`.
//! - `ewii_hub_limits_hit_total{limit}`: work refused by a bound that
//!   holds before or around authentication (`quic_handshakes`: too many
//!   QUIC handshakes at once; `handshake_deadline`: a connection closed for
//!   not completing its handshake in time; `agent_requests`: an agent over
//!   its concurrent-request limit).
//!
//! The QUIC listener reports its part through [`ListenerEvents`]; the SVID
//! verifier counts TLS-layer refusals itself, folded in at each scrape.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ewii_quic::{ListenerEvent, ListenerEvents, SvidVerifier};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The hub's metrics.
pub struct Metrics {
    registry: Registry,
    connected: Gauge,
    calls: Family<Labels, Counter>,
    latency: Histogram,
    stages: Family<Labels, Histogram, fn() -> Histogram>,
    handshake_failures: Family<Labels, Counter>,
    issued: Family<Labels, Counter>,
    enrolments_refused: Family<Labels, Counter>,
    limits_hit: Family<Labels, Counter>,
    verifier: Arc<SvidVerifier>,
    /// The TLS-layer refusal counts already folded into the counter.
    tls_seen: Mutex<BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric; `verifier` supplies the TLS-layer refusals.
    pub fn new(verifier: Arc<SvidVerifier>) -> Metrics {
        let mut registry = Registry::with_prefix("ewii_hub");
        let connected = Gauge::default();
        registry.register(
            "connected_deployments",
            "Deployments with a live tunnel",
            connected.clone(),
        );
        let calls = Family::<Labels, Counter>::default();
        registry.register(
            "tool_calls",
            "Agent tools/call requests by outcome",
            calls.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "tool_call_duration_seconds",
            "Agent tools/call latency at the hub",
            latency.clone(),
        );
        let stages: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));
        registry.register(
            "call_stage_duration_seconds",
            "Time a routed call spends in each stage at the hub: audit_intent (the durable \
             intent), deployment (through the tunnel to the adapter and back), audit_outcome",
            stages.clone(),
        );
        let handshake_failures = Family::<Labels, Counter>::default();
        registry.register(
            "handshake_failures",
            "Refused tunnel handshakes by layer and reason",
            handshake_failures.clone(),
        );
        let issued = Family::<Labels, Counter>::default();
        registry.register("svids_issued", "SVIDs issued by kind", issued.clone());
        let enrolments_refused = Family::<Labels, Counter>::default();
        registry.register(
            "enrolments_refused",
            "Refused enrolments by reason",
            enrolments_refused.clone(),
        );
        let limits_hit = Family::<Labels, Counter>::default();
        registry.register(
            "limits_hit",
            "Work refused by a resource bound, by limit",
            limits_hit.clone(),
        );
        Metrics {
            registry,
            connected,
            calls,
            latency,
            stages,
            handshake_failures,
            issued,
            enrolments_refused,
            limits_hit,
            verifier,
            tls_seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets the number of live tunnels.
    pub fn set_connected(&self, n: usize) {
        self.connected.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one agent call.
    pub fn call(&self, outcome: &str, took: Duration) {
        self.calls
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Records how long a routed call spent in `stage`.
    pub fn stage(&self, stage: &str, took: Duration) {
        self.stages
            .get_or_create(&labels(&[("stage", stage)]))
            .observe(took.as_secs_f64());
    }

    /// Counts an app-layer handshake failure.
    pub fn app_handshake_failure(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&labels(&[("layer", "app"), ("reason", reason)]))
            .inc();
    }

    /// Counts an issued SVID.
    pub fn issued(&self, kind: &str) {
        self.issued.get_or_create(&labels(&[("kind", kind)])).inc();
    }

    /// Counts a refused enrolment.
    pub fn enrolment_refused(&self, reason: &str) {
        self.enrolments_refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts work refused by the resource bound `limit`.
    pub fn limit_hit(&self, limit: &str) {
        self.limits_hit
            .get_or_create(&labels(&[("limit", limit)]))
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        // The verifier counts TLS-layer refusals itself; fold what is new
        // since the last scrape into the counter.
        {
            let mut seen = self.tls_seen.lock().unwrap_or_else(PoisonError::into_inner);
            for (reason, count) in self.verifier.refusals() {
                let before = seen.entry(reason.to_string()).or_insert(0);
                if count > *before {
                    self.handshake_failures
                        .get_or_create(&labels(&[("layer", "svid"), ("reason", reason)]))
                        .inc_by(count - *before);
                    *before = count;
                }
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What the QUIC listener did, counted: refused and late handshakes as
/// limits hit, refused app-layer handshakes by reason. TLS handshake
/// failures are the verifier's to count (by reason, at each scrape).
impl ListenerEvents for Metrics {
    fn record(&self, event: ListenerEvent) {
        match event {
            ListenerEvent::TooManyHandshakes => self.limit_hit("quic_handshakes"),
            ListenerEvent::HandshakeDeadline => self.limit_hit("handshake_deadline"),
            ListenerEvent::HandshakeFailed(reason) => self.app_handshake_failure(reason),
            ListenerEvent::TlsHandshakeFailed => {}
        }
    }
}
