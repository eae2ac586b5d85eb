//! What signerd shows operators about itself: Prometheus metrics, built with
//! `prometheus-client` and served on their own HTTP listener ([`http`]).
//!
//! - Requests by port, method and gRPC code, and latency per method: counted by the edge's
//!   metrics layer ([`crate::edge::metrics`]) on both ports.
//! - The token (up, reconnects, re-logins, module re-initializations, sessions) and its
//!   workers (threads, queue): read from the key store at scrape time ([`store`]), so a scrape
//!   shows the state now and the request path pays nothing for it.
//! - Audit write latency: the time a call waits for its audit record to be written
//!   ([`TimedSink`]).
//! - Build info: version and, when the build knew it, the git commit.
//!
//! Label values come from fixed lists (method names of the protos, gRPC codes), never from
//! caller text, so a hostile client cannot grow the series without bound.

pub mod http;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tonic::Code;

use crate::edge::record::{AuditRecord, AuditSink, AuditUnavailable, Port};

/// signerd's version, as built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit signerd was built from, when the build was given one
/// (`SIGNERD_GIT_COMMIT=$(git rev-parse HEAD) cargo build`).
pub const GIT_COMMIT: Option<&str> = option_env!("SIGNERD_GIT_COMMIT");

/// Latency buckets, in seconds: from a SoftHSM signature (tens of µs, plus the edge) to a
/// network HSM's RSA key generation (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Audit write buckets, in seconds: a buffered write (µs) to an fsync on a busy disk.
const AUDIT_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    port: &'static str,
    method: &'static str,
    code: &'static str,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    port: &'static str,
    method: &'static str,
}

/// Labels of the build info.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// What the running process is, for `signerd status`.
#[derive(Clone, Debug)]
pub struct ProcessFacts {
    /// When serving started.
    pub started: Instant,
    /// The audit file, when one is configured (else records go to the operational log).
    pub audit_path: Option<PathBuf>,
}

impl Default for ProcessFacts {
    fn default() -> ProcessFacts {
        ProcessFacts {
            started: Instant::now(),
            audit_path: None,
        }
    }
}

/// signerd's metrics. Cheap to clone; every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    audit_write: Histogram,
    process: ProcessFacts,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Metrics of a process that shows no token numbers (unit tests, a bare edge).
    fn default() -> Metrics {
        Metrics::new(ProcessFacts::default(), None)
    }
}

impl Metrics {
    /// The registry with every metric signerd has; `store` adds the token's numbers, read at
    /// each scrape.
    pub fn new(process: ProcessFacts, store: Option<store::StoreCollector>) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "signerd_requests",
            "gRPC calls answered, by port (notary, admin), method and gRPC code",
            requests.clone(),
        );
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "signerd_request_duration_seconds",
            "Time from a call's arrival to its answer, by port and method",
            latency.clone(),
        );
        let audit_write = Histogram::new(AUDIT_BUCKETS);
        registry.register(
            "signerd_audit_write_duration_seconds",
            "Time a call waits for its audit record to be written (and synced, as audit.fsync says)",
            audit_write.clone(),
        );
        registry.register(
            "signerd_build",
            "signerd's version and the git commit it was built from",
            Info::new(BuildLabels {
                version: VERSION,
                commit: GIT_COMMIT.unwrap_or("unknown"),
            }),
        );
        if let Some(store) = store {
            registry.register_collector(Box::new(store));
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                audit_write,
                process,
            }),
        }
    }

    /// Counts one answered call and its latency. `method` must come from a fixed list
    /// ([`method_label`]).
    pub fn observe_call(&self, port: Port, method: &'static str, code: Code, took: Duration) {
        let port = port.as_str();
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                port,
                method,
                code: code_label(code),
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&MethodLabels { port, method })
            .observe(took.as_secs_f64());
    }

    /// Records how long an audit record took to be written.
    pub fn observe_audit_write(&self, took: Duration) {
        self.inner.audit_write.observe(took.as_secs_f64());
    }

    /// What the process is.
    pub fn process(&self) -> &ProcessFacts {
        &self.inner.process
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; a collector that fails leaves its part out.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry)
        {
            tracing::warn!(error = %e, "metrics: a collector could not be encoded");
        }
        text
    }
}

/// The `method` label of a call path: the method's name when it is one signerd serves, else
/// `other` (a caller cannot make up label values).
pub fn method_label(path: &str) -> &'static str {
    const METHODS: &[&str] = &[
        // proto.KeyManagement, proto.Signer
        "CreateKey",
        "DeleteKey",
        "GetKeyInfo",
        "Sign",
        // grpc.health.v1.Health
        "Check",
        "Watch",
        // signerd.admin.v1.TokenAdmin
        "ListTokens",
        "ListMechanisms",
        "Login",
        "FindObjects",
        "GenerateKeyPair",
        "StoreCertificate",
        "ImportPrivateKey",
        "DestroyObject",
        "Status",
    ];
    let name = path.rsplit('/').next().unwrap_or_default();
    METHODS
        .iter()
        .find(|m| **m == name)
        .copied()
        .unwrap_or("other")
}

/// The `code` label of a gRPC status code: the names Go's grpc-prometheus uses.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// An audit sink that times each record's write into the metrics.
pub struct TimedSink {
    inner: Arc<dyn AuditSink>,
    metrics: Metrics,
}

impl TimedSink {
    /// Times the records `inner` writes.
    pub fn new(inner: Arc<dyn AuditSink>, metrics: Metrics) -> TimedSink {
        TimedSink { inner, metrics }
    }
}

impl AuditSink for TimedSink {
    fn record(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<(), AuditUnavailable>> + Send + 'static>> {
        let started = Instant::now();
        let write = self.inner.record(record);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = write.await;
            if result.is_ok() {
                metrics.observe_audit_write(started.elapsed());
            }
            result
        })
    }

    fn health(&self) -> Result<(), String> {
        self.inner.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_port_method_and_code() {
        let metrics = Metrics::default();
        metrics.observe_call(Port::Notary, "Sign", Code::Ok, Duration::from_millis(2));
        metrics.observe_call(Port::Notary, "Sign", Code::Ok, Duration::from_millis(3));
        metrics.observe_call(
            Port::Admin,
            "Sign",
            Code::NotFound,
            Duration::from_millis(1),
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"signerd_requests_total{port="notary",method="Sign",code="OK"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"signerd_requests_total{port="admin",method="Sign",code="NotFound"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"signerd_request_duration_seconds_count{port="notary",method="Sign"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"signerd_build_info{version=""#), "{text}");
    }

    #[test]
    fn a_made_up_method_is_not_a_new_label() {
        assert_eq!(method_label("/proto.Signer/Sign"), "Sign");
        assert_eq!(method_label("/x.Y/DropTables"), "other");
        assert_eq!(method_label(""), "other");
    }
}
