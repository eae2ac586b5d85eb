//! The gRPC server: mutual TLS, the Notary signer services and health, the admin API (on its
//! Unix socket, and on the mTLS port for admin client certificates), all behind the one edge
//! ([`crate::edge`]); the policy reloaded on SIGHUP; graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use signerd_proto::health::health_server::HealthServer;
use signerd_proto::notary::key_management_server::KeyManagementServer;
use signerd_proto::notary::signer_server::SignerServer;
use tokio::net::TcpListener;

use crate::admin::serving::AdminServing;
use crate::audit::Port;
use crate::config::Limits;
use crate::edge::inflight::InFlight;
use crate::edge::policy::{Policy, PolicyHandle};
use crate::edge::Edge;
use crate::grpc::health::TokenHealth;
use crate::grpc::notary::NotarySigner;
use crate::h2::{Routes, Settings};
use crate::keys::KeyStore;
use crate::scheduling::Scheduling;
use crate::tls::{ConnectionCap, ConnectionLimits, PeerStream, TlsMaterial};

/// Reads the policy again (config file and environment), for SIGHUP; `Err` lists what is wrong
/// with the new file, and the policy in force stays.
pub type PolicyReload = Box<dyn Fn() -> Result<Policy, Vec<String>> + Send + Sync>;

/// Swaps in the policy `reload` reads on every SIGHUP, until the task is dropped. Connections
/// and calls in flight are untouched: a call keeps the policy it started under.
pub fn spawn_policy_reload(
    policy: PolicyHandle,
    reload: PolicyReload,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP; restart signerd to change its policy");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match reload() {
                Ok(new) => {
                    let summary = new.describe();
                    policy.replace(new);
                    tracing::info!(policy = %summary, "SIGHUP: policy reloaded");
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::error!("SIGHUP: config error: {e}");
                    }
                    tracing::error!(
                        "SIGHUP: the new config is refused; the policy in force stays. Fix it (signerd check-config) and send SIGHUP again"
                    );
                }
            }
        }
    })
}

/// The async runtime: `threads` workers (default: one per CPU signerd may run on, so a signerd
/// pinned to one core runs one), and a small blocking pool. Token work runs on the token
/// workers, not here, so the pool only serves the rare blocking call (a file read); tokio's
/// default of 512 threads would only hide a mistake. Each worker follows `scheduling` when it
/// wakes (`SCHED_BATCH` while the active clients batch, [`crate::scheduling`]).
pub fn runtime(
    threads: Option<usize>,
    scheduling: &Scheduling,
) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = threads.unwrap_or_else(available_cpus);
    let scheduling = scheduling.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("signerd-rt")
        // How many tasks a worker runs before it polls the I/O driver (tokio's default: 61).
        // Under a flood of queued calls on one connection, a worker would otherwise run 61 of
        // them before it reads the next call of a quieter connection, and the quiet client
        // waits behind the flood. 8 keeps new connections' calls in sight (signerd on one
        // core, a client beside 10,000 streams kept 48-56 % of its rate instead of 34-35 %)
        // and costs nothing measurable at 1 or 32 calls in flight (`scripts/bench.sh`).
        .event_interval(EVENT_INTERVAL)
        .on_thread_unpark(move || scheduling.follow())
        .enable_all()
        .build()
}

/// Tasks a runtime worker runs between two polls of the I/O driver (see [`runtime`]).
pub const EVENT_INTERVAL: u32 = 8;

/// Threads of the runtime's blocking pool.
pub const MAX_BLOCKING_THREADS: usize = 4;

/// The CPUs this process may run on (its affinity mask and cgroup quota, as the standard
/// library reads them).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// HTTP/2 flow-control windows. notary-server keeps ONE connection open and sends every call
/// on it, so the connection window is what many streams share: 4 MiB lets a full-size
/// message (4 MiB) or dozens of calls be in flight without a WINDOW_UPDATE round trip. Fixed,
/// not adaptive: adaptive windows send BDP pings on a busy connection, CPU for nothing on
/// loopback or a LAN, where notary-server runs.
pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// The per-stream window: a 1 MiB message flows without a round trip.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// Streams a connection may make signerd reset for its errors (malformed headers, a frame
/// against the protocol, a stream over the cap) before signerd ends the connection (GOAWAY,
/// ENHANCE_YOUR_CALM): hyper's own default (RUSTSEC-2024-0003), which tonic's server builder
/// turns off when left unset. A well-behaved client (notary-server) never causes one.
pub const LOCAL_ERROR_RESETS: usize = 1024;

/// Binds `listen` (so "address in use" is reported before anything else starts).
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(listen).await.map_err(|e| {
        format!(
            "cannot listen on {listen}: {e}; pick another address with --listen or server.listen"
        )
    })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for up to `grace`;
/// every client held to `limits`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    tls: &TlsMaterial,
    keys: KeyStore,
    admin: Option<AdminServing>,
    edge: Edge,
    limits: Limits,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let in_flight = edge.in_flight().clone();
    tracing::info!(
        runtime_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        cpus = available_cpus(),
        "async runtime ready"
    );
    let signer = NotarySigner::new(keys.clone());
    let admin_on_tls = admin
        .as_ref()
        .and_then(|a| a.tls_service(&keys, &edge, &limits));
    let mut admin_socket = admin.and_then(|a| a.spawn_socket(&keys, &edge, &limits));
    let max = limits.max_message_bytes;
    // Signer first: the routes are tried in order, and Sign is the call that comes most.
    let mut routes = Routes::new()
        .service(edge.wrap(
            Port::Notary,
            SignerServer::new(signer.clone()).max_decoding_message_size(max),
        ))
        .service(edge.wrap(
            Port::Notary,
            KeyManagementServer::new(signer).max_decoding_message_size(max),
        ))
        .service(edge.wrap(
            Port::Notary,
            HealthServer::new(TokenHealth::new(keys, edge.sink())).max_decoding_message_size(max),
        ));
    if let Some(admin) = admin_on_tls {
        routes = routes.service(admin);
    }

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let (_acceptor, incoming) = accept(listener, tls, &limits, edge.scheduling());
    let mut server = tokio::spawn(crate::h2::serve(
        incoming,
        routes,
        Settings::of(&limits),
        async {
            let _ = drain_rx.await;
        },
    ));

    tokio::select! {
        result = &mut server => {
            return match result {
                Ok(()) => Ok(()),
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

/// The connections `listener` accepts, handshaken under `tls` and held to `limits`, as a stream
/// for [`crate::h2::serve`]; the acceptor stops when the guard is dropped.
/// Their answers are written together while `scheduling` says the active clients batch
/// ([`crate::coalesce`]).
pub fn accept(
    listener: TcpListener,
    tls: &TlsMaterial,
    limits: &Limits,
    scheduling: Scheduling,
) -> (
    AbortOnDrop,
    tokio_stream::wrappers::ReceiverStream<Result<PeerStream, std::io::Error>>,
) {
    // Connections arrive handshaken, their client decoded once; the queue is short so a flood
    // of handshakes waits in the kernel's backlog, not in memory.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = AbortOnDrop(tokio::spawn(crate::tls::accept_loop(
        listener,
        tls.server_config(),
        ConnectionLimits {
            cap: ConnectionCap::new(limits.max_connections, limits.max_connections_per_peer),
            idle_timeout: limits.idle_timeout,
        },
        scheduling,
        tx,
    )));
    (acceptor, tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Aborts a background task when dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
