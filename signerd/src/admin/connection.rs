//! Admin socket connections as the owners of session key pairs.
//!
//! A PKCS#11 client's session key pair (`CKA_TOKEN` false) must go when the client goes, also
//! when it is killed and never says goodbye. The shim keeps one connection to signerd for the
//! life of the process, so the connection is the owner: each accepted socket connection is
//! wrapped in a [`TrackedStream`], whose drop (hyper drops it when the connection ends, however
//! it ends) destroys the session keys made on it. [`ConnectionLayer`] hands every request the
//! [`AdminConnection`] it came on, beside the peer credentials the identity layer reads, so the
//! service knows whose keys a request may make and use.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use signerd_token::gc::SessionOwner;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;
use tower_layer::Layer;
use tower_service::Service;

use crate::edge::identity::LocalPeer;
use crate::keys::KeyStore;

/// Connection numbers, unique within this process.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// One admin socket connection: the owner of the session key pairs made on it.
#[derive(Debug)]
pub struct AdminConnection {
    owner: SessionOwner,
    /// Set before a session key pair is made: only then is there anything to destroy.
    made_session_keys: AtomicBool,
    closed: AtomicBool,
}

impl AdminConnection {
    fn new() -> AdminConnection {
        AdminConnection {
            owner: SessionOwner::of_this_process(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed)),
            made_session_keys: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// The owner of the session keys made on this connection.
    pub fn owner(&self) -> &SessionOwner {
        &self.owner
    }

    /// Notes that a session key pair is being made, so that closing destroys it.
    pub fn making_session_keys(&self) {
        self.made_session_keys.store(true, Ordering::SeqCst);
    }

    /// Whether the connection has closed (a session key pair made now must go at once).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Destroys the session keys of connections that closed, on a task of its own.
#[derive(Clone, Debug)]
pub struct Sweeper {
    closed: mpsc::UnboundedSender<SessionOwner>,
}

impl Sweeper {
    /// Starts the task that destroys closed connections' session keys in `keys`' token.
    pub fn spawn(keys: &KeyStore) -> Sweeper {
        let (closed, mut owners) = mpsc::unbounded_channel::<SessionOwner>();
        let keys = keys.clone();
        tokio::spawn(async move {
            while let Some(owner) = owners.recv().await {
                let what = owner.label_prefix();
                match keys.blocking(move |t| t.destroy_session_keys(&owner)).await {
                    Ok(n) => {
                        tracing::debug!(owner = %what, objects = n, "session key pairs destroyed with their connection")
                    }
                    Err(e) => {
                        tracing::warn!(owner = %what, error = %e, "could not destroy the session key pairs of a closed admin connection; signerd's next start removes them")
                    }
                }
            }
        });
        Sweeper { closed }
    }

    /// Destroys `owner`'s session keys soon.
    pub fn sweep(&self, owner: &SessionOwner) {
        // The task ends only with the runtime; then the next start collects them.
        let _ = self.closed.send(owner.clone());
    }
}

/// What tonic attaches to every request of a tracked connection.
#[derive(Clone, Debug)]
pub struct TrackedInfo {
    peer: LocalPeer,
    connection: Arc<AdminConnection>,
}

/// An accepted admin socket connection that destroys its session keys when it ends.
#[derive(Debug)]
pub struct TrackedStream {
    io: UnixStream,
    connection: Arc<AdminConnection>,
    sweeper: Sweeper,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        self.connection.closed.store(true, Ordering::SeqCst);
        if self.connection.made_session_keys.load(Ordering::SeqCst) {
            self.sweeper.sweep(&self.connection.owner);
        }
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TrackedInfo;

    /// Called once per connection, when tonic starts serving it: the peer is read here, not
    /// per request.
    fn connect_info(&self) -> TrackedInfo {
        TrackedInfo {
            peer: LocalPeer::of(&self.io.connect_info()),
            connection: Arc::clone(&self.connection),
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connections `listener` accepts, each tracked.
pub fn accept(
    listener: UnixListener,
    sweeper: Sweeper,
) -> impl Stream<Item = io::Result<TrackedStream>> {
    tokio_stream::wrappers::UnixListenerStream::new(listener).map(move |accepted| {
        accepted.map(|io| TrackedStream {
            io,
            connection: Arc::new(AdminConnection::new()),
            sweeper: sweeper.clone(),
        })
    })
}

/// Puts a tracked connection's peer (for the identity layer, read once per connection) and its
/// [`AdminConnection`] (for the service) into each request's extensions.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionLayer;

impl<S> Layer<S> for ConnectionLayer {
    type Service = WithConnection<S>;

    fn layer(&self, inner: S) -> WithConnection<S> {
        WithConnection { inner }
    }
}

/// The service [`ConnectionLayer`] makes.
#[derive(Clone, Debug)]
pub struct WithConnection<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for WithConnection<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(info) = request.extensions_mut().remove::<TrackedInfo>() {
            request.extensions_mut().insert(info.peer);
            request.extensions_mut().insert(info.connection);
        }
        self.inner.call(request)
    }
}
