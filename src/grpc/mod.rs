//! Thin tonic handlers: validate and convert the request, call one use case, convert the
//! result, map the error through the one table in [`error`].

/// A tonic service implemented by handing each unary RPC to one use case of `services`, in the
/// shape [`handle`] gives every handler:
///
/// ```text
/// rpc(Request) -> Response;                     // the use case of the same name
/// rpc(Request) -> Response => use_case, args;   // another use case, with extra arguments
/// ```
///
/// RPCs of another shape (streams, answers without a use case) follow the list as ordinary
/// trait items.
macro_rules! api_service {
    (impl $service:ident for $api:ident {
        $($rpc:ident($request:ident) -> $response:ident $(=> $use_case:ident $(, $arg:expr)*)?;)*
    } $($other:tt)*) => {
        #[tonic::async_trait]
        impl $service for $api {
            $(
                async fn $rpc(
                    &self,
                    request: tonic::Request<$request>,
                ) -> Result<tonic::Response<$response>, tonic::Status> {
                    api_service!(@call self request $rpc $($use_case $(, $arg)*)?)
                }
            )*
            $($other)*
        }
    };
    (@call $api:ident $request:ident $rpc:ident) => {
        $crate::grpc::handle($request, |caller, input| $api.services.$rpc(caller, input)).await
    };
    (@call $api:ident $request:ident $rpc:ident $use_case:ident $(, $arg:expr)*) => {
        $crate::grpc::handle($request, |caller, input| {
            $api.services.$use_case(caller, input $(, $arg)*)
        })
        .await
    };
}

/// Requests that name only a tenant: each converts to the tenant's id.
macro_rules! tenant_requests {
    ($($request:ident),* $(,)?) => {$(
        impl TryFrom<$request> for uuid::Uuid {
            type Error = crate::domain::DomainError;

            fn try_from(r: $request) -> Result<Self, Self::Error> {
                let mut v = crate::domain::validate::Validator::new();
                let tenant_id = v.uuid("tenant_id", &r.tenant_id);
                v.finish()?;
                Ok(tenant_id)
            }
        }
    )*};
}

/// Responses that carry the one resource a change produced (converted by `$convert`) and the
/// cursor of the change.
macro_rules! changed_responses {
    ($field:ident: $resource:ty => $convert:path; $($response:ident),* $(,)?) => {$(
        impl From<($resource, crate::domain::events::EventCursor)> for $response {
            fn from((resource, cursor): ($resource, crate::domain::events::EventCursor)) -> Self {
                $response {
                    $field: Some($convert(&resource)),
                    cursor: cursor.into(),
                }
            }
        }
    )*};
}

/// Responses that carry nothing but the cursor of the change.
macro_rules! cursor_responses {
    ($($response:ident),* $(,)?) => {$(
        impl From<crate::domain::events::EventCursor> for $response {
            fn from(cursor: crate::domain::events::EventCursor) -> Self {
                $response { cursor: cursor.into() }
            }
        }
    )*};
}

pub mod codec;
pub mod convert;
pub mod error;
pub mod events;
pub mod groups;
pub mod invitations;
pub mod memberships;
pub mod roles;
pub mod tenants;

/// Code generated from `proto/membership/v1/`. Lints are for hand-written code; prost decides
/// the shape of generated enums.
#[allow(clippy::large_enum_variant)]
pub mod pb {
    tonic::include_proto!("membership.v1");

    /// Every file of the API, with imports, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("membership_descriptor");
}

use crate::domain::DomainError;

/// One method the server serves.
#[derive(Clone, Debug)]
pub struct ServedMethod {
    /// `/package.Service/Method`, as requests name it.
    pub path: String,
    /// `package.Service`.
    pub service: String,
    pub method: String,
    /// Whether it answers with a stream (a watch; reflection).
    pub server_streaming: bool,
}

/// Every method of the services in `descriptor_sets` (encoded `FileDescriptorSet`s).
pub fn served_methods(descriptor_sets: &[&[u8]]) -> Result<Vec<ServedMethod>, prost::DecodeError> {
    use prost::Message;
    let mut methods = Vec::new();
    for encoded in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*encoded)?;
        for file in &set.file {
            for service in &file.service {
                let service_name = match file.package() {
                    "" => service.name().to_string(),
                    package => format!("{package}.{}", service.name()),
                };
                for method in &service.method {
                    methods.push(ServedMethod {
                        path: format!("/{service_name}/{}", method.name()),
                        service: service_name.clone(),
                        method: method.name().to_string(),
                        server_streaming: method.server_streaming(),
                    });
                }
            }
        }
    }
    Ok(methods)
}

/// The shape of every unary handler: the caller the transport edge found, the request
/// converted (every bad field reported at once, by its `TryFrom`), one use case, its result
/// converted, and a refusal mapped through the one table.
pub(crate) async fn handle<Req, In, Out, Resp, Work>(
    request: tonic::Request<Req>,
    use_case: impl FnOnce(crate::domain::Caller, In) -> Work,
) -> Result<tonic::Response<Resp>, tonic::Status>
where
    In: TryFrom<Req, Error = DomainError>,
    Work: std::future::Future<Output = Result<Out, DomainError>>,
    Resp: From<Out>,
{
    let caller = caller(&request)?;
    let input = In::try_from(request.into_inner()).map_err(error::to_status)?;
    let output = use_case(caller, input).await.map_err(error::to_status)?;
    Ok(tonic::Response::new(Resp::from(output)))
}

/// The caller of a request, as the transport edge's interceptor found it. A request that did
/// not pass the interceptor has none and is refused as unauthenticated.
pub(crate) fn caller<T>(
    request: &tonic::Request<T>,
) -> Result<crate::domain::Caller, tonic::Status> {
    request
        .extensions()
        .get::<crate::domain::Caller>()
        .copied()
        .ok_or_else(|| {
            error::edge_status(error::EdgeRefusal::Auth(crate::auth::AuthError::Missing))
        })
}

/// When the credential a request was made with expires, if it does.
pub(crate) fn credential_expiry<T>(request: &tonic::Request<T>) -> Option<std::time::SystemTime> {
    request
        .extensions()
        .get::<crate::auth::Principal>()?
        .expiry()
}
