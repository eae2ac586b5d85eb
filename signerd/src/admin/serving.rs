//! Where the admin API is served: its own gRPC server on the Unix socket, and beside the Notary
//! services on the mTLS port when admin client certificates are configured.

use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use super::login::LoginPins;
use super::policy::AdminPolicy;
use super::service::TokenAdminService;
use super::socket::SocketFile;
use super::{stack, AdminStack};
use crate::grpc::inflight::InFlight;
use crate::keys::KeyStore;

/// The admin API as configured: policy, login PINs, and the bound socket (if any).
#[derive(Debug)]
pub struct AdminServing {
    policy: AdminPolicy,
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
    /// The admin API with `policy` and `pins`, on `socket` when one is bound.
    pub fn new(
        policy: AdminPolicy,
        pins: LoginPins,
        socket: Option<(UnixListener, SocketFile)>,
    ) -> AdminServing {
        AdminServing {
            policy,
            pins,
            socket,
        }
    }

    fn stack(&self, keys: &KeyStore, in_flight: &InFlight) -> AdminStack {
        let service = TokenAdminService::new(keys.clone(), self.pins.clone(), in_flight.clone());
        stack(service, self.policy.clone())
    }

    /// The service for the mTLS port, when any admin client certificate is configured.
    pub fn tls_service(&self, keys: &KeyStore, in_flight: &InFlight) -> Option<AdminStack> {
        self.policy
            .has_admin_clients()
            .then(|| self.stack(keys, in_flight))
    }

    /// Starts serving on the socket (if bound); stop it with [`SocketServer::drain`].
    pub fn spawn_socket(
        self,
        keys: &KeyStore,
        in_flight: &InFlight,
        audit: crate::audit::wire::TrailLayer,
    ) -> Option<SocketServer> {
        let service = self.stack(keys, in_flight);
        let (listener, file) = self.socket?;
        tracing::info!(socket = %file.path().display(), policy = %self.policy.describe(), "admin API on the Unix socket");
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .layer(audit)
                .add_service(service)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
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
    /// Stops accepting connections; requests in flight are counted in the shared [`InFlight`]
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
