//! The metrics listener: plain HTTP/1.1 with hyper, `GET /metrics` only (404 for any other
//! path, 405 for another method on it). It runs on its own port and its own tasks, with few
//! connections, each given a bounded time, so a stuck or greedy scraper never takes anything
//! from the gRPC side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Metrics;

/// Scrapers served at once; more are closed at once (Prometheus uses one).
pub const MAX_CONNECTIONS: usize = 8;

/// Longest one connection may stay open, requests included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds the metrics listener on `listen`.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(listen).await.map_err(|e| {
        format!("cannot listen for metrics on {listen}: {e}; pick another metrics.listen")
    })
}

/// Serves `metrics` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a similar pressure: back off instead of spinning.
                tracing::warn!(error = %e, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%remote, "metrics: too many scrapers; connection closed");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(metrics, &request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "metrics: connection failed"),
                Err(_) => tracing::debug!(%remote, "metrics: connection open too long; closed"),
            }
            drop(slot);
        });
    }
}

/// Longest a scrape may take to read the numbers before it is answered 503.
pub const ENCODE_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer to one request.
async fn answer(metrics: Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET /metrics\n");
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // Off the runtime's threads: reading the token's numbers takes a lock of the token layer,
    // which a stuck token call must not turn into a stuck gRPC worker.
    let text = match tokio::time::timeout(
        ENCODE_TIMEOUT,
        tokio::task::spawn_blocking(move || metrics.encode()),
    )
    .await
    {
        Ok(Ok(text)) => text,
        Ok(Err(_)) | Err(_) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the token layer did not give its numbers in time; try again\n",
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}

/// The address the listener is on, for the startup log.
pub fn describe(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a: SocketAddr| format!("http://{a}/metrics"))
        .unwrap_or_else(|_| "an unknown address".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_at_their_path_and_nothing_else() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::default();
        metrics.observe_call(
            crate::edge::record::Port::Notary,
            "Sign",
            tonic::Code::Ok,
            Duration::from_millis(1),
        );
        let server = tokio::spawn(serve(listener, metrics));
        let ok = get(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(
            ok.contains("signerd_requests_total{port=\"notary\",method=\"Sign\",code=\"OK\"} 1"),
            "{ok}"
        );
        let missing = get(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        server.abort();
    }
}
