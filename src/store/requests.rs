//! Idempotency keys (AIP-155): a request_id remembers the resource its first call produced.

use sea_orm::{ConnectionTrait, EntityTrait, Set};

use super::db_error;
use super::entities::request_ids;
use crate::domain::{DomainError, Micros};

/// The resource key recorded for `(operation, request_id)`, if any.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    operation: &str,
    request_id: &str,
) -> Result<Option<String>, DomainError> {
    let row = request_ids::Entity::find_by_id((operation.to_string(), request_id.to_string()))
        .one(conn)
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| r.resource_key))
}

pub async fn record<C: ConnectionTrait>(
    conn: &C,
    operation: &str,
    request_id: &str,
    resource_key: &str,
    now: Micros,
) -> Result<(), DomainError> {
    request_ids::Entity::insert(request_ids::ActiveModel {
        operation: Set(operation.to_string()),
        request_id: Set(request_id.to_string()),
        resource_key: Set(resource_key.to_string()),
        created_at: Set(now),
    })
    .exec(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}
