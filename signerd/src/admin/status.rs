//! The admin `Status` RPC: the running daemon in one answer, for `signerd status`. Each token
//! question is bounded in time, so a token that hangs makes the answer say so instead of
//! making it wait.

use std::sync::Arc;
use std::time::Duration;

use signerd_proto::admin as pb;

use crate::audit::AuditSink;
use crate::edge::inflight::InFlight;
use crate::edge::Edge;
use crate::keys::KeyStore;
use crate::metrics::Metrics;

/// Longest one token question of a status report may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(2);

/// What a status report reads besides the token: the audit sink, the process facts, the calls
/// in flight.
#[derive(Clone)]
pub struct StatusSources {
    sink: Arc<dyn AuditSink>,
    metrics: Metrics,
    in_flight: InFlight,
}

impl std::fmt::Debug for StatusSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSources").finish_non_exhaustive()
    }
}

impl StatusSources {
    /// What the edge knows: its audit sink, metrics and calls in flight.
    pub fn of(edge: &Edge) -> StatusSources {
        StatusSources {
            sink: edge.sink(),
            metrics: edge.metrics().clone(),
            in_flight: edge.in_flight().clone(),
        }
    }
}

impl Default for StatusSources {
    /// Sources of a service without an edge (unit tests): the log sink, fresh metrics.
    fn default() -> StatusSources {
        StatusSources {
            sink: Arc::new(crate::edge::audit::LogSink),
            metrics: Metrics::default(),
            in_flight: InFlight::default(),
        }
    }
}

/// Runs `question` on a token worker, giving up after [`TOKEN_TIMEOUT`].
async fn ask<T: Send + 'static>(
    keys: &KeyStore,
    question: impl FnOnce(&signerd_token::Token) -> Result<T, signerd_token::TokenError>
        + Send
        + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(TOKEN_TIMEOUT, keys.blocking(question)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the token did not answer within {TOKEN_TIMEOUT:?}")),
    }
}

/// The status report.
pub async fn report(keys: &KeyStore, sources: &StatusSources) -> pb::StatusResponse {
    let process = sources.metrics.process();
    let audit_error = sources.sink.health().err();
    let stats = keys.stats();
    // A live probe, as health answers: the counters say what the token layer last saw.
    let probe = ask(keys, |t| t.probe()).await;
    let count = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let mut token = pb::TokenStatus {
        up: probe.is_ok(),
        error: probe.err().unwrap_or_default(),
        generation: stats.token.generation,
        reconnects: stats.token.reconnects,
        relogins: stats.token.relogins,
        reinitializations: stats.token.reinitializations,
        sessions_open: count(stats.token.sessions_open),
        sessions_busy: count(stats.token.sessions_busy),
        ..pb::TokenStatus::default()
    };
    if token.up {
        match ask(keys, |t| t.description()).await {
            Ok(d) => {
                token.info = Some(pb::TokenInfo {
                    label: d.label,
                    manufacturer: d.manufacturer,
                    model: d.model,
                    serial: d.serial,
                    slot: d.slot,
                });
            }
            Err(e) => token.error = e,
        }
        match ask(keys, |t| t.list_keys()).await {
            Ok(list) => token.key_count = u32::try_from(list.len()).unwrap_or(u32::MAX),
            Err(e) => token.error = e,
        }
    }
    let serving = token.up && audit_error.is_none();
    pb::StatusResponse {
        version: crate::metrics::VERSION.to_owned(),
        git_commit: crate::metrics::GIT_COMMIT.unwrap_or_default().to_owned(),
        uptime_secs: process.started.elapsed().as_secs(),
        serving,
        token: Some(token),
        workers: Some(pb::WorkerStatus {
            workers: count(stats.workers),
            queue_depth: count(stats.queue_depth),
            queue_capacity: count(stats.queue_capacity),
        }),
        audit: Some(pb::AuditStatus {
            path: process
                .audit_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            writable: audit_error.is_none(),
            error: audit_error.unwrap_or_default(),
        }),
        requests_in_flight: sources.in_flight.count() as u64,
    }
}
