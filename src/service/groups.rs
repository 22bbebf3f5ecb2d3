//! Group use cases (DESIGN rules 24–28). Nobody gains a role through a group they could not
//! bind directly: every change that moves who holds a group's roles is checked as binding (or
//! unbinding) each of those roles to each member it reaches.

use std::collections::HashMap;

use uuid::Uuid;

use super::access::{Access, member_permissions};
use super::{Locked, Services};
use crate::domain::events::{EventCursor, EventType};
use crate::domain::group::{Group, GroupMember, MemberOutcome, may_join};
use crate::domain::membership::{Membership, MembershipSource};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{Role, TenantRoles};
use crate::domain::tenant::check_etag;
use crate::domain::{Caller, DomainError, Versioned, now_micros};
use crate::store::groups::GroupQuery;
use crate::store::memberships::{After, SortValue};
use crate::store::{self, Transaction, Tx, db_error, requests};

const CREATE_GROUP: &str = "CreateGroup";

/// A group to create.
pub struct CreateGroup {
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub source: MembershipSource,
    pub external_id: Option<String>,
    pub request_id: Option<String>,
}

/// A group of a tenant, by id.
pub struct GroupRef {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
}

/// A page of a tenant's groups.
pub struct ListGroups {
    pub tenant_id: Uuid,
    pub query: Option<String>,
    pub source: Option<MembershipSource>,
    pub user_id: Option<Uuid>,
    pub page_size: u64,
    pub page_token: String,
}

/// The fields UpdateGroup may change.
#[derive(Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub external_id: Option<Option<String>>,
}

pub struct UpdateGroup {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub etag: String,
    pub patch: GroupPatch,
}

pub struct DeleteGroup {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub etag: String,
    pub validate_only: bool,
}

/// Users to add to, or remove from, a group (deduplicated, in request order).
pub struct GroupMembers {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub user_ids: Vec<Uuid>,
}

/// A page of a group's members.
pub struct ListGroupMembers {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub page_size: u64,
    pub page_token: String,
}

/// What AddGroupMembers or RemoveGroupMembers did: one outcome per user id, and the group.
pub type MembersChanged = (Vec<(Uuid, MemberOutcome)>, Group);

/// The roles of `role_ids` in the tenant.
fn roles_of<'r>(roles: &'r TenantRoles, role_ids: &[Uuid]) -> Vec<&'r Role> {
    role_ids.iter().filter_map(|id| roles.by_id(*id)).collect()
}

/// Whether the caller's rights over each member reached must be checked: a caller with
/// `admins.manage` may act on anyone, so nothing need be read for it.
pub(crate) fn members_matter(locked: &Locked) -> bool {
    !locked.access.permissions.contains(Permission::AdminsManage)
}

/// What each of `user_ids` may do, when the caller's rights over them matter (see
/// [`members_matter`]).
pub(crate) async fn permissions_when_needed(
    txn: &Transaction,
    locked: &Locked,
    user_ids: &[Uuid],
) -> Result<Vec<PermissionSet>, DomainError> {
    if !members_matter(locked) {
        return Ok(Vec::new());
    }
    let by_user = member_permissions(txn, &locked.roles, locked.tenant.id, user_ids).await?;
    Ok(by_user.into_values().collect())
}

/// Takes a member out of every group they are in (removal, leave, dissolution), an event each.
pub(crate) async fn leave_all_groups(
    tx: &mut Tx,
    roles: &TenantRoles,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(), DomainError> {
    for group in store::groups::groups_of(&tx.txn, roles, tenant_id, user_id).await? {
        store::groups::remove_members(&tx.txn, tenant_id, group.id, &[user_id]).await?;
        store::groups::count_members(&tx.txn, tenant_id, group.id, -1, now_micros()).await?;
        tx.emit(
            EventType::GroupMemberRemoved,
            Some(&GroupMember::of(&group, user_id)),
            None,
        );
    }
    Ok(())
}

/// A short digest of a group name as compared (case aside), for idempotency keys.
fn name_digest(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(Group::name_key(name).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The group an earlier CreateGroup with this request_id produced, as it is now.
async fn replay_create_group(
    conn: &Transaction,
    request_id: &str,
    tenant_id: Uuid,
    name: &str,
) -> Result<Option<Group>, DomainError> {
    let Some(recorded) = requests::find(conn, CREATE_GROUP, request_id).await? else {
        return Ok(None);
    };
    // The key names the tenant, the group made, and the name it was made with: a retry after
    // a rename still finds its group, and another request with the same id is refused.
    let group_id = recorded
        .strip_prefix(&format!("{tenant_id}/"))
        .and_then(|rest| rest.strip_suffix(&format!("/{}", name_digest(name))))
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or(DomainError::RequestIdReused)?;
    let roles = store::roles::list(conn, tenant_id).await?;
    let (group, _) = store::groups::get(conn, &roles, tenant_id, group_id).await?;
    Ok(Some(group))
}

impl Services {
    pub async fn create_group(
        &self,
        caller: Caller,
        command: CreateGroup,
    ) -> Result<(Group, EventCursor), DomainError> {
        let request_id = command.request_id.clone();
        let (tenant_id, name) = (command.tenant_id, command.name.clone());
        let outcome = self
            .write_locked(caller, command.tenant_id, move |tx, locked| {
                Box::pin(async move {
                    locked.access.require(Permission::GroupsManage)?;
                    // Checked under the tenant lock, so a concurrent retry sees the first call.
                    if let Some(request_id) = &command.request_id
                        && let Some(done) = replay_create_group(
                            &tx.txn,
                            request_id,
                            command.tenant_id,
                            &command.name,
                        )
                        .await?
                    {
                        return Ok(done);
                    }
                    let now = now_micros();
                    let group = Group {
                        id: Uuid::now_v7(),
                        tenant_id: command.tenant_id,
                        name: command.name,
                        description: command.description,
                        source: command.source,
                        external_id: command.external_id,
                        roles: Vec::new(),
                        member_count: 0,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    };
                    if let Some(key) = store::groups::taken_key(&tx.txn, &group).await? {
                        return Err(DomainError::GroupExists(key));
                    }
                    store::groups::insert(&tx.txn, &group).await?;
                    let key = format!(
                        "{}/{}/{}",
                        group.tenant_id,
                        group.id,
                        name_digest(&group.name)
                    );
                    tx.remember_request(CREATE_GROUP, command.request_id.as_deref(), &key, now)
                        .await?;
                    tx.emit(EventType::GroupCreated, None, Some(&group))
                        .for_request(command.request_id.as_deref());
                    Ok(group)
                })
            })
            .await;
        self.or_as_the_first_call(outcome, request_id.as_deref(), async |conn, request_id| {
            replay_create_group(conn, request_id, tenant_id, &name).await
        })
        .await
    }

    /// A tenant's roles and what the caller may read in it, in one snapshot: groups are read
    /// with `members.read`, in tenants that manage members.
    async fn read_groups(
        &self,
        caller: Caller,
        tenant_id: Uuid,
    ) -> Result<(Transaction, TenantRoles), DomainError> {
        let conn = self.store.read_snapshot().await?;
        let (tenant, roles, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        tenant.ensure_enterprise()?;
        Ok((conn, roles))
    }

    pub async fn get_group(
        &self,
        caller: Caller,
        GroupRef {
            tenant_id,
            group_id,
        }: GroupRef,
    ) -> Result<Group, DomainError> {
        let (conn, roles) = self.read_groups(caller, tenant_id).await?;
        let (group, _) = store::groups::get(&conn, &roles, tenant_id, group_id).await?;
        Ok(group)
    }

    pub async fn list_groups(
        &self,
        caller: Caller,
        ListGroups {
            tenant_id,
            query,
            source,
            user_id,
            page_size,
            page_token,
        }: ListGroups,
    ) -> Result<(Vec<Group>, String), DomainError> {
        let pager = self.page_tokens.pager(
            &[
                "groups",
                &tenant_id.to_string(),
                query.as_deref().unwrap_or(""),
                source.map_or("", |s| s.as_str()),
                &user_id.map(|u| u.to_string()).unwrap_or_default(),
            ],
            page_size,
        );
        let after = match pager.after(&page_token)? {
            None => None,
            Some(After {
                value: SortValue::Text(name_key),
                user_id: group_id,
            }) => Some((name_key, group_id)),
            Some(_) => return Err(DomainError::InvalidPageToken),
        };
        let (conn, roles) = self.read_groups(caller, tenant_id).await?;
        let query = GroupQuery {
            name_contains: query.map(|q| q.to_lowercase()),
            source,
            user_id,
            after,
            limit: pager.limit(),
        };
        let mut groups = store::groups::list(&conn, &roles, tenant_id, &query).await?;
        let next = pager.finish(&mut groups, |last| After {
            value: SortValue::Text(Group::name_key(&last.name)),
            user_id: last.id,
        });
        Ok((groups, next))
    }

    pub async fn update_group(
        &self,
        caller: Caller,
        UpdateGroup {
            tenant_id,
            group_id,
            etag,
            patch,
        }: UpdateGroup,
    ) -> Result<(Group, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require(Permission::GroupsManage)?;
                let (before, role_ids) =
                    store::groups::get(&tx.txn, &locked.roles, tenant_id, group_id).await?;
                check_etag(&etag, before.version)?;
                let mut after = before.clone();
                if let Some(name) = patch.name {
                    after.name = name;
                }
                if let Some(description) = patch.description {
                    after.description = description;
                }
                if let Some(external_id) = patch.external_id {
                    after.external_id = external_id;
                }
                // A directory matches groups by these: repointing a group that holds roles
                // decides who will hold them, so it needs the rights to grant them.
                if after.external_id != before.external_id || after.name != before.name {
                    let bound = roles_of(&locked.roles, &role_ids);
                    locked.access.require_group_grant(&bound, [])?;
                }
                if let Some(key) = store::groups::taken_key(&tx.txn, &after).await? {
                    return Err(DomainError::GroupExists(key));
                }
                tx.save(EventType::GroupUpdated, &before, after, now_micros())
                    .await
            })
        })
        .await
    }

    /// Deletes a group, its bindings and its member links, an event each: what it granted is
    /// gone at the next check.
    pub async fn delete_group(
        &self,
        caller: Caller,
        DeleteGroup {
            tenant_id,
            group_id,
            etag,
            validate_only,
        }: DeleteGroup,
    ) -> Result<EventCursor, DomainError> {
        let ((), cursor) = self
            .write_locked(caller, tenant_id, move |tx, locked| {
                Box::pin(async move {
                    locked.access.require(Permission::GroupsManage)?;
                    let (group, role_ids) =
                        store::groups::get(&tx.txn, &locked.roles, tenant_id, group_id).await?;
                    check_etag(&etag, group.version)?;
                    let members = store::groups::member_ids(&tx.txn, tenant_id, group_id).await?;
                    let bound = roles_of(&locked.roles, &role_ids);
                    let targets = if bound.is_empty() {
                        Vec::new()
                    } else {
                        permissions_when_needed(&tx.txn, &locked, &members).await?
                    };
                    locked.access.require_group_grant(&bound, &targets)?;
                    if validate_only {
                        tx.roll_back_at_end();
                        return Ok(());
                    }
                    let mut current = group.clone();
                    for role in &bound {
                        let mut next = current.clone();
                        next.roles.retain(|name| *name != role.name);
                        tx.emit(EventType::RoleBindingDeleted, Some(&current), Some(&next));
                        current = next;
                    }
                    for user_id in &members {
                        tx.emit(
                            EventType::GroupMemberRemoved,
                            Some(&GroupMember::of(&group, *user_id)),
                            None,
                        );
                    }
                    store::groups::delete(&tx.txn, &group).await?;
                    tx.emit(EventType::GroupDeleted, Some(&group), None);
                    Ok(())
                })
            })
            .await?;
        Ok(cursor)
    }

    /// Adds members to a group: each must be ACTIVE or SUSPENDED, and the caller must be able
    /// to bind each of the group's roles to each of them.
    pub async fn add_group_members(
        &self,
        caller: Caller,
        command: GroupMembers,
    ) -> Result<(MembersChanged, EventCursor), DomainError> {
        self.change_group_members(caller, command, true).await
    }

    /// Removes members from a group, with the rights adding them needs.
    pub async fn remove_group_members(
        &self,
        caller: Caller,
        command: GroupMembers,
    ) -> Result<(MembersChanged, EventCursor), DomainError> {
        self.change_group_members(caller, command, false).await
    }

    async fn change_group_members(
        &self,
        caller: Caller,
        GroupMembers {
            tenant_id,
            group_id,
            user_ids,
        }: GroupMembers,
        add: bool,
    ) -> Result<(MembersChanged, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require(Permission::GroupsManage)?;
                let (mut group, role_ids) =
                    store::groups::get(&tx.txn, &locked.roles, tenant_id, group_id).await?;
                // Whether an id may join matters only when adding.
                let members = if add {
                    store::memberships::statuses(&tx.txn, tenant_id, &user_ids).await?
                } else {
                    HashMap::new()
                };
                let linked =
                    store::groups::members_among(&tx.txn, tenant_id, group_id, &user_ids).await?;
                let outcomes: Vec<(Uuid, MemberOutcome)> = user_ids
                    .iter()
                    .map(|user_id| {
                        let outcome = match (members.get(user_id), linked.contains(user_id)) {
                            (_, true) if !add => MemberOutcome::Done,
                            (_, true) => MemberOutcome::Unchanged,
                            (_, false) if !add => MemberOutcome::Unchanged,
                            (None, false) => MemberOutcome::NotAMember,
                            (Some(status), false) if !may_join(*status) => MemberOutcome::NotActive,
                            (Some(_), false) => MemberOutcome::Done,
                        };
                        (*user_id, outcome)
                    })
                    .collect();
                let changed: Vec<Uuid> = outcomes
                    .iter()
                    .filter(|(_, o)| *o == MemberOutcome::Done)
                    .map(|(u, _)| *u)
                    .collect();
                let bound = roles_of(&locked.roles, &role_ids);
                let targets = if bound.is_empty() {
                    Vec::new()
                } else {
                    permissions_when_needed(&tx.txn, &locked, &changed).await?
                };
                locked.access.require_group_grant(&bound, &targets)?;
                if changed.is_empty() {
                    return Ok((outcomes, group));
                }
                let now = now_micros();
                let delta = changed.len() as i64;
                if add {
                    store::groups::add_members(&tx.txn, tenant_id, group_id, &changed, now).await?;
                    store::groups::count_members(&tx.txn, tenant_id, group_id, delta, now).await?;
                    group.member_count += delta;
                } else {
                    store::groups::remove_members(&tx.txn, tenant_id, group_id, &changed).await?;
                    store::groups::count_members(&tx.txn, tenant_id, group_id, -delta, now).await?;
                    group.member_count -= delta;
                }
                group.revise(now);
                for user_id in &changed {
                    let link = GroupMember::of(&group, *user_id);
                    if add {
                        tx.emit(EventType::GroupMemberAdded, None, Some(&link));
                    } else {
                        tx.emit(EventType::GroupMemberRemoved, Some(&link), None);
                    }
                }
                Ok((outcomes, group))
            })
        })
        .await
    }

    pub async fn list_group_members(
        &self,
        caller: Caller,
        ListGroupMembers {
            tenant_id,
            group_id,
            page_size,
            page_token,
        }: ListGroupMembers,
    ) -> Result<(Vec<Membership>, String), DomainError> {
        let pager = self.page_tokens.pager(
            &[
                "group_members",
                &tenant_id.to_string(),
                &group_id.to_string(),
            ],
            page_size,
        );
        let after = match pager.after(&page_token)? {
            None => None,
            Some(After {
                value: SortValue::Int(0),
                user_id,
            }) => Some(user_id),
            Some(_) => return Err(DomainError::InvalidPageToken),
        };
        let (conn, roles) = self.read_groups(caller, tenant_id).await?;
        // A group that does not exist is NOT_FOUND, not an empty page.
        store::groups::get(&conn, &roles, tenant_id, group_id).await?;
        let user_ids =
            store::groups::member_page(&conn, tenant_id, group_id, after, pager.limit()).await?;
        let mut by_user: HashMap<Uuid, Membership> =
            store::memberships::many(&conn, &roles, tenant_id, &user_ids).await?;
        let mut members: Vec<Membership> = user_ids
            .iter()
            .filter_map(|user_id| by_user.remove(user_id))
            .collect();
        let next = pager.finish(&mut members, |last| After {
            value: SortValue::Int(0),
            user_id: last.user_id,
        });
        conn.commit().await.map_err(db_error)?;
        Ok((members, next))
    }
}
