//! Limits that keep one client from exhausting the server, as one tower layer around every
//! service: a per-call deadline (the server's, or the caller's `grpc-timeout` if sooner) answered
//! with DEADLINE_EXCEEDED, a bound on calls executing at once answered with RESOURCE_EXHAUSTED
//! instead of queueing, RESOURCE_EXHAUSTED (not tonic's OUT_OF_RANGE) for a request message
//! over the size limit, and INVALID_ARGUMENT (not tonic's INTERNAL) for one that cannot be
//! decoded. Health checks are exempt from the concurrency bound, so an overloaded
//! server still answers its load balancer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::domain::DomainError;
use crate::domain::validate::truncate;
use crate::grpc::error::to_status;

#[derive(Clone, Debug)]
pub struct LimitOptions {
    /// Longest a call may run (streams: until their first response).
    pub request_timeout: Duration,
    /// Calls executing at once, across all connections.
    pub max_concurrent_calls: usize,
}

impl Default for LimitOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_concurrent_calls: 1024,
        }
    }
}

#[derive(Clone)]
pub struct LimitsLayer {
    request_timeout: Duration,
    permits: Arc<Semaphore>,
}

impl LimitsLayer {
    pub fn new(options: &LimitOptions) -> Self {
        Self {
            request_timeout: options.request_timeout,
            permits: Arc::new(Semaphore::new(options.max_concurrent_calls.max(1))),
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limits<S> {
    inner: S,
    layer: LimitsLayer,
}

type Response = http::Response<tonic::body::Body>;

fn refuse(error: DomainError) -> Response {
    to_status(error).into_http()
}

/// The caller's `grpc-timeout`, if present and valid (gRPC over HTTP/2: up to 8 digits and a
/// unit).
fn caller_deadline(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (value, unit) = text.split_at(text.len() - 1);
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// How tonic words the refusals it answers itself, as INTERNAL, when a request cannot be
/// decoded: a protobuf decode error, a frame flagged compressed without `grpc-encoding` (or with
/// an unknown flag), a body that ends inside a frame, or no message at all.
const MALFORMED: &[&str] = &[
    "failed to decode Protobuf message",
    "protocol error: received message with",
    "Unexpected EOF decoding stream",
    "Missing request message",
];

/// A refusal tonic answered itself, before any handler ran, as a trailers-only response, under
/// the code this service answers it with instead: RESOURCE_EXHAUSTED (not OUT_OF_RANGE) for an
/// oversized request, INVALID_ARGUMENT (not INTERNAL) for an undecodable one: the caller sent
/// bad bytes, the server did not fail.
fn tonic_refusal(headers: &http::HeaderMap) -> Option<DomainError> {
    headers.get("grpc-status")?;
    let status = tonic::Status::from_header_map(headers)?;
    let message = status.message();
    match status.code() {
        tonic::Code::OutOfRange if message.contains("too large") => {
            Some(DomainError::MessageTooLarge)
        }
        tonic::Code::Internal if MALFORMED.iter().any(|m| message.starts_with(m)) => {
            Some(DomainError::MalformedRequest(truncate(message)))
        }
        _ => None,
    }
}

impl<S, B> Service<http::Request<B>> for Limits<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service that was polled ready handles this call; its clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        // Health checks are exempt from the concurrency bound.
        let exempt = request.uri().path().starts_with("/grpc.health.v1.Health/");
        // Answer a little before the caller's deadline, so the caller hears DEADLINE_EXCEEDED
        // from us rather than CANCELLED from the transport's own timer.
        let deadline = match caller_deadline(request.headers()) {
            Some(caller) => {
                let margin = (caller / 10).min(Duration::from_millis(20));
                layer.request_timeout.min(caller.saturating_sub(margin))
            }
            None => layer.request_timeout,
        };
        Box::pin(async move {
            let permit = if exempt {
                None
            } else {
                match layer.permits.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => return Ok(refuse(DomainError::Overloaded)),
                }
            };
            // The call completes when its response starts: a unary call when it has its
            // answer, a server stream when it has begun. So a stream's deadline (and its
            // permit) covers only its start, and the stream then runs for as long as it lasts.
            let response = match tokio::time::timeout(deadline, inner.call(request)).await {
                Ok(response) => response?,
                Err(_) => return Ok(refuse(DomainError::DeadlineExceeded(deadline))),
            };
            drop(permit);
            if let Some(refusal) = tonic_refusal(response.headers()) {
                return Ok(refuse(refusal));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grpc_timeout() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(caller_deadline(&headers), None);
        headers.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(caller_deadline(&headers), Some(Duration::from_millis(250)));
        headers.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(caller_deadline(&headers), Some(Duration::from_secs(2)));
        headers.insert("grpc-timeout", "123456789S".parse().unwrap());
        assert_eq!(caller_deadline(&headers), None);
        headers.insert("grpc-timeout", "5x".parse().unwrap());
        assert_eq!(caller_deadline(&headers), None);
    }
}
