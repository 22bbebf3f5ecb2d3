//! The event log: appending inside a writing transaction, and reading the head.
//!
//! Positions come from the single `log_head` row, incremented as the last statement of each
//! writing transaction. The row lock is held until commit, so transactions that write events
//! take positions in the order they commit: a reader that has seen position p never later finds
//! a newly committed event below p. A database sequence would not give this, since concurrent
//! transactions can commit out of the order they drew their numbers.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement};

use super::entities::events;
use crate::domain::events::NewEvent;
use crate::domain::now_micros;

/// Appends `new_events` and returns the position of the last one; with no events, the head.
pub async fn append<C: ConnectionTrait>(conn: &C, new_events: &[NewEvent]) -> Result<i64, DbErr> {
    if new_events.is_empty() {
        return head(conn).await;
    }
    let count = new_events.len() as i64;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            format!(
                "UPDATE log_head SET position = position + {count} WHERE id = 1 RETURNING position"
            ),
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("log_head".into()))?;
    let last: i64 = row.try_get("", "position")?;
    let first = last - count + 1;
    let occurred_at = now_micros();
    let rows = new_events
        .iter()
        .enumerate()
        .map(|(i, event)| events::ActiveModel {
            position: sea_orm::Set(first + i as i64),
            tenant_id: sea_orm::Set(event.tenant_id),
            event_type: sea_orm::Set(event.event_type.as_str().to_string()),
            actor_id: sea_orm::Set(event.actor_id),
            subject_id: sea_orm::Set(event.subject_id.clone()),
            occurred_at: sea_orm::Set(occurred_at),
            request_id: sea_orm::Set(event.request_id.clone()),
            before: sea_orm::Set(event.before.as_ref().map(|v| v.to_string())),
            after: sea_orm::Set(event.after.as_ref().map(|v| v.to_string())),
        });
    // Chunks keep each INSERT under the bind-parameter limits of both backends.
    let rows: Vec<_> = rows.collect();
    for chunk in rows.chunks(500) {
        events::Entity::insert_many(chunk.to_vec())
            .exec(conn)
            .await?;
    }
    Ok(last)
}

/// The position of the newest committed event visible to `conn`.
pub async fn head<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT position FROM log_head WHERE id = 1",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("log_head".into()))?;
    row.try_get("", "position")
}
