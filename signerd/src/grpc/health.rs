//! `grpc.health.v1.Health`: SERVING only while the token answers a live probe (not a cached
//! flag) and the audit sink can take records, for the names notary-server asks about and for
//! the whole server (`""`).

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

/// How long a probe may take before the answer is NOT_SERVING.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

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

#[tonic::async_trait]
impl Health for TokenHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if !SERVICES.contains(&service.as_str()) {
            return Err(Status::not_found(format!(
                "unknown service {service:?}; ask for one of {SERVICES:?}"
            )));
        }
        if let Err(reason) = self.audit.health() {
            tracing::warn!(service, %reason, "health: NOT_SERVING: the audit trail cannot be written; key operations are refused");
            return Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::NotServing as i32,
            }));
        }
        let status = match tokio::time::timeout(PROBE_TIMEOUT, self.keys.probe()).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(e)) => {
                tracing::warn!(service, error = %e, "health: token probe failed");
                ServingStatus::NotServing
            }
            Err(_) => {
                tracing::warn!(
                    service,
                    "health: token probe timed out after {PROBE_TIMEOUT:?}"
                );
                ServingStatus::NotServing
            }
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>,
    >;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("Watch is not supported; poll Check"))
    }
}
