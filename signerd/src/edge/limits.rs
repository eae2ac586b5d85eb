//! Answers a message over the size limit as Go gRPC does: RESOURCE_EXHAUSTED, "grpc: received
//! message larger than max (N vs. M)". tonic's decoder says OUT_OF_RANGE; notary-server and
//! other Go clients treat the two differently (OUT_OF_RANGE reads as a bad request).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

/// The start of tonic's message for a decoded message over the limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// Rewrites tonic's over-the-limit status into Go gRPC's.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoSizeStatusLayer;

impl<S> Layer<S> for GoSizeStatusLayer {
    type Service = GoSizeStatus<S>;

    fn layer(&self, inner: S) -> GoSizeStatus<S> {
        GoSizeStatus { inner }
    }
}

/// A service with [`GoSizeStatusLayer`] in front.
#[derive(Clone, Debug)]
pub struct GoSizeStatus<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for GoSizeStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.inner.call(request);
        Box::pin(async move { Ok(go_size_status(call.await?)) })
    }
}

/// `response` with tonic's over-the-limit status rewritten into Go gRPC's (what
/// [`GoSizeStatusLayer`] does to every answer).
pub fn go_size_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    if let Some(go) = go_status(response.headers()) {
        let headers = response.headers_mut();
        headers.remove("grpc-status");
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        let _ = go.add_header(headers);
    }
    response
}

/// Go gRPC's status for tonic's over-the-limit status in `headers`, if that is what they hold.
fn go_status(headers: &http::HeaderMap) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    if status.code() != Code::OutOfRange {
        return None;
    }
    let rest = status.message().strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some(Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit}); send a message of at most {limit} bytes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: &Status) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        status.add_header(&mut h).unwrap();
        h
    }

    #[test]
    fn tonic_too_large_becomes_go_resource_exhausted() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let go = go_status(&headers_of(&tonic)).unwrap();
        assert_eq!(go.code(), Code::ResourceExhausted);
        assert!(
            go.message()
                .starts_with("grpc: received message larger than max (5000000 vs. 4194304)"),
            "{}",
            go.message()
        );
        for other in [
            Status::out_of_range("something else"),
            Status::not_found(
                "Error, decoded message length too large: found 1 bytes, the limit is: 0 bytes",
            ),
        ] {
            assert!(go_status(&headers_of(&other)).is_none());
        }
    }
}
