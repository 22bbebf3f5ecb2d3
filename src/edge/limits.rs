//! Limits that keep one client from exhausting the server, as one tower layer around every
//! service: a per-call deadline (the server's, or the caller's `grpc-timeout` if sooner) answered
//! with DEADLINE_EXCEEDED, a bound on calls executing at once answered with RESOURCE_EXHAUSTED
//! instead of queueing, RESOURCE_EXHAUSTED (not tonic's OUT_OF_RANGE) for a request message
//! over the size limit, and INVALID_ARGUMENT (not tonic's INTERNAL) for one that cannot be
//! decoded. Once shutdown begins, every new call is refused with UNAVAILABLE `SHUTTING_DOWN`
//! while the calls in flight drain. Health checks are exempt from the concurrency bound and
//! from the shutdown refusal, so an overloaded or stopping server still answers its load
//! balancer.
//!
//! Watch streams have a bound of their own instead of the concurrency bound: a watch is
//! long-lived and costs a few KiB while idle, not a share of the server's work, and its
//! clients all come back at once when a replica restarts. A watch holds its place from the
//! moment it is opened until its stream ends; past the bound it is refused with
//! RESOURCE_EXHAUSTED `TOO_MANY_WATCHERS` and a `google.rpc.RetryInfo` delay. Watches open a
//! few at a time: the others wait in [`WatchTurns`], outside every other layer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{Answer, Around, Inner, Response};

use crate::domain::validate::truncate;
use crate::grpc::error::{EdgeRefusal, edge_status};
use crate::grpc::pb::membership_service_server::SERVICE_NAME as MEMBERSHIP_SERVICE;

#[derive(Clone, Debug)]
pub struct LimitOptions {
    /// Longest a call may run (streams: until their first response).
    pub request_timeout: Duration,
    /// Calls executing at once, across all connections (watches are bounded apart).
    pub max_concurrent_calls: usize,
    /// Watch streams open at once, across all connections, those being opened included.
    pub max_watchers: usize,
}

impl Default for LimitOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_concurrent_calls: 1024,
            max_watchers: 20_000,
        }
    }
}

/// Watches doing their opening work (a few database reads) at once; the others wait their
/// turn in [`WatchTurns`]. When a replica restarts, all its watchers come back in the same
/// second: opened all at once, ten thousand of them would each hold their request, its decode
/// buffer, a tracing span and the state of its reads while waiting on a pool of a few database
/// connections, tens of KiB apiece, which the allocator then keeps.
const WATCHES_OPENING_AT_ONCE: usize = 64;

#[derive(Clone)]
pub struct Limits {
    request_timeout: Duration,
    permits: Arc<Semaphore>,
    watchers: Arc<Semaphore>,
    max_watchers: usize,
    /// `/membership.v1.MembershipService/WatchMembershipEvents`.
    watch_path: Arc<str>,
    /// Cancelled when shutdown begins.
    stopping: CancellationToken,
}

impl Limits {
    /// The limits of `options`; once `stopping` is cancelled, every new call but a health check
    /// is refused with UNAVAILABLE SHUTTING_DOWN, while the calls already in flight drain.
    /// (HTTP/2's GOAWAY tells clients the same, but a call sent before the client reads it
    /// would still be served.)
    pub fn new(options: &LimitOptions, stopping: CancellationToken) -> Self {
        let max_watchers = options.max_watchers.max(1);
        Self {
            request_timeout: options.request_timeout,
            permits: Arc::new(Semaphore::new(options.max_concurrent_calls.max(1))),
            watchers: Arc::new(Semaphore::new(max_watchers)),
            max_watchers,
            watch_path: format!("/{MEMBERSHIP_SERVICE}/WatchMembershipEvents").into(),
            stopping,
        }
    }
}

fn refuse(refusal: EdgeRefusal) -> Response {
    edge_status(refusal).into_http()
}

/// A watch's response body, holding the watch's place among the watchers until the stream ends
/// (its last frame is sent, or the caller goes away).
struct WatcherBody {
    inner: tonic::body::Body,
    _place: OwnedSemaphorePermit,
}

impl Body for WatcherBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
fn tonic_refusal(headers: &http::HeaderMap) -> Option<EdgeRefusal> {
    headers.get("grpc-status")?;
    let status = tonic::Status::from_header_map(headers)?;
    let message = status.message();
    match status.code() {
        tonic::Code::OutOfRange if message.contains("too large") => {
            Some(EdgeRefusal::MessageTooLarge)
        }
        tonic::Code::Internal if MALFORMED.iter().any(|m| message.starts_with(m)) => {
            Some(EdgeRefusal::MalformedRequest(truncate(message)))
        }
        _ => None,
    }
}

/// The deadline of a call: the server's, or a little before the caller's if that is sooner, so
/// the caller hears DEADLINE_EXCEEDED from us rather than CANCELLED from its transport's timer.
fn call_deadline(request_timeout: Duration, headers: &http::HeaderMap) -> Duration {
    match caller_deadline(headers) {
        Some(caller) => {
            let margin = (caller / 10).min(Duration::from_millis(20));
            request_timeout.min(caller.saturating_sub(margin))
        }
        None => request_timeout,
    }
}

impl Around for Limits {
    fn around<S: Inner<B>, B: Send + 'static>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> Answer<S::Error> {
        let layer = self.clone();
        // Health checks are exempt from the concurrency bound; watches have their own.
        let path = request.uri().path();
        let exempt = path.starts_with("/grpc.health.v1.Health/");
        let watch = path == &*layer.watch_path;
        let deadline = call_deadline(layer.request_timeout, request.headers());
        Box::pin(async move {
            if !exempt && layer.stopping.is_cancelled() {
                return Ok(refuse(EdgeRefusal::ShuttingDown));
            }
            let mut permit = None;
            let mut place = None;
            if watch {
                match layer.watchers.clone().try_acquire_owned() {
                    Ok(held) => place = Some(held),
                    Err(_) => return Ok(refuse(EdgeRefusal::TooManyWatchers(layer.max_watchers))),
                }
            } else if !exempt {
                match layer.permits.clone().try_acquire_owned() {
                    Ok(held) => permit = Some(held),
                    Err(_) => return Ok(refuse(EdgeRefusal::Overloaded)),
                }
            }
            let call = inner.call(request);
            // The call completes when its response starts: a unary call when it has its
            // answer, a server stream when it has begun. So a stream's deadline (and its
            // permit) covers only its start, and the stream then runs for as long as it lasts;
            // a watch's place among the watchers goes with its stream.
            let response = match tokio::time::timeout(deadline, call).await {
                Ok(response) => response?,
                Err(_) => return Ok(refuse(EdgeRefusal::DeadlineExceeded(deadline))),
            };
            drop(permit);
            if let Some(refusal) = tonic_refusal(response.headers()) {
                return Ok(refuse(refusal));
            }
            match place {
                // A refused watch (trailers only) has no stream to hold a place for.
                Some(place) if response.headers().get("grpc-status").is_none() => {
                    Ok(response.map(|inner| {
                        tonic::body::Body::new(WatcherBody {
                            inner,
                            _place: place,
                        })
                    }))
                }
                _ => Ok(response),
            }
        })
    }
}

/// Where watches wait their turn to open ([`WATCHES_OPENING_AT_ONCE`] at a time): the outermost
/// layer, so that a waiting watch holds nothing but its HTTP/2 stream and request (no tracing
/// span, no call state). It refuses nothing, so every refusal is still counted by the telemetry
/// inside it: a watch that waited longer than its deadline, or that finds as many watches waiting
/// as `--max-watchers` allows open, goes on without a turn, to be bounded by [`Limits`].
#[derive(Clone)]
pub struct WatchTurns {
    request_timeout: Duration,
    turns: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    watch_path: Arc<str>,
}

impl WatchTurns {
    pub fn new(options: &LimitOptions) -> Self {
        Self {
            request_timeout: options.request_timeout,
            turns: Arc::new(Semaphore::new(WATCHES_OPENING_AT_ONCE)),
            waiting: Arc::new(Semaphore::new(options.max_watchers.max(1))),
            watch_path: format!("/{MEMBERSHIP_SERVICE}/WatchMembershipEvents").into(),
        }
    }
}

impl Around for WatchTurns {
    fn around<S: Inner<B>, B: Send + 'static>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> Answer<S::Error> {
        if request.uri().path() != &*self.watch_path {
            return Box::pin(inner.call(request));
        }
        let layer = self.clone();
        let deadline = call_deadline(layer.request_timeout, request.headers());
        Box::pin(async move {
            let _turn = match layer.waiting.clone().try_acquire_owned() {
                Ok(waiting) => {
                    let turn = tokio::time::timeout(deadline, layer.turns.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok);
                    drop(waiting);
                    turn
                }
                Err(_) => None,
            };
            // The turn ends when the watch's stream starts (or it is refused).
            inner.call(request).await
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

    /// Once shutdown begins, a new call is refused with UNAVAILABLE SHUTTING_DOWN without
    /// reaching its service; a health check still reaches it.
    #[tokio::test]
    async fn refuses_new_calls_once_shutdown_begins_but_not_health_checks() {
        use tonic_types::StatusExt;
        use tower::{Layer, ServiceExt};

        let served = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let stopping = CancellationToken::new();
        let layer = super::super::Edge(Limits::new(&LimitOptions::default(), stopping.clone()));
        let call = |path: &str| {
            let request = http::Request::builder().uri(path).body(()).unwrap();
            layer.layer(served).oneshot(request)
        };
        let check = "/membership.v1.RoleService/CheckPermission";
        let health = "/grpc.health.v1.Health/Check";
        assert!(
            call(check)
                .await
                .unwrap()
                .headers()
                .get("grpc-status")
                .is_none()
        );

        stopping.cancel();
        let refused = call(check).await.unwrap();
        let status = Status::from_header_map(refused.headers()).expect("a trailers-only refusal");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let info = status.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "SHUTTING_DOWN");
        assert!(
            call(health)
                .await
                .unwrap()
                .headers()
                .get("grpc-status")
                .is_none()
        );
    }
}
