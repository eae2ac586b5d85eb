//! The gRPC server: mutual TLS, the Notary signer services and health, the admin API (on its
//! Unix socket, and on the mTLS port for admin client certificates), graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use signerd_proto::health::health_server::HealthServer;
use signerd_proto::notary::key_management_server::KeyManagementServer;
use signerd_proto::notary::signer_server::SignerServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::admin::serving::AdminServing;
use crate::grpc::health::TokenHealth;
use crate::grpc::inflight::InFlight;
use crate::grpc::notary::NotarySigner;
use crate::keys::KeyStore;
use crate::tls::TlsMaterial;

/// Binds `listen` (so "address in use" is reported before anything else starts).
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(listen).await.map_err(|e| {
        format!(
            "cannot listen on {listen}: {e}; pick another address with --listen or server.listen"
        )
    })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: &TlsMaterial,
    keys: KeyStore,
    admin: Option<AdminServing>,
    audit: Option<Arc<dyn crate::audit::AuditSink>>,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let trail = crate::audit::wire::TrailLayer::new(audit.clone());
    let in_flight = InFlight::default();
    let signer = NotarySigner::new(keys.clone(), in_flight.clone());
    let admin_on_tls = admin
        .as_ref()
        .and_then(|a| a.tls_service(&keys, &in_flight));
    let mut admin_socket = admin.and_then(|a| a.spawn_socket(&keys, &in_flight, trail.clone()));
    let router = Server::builder()
        .layer(trail)
        .tls_config(tls.server_config())
        .map_err(|e| format!("TLS configuration refused: {e}"))?
        .add_service(KeyManagementServer::new(signer.clone()))
        .add_service(SignerServer::new(signer))
        .add_service(HealthServer::new(TokenHealth::new(keys).with_audit(audit)))
        .add_optional_service(admin_on_tls);

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener);
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = drain_rx.await;
    }));

    tokio::select! {
        result = &mut server => {
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("gRPC server failed: {e}")),
                Err(e) => Err(format!("gRPC server task failed: {e}")),
            };
        }
        () = shutdown => {}
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        in_flight = in_flight.count(),
        "shutting down: no new connections; draining in-flight requests"
    );
    // Stop accepting and send GOAWAY; then wait for the key operations in flight, not for
    // idle connections (notary-server keeps one open for as long as it runs).
    let _ = drain_tx.send(());
    if let Some(socket) = admin_socket.as_mut() {
        socket.stop_accepting();
    }
    let drained = tokio::time::timeout(grace, async {
        tokio::select! {
            // Every connection closed: nothing left at all.
            _ = &mut server => {}
            // No operation for a settle period: a request still on its way from the socket to
            // its handler is counted by then, and responses already made get flushed.
            () = quiet(&in_flight) => {}
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            in_flight = in_flight.count(),
            "grace period over; closing with requests still in flight"
        ),
    }
    server.abort();
    drop(admin_socket);
    Ok(())
}

/// How long no key operation must be in flight before the drain counts as done.
const SETTLE: Duration = Duration::from_millis(300);

/// Resolves once no operation has been in flight for [`SETTLE`].
async fn quiet(in_flight: &InFlight) {
    loop {
        in_flight.idle().await;
        tokio::time::sleep(SETTLE).await;
        if in_flight.count() == 0 {
            return;
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    // SIGHUP's default action ends the process, and `systemctl reload` (ExecReload in
    // config/signerd.service) sends it: it must never stop the signer.
    if let Ok(mut hangup) = signal(SignalKind::hangup()) {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP received: reloading is not implemented yet; restart signerd to load new TLS files"
                );
            }
        });
    }
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop signerd with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Closes the token's sessions and finalizes the module once no request holds the token.
pub fn close_token(keys: KeyStore) {
    let token = Arc::clone(keys.token());
    drop(keys);
    match Arc::try_unwrap(token) {
        Ok(token) => {
            token.close();
            tracing::info!("token sessions closed; module finalized");
        }
        Err(_) => tracing::warn!(
            "token still in use by an unfinished request; leaving it to process exit"
        ),
    }
}
