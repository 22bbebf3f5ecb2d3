//! What the caller may do in one tenant (DESIGN rules 13, 14 and 26), computed inside the
//! request's transaction from the caller's own membership and role bindings. Every use case
//! decides here; [`super::authz`] answers CheckPermission for other services from a cache, by
//! the same permissions of the same bindings.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::domain::membership::MembershipStatus;
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{BindingKind, Role, TenantRoles};
use crate::domain::tenant::{Tenant, TenantState};
use crate::domain::{Caller, DomainError};
use crate::store;
use crate::store::memberships::Bindings;

/// What a caller is told of a tenant that does not exist: a system caller hears NOT_FOUND; a
/// user hears what a non-member of an existing tenant hears (PERMISSION_DENIED `NOT_A_MEMBER`,
/// AIP-211), so that nobody can probe which tenant ids exist.
pub(crate) fn conceal_absence(caller: Caller) -> impl Fn(DomainError) -> DomainError {
    move |error| match (error, caller) {
        (DomainError::TenantNotFound, Caller::User(_)) => DomainError::NotAMember,
        (error, _) => error,
    }
}

/// What each of `user_ids` may do in the tenant: the permissions of the roles bound to them and
/// to every group they are in.
pub(crate) async fn member_permissions<C: ConnectionTrait>(
    conn: &C,
    roles: &TenantRoles,
    tenant_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, PermissionSet>, DomainError> {
    let mut direct = store::bindings::of_many(conn, tenant_id, BindingKind::User, user_ids).await?;
    let mut through_groups = store::groups::granted_to_many(conn, tenant_id, user_ids).await?;
    Ok(user_ids
        .iter()
        .map(|user_id| {
            let bindings = Bindings {
                own: direct.remove(user_id).unwrap_or_default(),
                through_groups: through_groups.remove(user_id).unwrap_or_default(),
            };
            (*user_id, bindings.permissions(roles))
        })
        .collect())
}

pub struct Access {
    pub caller: Caller,
    pub permissions: PermissionSet,
}

impl Access {
    /// A system caller holds every permission; a user must be an ACTIVE member of the tenant and
    /// holds the union of their roles' permissions. Anyone else is refused before any data is
    /// read, so an actor of another tenant learns nothing.
    pub async fn load<C: ConnectionTrait>(
        conn: &C,
        tenant: &Tenant,
        roles: &TenantRoles,
        caller: Caller,
    ) -> Result<Access, DomainError> {
        let permissions = match caller {
            Caller::System => PermissionSet::all(),
            Caller::User(user_id) => {
                let Some((membership, bindings)) =
                    store::memberships::find_with_groups(conn, roles, tenant.id, user_id, true)
                        .await?
                else {
                    return Err(DomainError::NotAMember);
                };
                // Its former members are told why it no longer answers; others learn nothing.
                if tenant.state == TenantState::Dissolved {
                    return Err(DomainError::TenantDissolved);
                }
                if membership.status != MembershipStatus::Active {
                    return Err(DomainError::NotAMember);
                }
                bindings.permissions(roles)
            }
        };
        Ok(Access {
            caller,
            permissions,
        })
    }

    /// The tenant, its roles and what the caller may do in it. A user who is not an active member
    /// is refused before anything about the tenant shows: whether it exists, its kind or state.
    pub async fn read<C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        caller: Caller,
    ) -> Result<(Tenant, TenantRoles, Access), DomainError> {
        let (tenant, roles) = store::tenants::get_with_roles(conn, tenant_id)
            .await
            .map_err(conceal_absence(caller))?;
        let access = Access::load(conn, &tenant, &roles, caller).await?;
        Ok((tenant, roles, access))
    }

    /// As [`Access::read`], with the tenant row locked for the rest of the transaction and
    /// its counters as locked.
    pub(crate) async fn lock<C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        caller: Caller,
    ) -> Result<super::Locked, DomainError> {
        let (tenant, roles, counters) = store::tenants::lock_with_roles(conn, tenant_id)
            .await
            .map_err(conceal_absence(caller))?;
        let access = Access::load(conn, &tenant, &roles, caller).await?;
        Ok(super::Locked {
            tenant,
            roles,
            access,
            counters,
        })
    }

    pub fn require(&self, permission: Permission) -> Result<(), DomainError> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(DomainError::PermissionDenied(permission))
        }
    }

    /// Acting on another member (update, suspend, remove) needs `members.manage`, and
    /// `admins.manage` when the target holds `members.manage` (an admin or the owner).
    pub fn require_manage(&self, target: PermissionSet) -> Result<(), DomainError> {
        self.require(Permission::MembersManage)?;
        if target.contains(Permission::MembersManage) {
            self.require(Permission::AdminsManage)?;
        }
        Ok(())
    }

    /// Granting a role: nobody grants a permission they do not hold, and a role holding
    /// `members.manage` needs `admins.manage`.
    pub fn require_grant(&self, role: &Role) -> Result<(), DomainError> {
        self.require(Permission::MembersManage)?;
        if role.permissions.contains(Permission::MembersManage) {
            self.require(Permission::AdminsManage)?;
        }
        self.require_all(role.permissions)
    }

    /// Defining a role with `permissions` needs each of them (no escalation), and
    /// `admins.manage` when they include `members.manage`.
    pub fn require_define(&self, permissions: PermissionSet) -> Result<(), DomainError> {
        self.require(Permission::RolesManage)?;
        self.require_all(permissions)?;
        if permissions.contains(Permission::MembersManage) {
            self.require(Permission::AdminsManage)?;
        }
        Ok(())
    }

    /// Moving `roles` (a group's) to or from members whose own permissions are `targets` is
    /// binding or unbinding each role to each of them: `groups.manage`, the rights to grant
    /// each role, and the rights to act on each member (rule 26).
    pub fn require_group_grant<'a>(
        &self,
        roles: &[&Role],
        targets: impl IntoIterator<Item = &'a PermissionSet>,
    ) -> Result<(), DomainError> {
        self.require(Permission::GroupsManage)?;
        if roles.is_empty() {
            return Ok(());
        }
        for role in roles {
            self.require_grant(role)?;
        }
        for target in targets {
            self.require_manage(*target)?;
        }
        Ok(())
    }

    fn require_all(&self, permissions: PermissionSet) -> Result<(), DomainError> {
        match permissions.iter().find(|p| !self.permissions.contains(*p)) {
            Some(missing) => Err(DomainError::PermissionDenied(missing)),
            None => Ok(()),
        }
    }
}
