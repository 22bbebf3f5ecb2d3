//! Who is calling. For now the acting user arrives in the `x-actor-id` metadata and a call
//! without it is a trusted system call; authenticating the caller itself replaces this one
//! function without touching any handler.

use tonic::Request;

use crate::domain::{Caller, DomainError};

pub const ACTOR_HEADER: &str = "x-actor-id";

pub fn caller<T>(request: &Request<T>) -> Result<Caller, DomainError> {
    let Some(value) = request.metadata().get(ACTOR_HEADER) else {
        return Ok(Caller::System);
    };
    let text = value.to_str().map_err(|_| DomainError::InvalidActor)?;
    match uuid::Uuid::try_parse(text.trim()) {
        Ok(id) if !id.is_nil() => Ok(Caller::User(id)),
        _ => Err(DomainError::InvalidActor),
    }
}
