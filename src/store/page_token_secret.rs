//! The deployment's page token secret, generated once by its migration and shared by every
//! replica over the database.

use sea_orm::{ConnectionTrait, EntityTrait};

use super::entities::page_token_secret;
use super::{corrupt, db_error};
use crate::domain::DomainError;

/// The secret's bytes; a database without it was not migrated.
pub async fn load<C: ConnectionTrait>(conn: &C) -> Result<Vec<u8>, DomainError> {
    let row = page_token_secret::Entity::find_by_id(1)
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or_else(|| corrupt("page token secret", "missing"))?;
    Ok(row.secret)
}
