//! Authentication as a tonic interceptor on each API service: the call's credentials prove a
//! [`Principal`](crate::auth::Principal), which with `x-actor-id` makes the
//! [`Caller`](crate::domain::Caller) the handlers act for. Both go into the request's
//! extensions; a call whose credentials are refused answers before it is decoded.

use std::sync::{Arc, OnceLock};

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::{self, Authenticator};
use crate::grpc::error::{EdgeRefusal, edge_status};

/// Where the interceptor leaves the principal's name for the telemetry layer, which logs a
/// stream's end after the call's span has closed. The telemetry layer puts an empty one on
/// every request.
#[derive(Clone, Debug, Default)]
pub struct PrincipalName(pub Arc<OnceLock<Arc<str>>>);

#[derive(Clone)]
pub struct Authenticate {
    authenticator: Arc<Authenticator>,
}

impl Authenticate {
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let headers = request.metadata().as_ref();
        let checked = self
            .authenticator
            .authenticate(headers)
            .and_then(|principal| {
                let caller = auth::caller(&principal, headers)?;
                Ok((principal, caller))
            });
        let (principal, caller) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                let status = edge_status(EdgeRefusal::Auth(error));
                tracing::info!(code = ?status.code(), "{}", status.message());
                return Err(status);
            }
        };
        tracing::Span::current().record("principal", &*principal.name);
        if let Some(PrincipalName(name)) = request.extensions().get::<PrincipalName>() {
            let _ = name.set(principal.name.clone());
        }
        request.extensions_mut().insert(principal);
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
