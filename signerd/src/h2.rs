//! The mTLS port's HTTP/2 connections, served by hyper directly: each call goes straight to the
//! gRPC service its path names (tonic's generated servers behind the edge), with the port's
//! call timeout, and the connection's peer ([`PeerInfo`](crate::edge::identity::PeerInfo))
//! attached once per call.
//!
//! tonic's `Server` did the same through an axum router, a boxed service stack per connection
//! (error recovery, the timeout, the connection information) and body adapters on the way in
//! and out. Side by side (pinned, ECDSA, 32 in flight, 10 interleaved pairs), the runtime
//! thread spends 0.7-3.6 µs less per request in 9 of them (README, "Serving HTTP/2 directly").
//! What is kept: HTTP/2 only, the same settings (windows, stream cap, keepalive pings, hyper's
//! own limits on resets and headers, [`crate::server::LOCAL_ERROR_RESETS`] among them), the
//! call timeout answered as tonic answered it (`CANCELLED`, "Timeout expired"), `UNIMPLEMENTED`
//! for a service this port does not serve, and the graceful shutdown (GOAWAY on every
//! connection, then wait for them to close). A client's own `grpc-timeout` is no longer read
//! here: gRPC clients keep their deadlines themselves and reset the stream at it, which ends
//! the call here as any client that goes away does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::Connected;
use tonic::Status;
use tower_service::Service;

use crate::config::Limits;
use crate::edge::limits::go_size_status;
use crate::tls::PeerStream;

/// A call, its body as tonic's servers (and the edge's layers) take it.
pub type Request = http::Request<Body>;
/// A call's answer, as tonic's servers make it.
pub type Response = http::Response<Body>;
type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// One service of [`Routes`]: a fresh clone of it answers each call.
trait Route: Send + Sync {
    fn answer(&self, request: Request) -> Answer;
}

/// A service made a [`Route`].
struct Routed<S>(S);

impl<S> Route for Routed<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn answer(&self, request: Request) -> Answer {
        let mut service = self.0.clone();
        Box::pin(async move {
            let answer = async {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            };
            match answer.await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    }
}

/// The gRPC services of a port, by name (`/notary.Signer/Sign` goes to `notary.Signer`).
#[derive(Default)]
pub struct Routes {
    services: Vec<(&'static str, Arc<dyn Route>)>,
}

impl Routes {
    /// No service yet: every call answers `UNIMPLEMENTED`.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serves `service` under its gRPC name.
    #[must_use]
    pub fn service<S>(mut self, service: S) -> Routes
    where
        S: Service<Request, Response = Response, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services.push((S::NAME, Arc::new(Routed(service))));
        self
    }

    /// The answer of the service `request`'s path names; `UNIMPLEMENTED` when none does.
    fn answer(&self, request: Request) -> Answer {
        let name = service_name(request.uri().path());
        match self.services.iter().find(|(n, _)| *n == name) {
            Some((_, route)) => route.answer(request),
            None => Box::pin(std::future::ready(
                Status::unimplemented("").into_http::<Body>(),
            )),
        }
    }
}

/// `answer`, or `CANCELLED` once `timeout` has passed (as tonic's server answered); tonic's
/// over-the-limit status said as Go says it ([`go_size_status`]).
async fn within(timeout: Duration, answer: Answer) -> Response {
    match tokio::time::timeout(timeout, answer).await {
        Ok(response) => go_size_status(response),
        Err(_) => Status::cancelled("Timeout expired").into_http(),
    }
}

/// The service part of a gRPC path: `notary.Signer` of `/notary.Signer/Sign`.
fn service_name(path: &str) -> &str {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').map_or(path, |(service, _)| service)
}

/// What every connection of a port is held to.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// How long a call may take before it is answered `CANCELLED`.
    pub request_timeout: Duration,
    /// Keepalive pings on a connection quiet this long (and the wait for their answer).
    pub ping: Duration,
}

impl Settings {
    /// The mTLS port's settings from `limits`: keepalive pings at a third of the idle timeout,
    /// so only a silent peer reaches that timeout.
    pub fn of(limits: &Limits) -> Settings {
        Settings {
            max_concurrent_streams: limits.max_concurrent_streams,
            request_timeout: limits.request_timeout,
            ping: limits.idle_timeout / 3,
        }
    }

    fn builder(&self) -> hyper::server::conn::http2::Builder<TokioExecutor> {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.max_concurrent_streams)
            .keep_alive_interval(Some(self.ping))
            .keep_alive_timeout(self.ping)
            // Fixed windows, not adaptive ones: adaptive windows send BDP pings on a busy
            // connection, CPU for nothing on loopback or a LAN, where notary-server runs.
            .adaptive_window(false)
            .max_local_error_reset_streams(crate::server::LOCAL_ERROR_RESETS)
            .initial_connection_window_size(crate::server::CONNECTION_WINDOW)
            .initial_stream_window_size(crate::server::STREAM_WINDOW);
        builder
    }
}

/// Serves `routes` on the connections `incoming` yields until it ends or `shutdown` resolves;
/// then sends GOAWAY on every connection and returns once all have closed (their calls
/// answered).
pub async fn serve<I>(
    incoming: I,
    routes: Routes,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) where
    I: Stream<Item = Result<PeerStream, std::io::Error>>,
{
    let routes = Arc::new(routes);
    let builder = settings.builder();
    let (signal, signalled) = tokio::sync::watch::channel(());
    let mut incoming = Box::pin(incoming);
    tokio::pin!(shutdown);
    loop {
        let io = tokio::select! {
            () = &mut shutdown => break,
            io = incoming.next() => match io {
                Some(Ok(io)) => io,
                // The acceptor logs its own failures; a failed handshake is no connection.
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let peer = io.connect_info();
        let routes = Arc::clone(&routes);
        let timeout = settings.request_timeout;
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(peer.clone());
            let call = within(timeout, routes.answer(request));
            async move { Ok::<_, Infallible>(call.await) }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let mut signalled = signalled.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = signalled.changed() => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // As tonic's server said it: a peer that broke the protocol or vanished mid-frame.
            if let Err(e) = ended {
                tracing::debug!(error = %e, "failed serving connection");
            }
        });
    }
    // No more connections; GOAWAY on those open, and wait until each has closed.
    drop(incoming);
    let _ = signal.send(());
    drop(signalled);
    signal.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};
    use tonic::Code;

    /// A service that answers OK at once, or never when `stuck`.
    #[derive(Clone)]
    struct Test {
        stuck: bool,
    }

    impl NamedService for Test {
        const NAME: &'static str = "test.Test";
    }

    impl Service<Request> for Test {
        type Response = Response;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request) -> Self::Future {
            let stuck = self.stuck;
            Box::pin(async move {
                if stuck {
                    std::future::pending::<()>().await;
                }
                let mut response = Status::ok("").into_http::<Body>();
                let path = request.uri().path().to_owned();
                response
                    .headers_mut()
                    .insert("x-path", path.parse().expect("a header value"));
                Ok(response)
            })
        }
    }

    fn call(path: &str) -> Request {
        http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("a request")
    }

    fn code(response: &Response) -> Code {
        Status::from_header_map(response.headers())
            .expect("a grpc-status")
            .code()
    }

    #[tokio::test]
    async fn a_call_goes_to_the_service_its_path_names_or_is_unimplemented() {
        let routes = Routes::new().service(Test { stuck: false });
        let second = Duration::from_secs(1);
        let answered = within(second, routes.answer(call("/test.Test/Anything"))).await;
        assert_eq!(code(&answered), Code::Ok);
        assert_eq!(answered.headers()["x-path"], "/test.Test/Anything");
        for path in ["/test.Other/Anything", "/test.Tes/Anything", "/"] {
            let refused = within(second, routes.answer(call(path))).await;
            assert_eq!(code(&refused), Code::Unimplemented, "{path}");
            assert_eq!(refused.headers()["content-type"], "application/grpc");
        }
    }

    #[tokio::test]
    async fn a_call_past_the_timeout_is_cancelled() {
        let routes = Routes::new().service(Test { stuck: true });
        let response = within(
            Duration::from_millis(20),
            routes.answer(call("/test.Test/Sign")),
        )
        .await;
        let status = Status::from_header_map(response.headers()).expect("a grpc-status");
        assert_eq!(status.code(), Code::Cancelled);
        assert_eq!(status.message(), "Timeout expired");
    }

    #[test]
    fn tonics_size_status_is_said_as_go_says_it() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let response = go_size_status(tonic.into_http::<Body>());
        let status = Status::from_header_map(response.headers()).expect("a grpc-status");
        assert_eq!(status.code(), Code::ResourceExhausted);
    }

    #[test]
    fn the_service_is_the_first_segment_of_the_path() {
        assert_eq!(service_name("/notary.Signer/Sign"), "notary.Signer");
        assert_eq!(
            service_name("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health"
        );
        assert_eq!(service_name("/notary.Signer"), "notary.Signer");
        assert_eq!(service_name("/"), "");
        assert_eq!(service_name(""), "");
    }
}
