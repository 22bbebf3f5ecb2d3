//! Role and binding use cases (DESIGN rules 13, 21, 22).

use uuid::Uuid;

use super::access::Access;
use super::{Locked, Services};
use crate::domain::events::{EventCursor, EventType};
use crate::domain::group::Group;
use crate::domain::membership::{Membership, MembershipStatus};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{BindingKind, BindingSubject, Role, TenantRoles};
use crate::domain::tenant::check_etag;
use crate::domain::{Caller, DomainError, Versioned, now_micros};
use crate::store::bindings::BindingQuery;
use crate::store::memberships::{After, Bindings, SortValue};
use crate::store::{self, Tx};

/// What a change of one member's bindings does with the named role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleChange {
    Bind,
    Unbind,
    /// "Change role": the role becomes the member's only one besides the owner role.
    Set,
}

/// The fields UpdateRole may change.
#[derive(Default)]
pub struct RolePatch {
    pub description: Option<String>,
    pub permissions: Option<PermissionSet>,
}

/// Removes then adds bindings of one member, one event per binding, each carrying the member's
/// state before and after it; saves the membership once at the end.
async fn change_bindings(
    tx: &mut Tx,
    roles: &TenantRoles,
    member: Membership,
    mut role_ids: Vec<Uuid>,
    remove: &[Uuid],
    add: &[Uuid],
) -> Result<Membership, DomainError> {
    let now = now_micros();
    let original = member.clone();
    let mut current = member;
    let mut changed = false;
    for (role_id, bound) in remove
        .iter()
        .map(|r| (*r, false))
        .chain(add.iter().map(|r| (*r, true)))
    {
        if role_ids.contains(&role_id) == bound {
            continue;
        }
        if bound {
            store::bindings::bind(
                &tx.txn,
                current.tenant_id,
                BindingSubject::User(current.user_id),
                role_id,
                now,
            )
            .await?;
            role_ids.push(role_id);
        } else {
            store::bindings::unbind(
                &tx.txn,
                current.tenant_id,
                BindingSubject::User(current.user_id),
                Some(role_id),
            )
            .await?;
            role_ids.retain(|id| *id != role_id);
        }
        let mut next = current.clone();
        next.roles = roles.names_of(&role_ids);
        next.revise(now);
        let event_type = if bound {
            EventType::RoleBindingCreated
        } else {
            EventType::RoleBindingDeleted
        };
        tx.emit(event_type, Some(&current), Some(&next));
        current = next;
        changed = true;
    }
    if changed {
        store::memberships::update(&tx.txn, &original, &current).await?;
    }
    Ok(current)
}

/// Unbinds `role` from `group` (bound to it), as the group's next version, with its event.
async fn unbind_from_group(tx: &mut Tx, group: Group, role: &Role) -> Result<Group, DomainError> {
    store::bindings::unbind(
        &tx.txn,
        group.tenant_id,
        BindingSubject::Group(group.id),
        Some(role.id),
    )
    .await?;
    let mut after = group.clone();
    after.roles.retain(|name| *name != role.name);
    tx.save(EventType::RoleBindingDeleted, &group, after, now_micros())
        .await
}

/// The member to change bindings of: present and not gone; with what they hold, their own
/// bindings and their groups'.
async fn bindable_member(
    tx: &Tx,
    locked: &Locked,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(Membership, Bindings), DomainError> {
    let (member, bindings) =
        store::memberships::get_with_groups(&tx.txn, &locked.roles, tenant_id, user_id).await?;
    if member.status == MembershipStatus::Left {
        return Err(DomainError::MembershipNotActive(member.status.as_str()));
    }
    Ok((member, bindings))
}

/// A role of a tenant, by name.
pub struct RoleRef {
    pub tenant_id: Uuid,
    pub name: String,
}

/// A custom role to create.
pub struct CreateRole {
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: PermissionSet,
}

/// A change to a custom role, at the etag the caller read it at.
pub struct UpdateRole {
    pub tenant_id: Uuid,
    pub name: String,
    pub etag: String,
    pub patch: RolePatch,
}

/// A custom role to delete; `unbind_everywhere` unbinds it from its holders first.
pub struct DeleteRole {
    pub tenant_id: Uuid,
    pub name: String,
    pub unbind_everywhere: bool,
}

/// A member or a group, and the role SetMemberRole, BindRole or UnbindRole names.
pub struct MemberRole {
    pub tenant_id: Uuid,
    pub subject: BindingSubject,
    pub role: String,
}

/// The subject of a binding after the change.
pub enum Bound {
    Member(Membership),
    Group(Group),
}

/// A page of a tenant's role bindings, of one user, one group or one role if named.
pub struct ListRoleBindings {
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub role: Option<String>,
    pub page_size: u64,
    pub page_token: String,
}

/// One binding as ListRoleBindings shows it.
pub struct BindingRow {
    pub tenant_id: Uuid,
    pub subject: BindingSubject,
    pub role: String,
    pub created_at: crate::domain::Micros,
}

impl Services {
    pub async fn list_roles(
        &self,
        caller: Caller,
        tenant_id: Uuid,
    ) -> Result<TenantRoles, DomainError> {
        let conn = self.store.read_snapshot().await?;
        let (_, roles, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        Ok(roles)
    }

    pub async fn get_role(
        &self,
        caller: Caller,
        RoleRef { tenant_id, name }: RoleRef,
    ) -> Result<Role, DomainError> {
        let roles = self.list_roles(caller, tenant_id).await?;
        roles.named(&name).cloned()
    }

    pub async fn create_role(
        &self,
        caller: Caller,
        CreateRole {
            tenant_id,
            name,
            description,
            permissions,
        }: CreateRole,
    ) -> Result<(Role, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require_define(permissions)?;
                if locked.roles.by_name(&name).is_some() {
                    return Err(DomainError::RoleExists(name));
                }
                let now = now_micros();
                let role = Role {
                    id: Uuid::now_v7(),
                    tenant_id,
                    name,
                    description,
                    builtin: false,
                    is_owner: false,
                    permissions,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                };
                store::roles::insert(&tx.txn, &role).await?;
                tx.emit(EventType::RoleCreated, None, Some(&role));
                Ok(role)
            })
        })
        .await
    }

    pub async fn update_role(
        &self,
        caller: Caller,
        UpdateRole {
            tenant_id,
            name,
            etag,
            patch,
        }: UpdateRole,
    ) -> Result<(Role, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                let before = locked.roles.named(&name)?.clone();
                if before.builtin {
                    return Err(DomainError::RoleBuiltin);
                }
                // Both what the role grants now and what it will grant must be within reach.
                locked.access.require_define(before.permissions)?;
                check_etag(&etag, before.version)?;
                let mut after = before.clone();
                if let Some(description) = patch.description {
                    after.description = description;
                }
                if let Some(permissions) = patch.permissions {
                    locked.access.require_define(permissions)?;
                    after.permissions = permissions;
                }
                tx.save(EventType::RoleUpdated, &before, after, now_micros())
                    .await
            })
        })
        .await
    }

    /// Deletes a custom role; one still bound, or named by a pending invitation, is refused
    /// unless `unbind_everywhere`, which unbinds it and revokes those invitations first.
    pub async fn delete_role(
        &self,
        caller: Caller,
        DeleteRole {
            tenant_id,
            name,
            unbind_everywhere,
        }: DeleteRole,
    ) -> Result<(usize, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                let role = locked.roles.named(&name)?.clone();
                if role.builtin {
                    return Err(DomainError::RoleBuiltin);
                }
                locked.access.require_define(role.permissions)?;
                let holders =
                    store::bindings::holders_of(&tx.txn, tenant_id, BindingKind::User, role.id)
                        .await?;
                let groups =
                    store::bindings::holders_of(&tx.txn, tenant_id, BindingKind::Group, role.id)
                        .await?;
                // A pending invitation to the role would fail when accepted once it is gone.
                let invitations = store::invitations::all_pending(
                    &tx.txn,
                    &locked.roles,
                    tenant_id,
                    Some(role.id),
                )
                .await?;
                let uses = holders.len() + groups.len();
                if (uses > 0 || !invitations.is_empty()) && !unbind_everywhere {
                    return Err(DomainError::RoleInUse {
                        bindings: uses,
                        invitations: invitations.len(),
                    });
                }
                for invitation in invitations {
                    super::invitations::revoke(tx, invitation).await?;
                }
                for group_id in &groups {
                    let (group, _) =
                        store::groups::get(&tx.txn, &locked.roles, tenant_id, *group_id).await?;
                    unbind_from_group(tx, group, &role).await?;
                }
                for user_id in &holders {
                    let (member, role_ids) =
                        store::memberships::get(&tx.txn, &locked.roles, tenant_id, *user_id)
                            .await?;
                    change_bindings(tx, &locked.roles, member, role_ids, &[role.id], &[]).await?;
                }
                store::roles::delete(&tx.txn, role.id).await?;
                tx.emit(EventType::RoleDeleted, Some(&role), None);
                Ok(uses)
            })
        })
        .await
    }

    /// Changes one member's bindings of `role`: binds it, unbinds it, or ("Change role") makes
    /// it the member's only role besides the owner role. Acting on the member needs the rights
    /// to manage them, and every role bound or unbound must be grantable by the caller.
    pub async fn change_member_role(
        &self,
        caller: Caller,
        MemberRole {
            tenant_id,
            subject,
            role,
        }: MemberRole,
        change: RoleChange,
    ) -> Result<(Bound, EventCursor), DomainError> {
        let user_id = match subject {
            BindingSubject::User(user_id) => user_id,
            BindingSubject::Group(group_id) => {
                return self
                    .change_group_role(caller, tenant_id, group_id, role, change)
                    .await;
            }
        };
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                let (member, bindings) = bindable_member(tx, &locked, tenant_id, user_id).await?;
                let target = locked.roles.bindable(&role)?.clone();
                locked
                    .access
                    .require_manage(bindings.permissions(&locked.roles))?;
                let role_ids = bindings.own;
                locked.access.require_grant(&target)?;
                let (remove, add) = match change {
                    RoleChange::Bind => (vec![], vec![target.id]),
                    RoleChange::Unbind => (vec![target.id], vec![]),
                    RoleChange::Set => {
                        let others: Vec<Uuid> = role_ids
                            .iter()
                            .copied()
                            .filter(|id| {
                                *id != target.id
                                    && locked.roles.by_id(*id).is_none_or(|r| !r.is_owner)
                            })
                            .collect();
                        for id in &others {
                            if let Some(r) = locked.roles.by_id(*id) {
                                locked.access.require_grant(r)?;
                            }
                        }
                        (others, vec![target.id])
                    }
                };
                change_bindings(tx, &locked.roles, member, role_ids, &remove, &add)
                    .await
                    .map(Bound::Member)
            })
        })
        .await
    }

    /// Binds a role to a group, or unbinds it: the same as binding it to, or unbinding it from,
    /// each of the group's members (rule 26). The owner role is never a group's (rule 27).
    async fn change_group_role(
        &self,
        caller: Caller,
        tenant_id: Uuid,
        group_id: Uuid,
        role: String,
        change: RoleChange,
    ) -> Result<(Bound, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require(Permission::GroupsManage)?;
                let (group, role_ids) =
                    store::groups::get(&tx.txn, &locked.roles, tenant_id, group_id).await?;
                let target = locked.roles.bindable(&role)?.clone();
                let targets = if super::groups::members_matter(&locked) {
                    let members = store::groups::member_ids(&tx.txn, tenant_id, group_id).await?;
                    super::groups::permissions_when_needed(&tx.txn, &locked, &members).await?
                } else {
                    Vec::new()
                };
                locked.access.require_group_grant(&[&target], &targets)?;
                let bound = role_ids.contains(&target.id);
                let group = match change {
                    RoleChange::Bind if !bound => {
                        let now = now_micros();
                        store::bindings::bind(
                            &tx.txn,
                            tenant_id,
                            BindingSubject::Group(group_id),
                            target.id,
                            now,
                        )
                        .await?;
                        let mut after = group.clone();
                        after.roles.push(target.name.clone());
                        after.roles.sort();
                        tx.save(EventType::RoleBindingCreated, &group, after, now)
                            .await?
                    }
                    RoleChange::Unbind if bound => unbind_from_group(tx, group, &target).await?,
                    RoleChange::Set => {
                        return Err(DomainError::invalid(
                            "group_id",
                            "SetMemberRole changes a member's roles; bind and unbind a group's",
                        ));
                    }
                    _ => group,
                };
                Ok(Bound::Group(group))
            })
        })
        .await
    }

    /// Bindings to members first (by user, then role), then to groups (by group, then role);
    /// a filter on a user or a group lists that kind only.
    pub async fn list_role_bindings(
        &self,
        caller: Caller,
        ListRoleBindings {
            tenant_id,
            user_id,
            group_id,
            role,
            page_size,
            page_token,
        }: ListRoleBindings,
    ) -> Result<(Vec<BindingRow>, String), DomainError> {
        if user_id.is_some() && group_id.is_some() {
            return Err(DomainError::invalid(
                "group_id",
                "filter on a user or on a group, not both",
            ));
        }
        let pager = self.page_tokens.pager(
            &[
                "bindings",
                &tenant_id.to_string(),
                &user_id.map(|u| u.to_string()).unwrap_or_default(),
                role.as_deref().unwrap_or(""),
                &group_id.map(|g| g.to_string()).unwrap_or_default(),
            ],
            page_size,
        );
        // Where the previous page ended: among members' bindings, or among groups'.
        let after = match pager.after(&page_token)? {
            None => None,
            Some(After {
                value: SortValue::Text(key),
                user_id: subject,
            }) => {
                let (kind, role_id) = match key.strip_prefix("group/") {
                    Some(role_id) => (BindingKind::Group, role_id),
                    None => (BindingKind::User, key.as_str()),
                };
                let role_id =
                    Uuid::try_parse(role_id).map_err(|_| DomainError::InvalidPageToken)?;
                Some((kind, subject, role_id))
            }
            Some(_) => return Err(DomainError::InvalidPageToken),
        };
        let conn = self.store.read_snapshot().await?;
        let (_, roles, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        let role_id = match &role {
            Some(name) => Some(roles.named(name)?.id),
            None => None,
        };
        let name_of = |role_id: Uuid| {
            roles
                .by_id(role_id)
                .map(|r| r.name.clone())
                .unwrap_or_default()
        };
        let mut rows = Vec::new();
        for (kind, subject, other_filtered) in [
            (BindingKind::User, user_id, group_id.is_some()),
            (BindingKind::Group, group_id, user_id.is_some()),
        ] {
            // Members' bindings come first: a page that ended among groups' is past them.
            let passed = kind == BindingKind::User
                && after.is_some_and(|(ended, ..)| ended == BindingKind::Group);
            let limit = pager.limit().saturating_sub(rows.len() as u64);
            if other_filtered || passed || limit == 0 {
                continue;
            }
            let query = BindingQuery {
                subject,
                role_id,
                after: after
                    .filter(|(ended, ..)| *ended == kind)
                    .map(|(_, subject, role)| (subject, role)),
                limit,
            };
            let found = store::bindings::list(&conn, tenant_id, kind, &query).await?;
            rows.extend(found.into_iter().map(|b| BindingRow {
                tenant_id: b.tenant_id,
                subject: b.subject,
                role: name_of(b.role_id),
                created_at: b.created_at,
            }));
        }
        let next = pager.finish(&mut rows, |last| {
            let role_id = roles.named(&last.role).map(|r| r.id).unwrap_or_default();
            match last.subject {
                BindingSubject::User(user) => After {
                    value: SortValue::Text(role_id.to_string()),
                    user_id: user,
                },
                BindingSubject::Group(group) => After {
                    value: SortValue::Text(format!("group/{role_id}")),
                    user_id: group,
                },
            }
        });
        Ok((rows, next))
    }
}
