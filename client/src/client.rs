//! The client: one cached channel, calls with a deadline and the retry policy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::endpoint::{Endpoint, SocketPeer, UntrustedServer};
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::rpc::Call;

/// How a [`Client`] connects, waits and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest one call may take, retries and pauses included.
    pub deadline: Duration,
    /// Which failures are tried again.
    pub retry: RetryPolicy,
    /// Who must serve a Unix socket endpoint.
    pub socket_peer: SocketPeer,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            connect_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            socket_peer: SocketPeer::Any,
        }
    }
}

/// A client of signerd's admin API. Clones share one connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    options: Options,
    /// Made on first use and dropped after a connection failure, so the next call dials
    /// afresh (signerd may have restarted on a new socket).
    channel: Mutex<Option<Channel>>,
}

impl Client {
    /// A client of signerd at `endpoint` (a relative socket path is taken from the current
    /// directory now). Nothing connects until the first call or [`Client::connect`].
    pub fn new(endpoint: Endpoint, options: Options) -> Client {
        Client {
            inner: Arc::new(Inner {
                endpoint: endpoint.absolute(),
                options,
                channel: Mutex::new(None),
            }),
        }
    }

    /// Where signerd is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Where signerd is, for messages.
    pub fn describe(&self) -> String {
        self.inner.endpoint.describe()
    }

    /// Connects now, once, so a caller can report an unreachable signerd before it starts
    /// work; calls connect by themselves otherwise.
    pub async fn connect(&self) -> Result<(), Error> {
        let options = self.inner.options;
        let connecting = self
            .inner
            .endpoint
            .connect(options.connect_timeout, options.socket_peer);
        let connected = tokio::time::timeout(options.deadline, connecting)
            .await
            .map_err(|_| self.timed_out())??
            .map_err(|e| self.not_reached(Box::new(e)))?;
        *self.lock_channel() = Some(connected);
        Ok(())
    }

    /// Sends `request` to its RPC and waits for the answer, trying again as the retry policy
    /// allows until the deadline.
    pub async fn call<C: Call>(&self, request: C) -> Result<C::Response, Error> {
        let options = self.inner.options;
        let deadline = Instant::now() + options.deadline;
        let mut attempt = 0;
        loop {
            let failure = match tokio::time::timeout_at(deadline, self.once(request.clone())).await
            {
                Err(_) => self.timed_out(),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(failure)) => failure,
            };
            if failure.is_connection_failure() {
                self.reset();
            }
            match options.retry.pause(C::RPC, attempt, &failure) {
                Some(pause) if Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                _ => return Err(failure),
            }
        }
    }

    /// One attempt.
    async fn once<C: Call>(&self, request: C) -> Result<C::Response, Error> {
        let mut grpc = tonic::client::Grpc::new(self.channel()?);
        grpc.ready()
            .await
            .map_err(|e| self.not_reached(Box::new(e)))?;
        let codec = tonic_prost::ProstCodec::<C, C::Response>::default();
        grpc.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(C::RPC.path()),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| Error::from_status(C::RPC, self.describe(), status))
    }

    /// The current channel, made if there is none. Must run inside the runtime that will
    /// drive it (tonic spawns the connection's worker there).
    fn channel(&self) -> Result<Channel, Error> {
        let mut slot = self.lock_channel();
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let channel = self.inner.endpoint.lazy_channel(
            self.inner.options.connect_timeout,
            self.inner.options.socket_peer,
        )?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Forgets the channel so the next call connects afresh.
    fn reset(&self) {
        *self.lock_channel() = None;
    }

    fn lock_channel(&self) -> std::sync::MutexGuard<'_, Option<Channel>> {
        // The slot holds no invariant a panic could break: a poisoned one is used as is.
        self.inner
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request never left: a setup error when the socket's server is not trusted (trying
    /// again would not help), else [`Error::NotReached`].
    fn not_reached(&self, source: Box<dyn std::error::Error + Send + Sync + 'static>) -> Error {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = cause {
            if let Some(untrusted) = e.downcast_ref::<UntrustedServer>() {
                return Error::Setup(crate::error::SetupError::Untrusted(untrusted.to_string()));
            }
            cause = e.source();
        }
        Error::NotReached {
            target: self.describe(),
            source,
        }
    }

    fn timed_out(&self) -> Error {
        Error::TimedOut {
            target: self.describe(),
            after: self.inner.options.deadline,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}
