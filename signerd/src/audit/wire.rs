//! [`TrailLayer`]: the smallest wiring of an [`AuditSink`] into both gRPC servers, from what
//! the HTTP request and response show (path, caller, gRPC status). A stand-in for the edge's
//! audit layer, which also knows the key facts (key ID, GUN, role, algorithm, content digest)
//! and replaces this when the two branches meet.
//!
//! Each key operation's record is awaited before the response leaves; a sink that reports a
//! fault refuses the call before it reaches the key store, and a record the sink cannot take
//! turns the answer into UNAVAILABLE (fail closed). A call whose client goes away is recorded
//! as cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use tower_layer::Layer;
use tower_service::Service;

use super::record::{AuditRecord, AuditSink, Outcome, Port};
use crate::admin::identity::Caller;

/// Records every key operation (not health checks) in `sink`.
#[derive(Clone, Default)]
pub struct TrailLayer {
    sink: Option<Arc<dyn AuditSink>>,
}

impl std::fmt::Debug for TrailLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailLayer")
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl TrailLayer {
    /// Records into `sink`; with `None` the layer passes every call through.
    pub fn new(sink: Option<Arc<dyn AuditSink>>) -> TrailLayer {
        TrailLayer { sink }
    }
}

impl<S> Layer<S> for TrailLayer {
    type Service = Trailed<S>;

    fn layer(&self, inner: S) -> Trailed<S> {
        Trailed {
            inner,
            sink: self.sink.clone(),
        }
    }
}

/// The service [`TrailLayer`] makes.
#[derive(Clone)]
pub struct Trailed<S> {
    inner: S,
    sink: Option<Arc<dyn AuditSink>>,
}

/// The port a gRPC path belongs to; `None` for what is not a key operation (health).
fn port_of(path: &str) -> Option<Port> {
    if path.starts_with("/proto.") {
        Some(Port::Notary)
    } else if path.starts_with("/grpc.") {
        None
    } else {
        Some(Port::Admin)
    }
}

/// The outcome a response shows: an error status travels in the headers of a trailers-only
/// response; a success carries none there.
fn outcome_of<B>(response: &http::Response<B>) -> (Outcome, Option<String>) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let code = header("grpc-status")
        .and_then(|c| c.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok);
    match code {
        tonic::Code::Ok => (Outcome::Ok, None),
        tonic::Code::PermissionDenied => (Outcome::Denied, header("grpc-message")),
        other => (
            Outcome::Failed(format!("{other:?}")),
            header("grpc-message"),
        ),
    }
}

/// Records the call as cancelled unless it was answered.
struct Unanswered {
    pending: Option<(Arc<dyn AuditSink>, AuditRecord, Instant)>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some((sink, mut record, started)) = self.pending.take() else {
            return;
        };
        record.outcome = Outcome::Cancelled;
        record.duration_us = started.elapsed().as_micros() as u64;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = sink.record(record).await {
                    tracing::error!(error = %e, "a cancelled call could not be recorded");
                }
            });
        }
    }
}

// === impl Trailed ===

impl<S, B> Service<http::Request<B>> for Trailed<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (Some(sink), Some(port)) = (self.sink.clone(), port_of(&path)) else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service answers this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let record = AuditRecord {
            time: SystemTime::now(),
            port,
            identity: Caller::of(request.extensions()).to_string(),
            method: path.rsplit('/').next().unwrap_or_default().to_owned(),
            key_id: None,
            gun: None,
            role: None,
            algorithm: None,
            content_sha256: None,
            outcome: Outcome::Ok,
            rule: None,
            duration_us: 0,
            error: None,
        };
        Box::pin(async move {
            let started = Instant::now();
            if let Err(reason) = sink.health() {
                return Ok(tonic::Status::unavailable(format!(
                    "{reason}; key operations are refused until the audit trail can be written"
                ))
                .into_http());
            }
            let mut unanswered = Unanswered {
                pending: Some((Arc::clone(&sink), record, started)),
            };
            let response = inner.call(request).await?;
            let Some((_, mut record, _)) = unanswered.pending.take() else {
                unreachable!("taken only here or on drop")
            };
            let (outcome, error) = outcome_of(&response);
            record.outcome = outcome;
            record.error = error;
            record.duration_us = started.elapsed().as_micros() as u64;
            match sink.record(record).await {
                Ok(()) => Ok(response),
                Err(e) => Ok(tonic::Status::unavailable(e.to_string()).into_http()),
            }
        })
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Trailed<S> {
    const NAME: &'static str = S::NAME;
}
