//! The transport edge: what every call passes through before its handler runs, and what an
//! operator sees of it. Outermost first:
//!
//! - [`limits::WatchTurns`]: watches open a few at a time;
//! - [`telemetry::Telemetry`]: a span and metrics per call, refusals of the layers below
//!   included;
//! - [`limits::Limits`]: deadlines, the bound on calls at once, the bound on watchers,
//!   oversized and undecodable messages;
//! - [`authenticate::Authenticate`]: a tonic interceptor on each API service (health and
//!   reflection are served without one, so they need no credentials), which checks the
//!   credentials with [`crate::auth`] and hands the handlers their [`crate::domain::Caller`].
//!
//! Every refusal here is a [`crate::grpc::error::EdgeRefusal`], mapped by the one error table.
//! The three layers are each an [`Around`] (what it does with a call) in an [`Edge`] (the
//! tower plumbing they share).

pub mod authenticate;
pub mod limits;
pub mod telemetry;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// What every edge layer answers with: tonic's HTTP response.
pub type Response = http::Response<tonic::body::Body>;

/// The answer to one call, as an edge layer gives it.
pub type Answer<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

/// The service inside an edge layer: the next layer, or tonic's routes.
pub trait Inner<B>:
    Service<http::Request<B>, Response = Response, Future: Send + 'static, Error: Send + 'static>
    + Send
    + 'static
{
}

impl<S, B> Inner<B> for S where
    S: Service<
            http::Request<B>,
            Response = Response,
            Future: Send + 'static,
            Error: Send + 'static,
        > + Send
        + 'static
{
}

/// What an edge layer does with each call: it gets the request and the inner service (the one
/// that was polled ready) and answers in the inner service's place.
pub trait Around: Clone {
    fn around<S: Inner<B>, B: Send + 'static>(
        &self,
        inner: S,
        request: http::Request<B>,
    ) -> Answer<S::Error>;
}

/// An edge layer: every call runs through `A::around`.
#[derive(Clone)]
pub struct Edge<A>(pub A);

impl<S, A: Around> Layer<S> for Edge<A> {
    type Service = EdgeService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            inner,
            around: self.0.clone(),
        }
    }
}

/// The service an [`Edge`] layer wraps around the next one.
#[derive(Clone)]
pub struct EdgeService<S, A> {
    inner: S,
    around: A,
}

impl<S, A, B> Service<http::Request<B>> for EdgeService<S, A>
where
    A: Around,
    S: Inner<B> + Clone,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service that was polled ready handles this call; its clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.around.around(inner, request)
    }
}
