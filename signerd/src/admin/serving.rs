//! Where the admin API is served: its own gRPC server on the Unix socket, and beside the Notary
//! services on the mTLS port when a rule names client certificates for the admin port.

use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;

use signerd_proto::admin::token_admin_server::TokenAdminServer;

use super::connection::{self, ConnectionLayer, Sweeper};
use super::login::LoginPins;
use super::service::TokenAdminService;
use super::socket::SocketFile;
use crate::audit::Port;
use crate::config::Limits;
use crate::edge::limits::GoSizeStatusLayer;
use crate::edge::{Edge, Edged};
use crate::keys::KeyStore;

/// The admin service behind the edge, ready for `add_service`.
pub type AdminStack = Edged<TokenAdminServer<TokenAdminService>>;

/// The admin API as configured: login PINs, and the bound socket (if any).
#[derive(Debug)]
pub struct AdminServing {
    pins: LoginPins,
    socket: Option<(UnixListener, SocketFile)>,
}

/// The admin server running on the socket; dropping it stops it and removes the socket file.
#[derive(Debug)]
pub struct SocketServer {
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    drain: Option<tokio::sync::oneshot::Sender<()>>,
    _file: SocketFile,
}

impl AdminServing {
    /// The admin API checking logins against `pins`, on `socket` when one is bound.
    pub fn new(pins: LoginPins, socket: Option<(UnixListener, SocketFile)>) -> AdminServing {
        AdminServing { pins, socket }
    }

    /// The admin service, its messages held to the admin port's own limit (it takes imported
    /// keys, certificates and data the shim signs, unlike the Notary port).
    fn stack(&self, keys: &KeyStore, edge: &Edge, limits: &Limits) -> AdminStack {
        let service = TokenAdminService::new(keys.clone(), self.pins.clone())
            .with_status(super::status::StatusSources::of(edge));
        edge.wrap(
            Port::Admin,
            TokenAdminServer::new(service)
                .max_decoding_message_size(limits.admin_max_message_bytes),
        )
    }

    /// The service for the mTLS port, when a rule (or `admin.admin_clients`) names client
    /// certificates for the admin port at startup.
    pub fn tls_service(&self, keys: &KeyStore, edge: &Edge, limits: &Limits) -> Option<AdminStack> {
        edge.policy()
            .current()
            .admin_on_tls()
            .then(|| self.stack(keys, edge, limits))
    }

    /// Starts serving on the socket (if bound), with the same stream cap, call timeout and
    /// size answer as the mTLS port; stop it with [`SocketServer::stop_accepting`]. Each
    /// connection is tracked: the session key pairs made on it go when it closes.
    pub fn spawn_socket(
        self,
        keys: &KeyStore,
        edge: &Edge,
        limits: &Limits,
    ) -> Option<SocketServer> {
        let service = self.stack(keys, edge, limits);
        let (listener, file) = self.socket?;
        tracing::info!(socket = %file.path().display(), policy = %edge.policy().current().describe(), "admin API on the Unix socket");
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let sweeper = Sweeper::spawn(keys);
        let task = tokio::spawn(
            Server::builder()
                .max_concurrent_streams(limits.max_concurrent_streams)
                .http2_max_local_error_reset_streams(Some(crate::server::LOCAL_ERROR_RESETS))
                .timeout(limits.request_timeout)
                .layer(GoSizeStatusLayer)
                .layer(ConnectionLayer)
                .add_service(service)
                .serve_with_incoming_shutdown(connection::accept(listener, sweeper), async {
                    let _ = drained.await;
                }),
        );
        Some(SocketServer {
            task,
            drain: Some(drain),
            _file: file,
        })
    }
}

impl SocketServer {
    /// Stops accepting connections; requests in flight are counted in the edge's [`crate::edge::inflight::InFlight`]
    /// and finish while the caller waits for it.
    pub fn stop_accepting(&mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
