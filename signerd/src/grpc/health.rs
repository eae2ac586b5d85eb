//! `grpc.health.v1.Health`: SERVING only while the token is up and the audit sink can take
//! records, for the names notary-server asks about and for the whole server (`""`).
//!
//! "Up" is the token supervisor's state ([`KeyStore::serving`]): it probes the token several
//! times a second and takes it down the moment a request meets a token fault, so a check costs
//! no token call, never queues behind requests, and cannot hang on a hung HSM. `Watch` streams
//! the same state: the current status at once, then each change.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use signerd_proto::health::health_check_response::ServingStatus;
use signerd_proto::health::health_server::Health;
use signerd_proto::health::{HealthCheckRequest, HealthCheckResponse};
use tonic::{Request, Response, Status};

use crate::audit::AuditSink;
use crate::keys::KeyStore;

/// Service names answered. notary-server asks for the first two.
pub const SERVICES: &[&str] = &[
    "",
    "grpc.health.v1.Health.KeyManagement",
    "grpc.health.v1.Health.Signer",
    "proto.KeyManagement",
    "proto.Signer",
];

/// How often `Watch` looks at the audit sink (the token's state is pushed, not polled).
const AUDIT_POLL: Duration = Duration::from_secs(1);

/// Longest a `Check` waits for its live probe of a token the supervisor believes up. A hung
/// token is also caught by the supervisor's own prober (well under a second), which turns the
/// state down, so this bound only matters for a token that answers slowly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Health over the token probe and the audit sink.
#[derive(Clone)]
pub struct TokenHealth {
    keys: KeyStore,
    audit: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for TokenHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenHealth")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl TokenHealth {
    /// Health of the token behind `keys` and of the `audit` sink (key operations fail closed
    /// while it cannot take records, so health says so too).
    pub fn new(keys: KeyStore, audit: Arc<dyn AuditSink>) -> TokenHealth {
        TokenHealth { keys, audit }
    }
}

impl TokenHealth {
    /// The status now, for `Watch`: logged only when it changes (by the caller).
    fn quiet_status(&self, up: bool) -> ServingStatus {
        if self.audit.health().is_ok() && up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }

    /// The status now: the audit sink's state and the supervisor's.
    fn status(&self, service: &str, up: bool) -> ServingStatus {
        if let Err(reason) = self.audit.health() {
            tracing::warn!(service, %reason, "health: NOT_SERVING: the audit trail cannot be written; key operations are refused");
            return ServingStatus::NotServing;
        }
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

fn known(service: &str) -> Result<(), Status> {
    if SERVICES.contains(&service) {
        Ok(())
    } else {
        Err(Status::not_found(format!(
            "unknown service {service:?}; ask for one of {SERVICES:?}"
        )))
    }
}

#[tonic::async_trait]
impl Health for TokenHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        known(&service)?;
        // Down: the supervisor knows, no token call. Up: a live probe on a token worker, so a
        // token that vanished since the supervisor's last look reads NOT_SERVING on this very
        // check (the probe's fault also turns the supervisor's state down). A probe stuck in a
        // hung token ends as soon as the supervisor's prober calls the token down (under a
        // second), not at the probe's own timeout.
        let mut serving = self.keys.serving();
        let up = *serving.borrow_and_update()
            && tokio::select! {
                probed = tokio::time::timeout(PROBE_TIMEOUT, self.keys.probe()) => {
                    matches!(probed, Ok(Ok(())))
                }
                _ = serving.wait_for(|up| !*up) => false,
            };
        Ok(Response::new(HealthCheckResponse {
            status: self.status(&service, up) as i32,
        }))
    }

    type WatchStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>,
    >;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        if known(&service).is_err() {
            // The protocol's answer for a name it does not serve: SERVICE_UNKNOWN, then wait.
            let unknown = HealthCheckResponse {
                status: ServingStatus::ServiceUnknown as i32,
            };
            let stream = tokio_stream::StreamExt::chain(
                tokio_stream::once(Ok::<_, Status>(unknown)),
                tokio_stream::pending(),
            );
            return Ok(Response::new(Box::pin(stream)));
        }
        let health = self.clone();
        let (send, receive) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut serving = health.keys.serving();
            let mut last = None;
            let mut audit = tokio::time::interval(AUDIT_POLL);
            loop {
                let up = *serving.borrow_and_update();
                let status = health.quiet_status(up);
                if last != Some(status) {
                    if last.is_some() {
                        tracing::info!(service, ?status, "health: status changed");
                    }
                    last = Some(status);
                    let item = HealthCheckResponse {
                        status: status as i32,
                    };
                    if send.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = serving.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = audit.tick() => {}
                    // The client went away.
                    _ = send.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receive),
        )))
    }
}
