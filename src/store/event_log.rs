//! The event log: appending inside a writing transaction, and reading the head.
//!
//! Positions come from the single `log_head` row. On SQLite (one writer at a time) each writing
//! transaction increments it as its last statement and inserts its events at the positions that
//! returns. On PostgreSQL writers stage their events and the sequencer (`super::sequencer`)
//! numbers them after commit, one batch at a time. Either way only one transaction at a time
//! assigns positions, holding the row until it commits: a reader that has seen position p never
//! later finds a newly committed event below p. A database sequence would not give this, since
//! concurrent transactions can commit out of the order they drew their numbers.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::db_error;
use super::entities::events;
use crate::domain::events::{AuditQuery, EventFilter, EventState, FeedEvent, NewEvent};
use crate::domain::{DomainError, Micros, now_micros};

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
            tenant_seq: sea_orm::NotSet,
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

/// The PostgreSQL channel on which the sequencer's batches announce the new head.
pub const FEED_CHANNEL: &str = "membership_events";

/// The head as a scalar subquery, for reading it in the same statement (and so the same
/// snapshot) as the rows it is to describe.
pub const HEAD_SUBQUERY: &str = "(SELECT position FROM log_head WHERE id = 1)";

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

/// The first position still retained; `head + 1` when every event has been pruned (or none was
/// ever written). A cursor below `oldest_retained - 1` has lost events to retention.
pub async fn oldest_retained<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
    // One statement, so the minimum and the head come from the same snapshot: read apart, an
    // empty table followed by a commit would report a head past events that exist.
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COALESCE((SELECT MIN(position) FROM events), \
             (SELECT position FROM log_head WHERE id = 1) + 1) AS oldest",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("log_head".into()))?;
    row.try_get("", "oldest")
}

/// Deletes the events that occurred before `cutoff`, always a prefix of the log so the retained
/// positions stay contiguous. Returns how many were deleted.
pub async fn prune_before<C: ConnectionTrait>(conn: &C, cutoff: Micros) -> Result<u64, DbErr> {
    let newest_expired = events::Entity::find()
        .select_only()
        .column(events::Column::Position)
        .filter(events::Column::OccurredAt.lt(cutoff))
        .order_by_desc(events::Column::Position)
        .limit(1)
        .into_tuple::<i64>()
        .one(conn)
        .await?;
    let Some(through) = newest_expired else {
        return Ok(0);
    };
    let deleted = events::Entity::delete_many()
        .filter(events::Column::Position.lte(through))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

/// Events after `after` matching `filter`, oldest first, at most `limit`.
pub async fn read_after<C: ConnectionTrait>(
    conn: &C,
    after: i64,
    filter: &EventFilter,
    limit: u64,
) -> Result<Vec<FeedEvent>, DomainError> {
    let query = AuditQuery {
        filter: filter.clone(),
        after: Some(after),
        limit,
        ..AuditQuery::default()
    };
    list(conn, &query).await
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    query: &AuditQuery,
) -> Result<Vec<FeedEvent>, DomainError> {
    use events::Column;
    let mut select = events::Entity::find();
    if let Some(tenant_id) = query.filter.tenant_id {
        select = select.filter(Column::TenantId.eq(tenant_id));
    }
    if !query.filter.types.is_empty() {
        select = select.filter(Column::EventType.is_in(query.filter.types.clone()));
    }
    if let Some(actor_id) = query.actor_id {
        select = select.filter(Column::ActorId.eq(actor_id));
    }
    if let Some(subject_id) = &query.subject_id {
        select = select.filter(Column::SubjectId.eq(subject_id.clone()));
    }
    if let Some(start) = query.start {
        select = select.filter(Column::OccurredAt.gte(start));
    }
    if let Some(end) = query.end {
        select = select.filter(Column::OccurredAt.lt(end));
    }
    if let Some(after) = query.after {
        select = if query.descending {
            select.filter(Column::Position.lt(after))
        } else {
            select.filter(Column::Position.gt(after))
        };
    }
    let order = if query.descending {
        Order::Desc
    } else {
        Order::Asc
    };
    let rows = select
        .order_by(Column::Position, order)
        .limit(query.limit)
        .all(conn)
        .await
        .map_err(db_error)?;
    Ok(rows.into_iter().map(to_feed_event).collect())
}

fn to_feed_event(row: events::Model) -> FeedEvent {
    let decode = |json: &Option<String>| {
        json.as_deref()
            .and_then(|j| EventState::decode(&row.event_type, j))
    };
    FeedEvent {
        before: decode(&row.before),
        after: decode(&row.after),
        position: row.position,
        tenant_id: row.tenant_id,
        occurred_at: row.occurred_at,
        actor_id: row.actor_id,
        subject_id: row.subject_id.clone(),
        request_id: row.request_id.clone(),
        tenant_seq: row.tenant_seq,
        event_type: row.event_type,
    }
}
