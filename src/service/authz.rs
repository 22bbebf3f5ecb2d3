//! Permission checks (CheckPermission) for other services, the hot path: token introspection
//! asks on every request of every other service. (What a caller of this service may do is
//! decided by [`super::access`], inside each use case's transaction.) Answers come from an
//! in-memory cache of per-member decisions, kept correct by invalidation rather than expiry:
//!
//! - this process's own commits invalidate synchronously, before the writing call returns, so
//!   a check after a mutation on the same replica reflects it (a suspension denies at once);
//! - every other replica's commits arrive through the event feed, within its delivery latency,
//!   and a caller holding a mutation's cursor can demand an answer at least that fresh.
//!
//! An entry remembers the log position its database read reflected; an invalidation records the
//! position of the event that caused it. An entry is used only if it is at least as new as every
//! invalidation of its tenant and member, so a read that raced with a write is never trusted.
//!
//! The same cache, under the same rules, answers GetMembership (a member's row, invalidated by
//! the events about that member and the tenant-wide ones) and ListMemberships (whole pages,
//! invalidated by every event of their tenant, and by the clock when a pending invitation on
//! the page expires), within a budget of member rows (`--read-cache-members`; 0 turns those
//! two off).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::events::{EventCursor, EventFilter, NewEvent};
use crate::domain::membership::{Membership, MembershipStatus};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::tenant::TenantState;
use crate::domain::{DomainError, Micros};
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

/// The binding a granted permission comes from: a role bound to the member, or to a group
/// the member is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: String,
    pub group_id: Option<Uuid>,
}

/// One check's answer, and the binding that granted it when it was granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub reason: CheckReason,
    pub granted_by: Option<Grant>,
}

/// What the cache knows about one (tenant, user).
#[derive(Clone, Debug)]
enum Subject {
    TenantNotFound,
    TenantDissolved,
    NotAMember,
    Member {
        status: MembershipStatus,
        permissions: PermissionSet,
        /// Each binding with what it grants: the member's own first, so a permission held
        /// both ways is reported as direct.
        grants: Arc<[(PermissionSet, Grant)]>,
    },
}

impl Subject {
    fn decide(&self, permission: Permission) -> Decision {
        let reason = match self {
            Subject::TenantNotFound => CheckReason::TenantNotFound,
            Subject::TenantDissolved => CheckReason::TenantDissolved,
            Subject::NotAMember => CheckReason::NotAMember,
            Subject::Member {
                status,
                permissions,
                grants,
            } => match status {
                MembershipStatus::Invited => CheckReason::MembershipInvited,
                MembershipStatus::Suspended => CheckReason::MembershipSuspended,
                MembershipStatus::Left => CheckReason::MembershipLeft,
                MembershipStatus::Active if permissions.contains(permission) => {
                    return Decision {
                        reason: CheckReason::Granted,
                        granted_by: grants
                            .iter()
                            .find(|(held, _)| held.contains(permission))
                            .map(|(_, grant)| grant.clone()),
                    };
                }
                MembershipStatus::Active => CheckReason::NotGranted,
            },
        };
        Decision {
            reason,
            granted_by: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    loaded_at: i64,
    subject: Subject,
}

/// A membership as read from the database, with what the read reflected.
struct MemberEntry {
    loaded_at: i64,
    outside_writes: u64,
    membership: Arc<Membership>,
}

/// A page of a member list, as the database gave it.
pub struct CachedPage {
    pub memberships: Vec<Membership>,
    pub next_page_token: String,
}

struct PageEntry {
    loaded_at: i64,
    outside_writes: u64,
    /// When a pending invitation on the page expires, and the page with it.
    changes_at: Option<Micros>,
    page: Arc<CachedPage>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<(Uuid, Uuid), Entry>,
    memberships: HashMap<(Uuid, Uuid), MemberEntry>,
    /// Each tenant's cached pages, by the query that produced them.
    pages: HashMap<Uuid, HashMap<String, PageEntry>>,
    /// Member rows held in `pages`.
    page_rows: usize,
    tenant_marks: HashMap<Uuid, i64>,
    member_marks: HashMap<(Uuid, Uuid), i64>,
    /// The newest event of each tenant, whatever it was about: what its pages must be newer than.
    list_marks: HashMap<Uuid, i64>,
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
    /// Most member rows kept for GetMembership and, apart, for ListMemberships pages.
    read_budget: usize,
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
        // Creating or renaming a group changes nobody's permissions (a check names the group
        // by id).
        "group" if matches!(event_type, "group.created" | "group.updated") => None,
        // A group's bindings and its deletion (subject `group/<id>`) reach every member of the
        // group: the tenant. A member joining or leaving one (subject: the user) reaches them.
        "membership" | "role_binding" | "ownership" | "group" => {
            match subject_id.and_then(|s| Uuid::try_parse(s).ok()) {
                Some(user) => Some(Scope::Member(tenant_id, user)),
                None => Some(Scope::Tenant(tenant_id)),
            }
        }
        _ => None,
    }
}

impl CacheState {
    /// The newest invalidation a member's entries must be at least as new as.
    fn newest_change(&self, tenant: Uuid, user: Uuid) -> i64 {
        self.floor
            .max(self.tenant_marks.get(&tenant).copied().unwrap_or(0))
            .max(self.member_marks.get(&(tenant, user)).copied().unwrap_or(0))
    }

    /// The newest event of `tenant` its member list pages must be at least as new as.
    fn newest_list_change(&self, tenant: Uuid) -> i64 {
        self.floor
            .max(self.list_marks.get(&tenant).copied().unwrap_or(0))
    }
}

impl AuthzCache {
    /// Starts following the event feed and hooks into this process's commits.
    pub async fn start(
        store: Store,
        feed: EventFeed,
        read_budget: usize,
    ) -> Result<Arc<AuthzCache>, DomainError> {
        let (start, items) = feed.follow(StartAt::Now, EventFilter::default()).await?;
        let cache = Arc::new(AuthzCache {
            store: store.clone(),
            feed,
            read_budget,
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
        let Some(tenant) = tenant_id else {
            return;
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.newest_mark = state.newest_mark.max(position);
        // Any change in a tenant may move its member list: an invitation, a rename, a role.
        let mark = state.list_marks.entry(tenant).or_default();
        *mark = (*mark).max(position);
        if let Some(pages) = state.pages.remove(&tenant) {
            state.page_rows -= pages
                .values()
                .map(|p| p.page.memberships.len())
                .sum::<usize>();
        }
        match scope(event_type, tenant_id, subject) {
            Some(Scope::Tenant(tenant)) => {
                let mark = state.tenant_marks.entry(tenant).or_default();
                *mark = (*mark).max(position);
            }
            Some(Scope::Member(tenant, user)) => {
                state.entries.remove(&(tenant, user));
                state.memberships.remove(&(tenant, user));
                let mark = state.member_marks.entry((tenant, user)).or_default();
                *mark = (*mark).max(position);
            }
            None => {}
        }
        if state.member_marks.len() > MAX_ENTRIES
            || state.tenant_marks.len() > MAX_ENTRIES
            || state.list_marks.len() > MAX_ENTRIES
        {
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

    /// Waits until this process reflects `min_cursor`: every event up to it has been applied
    /// here. CURSOR_AHEAD for a cursor the log has not reached.
    pub async fn reach(&self, EventCursor(min_cursor): EventCursor) -> Result<(), DomainError> {
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
        let entry = state.entries.get(&(tenant, user))?.clone();
        (entry.loaded_at >= state.newest_change(tenant, user)).then_some(entry)
    }

    /// A member's row as GetMembership returns it, if one read since its last change is
    /// remembered; with the position the answer reflects.
    pub fn cached_membership(&self, tenant: Uuid, user: Uuid) -> Option<(Membership, i64)> {
        let applied = self.cursor();
        let outside_writes = self.store.outside_writes();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let entry = state.memberships.get(&(tenant, user))?;
        (entry.loaded_at >= state.newest_change(tenant, user)
            && entry.outside_writes == outside_writes)
            .then(|| ((*entry.membership).clone(), entry.loaded_at.max(applied)))
    }

    /// Remembers a member's row read from the database as of `loaded_at`.
    pub fn remember_membership(&self, membership: &Membership, loaded_at: i64) {
        if self.read_budget == 0 {
            return;
        }
        let outside_writes = self.store.outside_writes();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.memberships.len() >= self.read_budget {
            state.memberships.clear();
        }
        state.memberships.insert(
            (membership.tenant_id, membership.user_id),
            MemberEntry {
                loaded_at,
                outside_writes,
                membership: Arc::new(membership.clone()),
            },
        );
    }

    /// A page of `tenant`'s member list for the query `key`, if it is remembered and nothing
    /// in the tenant changed since it was read; with the position the page reflects.
    pub fn cached_page(&self, tenant: Uuid, key: &str) -> Option<(Arc<CachedPage>, i64)> {
        let applied = self.cursor();
        let outside_writes = self.store.outside_writes();
        let now = crate::domain::now_micros();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let entry = state.pages.get(&tenant)?.get(key)?;
        (entry.loaded_at >= state.newest_list_change(tenant)
            && entry.outside_writes == outside_writes
            && entry.changes_at.is_none_or(|at| now < at))
        .then(|| (entry.page.clone(), entry.loaded_at.max(applied)))
    }

    /// Remembers a page read from the database as of `loaded_at` (if it fits the budget).
    pub fn remember_page(
        &self,
        tenant: Uuid,
        key: String,
        page: CachedPage,
        loaded_at: i64,
        changes_at: Option<Micros>,
    ) -> Arc<CachedPage> {
        let page = Arc::new(page);
        let rows = page.memberships.len();
        if self.read_budget == 0 || rows > self.read_budget {
            return page;
        }
        let outside_writes = self.store.outside_writes();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.page_rows + rows > self.read_budget {
            state.pages.clear();
            state.page_rows = 0;
        }
        let entry = PageEntry {
            loaded_at,
            outside_writes,
            changes_at,
            page: page.clone(),
        };
        if let Some(replaced) = state.pages.entry(tenant).or_default().insert(key, entry) {
            state.page_rows -= replaced.page.memberships.len();
        }
        state.page_rows += rows;
        page
    }

    /// Whether `user` holds `permission` in `tenant`, from the cache where it can.
    pub async fn grants(
        &self,
        tenant: Uuid,
        user: Uuid,
        permission: Permission,
    ) -> Result<bool, DomainError> {
        let (decisions, _) = self
            .check(&[(tenant, user, permission)], EventCursor(0))
            .await?;
        Ok(decisions.first().map(|d| d.reason) == Some(CheckReason::Granted))
    }

    /// Reads the member's state and the log head in one snapshot.
    async fn load(&self, tenant: Uuid, user: Uuid) -> Result<Entry, DomainError> {
        let txn = self.store.read_snapshot().await?;
        let loaded_at = event_log::head(&txn).await.map_err(db_error)?;
        let subject = match store::tenants::get_with_roles(&txn, tenant).await {
            Err(DomainError::TenantNotFound) => Subject::TenantNotFound,
            Err(error) => return Err(error),
            Ok((t, _)) if t.state == TenantState::Dissolved => Subject::TenantDissolved,
            Ok((_, roles)) => {
                match store::memberships::find_with_groups(&txn, &roles, tenant, user, true).await?
                {
                    None => Subject::NotAMember,
                    Some((membership, mut bindings)) => {
                        // Direct grants first; then groups in a stable order, so the same state
                        // always names the same granting binding.
                        bindings
                            .through_groups
                            .sort_by_key(|(role, group)| (*group, *role));
                        let grant = |role_id: Uuid, group_id: Option<Uuid>| {
                            let role = roles.by_id(role_id)?;
                            let grant = Grant {
                                role: role.name.clone(),
                                group_id,
                            };
                            Some((role.permissions, grant))
                        };
                        let grants: Vec<(PermissionSet, Grant)> =
                            (bindings.own.iter())
                                .filter_map(|role_id| grant(*role_id, None))
                                .chain((bindings.through_groups.iter()).filter_map(
                                    |(role_id, group_id)| grant(*role_id, Some(*group_id)),
                                ))
                                .collect();
                        Subject::Member {
                            status: membership.status,
                            permissions: (grants.iter())
                                .fold(PermissionSet::EMPTY, |set, (held, _)| set.union(*held)),
                            grants: grants.into(),
                        }
                    }
                }
            }
        };
        txn.commit().await.map_err(db_error)?;
        let entry = Entry { loaded_at, subject };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert((tenant, user), entry.clone());
        Ok(entry)
    }

    /// Answers whether `user` holds `permission` in `tenant`, at least as fresh as `min_cursor`.
    /// Returns the reason and the log position the answer reflects.
    pub async fn check(
        &self,
        checks: &[(Uuid, Uuid, Permission)],
        min_cursor: EventCursor,
    ) -> Result<(Vec<Decision>, i64), DomainError> {
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
