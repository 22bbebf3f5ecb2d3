//! Membership use cases (DESIGN rules 5-14).

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::access::{Access, conceal_absence};
use super::authz::CachedPage;
use super::{Locked, Services, membership_key};
use crate::domain::events::{EventCursor, EventType, NewEvent};
use crate::domain::membership::{ListFilter, SortKey};
use crate::domain::membership::{Membership, MembershipSource, MembershipStatus, MembershipType};
use crate::domain::permissions::{MEMBER_ROLE, Permission};
use crate::domain::role::{BindingKind, BindingSubject};
use crate::domain::tenant::check_etag;
use crate::domain::{Caller, DomainError, Versioned, now_micros};
use crate::store::memberships::{After, ListedPage, PageRequest, sort_value};
use crate::store::{self, Tx, event_log, requests};

pub struct CreateMembership {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub member_type: MembershipType,
    pub source: MembershipSource,
    pub external_id: Option<String>,
    pub role: String,
    pub status: MembershipStatus,
    pub request_id: Option<String>,
}

/// The fields UpdateMembership may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct MembershipPatch {
    pub display_name: Option<String>,
    pub member_type: Option<MembershipType>,
    /// `Some(None)` clears the external id.
    pub external_id: Option<Option<String>>,
    pub status: Option<MembershipStatus>,
}

pub struct ListMemberships {
    pub tenant_id: Uuid,
    pub filter: ListFilter,
    pub role_name: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub page_size: u64,
    pub page_token: String,
    /// The answer reflects at least this event position (0: whatever this replica has seen).
    pub min_cursor: EventCursor,
}

pub struct MembershipPage {
    /// The members and the next page's token, shared with the cache when it keeps them.
    pub listed: Arc<CachedPage>,
    pub cursor: EventCursor,
}

const CREATE_MEMBERSHIP: &str = "CreateMembership";

/// A member, read at least as fresh as `min_cursor`.
pub struct GetMembership {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub min_cursor: EventCursor,
}

/// A change to a member's fields, at the etag the caller read it at.
pub struct UpdateMembership {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub etag: String,
    pub patch: MembershipPatch,
}

/// A member named by tenant and user, at the etag the caller read it at (empty: any).
pub struct MemberAt {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub etag: String,
}

/// A member to remove, at the etag the caller read it at; `validate_only` checks and writes
/// nothing.
pub struct DeleteMembership {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub etag: String,
    pub validate_only: bool,
}

/// The owner role moving to `new_owner_id`; the previous owner keeps `previous_owner_role`.
pub struct TransferOwnership {
    pub tenant_id: Uuid,
    pub new_owner_id: Uuid,
    pub previous_owner_role: String,
}

impl Services {
    pub async fn list_memberships(
        &self,
        caller: Caller,
        query: ListMemberships,
    ) -> Result<MembershipPage, DomainError> {
        let pager = self.page_tokens.pager(
            &[
                &query.tenant_id.to_string(),
                query.filter.status.map_or("", |s| s.as_str()),
                query.filter.member_type.map_or("", |t| t.as_str()),
                query.filter.source.map_or("", |s| s.as_str()),
                query.role_name.as_deref().unwrap_or(""),
                query.filter.query.as_ref().map_or("", |q| q.email.as_str()),
                query.filter.query.as_ref().map_or("", |q| q.name.as_str()),
                &format!("{:?}/{}", query.sort, query.descending),
                &query
                    .filter
                    .group_id
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            ],
            query.page_size,
        );
        let after = pager.after(&query.page_token)?;
        self.authz.reach(query.min_cursor).await?;
        // A page does not depend on who asks; whether they may see it does.
        let cache_key = format!(
            "{}/{}/{}",
            pager.fingerprint(),
            query.page_size,
            query.page_token
        );
        if self.may_read_members(caller, query.tenant_id).await?
            && let Some((page, cursor)) = self.authz.cached_page(query.tenant_id, &cache_key)
        {
            return Ok(MembershipPage {
                listed: page,
                cursor: EventCursor(cursor),
            });
        }
        let conn = self.store.read_snapshot().await?;
        let (tenant, roles, access) = Access::read(&conn, query.tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        tenant.ensure_enterprise()?;
        let cursor = event_log::head(&conn).await.map_err(store::db_error)?;
        let mut filter = query.filter;
        if let Some(name) = &query.role_name {
            match roles.by_name(name) {
                Some(role) => filter.role_id = Some(role.id),
                // Nobody holds a role that does not exist.
                None => {
                    return Ok(MembershipPage {
                        listed: Arc::new(CachedPage {
                            memberships: Vec::new(),
                            next_page_token: String::new(),
                        }),
                        cursor: EventCursor(cursor),
                    });
                }
            }
        }
        let ListedPage {
            members: memberships,
            more,
            changes_at,
        } = store::memberships::list(
            &conn,
            &roles,
            tenant.id,
            &filter,
            PageRequest {
                sort: query.sort,
                descending: query.descending,
                after: after.as_ref(),
                page_size: query.page_size,
            },
            now_micros(),
        )
        .await?;
        let next_page_token = pager.next(memberships.last().filter(|_| more).map(|last| After {
            value: sort_value(last, query.sort),
            user_id: last.user_id,
        }));
        conn.commit().await.map_err(store::db_error)?;
        let page = CachedPage {
            memberships,
            next_page_token,
        };
        Ok(MembershipPage {
            listed: self
                .authz
                .remember_page(query.tenant_id, cache_key, page, cursor, changes_at),
            cursor: EventCursor(cursor),
        })
    }

    /// Whether `caller` may read any member of `tenant`, as far as the permission cache can
    /// tell at once (`false` sends the caller down the path that says exactly why not).
    async fn may_read_members(&self, caller: Caller, tenant: Uuid) -> Result<bool, DomainError> {
        match caller {
            Caller::System => Ok(true),
            Caller::User(user) => {
                self.authz
                    .grants(tenant, user, Permission::MembersRead)
                    .await
            }
        }
    }

    /// Members with `members.read` see anyone; every user sees their own membership. Returns the
    /// membership and the event position the answer reflects.
    pub async fn get_membership(
        &self,
        caller: Caller,
        GetMembership {
            tenant_id,
            user_id,
            min_cursor,
        }: GetMembership,
    ) -> Result<(Membership, EventCursor), DomainError> {
        self.authz.reach(min_cursor).await?;
        // A system caller, a user reading their own membership, or one the permission cache
        // says may read members, needs nothing but the row: remembered, or one statement,
        // which is its own snapshot.
        let own = caller == Caller::User(user_id);
        if own || self.may_read_members(caller, tenant_id).await? {
            if let Some((found, at)) = self.authz.cached_membership(tenant_id, user_id) {
                return Ok((found, EventCursor(at)));
            }
            let read =
                store::memberships::get_in_one_read(&self.store.reader(), tenant_id, user_id)
                    .await
                    .map_err(|error| match error {
                        // A user with no membership in the tenant (or no such tenant) hears what
                        // any non-member hears.
                        DomainError::TenantNotFound | DomainError::MembershipNotFound if own => {
                            DomainError::NotAMember
                        }
                        error => error,
                    });
            let (membership, loaded_at) = read?;
            self.authz.remember_membership(&membership, loaded_at);
            return Ok((membership, EventCursor(loaded_at)));
        }
        let conn = self.store.read_snapshot().await?;
        let (_, _, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        let (found, at) = store::memberships::get_in_one_read(&conn, tenant_id, user_id).await?;
        conn.commit().await.map_err(store::db_error)?;
        Ok((found, EventCursor(at)))
    }

    pub async fn create_membership(
        &self,
        caller: Caller,
        command: CreateMembership,
    ) -> Result<(Membership, EventCursor), DomainError> {
        let request_id = command.request_id.clone();
        let key = membership_key(command.tenant_id, command.user_id);
        let (tenant_id, user_id) = (command.tenant_id, command.user_id);
        let outcome = self
            .write_locked(caller, command.tenant_id, move |tx, locked| {
                Box::pin(async move {
                    let Locked {
                        tenant,
                        roles,
                        access,
                        counters,
                    } = locked;
                    // Checked under the tenant lock, so a concurrent retry sees the first call.
                    if let Some(request_id) = &command.request_id
                        && let Some(done) =
                            replay_create_membership(&tx.txn, request_id, &key).await?
                    {
                        return Ok(done);
                    }
                    let role = roles.bindable(&command.role)?;
                    access.require_grant(role)?;
                    let now = now_micros();
                    let joining = Membership {
                        status: command.status,
                        member_type: command.member_type,
                        source: command.source,
                        external_id: command.external_id,
                        invited_by: caller.user_id(),
                        joined_at: (command.status == MembershipStatus::Active).then_some(now),
                        ..Membership::joining(
                            (tenant.id, command.user_id),
                            command.email,
                            command.display_name,
                            &role.name,
                            now,
                        )
                    };
                    // A new member is one statement; a row already there is read: a member,
                    // refused, or one who left, who comes back on it, keeping its history.
                    let before = if store::memberships::insert_unless_present(&tx.txn, &joining)
                        .await?
                    {
                        None
                    } else {
                        let (member, _) =
                            store::memberships::find(&tx.txn, &roles, tenant.id, command.user_id)
                                .await?
                                .ok_or(DomainError::Conflict)?;
                        if member.status != MembershipStatus::Left {
                            return Err(DomainError::MemberExists);
                        }
                        Some(member)
                    };
                    store::tenants::ensure_seats(&tx.txn, &tenant, &counters, 1).await?;
                    let membership = joining.returning(before.as_ref());
                    match &before {
                        None => store::memberships::joined(&tx.txn, &membership, role.id).await?,
                        Some(_) => {
                            store::memberships::join(&tx.txn, before.as_ref(), &membership, role.id)
                                .await?
                        }
                    }
                    tx.remember_request(
                        CREATE_MEMBERSHIP,
                        command.request_id.as_deref(),
                        &key,
                        now,
                    )
                    .await?;
                    tx.emit(
                        EventType::MembershipCreated,
                        before.as_ref(),
                        Some(&membership),
                    )
                    .for_request(command.request_id.as_deref());
                    if counters.has_pending_invitations() {
                        super::invitations::close_for_new_member(
                            tx,
                            &roles,
                            tenant.id,
                            &membership.email,
                        )
                        .await?;
                    }
                    Ok(membership)
                })
            })
            .await;
        let key = membership_key(tenant_id, user_id);
        self.or_as_the_first_call(outcome, request_id.as_deref(), async |conn, request_id| {
            replay_create_membership(conn, request_id, &key).await
        })
        .await
    }

    pub async fn update_membership(
        &self,
        caller: Caller,
        UpdateMembership {
            tenant_id,
            user_id,
            etag,
            patch,
        }: UpdateMembership,
    ) -> Result<(Membership, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                let (before, role_ids) = managed_member(tx, &locked, user_id).await?;
                check_etag(&etag, before.version)?;
                let is_owner = locked.roles.holds_owner_role(&role_ids);
                let mut after = before.clone();
                let now = now_micros();
                if let Some(name) = patch.display_name {
                    after.display_name = name;
                }
                if let Some(external_id) = patch.external_id {
                    after.external_id = external_id;
                }
                if let Some(member_type) = patch.member_type {
                    if (member_type == MembershipType::Owner) != is_owner {
                        return Err(DomainError::invalid(
                            "membership.type",
                            MembershipType::Owner.refuse_direct().unwrap_or_default(),
                        ));
                    }
                    after.member_type = member_type;
                }
                if let Some(status) = patch.status {
                    if status == MembershipStatus::Suspended {
                        locked.roles.ensure_not_owner(&role_ids)?;
                    }
                    after.change_status(status, now)?;
                }
                let event_type = match (before.status, after.status) {
                    (MembershipStatus::Active, MembershipStatus::Suspended) => {
                        EventType::MembershipSuspended
                    }
                    (MembershipStatus::Suspended, MembershipStatus::Active) => {
                        EventType::MembershipReactivated
                    }
                    _ => EventType::MembershipUpdated,
                };
                tx.save(event_type, &before, after, now).await
            })
        })
        .await
    }

    /// SuspendMembership and ReactivateMembership: the member's status set to `status`.
    pub async fn set_membership_status(
        &self,
        caller: Caller,
        MemberAt {
            tenant_id,
            user_id,
            etag,
        }: MemberAt,
        status: MembershipStatus,
    ) -> Result<(Membership, EventCursor), DomainError> {
        let patch = MembershipPatch {
            status: Some(status),
            ..MembershipPatch::default()
        };
        let change = UpdateMembership {
            tenant_id,
            user_id,
            etag,
            patch,
        };
        self.update_membership(caller, change).await
    }

    /// Deletes the membership and its bindings; the identity stays, the seat is freed.
    pub async fn delete_membership(
        &self,
        caller: Caller,
        DeleteMembership {
            tenant_id,
            user_id,
            etag,
            validate_only,
        }: DeleteMembership,
    ) -> Result<EventCursor, DomainError> {
        let ((), cursor) = self
            .write_locked(caller, tenant_id, move |tx, locked| {
                Box::pin(async move {
                    let (before, role_ids) = managed_member(tx, &locked, user_id).await?;
                    check_etag(&etag, before.version)?;
                    locked.roles.ensure_not_owner(&role_ids)?;
                    if validate_only {
                        tx.roll_back_at_end();
                        return Ok(());
                    }
                    super::groups::leave_all_groups(tx, &locked.roles, tenant_id, user_id).await?;
                    store::memberships::delete(&tx.txn, &before).await?;
                    tx.emit(EventType::MembershipDeleted, Some(&before), None);
                    Ok(())
                })
            })
            .await?;
        Ok(cursor)
    }

    /// The caller leaves: status LEFT, bindings dropped, seat freed.
    pub async fn leave_tenant(
        &self,
        caller: Caller,
        tenant_id: Uuid,
    ) -> Result<(Membership, EventCursor), DomainError> {
        let Caller::User(user_id) = caller else {
            return Err(DomainError::ActorRequired);
        };
        self.store
            .write_to(tenant_id, caller, move |tx| {
                Box::pin(async move {
                    let (tenant, roles, _) = store::tenants::lock_with_roles(&tx.txn, tenant_id)
                        .await
                        .map_err(conceal_absence(caller))?;
                    let Some((before, role_ids)) =
                        store::memberships::find(&tx.txn, &roles, tenant_id, user_id).await?
                    else {
                        return Err(DomainError::NotAMember);
                    };
                    tenant.ensure_member_management()?;
                    if before.status == MembershipStatus::Left {
                        return Err(DomainError::NotAMember);
                    }
                    roles.ensure_not_owner(&role_ids)?;
                    let now = now_micros();
                    let mut after = before.clone();
                    after.change_status(MembershipStatus::Left, now)?;
                    after.roles.clear();
                    let subject = BindingSubject::User(user_id);
                    store::bindings::unbind(&tx.txn, tenant_id, subject, None).await?;
                    super::groups::leave_all_groups(tx, &roles, tenant_id, user_id).await?;
                    tx.save(EventType::MembershipLeft, &before, after, now)
                        .await
                })
            })
            .await
    }

    /// Moves the owner role in one transaction; the previous owner keeps `previous_owner_role`.
    pub async fn transfer_ownership(
        &self,
        caller: Caller,
        TransferOwnership {
            tenant_id,
            new_owner_id,
            previous_owner_role,
        }: TransferOwnership,
    ) -> Result<(Membership, Membership, EventCursor), DomainError> {
        let ((previous, next), cursor) = self
            .write_locked(caller, tenant_id, move |tx, locked| {
                Box::pin(async move {
                    let Locked {
                        tenant,
                        roles,
                        access,
                        ..
                    } = locked;
                    access.require(Permission::OwnerTransfer)?;
                    let owner_role = roles
                        .owner_role()
                        .ok_or_else(|| DomainError::Internal("tenant without owner role".into()))?
                        .clone();
                    let kept_role = roles.bindable(&previous_owner_role)?.clone();
                    let owner_id = store::bindings::holders_of(
                        &tx.txn,
                        tenant.id,
                        BindingKind::User,
                        owner_role.id,
                    )
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| DomainError::Internal("tenant without owner".into()))?;
                    if owner_id == new_owner_id {
                        return Err(DomainError::AlreadyOwner);
                    }
                    let (target_before, target_roles) =
                        store::memberships::get(&tx.txn, &roles, tenant.id, new_owner_id).await?;
                    if target_before.status != MembershipStatus::Active {
                        return Err(DomainError::MembershipNotActive(
                            target_before.status.as_str(),
                        ));
                    }
                    let (owner_before, _) =
                        store::memberships::get(&tx.txn, &roles, tenant.id, owner_id).await?;
                    let now = now_micros();

                    // The previous owner ends with exactly the role the request names, so no
                    // right held beside the owner role outlives the transfer unintended.
                    let previous = BindingSubject::User(owner_id);
                    store::bindings::unbind(&tx.txn, tenant.id, previous, None).await?;
                    store::bindings::bind(&tx.txn, tenant.id, previous, kept_role.id, now).await?;
                    let kept_roles = vec![kept_role.id];
                    let mut owner_after = owner_before.clone();
                    owner_after.roles = roles.names_of(&kept_roles);
                    owner_after.member_type = if roles
                        .permissions_of(&kept_roles)
                        .contains(Permission::MembersManage)
                    {
                        MembershipType::Admin
                    } else {
                        MembershipType::Member
                    };
                    owner_after.revise(now);
                    store::memberships::update(&tx.txn, &owner_before, &owner_after).await?;

                    store::bindings::bind(
                        &tx.txn,
                        tenant.id,
                        BindingSubject::User(new_owner_id),
                        owner_role.id,
                        now,
                    )
                    .await?;
                    let mut target_after = target_before.clone();
                    let mut target_role_ids = target_roles;
                    target_role_ids.push(owner_role.id);
                    target_after.roles = roles.names_of(&target_role_ids);
                    target_after.member_type = MembershipType::Owner;
                    target_after.revise(now);
                    store::memberships::update(&tx.txn, &target_before, &target_after).await?;

                    tx.emit(
                        EventType::MembershipUpdated,
                        Some(&owner_before),
                        Some(&owner_after),
                    );
                    tx.emit(
                        EventType::MembershipUpdated,
                        Some(&target_before),
                        Some(&target_after),
                    );
                    tx.emit_event(NewEvent {
                        tenant_id: Some(tenant.id),
                        event_type: EventType::OwnershipTransferred,
                        actor_id: caller.user_id(),
                        subject_id: Some(new_owner_id.to_string()),
                        request_id: None,
                        before: Some(serde_json::json!({ "owner_user_id": owner_id })),
                        after: Some(serde_json::json!({ "owner_user_id": new_owner_id })),
                    });
                    Ok((owner_after, target_after))
                })
            })
            .await?;
        Ok((previous, next, cursor))
    }
}

/// A member the caller acts on (update, suspend, remove), with their own role ids: acting on
/// them needs the rights over what they hold, their own bindings and their groups'.
async fn managed_member(
    tx: &Tx,
    locked: &Locked,
    user_id: Uuid,
) -> Result<(Membership, Vec<Uuid>), DomainError> {
    let (member, bindings) =
        store::memberships::get_with_groups(&tx.txn, &locked.roles, locked.tenant.id, user_id)
            .await?;
    locked
        .access
        .require_manage(bindings.permissions(&locked.roles))?;
    Ok((member, bindings.own))
}

/// The membership an earlier call with this request_id produced, as it is now.
async fn replay_create_membership<C: ConnectionTrait>(
    conn: &C,
    request_id: &str,
    key: &str,
) -> Result<Option<Membership>, DomainError> {
    let Some(recorded) = requests::find(conn, CREATE_MEMBERSHIP, request_id).await? else {
        return Ok(None);
    };
    if recorded != key {
        return Err(DomainError::RequestIdReused);
    }
    let (tenant_id, user_id) = key
        .split_once('/')
        .and_then(|(t, u)| Some((Uuid::try_parse(t).ok()?, Uuid::try_parse(u).ok()?)))
        .ok_or_else(|| store::corrupt("request key", key))?;
    let roles = store::roles::list(conn, tenant_id).await?;
    let (membership, _) = store::memberships::get(conn, &roles, tenant_id, user_id).await?;
    Ok(Some(membership))
}

/// The role a direct creation binds when the request names none.
pub fn default_role(requested: &str) -> String {
    if requested.is_empty() {
        MEMBER_ROLE.to_string()
    } else {
        requested.to_string()
    }
}
