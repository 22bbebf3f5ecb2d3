//! Permission checks, the hot path: token introspection asks on every request of every other
//! service. Answers come from an in-memory cache of per-member decisions, kept correct by
//! invalidation rather than expiry:
//!
//! - this process's own commits invalidate synchronously, before the writing call returns, so
//!   a check after a mutation on the same replica reflects it (a suspension denies at once);
//! - every other replica's commits arrive through the event feed, within its delivery latency,
//!   and a caller holding a mutation's cursor can demand an answer at least that fresh.
//!
//! An entry remembers the log position its database read reflected; an invalidation records the
//! position of the event that caused it. An entry is used only if it is at least as new as every
//! invalidation of its tenant and member, so a read that raced with a write is never trusted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::DomainError;
use crate::domain::events::{EventFilter, NewEvent};
use crate::domain::membership::MembershipStatus;
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::tenant::TenantState;
use crate::events::{EventFeed, StartAt, WatchItem};
use crate::store::{self, Store, db_error, event_log};

/// Why a check was answered as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckReason {
    Granted,
    NotGranted,
    NotAMember,
    MembershipInvited,
    MembershipSuspended,
    MembershipLeft,
    TenantDissolved,
    TenantNotFound,
}

/// What the cache knows about one (tenant, user).
#[derive(Clone, Copy, Debug)]
enum Subject {
    TenantNotFound,
    TenantDissolved,
    NotAMember,
    Member {
        status: MembershipStatus,
        permissions: PermissionSet,
    },
}

impl Subject {
    fn decide(self, permission: Permission) -> CheckReason {
        match self {
            Subject::TenantNotFound => CheckReason::TenantNotFound,
            Subject::TenantDissolved => CheckReason::TenantDissolved,
            Subject::NotAMember => CheckReason::NotAMember,
            Subject::Member {
                status,
                permissions,
            } => match status {
                MembershipStatus::Invited => CheckReason::MembershipInvited,
                MembershipStatus::Suspended => CheckReason::MembershipSuspended,
                MembershipStatus::Left => CheckReason::MembershipLeft,
                MembershipStatus::Active if permissions.contains(permission) => {
                    CheckReason::Granted
                }
                MembershipStatus::Active => CheckReason::NotGranted,
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    loaded_at: i64,
    subject: Subject,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<(Uuid, Uuid), Entry>,
    tenant_marks: HashMap<Uuid, i64>,
    member_marks: HashMap<(Uuid, Uuid), i64>,
    /// Entries older than this are not trusted (set when the maps are cleared to bound memory).
    floor: i64,
    newest_mark: i64,
}

/// Most cached decisions and invalidation marks before the cache starts over.
const MAX_ENTRIES: usize = 1_000_000;
/// How long a check waits for this replica to reach a caller's `min_cursor`.
const FRESHNESS_WAIT: Duration = Duration::from_secs(5);

pub struct AuthzCache {
    store: Store,
    feed: EventFeed,
    state: RwLock<CacheState>,
    /// The newest position whose invalidations this process has applied (from the feed).
    applied: watch::Sender<i64>,
}

/// What an event invalidates.
enum Scope {
    Tenant(Uuid),
    Member(Uuid, Uuid),
}

fn scope(event_type: &str, tenant_id: Option<Uuid>, subject_id: Option<&str>) -> Option<Scope> {
    let tenant_id = tenant_id?;
    let family = event_type.split('.').next().unwrap_or_default();
    match family {
        "tenant" | "role" => Some(Scope::Tenant(tenant_id)),
        "membership" | "role_binding" | "ownership" => {
            let user = subject_id.and_then(|s| Uuid::try_parse(s).ok())?;
            Some(Scope::Member(tenant_id, user))
        }
        _ => None,
    }
}

impl AuthzCache {
    /// Starts following the event feed and hooks into this process's commits.
    pub async fn start(store: Store, feed: EventFeed) -> Result<Arc<AuthzCache>, DomainError> {
        let (start, items) = feed.follow(StartAt::Now, EventFilter::default()).await?;
        let cache = Arc::new(AuthzCache {
            store: store.clone(),
            feed,
            state: RwLock::new(CacheState {
                floor: start,
                ..CacheState::default()
            }),
            applied: watch::Sender::new(start),
        });
        let hooked = Arc::downgrade(&cache);
        store.on_commit(Arc::new(move |events: &[(i64, &NewEvent)]| {
            if let Some(cache) = hooked.upgrade() {
                for (position, event) in events {
                    cache.invalidate(
                        event.event_type.as_str(),
                        event.tenant_id,
                        event.subject_id.as_deref(),
                        *position,
                    );
                }
            }
        }));
        tokio::spawn(follow(Arc::downgrade(&cache), items));
        Ok(cache)
    }

    /// Forgets every cached decision: the next check of anyone reads the database.
    fn forget_all(&self, floor: i64) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        *state = CacheState {
            floor,
            newest_mark: floor,
            ..CacheState::default()
        };
    }

    fn invalidate(
        &self,
        event_type: &str,
        tenant_id: Option<Uuid>,
        subject: Option<&str>,
        position: i64,
    ) {
        let Some(scope) = scope(event_type, tenant_id, subject) else {
            return;
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.newest_mark = state.newest_mark.max(position);
        match scope {
            Scope::Tenant(tenant) => {
                let mark = state.tenant_marks.entry(tenant).or_default();
                *mark = (*mark).max(position);
            }
            Scope::Member(tenant, user) => {
                state.entries.remove(&(tenant, user));
                let mark = state.member_marks.entry((tenant, user)).or_default();
                *mark = (*mark).max(position);
            }
        }
        if state.member_marks.len() > MAX_ENTRIES || state.tenant_marks.len() > MAX_ENTRIES {
            let floor = state.newest_mark;
            *state = CacheState {
                floor,
                newest_mark: floor,
                ..CacheState::default()
            };
        }
    }

    /// The newest position this process has applied.
    pub fn cursor(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until this process reflects `min_cursor`.
    async fn reach(&self, min_cursor: i64) -> Result<(), DomainError> {
        if min_cursor <= self.cursor() {
            return Ok(());
        }
        // A cursor the log has not reached is refused at once, not after the wait.
        let head = event_log::head(&self.store.reader())
            .await
            .map_err(db_error)?;
        if min_cursor > head {
            return Err(DomainError::CursorAhead {
                cursor: min_cursor,
                head,
            });
        }
        self.feed.nudge();
        let mut applied = self.applied.subscribe();
        if tokio::time::timeout(FRESHNESS_WAIT, applied.wait_for(|a| *a >= min_cursor))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        Err(DomainError::CursorNotReached(min_cursor))
    }

    fn cached(&self, tenant: Uuid, user: Uuid) -> Option<Entry> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let entry = *state.entries.get(&(tenant, user))?;
        let newest_change = state
            .floor
            .max(state.tenant_marks.get(&tenant).copied().unwrap_or(0))
            .max(
                state
                    .member_marks
                    .get(&(tenant, user))
                    .copied()
                    .unwrap_or(0),
            );
        (entry.loaded_at >= newest_change).then_some(entry)
    }

    /// Reads the member's state and the log head in one snapshot.
    async fn load(&self, tenant: Uuid, user: Uuid) -> Result<Entry, DomainError> {
        let txn = self.store.read_snapshot().await?;
        let loaded_at = event_log::head(&txn).await.map_err(db_error)?;
        let subject = match store::tenants::get(&txn, tenant).await {
            Err(DomainError::TenantNotFound) => Subject::TenantNotFound,
            Err(error) => return Err(error),
            Ok(t) if t.state == TenantState::Dissolved => Subject::TenantDissolved,
            Ok(_) => {
                let roles = store::roles::list(&txn, tenant).await?;
                match store::memberships::find(&txn, &roles, tenant, user).await? {
                    None => Subject::NotAMember,
                    Some((membership, role_ids)) => Subject::Member {
                        status: membership.status,
                        permissions: roles.permissions_of(&role_ids),
                    },
                }
            }
        };
        txn.commit().await.map_err(db_error)?;
        let entry = Entry { loaded_at, subject };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert((tenant, user), entry);
        Ok(entry)
    }

    /// Answers whether `user` holds `permission` in `tenant`, at least as fresh as `min_cursor`.
    /// Returns the reason and the log position the answer reflects.
    pub async fn check(
        &self,
        checks: &[(Uuid, Uuid, Permission)],
        min_cursor: i64,
    ) -> Result<(Vec<CheckReason>, i64), DomainError> {
        self.reach(min_cursor).await?;
        let mut reasons = Vec::with_capacity(checks.len());
        // Each answer reflects the newer of its own read and the invalidations applied when it
        // was taken; a batch reflects the oldest of those, never more than any of its answers.
        let mut reflects: Option<i64> = None;
        for (tenant, user, permission) in checks {
            let applied = self.cursor();
            let entry = match self.cached(*tenant, *user) {
                Some(entry) => entry,
                None => self.load(*tenant, *user).await?,
            };
            let answer_reflects = entry.loaded_at.max(applied);
            reflects = Some(reflects.map_or(answer_reflects, |r| r.min(answer_reflects)));
            reasons.push(entry.subject.decide(*permission));
        }
        Ok((reasons, reflects.unwrap_or_else(|| self.cursor())))
    }
}

/// Applies the feed's events to the cache, in order. If the subscription fails (the database
/// was unreachable, or it fell behind retention), the cache can no longer tell what changed in
/// between: it forgets everything and follows again from the current head.
async fn follow(
    cache: std::sync::Weak<AuthzCache>,
    mut items: tokio::sync::mpsc::Receiver<Result<WatchItem, DomainError>>,
) {
    loop {
        while let Some(item) = items.recv().await {
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match item {
                Ok(WatchItem::Event(event)) => {
                    cache.invalidate(
                        &event.event_type,
                        event.tenant_id,
                        event.subject_id.as_deref(),
                        event.position,
                    );
                    cache.applied.send_replace(event.position);
                }
                Ok(WatchItem::Progress { cursor }) => {
                    cache.applied.send_if_modified(|a| {
                        let newer = cursor > *a;
                        *a = (*a).max(cursor);
                        newer
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "permission cache lost the event feed; starting over");
                    // Until it follows again nothing cached may be trusted.
                    cache.forget_all(i64::MAX);
                    break;
                }
            }
        }
        // The channel closed or failed: resubscribe unless the feed is shutting down.
        let Some(strong) = cache.upgrade() else {
            return;
        };
        if strong.feed.shutdown_token().is_cancelled() {
            return;
        }
        match strong
            .feed
            .follow(StartAt::Now, EventFilter::default())
            .await
        {
            Ok((start, next)) => {
                strong.forget_all(start);
                strong.applied.send_if_modified(|a| {
                    let newer = start > *a;
                    *a = (*a).max(start);
                    newer
                });
                items = next;
            }
            Err(error) => {
                tracing::warn!(%error, "permission cache cannot follow the event feed yet");
                drop(strong);
                tokio::time::sleep(Duration::from_secs(1)).await;
                items = tokio::sync::mpsc::channel(1).1;
            }
        }
    }
}
