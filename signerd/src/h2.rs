//! The mTLS port's HTTP/2 connections, served by hyper directly: each call goes straight to the
//! gRPC service its path names (tonic's generated servers behind the edge), with the port's
//! call timeout, and the connection's peer ([`PeerInfo`](crate::edge::identity::PeerInfo))
//! attached once per call. A connection's streams run inside the connection's own task
//! ([`Streams`]), not each as a task of its own.
//!
//! tonic's `Server` did the same through an axum router, a boxed service stack per connection
//! (error recovery, the timeout, the connection information) and body adapters on the way in
//! and out. Side by side (pinned, ECDSA, 32 in flight, 10 interleaved pairs), the runtime
//! thread spends 0.7-3.6 µs less per request in 9 of them (docs/performance.md, "Serving
//! HTTP/2 directly").
//! What is kept: HTTP/2 only, the same settings (windows, stream cap, keepalive pings, hyper's
//! own limits on resets and headers, [`crate::server::LOCAL_ERROR_RESETS`] among them), the
//! call timeout answered as tonic answered it (`CANCELLED`, "Timeout expired"), `UNIMPLEMENTED`
//! for a service this port does not serve, and the graceful shutdown (GOAWAY on every
//! connection, then wait for them to close). A client's own `grpc-timeout` is no longer read
//! here: gRPC clients keep their deadlines themselves and reset the stream at it, which ends
//! the call here as any client that goes away does.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
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

    fn builder(&self, streams: Streams) -> hyper::server::conn::http2::Builder<Streams> {
        let mut builder = hyper::server::conn::http2::Builder::new(streams);
        builder
            .timer(TokioTimer::new())
            // gRPC answers carry no `Date` (Go's servers send none): no header to make and
            // encode per answer.
            .auto_date_header(false)
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

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor hyper hands a connection's streams to. On a runtime of one thread they are run
/// by the connection's own task (`Running`); on several, each is a task of its own.
///
/// With a task per stream, every answer takes two trips through the runtime's queue (the
/// stream's task woken by the token worker, then the connection's task woken by the stream to
/// write the answer). In the connection's task, a worker's reply wakes that task, which runs
/// the stream and writes its answer in the same turn. On one thread that is less work for the
/// same answers; on several, tasks of their own let the runtime's threads share a connection's
/// streams, which measured better there (docs/performance.md, "Streams in their connection's
/// task").
#[derive(Clone)]
pub struct Streams {
    /// The streams hyper started since the connection's task last took them; `None`: spawn
    /// each as a task of its own.
    new: Option<Arc<Mutex<Vec<Task>>>>,
}

impl Streams {
    /// In the connection's task when `in_task`, else each a task of its own.
    fn new(in_task: bool) -> Streams {
        Streams {
            new: in_task.then(Arc::default),
        }
    }
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        match &self.new {
            // Called only while the connection's task polls the connection or a stream, which
            // takes these before it returns: no wake-up needed.
            Some(new) => new
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Box::pin(stream)),
            None => drop(tokio::spawn(stream)),
        }
    }
}

/// A connection's streams, run by its task beside the connection itself.
struct Running {
    new: Streams,
    running: FuturesUnordered<Task>,
}

impl Running {
    fn new(new: Streams) -> Running {
        Running {
            new,
            running: FuturesUnordered::new(),
        }
    }

    /// Takes the streams hyper has started since the last call; whether there were any.
    fn take_new(&mut self) -> bool {
        let Some(new) = &self.new.new else {
            return false;
        };
        let mut new = new.lock().unwrap_or_else(PoisonError::into_inner);
        let any = !new.is_empty();
        for stream in new.drain(..) {
            // A stream that panics ends alone, as a task of its own would (hyper resets it).
            self.running
                .push(Box::pin(AssertUnwindSafe(stream).catch_unwind().map(
                    |ended| {
                        if ended.is_err() {
                            tracing::error!("a call panicked; its stream is reset");
                        }
                    },
                )));
        }
        any
    }

    /// Polls the running streams; whether any of them finished.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> bool {
        let mut finished = false;
        while let Poll::Ready(Some(())) = Pin::new(&mut self.running).poll_next(cx) {
            finished = true;
        }
        finished
    }

    /// Runs `connection` and its streams until the connection has ended and every stream with
    /// it; the connection's outcome. A stream that finishes may have queued its answer, so the
    /// connection is polled again to write it in the same turn.
    async fn drive<C: Future>(&mut self, mut connection: Pin<&mut C>) -> C::Output {
        let mut ended = None;
        std::future::poll_fn(|cx| loop {
            if ended.is_none() {
                if let Poll::Ready(outcome) = connection.as_mut().poll(cx) {
                    ended = Some(outcome);
                }
            }
            let started = self.take_new();
            let finished = self.poll_streams(cx);
            if self.running.is_empty() && !started {
                if let Some(outcome) = ended.take() {
                    return Poll::Ready(outcome);
                }
            }
            if !started && !finished {
                return Poll::Pending;
            }
        })
        .await
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
    let in_task = crate::scheduling::one_runtime_thread();
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
        let streams = Streams::new(in_task);
        let connection = settings
            .builder(streams.clone())
            .serve_connection(TokioIo::new(io), service);
        let mut signalled = signalled.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut streams = Running::new(streams);
            let ended = tokio::select! {
                ended = streams.drive(connection.as_mut()) => Some(ended),
                _ = signalled.changed() => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    streams.drive(connection.as_mut()).await
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

    #[tokio::test]
    async fn a_connection_runs_its_streams_and_ends_after_the_last() {
        use hyper::rt::Executor as _;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let streams = Streams::new(true);
        let finished = Arc::new(AtomicUsize::new(0));
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        // A connection that starts three streams and ends at once: one waits for its answer,
        // one panics, one finishes.
        let connection = {
            let (streams, finished) = (streams.clone(), Arc::clone(&finished));
            async move {
                let waiting = Arc::clone(&finished);
                streams.execute(async move {
                    answered.await.expect("an answer");
                    waiting.fetch_add(1, Ordering::SeqCst);
                });
                streams.execute(async { panic!("a call that panics") });
                let at_once = Arc::clone(&finished);
                streams.execute(async move {
                    at_once.fetch_add(1, Ordering::SeqCst);
                });
                "ended"
            }
        };
        tokio::pin!(connection);
        let mut running = Running::new(streams);
        let drive = running.drive(connection.as_mut());
        tokio::pin!(drive);
        let first = std::future::poll_fn(|cx| Poll::Ready(drive.as_mut().poll(cx))).await;
        assert!(
            first.is_pending(),
            "the connection ended before its streams"
        );
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the stream that panicked ended alone"
        );
        answer.send(()).expect("the stream waits");
        assert_eq!(drive.await, "ended");
        assert_eq!(finished.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_several_threads_each_stream_is_a_task_of_its_own() {
        use hyper::rt::Executor as _;

        let streams = Streams::new(false);
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let (ran, run) = tokio::sync::oneshot::channel::<()>();
        let connection = {
            let streams = streams.clone();
            async move {
                streams.execute(async move {
                    answered.await.expect("an answer");
                    ran.send(()).expect("the test waits");
                });
                "ended"
            }
        };
        tokio::pin!(connection);
        let mut running = Running::new(streams);
        // The connection's task does not wait for a stream that is a task of its own.
        assert_eq!(running.drive(connection.as_mut()).await, "ended");
        assert!(running.running.is_empty());
        answer.send(()).expect("the stream waits");
        run.await.expect("the stream ran on its own");
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
