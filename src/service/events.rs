//! Reading the event log: the paged audit log and live subscriptions, both gated by
//! `audit_logs.read` in the tenant (system callers may read every tenant).

use uuid::Uuid;

use super::Services;
use super::access::Access;
use crate::domain::events::{AuditQuery, EventCursor, EventFilter, FeedEvent};
use crate::domain::permissions::Permission;
use crate::domain::watcher::WatcherAccess;
use crate::domain::{Caller, DomainError};
use crate::events::{StartAt, WatchGuard, WatchItem};
use crate::store::event_log;
use crate::store::{self, db_error, memberships::After, memberships::SortValue};

/// ListMembershipEvents: the audit query, its `after` the position a tailing reader starts
/// after and its `limit` the page size, and the page token.
pub struct ListEvents {
    pub query: AuditQuery,
    pub page_token: String,
}

pub struct EventPage {
    pub events: Vec<FeedEvent>,
    pub next_page_token: String,
    pub cursor: EventCursor,
}

impl Services {
    /// A user must name a tenant and hold `audit_logs.read` in it; a system caller may read
    /// every tenant.
    async fn authorize_event_reading(
        &self,
        caller: Caller,
        tenant_id: Option<Uuid>,
    ) -> Result<(), DomainError> {
        let Some(tenant_id) = tenant_id else {
            return match caller {
                Caller::System => Ok(()),
                Caller::User(_) => Err(DomainError::invalid(
                    "tenant_id",
                    "is required unless the caller is a system caller",
                )),
            };
        };
        let conn = &self.store.reader();
        let (_, _, access) = Access::read(conn, tenant_id, caller).await?;
        access.require(Permission::AuditLogsRead)
    }

    pub async fn list_events(
        &self,
        caller: Caller,
        ListEvents {
            mut query,
            page_token,
        }: ListEvents,
    ) -> Result<EventPage, DomainError> {
        let after_cursor = query.after;
        let pager = self.page_tokens.pager(
            &[
                "events",
                &query
                    .filter
                    .tenant_id
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                &query.filter.types.join(","),
                &query.actor_id.map(|a| a.to_string()).unwrap_or_default(),
                query.subject_id.as_deref().unwrap_or(""),
                &format!(
                    "{:?}/{:?}/{}/{:?}",
                    query.start, query.end, query.descending, after_cursor
                ),
            ],
            query.limit,
        );
        query.after = match pager.after(&page_token)? {
            None => after_cursor,
            Some(After {
                value: SortValue::Int(position),
                ..
            }) => Some(position),
            Some(_) => return Err(DomainError::InvalidPageToken),
        };
        query.limit = pager.limit();
        self.authorize_event_reading(caller, query.filter.tenant_id)
            .await?;
        let conn = &self.store.reader();
        let cursor = event_log::head(conn).await.map_err(db_error)?;
        // A reader tailing the log from a position retention already pruned would silently miss
        // events; tell it instead, as the watch does.
        if let Some(after) = after_cursor {
            let oldest = event_log::oldest_retained(conn).await.map_err(db_error)?;
            if after < oldest - 1 {
                return Err(DomainError::CursorExpired {
                    cursor: after,
                    oldest,
                });
            }
        }
        let mut events = event_log::list(conn, &query).await?;
        let next_page_token = pager.finish(&mut events, |last| After {
            value: SortValue::Int(last.position),
            user_id: Uuid::nil(),
        });
        Ok(EventPage {
            events,
            next_page_token,
            cursor: EventCursor(cursor),
        })
    }

    /// Starts a subscription after checking the caller may read the tenant's events.
    pub async fn watch_events(
        &self,
        caller: Caller,
        filter: EventFilter,
        start: StartAt,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<WatchItem, DomainError>>, DomainError> {
        let guard = match (caller, filter.tenant_id) {
            (Caller::User(user_id), Some(tenant_id)) => {
                // The access and the position it holds at, read in one snapshot: the watch
                // follows every change to it from that position on.
                let conn = self.store.read_snapshot().await?;
                let since = event_log::head(&conn).await.map_err(db_error)?;
                let (_, roles, access) = Access::read(&conn, tenant_id, caller).await?;
                access.require(Permission::AuditLogsRead)?;
                let (membership, role_ids) =
                    store::memberships::get(&conn, &roles, tenant_id, user_id).await?;
                let groups = store::groups::groups_of(&conn, &roles, tenant_id, user_id).await?;
                Some(WatchGuard {
                    access: WatcherAccess::new(
                        &membership,
                        &role_ids,
                        groups.into_iter().map(|g| (g.id, g.roles)).collect(),
                        &roles,
                        Permission::AuditLogsRead,
                    ),
                    since,
                })
            }
            _ => {
                self.authorize_event_reading(caller, filter.tenant_id)
                    .await?;
                None
            }
        };
        let (_, items) = self.feed.subscribe(start, filter, guard).await?;
        Ok(items)
    }
}
