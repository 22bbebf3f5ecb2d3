//! What the caller may do in one tenant (DESIGN rules 13 and 14), computed inside the request's
//! transaction from the caller's own membership and role bindings.

use sea_orm::ConnectionTrait;

use crate::domain::membership::MembershipStatus;
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{Role, TenantRoles};
use crate::domain::tenant::Tenant;
use crate::domain::{Caller, DomainError};
use crate::store;

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
                let Some((membership, role_ids)) =
                    store::memberships::find(conn, roles, tenant.id, user_id).await?
                else {
                    return Err(DomainError::NotAMember);
                };
                if membership.status != MembershipStatus::Active {
                    return Err(DomainError::NotAMember);
                }
                roles.permissions_of(&role_ids)
            }
        };
        Ok(Access {
            caller,
            permissions,
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
        match role
            .permissions
            .iter()
            .find(|p| !self.permissions.contains(*p))
        {
            Some(missing) => Err(DomainError::PermissionDenied(missing)),
            None => Ok(()),
        }
    }
}
