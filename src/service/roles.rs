//! Role and binding use cases (DESIGN rules 13, 21, 22).

use uuid::Uuid;

use super::access::Access;
use super::{Locked, Services, lock_for_member_management};
use crate::domain::events::{EventCursor, EventType};
use crate::domain::membership::{Membership, MembershipStatus};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{Role, TenantRoles};
use crate::domain::tenant::check_etag;
use crate::domain::{Caller, DomainError, Versioned, now_micros};
use crate::store::entities::role_bindings;
use crate::store::memberships::{After, SortValue};
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

/// Defining a role with `permissions` needs each of them (no escalation), and `admins.manage`
/// when they include `members.manage`.
fn require_define(access: &Access, permissions: PermissionSet) -> Result<(), DomainError> {
    access.require(Permission::RolesManage)?;
    if let Some(missing) = permissions
        .iter()
        .find(|p| !access.permissions.contains(*p))
    {
        return Err(DomainError::PermissionDenied(missing));
    }
    if permissions.contains(Permission::MembersManage) {
        access.require(Permission::AdminsManage)?;
    }
    Ok(())
}

fn role_by_name<'r>(roles: &'r TenantRoles, name: &str) -> Result<&'r Role, DomainError> {
    roles
        .by_name(name)
        .ok_or_else(|| DomainError::RoleNotFound(name.to_string()))
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
            store::roles::bind(&tx.txn, current.tenant_id, current.user_id, role_id, now).await?;
            role_ids.push(role_id);
        } else {
            store::roles::unbind(&tx.txn, current.tenant_id, current.user_id, role_id).await?;
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

/// The member to change bindings of: present and not gone.
async fn bindable_member(
    tx: &Tx,
    locked: &Locked,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(Membership, Vec<Uuid>), DomainError> {
    let (member, role_ids) =
        store::memberships::get(&tx.txn, &locked.roles, tenant_id, user_id).await?;
    if member.status == MembershipStatus::Left {
        return Err(DomainError::MembershipNotActive(member.status.as_str()));
    }
    Ok((member, role_ids))
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

/// A member and the role SetMemberRole, BindRole or UnbindRole names.
pub struct MemberRole {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
}

/// A page of a tenant's role bindings, of one user or one role if named.
pub struct ListRoleBindings {
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub role: Option<String>,
    pub page_size: u64,
    pub page_token: String,
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
        role_by_name(&roles, &name).cloned()
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
        self.store
            .write(caller, move |tx| {
                Box::pin(async move {
                    let locked = lock_for_member_management(tx, tenant_id).await?;
                    require_define(&locked.access, permissions)?;
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
        self.store
            .write(caller, move |tx| {
                Box::pin(async move {
                    let locked = lock_for_member_management(tx, tenant_id).await?;
                    let before = role_by_name(&locked.roles, &name)?.clone();
                    if before.builtin {
                        return Err(DomainError::RoleBuiltin);
                    }
                    // Both what the role grants now and what it will grant must be within reach.
                    require_define(&locked.access, before.permissions)?;
                    check_etag(&etag, before.version)?;
                    let mut after = before.clone();
                    if let Some(description) = patch.description {
                        after.description = description;
                    }
                    if let Some(permissions) = patch.permissions {
                        require_define(&locked.access, permissions)?;
                        after.permissions = permissions;
                    }
                    tx.save(EventType::RoleUpdated, &before, after, now_micros())
                        .await
                })
            })
            .await
    }

    /// Deletes a custom role; one still bound is refused unless `unbind_everywhere`.
    pub async fn delete_role(
        &self,
        caller: Caller,
        DeleteRole {
            tenant_id,
            name,
            unbind_everywhere,
        }: DeleteRole,
    ) -> Result<(usize, EventCursor), DomainError> {
        self.store
            .write(caller, move |tx| {
                Box::pin(async move {
                    let locked = lock_for_member_management(tx, tenant_id).await?;
                    let role = role_by_name(&locked.roles, &name)?.clone();
                    if role.builtin {
                        return Err(DomainError::RoleBuiltin);
                    }
                    require_define(&locked.access, role.permissions)?;
                    let holders = store::roles::holders_of(&tx.txn, tenant_id, role.id).await?;
                    if !holders.is_empty() && !unbind_everywhere {
                        return Err(DomainError::RoleInUse(holders.len()));
                    }
                    for user_id in &holders {
                        let (member, role_ids) =
                            store::memberships::get(&tx.txn, &locked.roles, tenant_id, *user_id)
                                .await?;
                        change_bindings(tx, &locked.roles, member, role_ids, &[role.id], &[])
                            .await?;
                    }
                    store::roles::delete(&tx.txn, role.id).await?;
                    tx.emit(EventType::RoleDeleted, Some(&role), None);
                    Ok(holders.len())
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
            user_id,
            role,
        }: MemberRole,
        change: RoleChange,
    ) -> Result<(Membership, EventCursor), DomainError> {
        self.store
            .write(caller, move |tx| {
                Box::pin(async move {
                    let locked = lock_for_member_management(tx, tenant_id).await?;
                    let (member, role_ids) =
                        bindable_member(tx, &locked, tenant_id, user_id).await?;
                    let target = role_by_name(&locked.roles, &role)?.clone();
                    if target.is_owner {
                        return Err(DomainError::OwnerRoleReserved);
                    }
                    locked
                        .access
                        .require_manage(locked.roles.permissions_of(&role_ids))?;
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
                    change_bindings(tx, &locked.roles, member, role_ids, &remove, &add).await
                })
            })
            .await
    }

    pub async fn list_role_bindings(
        &self,
        caller: Caller,
        ListRoleBindings {
            tenant_id,
            user_id,
            role,
            page_size,
            page_token,
        }: ListRoleBindings,
    ) -> Result<(Vec<(role_bindings::Model, String)>, String), DomainError> {
        let pager = self.page_tokens.pager(
            &[
                "bindings",
                &tenant_id.to_string(),
                &user_id.map(|u| u.to_string()).unwrap_or_default(),
                role.as_deref().unwrap_or(""),
            ],
            page_size,
        );
        let after = match pager.after(&page_token)? {
            None => None,
            Some(After {
                value: SortValue::Text(role_id),
                user_id,
            }) => Some((
                user_id,
                Uuid::try_parse(&role_id).map_err(|_| DomainError::InvalidPageToken)?,
            )),
            Some(_) => return Err(DomainError::InvalidPageToken),
        };
        let conn = self.store.read_snapshot().await?;
        let (_, roles, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        let role_id = match &role {
            Some(name) => Some(role_by_name(&roles, name)?.id),
            None => None,
        };
        let mut rows =
            store::roles::list_bindings(&conn, tenant_id, user_id, role_id, after, pager.limit())
                .await?;
        let next = pager.finish(&mut rows, |last| After {
            value: SortValue::Text(last.role_id.to_string()),
            user_id: last.user_id,
        });
        let named = rows
            .into_iter()
            .map(|b| {
                let name = roles
                    .by_id(b.role_id)
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                (b, name)
            })
            .collect();
        Ok((named, next))
    }
}
