//! What an operator sees of the running service: Prometheus metrics on their own HTTP port, and
//! a tracing span per call carrying its request id. A server stream's span closes when the
//! stream starts, and an equal one is opened again to log its end: a span held for a stream's
//! whole life kept a slot of the tracing registry, which never shrinks, for each of thousands
//! of idle watches.
//!
//! [`Telemetry`] is the outermost layer around every service, so it counts what the other
//! layers refuse too (unauthenticated, overloaded, over the deadline). A call's code is read from
//! its response headers (a trailers-only answer) or, for a response with a body, from its
//! trailers; a caller that goes away first is counted as CANCELLED.
//!
//! Series (names follow go-grpc-prometheus, so existing dashboards apply):
//! - `grpc_server_started_total{grpc_service, grpc_method, grpc_type}`
//! - `grpc_server_handled_total{grpc_service, grpc_method, grpc_type, grpc_code}`
//! - `grpc_server_handling_seconds{grpc_service, grpc_method, grpc_type}` (histogram)
//! - `grpc_server_open_streams{grpc_service, grpc_method}`: server streams open now
//! - `membership_event_subscribers`: event feed subscriptions open now
//! - `membership_event_feed_position`: the newest log position this replica has loaded
//! - `membership_event_delivery_lag_seconds` (histogram): commit to hand-off to a subscriber
//! - `membership_db_pool_connections{state="idle"|"in_use"}`, `membership_db_pool_max_connections`

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Answer, Around, Inner};

use super::authenticate::PrincipalName;
use crate::grpc::ServedMethod;
use crate::store::Store;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Buckets for call latency, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The process's recorder. Installed once; every server in the process reports through it.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("grpc_server_handling_seconds".to_string()),
                LATENCY_BUCKETS,
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("membership_event_delivery_lag_seconds".to_string()),
                    LATENCY_BUCKETS,
                )
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("membership_writes_per_commit".to_string()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0],
                )
            })
            .expect("static bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding program's): then the
        // handle renders nothing of ours, which is the embedder's choice.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
        }
        handle
    })
}

/// Serves `GET /metrics` (and HEAD) on `listener` until `stop` is cancelled; any other path is
/// 404, any other method 405.
pub async fn serve_metrics(listener: TcpListener, store: Store, stop: CancellationToken) {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(render_metrics(&store))),
    );
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::warn!(%error, "metrics endpoint stopped");
    }
}

/// The Prometheus text of every series, the pool's gauges read now.
fn render_metrics(store: &Store) -> ([(http::HeaderName, &'static str); 1], String) {
    let handle = recorder();
    let pool = store.pool_stats();
    metrics::gauge!("membership_db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("membership_db_pool_connections", "state" => "in_use")
        .set(pool.size.saturating_sub(pool.idle) as f64);
    metrics::gauge!("membership_db_pool_max_connections").set(pool.max as f64);
    handle.run_upkeep();
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// The series of one method, registered once: a call only bumps them. Only the methods the
/// server serves get their own; every other path counts as `unknown`, so a client sending
/// made-up paths cannot make the series (and the server's memory) grow.
struct MethodMetrics {
    service: String,
    method: String,
    stream: bool,
    started: metrics::Counter,
    /// Registered on first use, so the methods never called add no empty histograms.
    handling: OnceLock<metrics::Histogram>,
    /// For server streams only.
    open_streams: Option<metrics::Gauge>,
    /// By code, registered on first use (most methods see only a few codes).
    handled: [OnceLock<metrics::Counter>; 17],
}

impl MethodMetrics {
    fn new(service: &str, method: &str, stream: bool) -> MethodMetrics {
        let labels = [
            ("grpc_service", service.to_string()),
            ("grpc_method", method.to_string()),
            ("grpc_type", kind(stream).to_string()),
        ];
        MethodMetrics {
            service: service.to_string(),
            method: method.to_string(),
            stream,
            started: metrics::counter!("grpc_server_started_total", &labels),
            handling: OnceLock::new(),
            open_streams: stream.then(|| metrics::gauge!("grpc_server_open_streams", &labels[..2])),
            handled: Default::default(),
        }
    }

    fn handling(&self) -> &metrics::Histogram {
        self.handling.get_or_init(|| {
            metrics::histogram!(
                "grpc_server_handling_seconds",
                "grpc_service" => self.service.clone(),
                "grpc_method" => self.method.clone(),
                "grpc_type" => kind(self.stream),
            )
        })
    }

    fn handled(&self, code: tonic::Code) -> &metrics::Counter {
        self.handled[code as usize].get_or_init(|| {
            metrics::counter!(
                "grpc_server_handled_total",
                "grpc_service" => self.service.clone(),
                "grpc_method" => self.method.clone(),
                "grpc_type" => kind(self.stream),
                "grpc_code" => code_name(code),
            )
        })
    }
}

fn kind(stream: bool) -> &'static str {
    if stream { "server_stream" } else { "unary" }
}

/// Every method the server serves, by path.
#[derive(Clone)]
pub struct Telemetry {
    methods: Arc<HashMap<String, Arc<MethodMetrics>>>,
    unknown: Arc<MethodMetrics>,
}

impl Telemetry {
    pub fn new(served: &[ServedMethod]) -> Telemetry {
        let methods = served
            .iter()
            .map(|m| {
                let metrics = MethodMetrics::new(&m.service, &m.method, m.server_streaming);
                (m.path.clone(), Arc::new(metrics))
            })
            .collect();
        Telemetry {
            methods: Arc::new(methods),
            unknown: Arc::new(MethodMetrics::new("unknown", "unknown", false)),
        }
    }

    fn method(&self, path: &str) -> Arc<MethodMetrics> {
        self.methods.get(path).unwrap_or(&self.unknown).clone()
    }
}

/// The request id of a call: the caller's `x-request-id` if it is a sane token, else a new one.
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

impl Around for Telemetry {
    fn around<S: Inner<B>, B: Send + 'static>(
        &self,
        mut inner: S,
        mut request: http::Request<B>,
    ) -> Answer<S::Error> {
        let principal = PrincipalName::default();
        request.extensions_mut().insert(principal.clone());
        let mut call = Call {
            metrics: self.method(request.uri().path()),
            started: Instant::now(),
            recorded: false,
        };
        let request_id = request_id(request.headers());
        let span = tracing::info_span!(
            "rpc",
            service = %call.metrics.service,
            method = %call.metrics.method,
            request_id = %request_id,
            principal = tracing::field::Empty,
        );
        call.metrics.started.increment(1);
        let future = span.in_scope(|| inner.call(request));
        Box::pin(tracing::Instrument::instrument(
            async move {
                let mut response = future.await?;
                if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                // A trailers-only answer (every refusal) carries its code in the headers.
                if let Some(code) = grpc_code(response.headers()) {
                    call.finish(code);
                    return Ok(response);
                }
                if let Some(open) = &call.metrics.open_streams {
                    open.increment(1.0);
                }
                let principal = principal.0.get().cloned();
                Ok(response.map(|body| {
                    tonic::body::Body::new(ObservedBody {
                        inner: body,
                        call: Some(call),
                        request_id,
                        principal,
                    })
                }))
            },
            span,
        ))
    }
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(value))
}

/// A call in progress, recorded once when its code is known, or as CANCELLED if it is dropped
/// before (the caller went away, or reset the stream, while the call was running).
struct Call {
    metrics: Arc<MethodMetrics>,
    started: Instant,
    recorded: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

impl Call {
    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let code_name = code_name(code);
        self.metrics.handled(code).increment(1);
        self.metrics.handling().record(seconds);
        let millis = seconds * 1000.0;
        match code {
            tonic::Code::Ok => tracing::debug!(code = code_name, millis, "call finished"),
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                tracing::warn!(code = code_name, millis, "call failed")
            }
            _ => tracing::info!(code = code_name, millis, "call refused"),
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A response body that records its call when the trailers carry the code, or as CANCELLED
/// when dropped before (the caller went away). It keeps what the call's span carried, not the
/// span itself.
struct ObservedBody {
    inner: tonic::body::Body,
    call: Option<Call>,
    request_id: String,
    principal: Option<Arc<str>>,
}

impl ObservedBody {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(mut call) = self.call.take() {
            if let Some(open) = &call.metrics.open_streams {
                open.decrement(1.0);
            }
            let span = tracing::info_span!(
                "rpc",
                service = %call.metrics.service,
                method = %call.metrics.method,
                request_id = %self.request_id,
                principal = tracing::field::Empty,
            );
            if let Some(principal) = &self.principal {
                span.record("principal", &**principal);
            }
            let _entered = span.enter();
            call.finish(code);
        }
    }
}

impl Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_code(trailers).unwrap_or(tonic::Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                self.finish(code);
            }
            Poll::Ready(None) => self.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}
