//! The metrics layer: every call on either port counted by method and gRPC code, and timed,
//! outermost in the edge so refusals by identity, audit or policy are counted too.
//!
//! The code is read as the audit layer reads it: an error answer carries its status in the
//! response headers (trailers-only); a unary OK carries it in the trailers, after the body.
//! A call dropped before its answer (client gone, deadline) is counted as `Canceled`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::server::NamedService;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

use super::record::Port;
use crate::metrics::{method_label, Metrics};

/// Counts and times every call on `port`.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    port: Port,
    metrics: Metrics,
}

impl MetricsLayer {
    /// The metrics layer of `port`, counting into `metrics`.
    pub fn new(port: Port, metrics: Metrics) -> MetricsLayer {
        MetricsLayer { port, metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`MetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct Metered<S> {
    inner: S,
    layer: MetricsLayer,
}

// === impl Metered ===

/// One call being timed; counted as cancelled if dropped before [`Timing::answered`].
struct Timing {
    metrics: Metrics,
    port: Port,
    method: &'static str,
    started: Instant,
    done: bool,
}

impl Timing {
    fn answered(mut self, code: Code) {
        self.done = true;
        self.metrics
            .observe_call(self.port, self.method, code, self.started.elapsed());
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.observe_call(
                self.port,
                self.method,
                Code::Cancelled,
                self.started.elapsed(),
            );
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<tonic::body::Body>> for Metered<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let timing = Timing {
            metrics: self.layer.metrics.clone(),
            port: self.layer.port,
            method: method_label(request.uri().path()),
            started: Instant::now(),
            done: false,
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            match &result {
                Ok(response) => {
                    let code = tonic::Status::from_header_map(response.headers())
                        .map_or(Code::Ok, |s| s.code());
                    timing.answered(code);
                }
                // The transport failed the call: no gRPC answer went out.
                Err(_) => timing.answered(Code::Unknown),
            }
            result
        })
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Answer(Code);

    impl Service<http::Request<tonic::body::Body>> for Answer {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            std::future::ready(Ok(if self.0 == Code::Ok {
                http::Response::new(tonic::body::Body::empty())
            } else {
                tonic::Status::new(self.0, "no").into_http()
            }))
        }
    }

    fn request(path: &str) -> http::Request<tonic::body::Body> {
        http::Request::builder()
            .uri(path)
            .body(tonic::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn answers_are_counted_by_their_code_and_a_dropped_call_as_cancelled() {
        let metrics = Metrics::default();
        let layer = MetricsLayer::new(Port::Notary, metrics.clone());
        layer
            .layer(Answer(Code::Ok))
            .call(request("/proto.Signer/Sign"))
            .await
            .unwrap();
        layer
            .layer(Answer(Code::PermissionDenied))
            .call(request("/proto.Signer/Sign"))
            .await
            .unwrap();
        drop(
            layer
                .layer(Answer(Code::Ok))
                .call(request("/proto.KeyManagement/GetKeyInfo")),
        );
        let text = metrics.encode();
        for line in [
            r#"signerd_requests_total{port="notary",method="Sign",code="OK"} 1"#,
            r#"signerd_requests_total{port="notary",method="Sign",code="PermissionDenied"} 1"#,
            r#"signerd_requests_total{port="notary",method="GetKeyInfo",code="Canceled"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
