//! Thin tonic handlers: validate and convert the request, call one use case, convert the
//! result, map the error through the one table in [`error`].

pub mod codec;
pub mod convert;
pub mod error;
pub mod events;
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

/// The result type of a use case, as a handler returns it.
pub(crate) fn respond<T>(
    result: Result<T, DomainError>,
) -> Result<tonic::Response<T>, tonic::Status> {
    result.map(tonic::Response::new).map_err(error::to_status)
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
