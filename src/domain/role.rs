//! Roles of a tenant and the permissions a set of bindings grants.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::permissions::PermissionSet;
use super::{DomainError, Micros};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub is_owner: bool,
    pub permissions: PermissionSet,
    pub version: i64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl Role {
    pub fn etag(&self) -> String {
        super::tenant::etag(self.version)
    }
}

/// Every role of one tenant, loaded once per request: tenants have few roles.
#[derive(Clone, Debug, Default)]
pub struct TenantRoles(pub Vec<Role>);

impl TenantRoles {
    pub fn by_name(&self, name: &str) -> Option<&Role> {
        self.0.iter().find(|r| r.name == name)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&Role> {
        self.0.iter().find(|r| r.id == id)
    }

    /// The role of that name, or ROLE_NOT_FOUND.
    pub fn named(&self, name: &str) -> Result<&Role, DomainError> {
        self.by_name(name)
            .ok_or_else(|| DomainError::RoleNotFound(name.to_string()))
    }

    /// A role a request may bind (create, invite, bind, set, keep after a transfer): any but
    /// the owner role, which moves only by TransferOwnership (rules 22 and 27).
    pub fn bindable(&self, name: &str) -> Result<&Role, DomainError> {
        match self.named(name)? {
            role if role.is_owner => Err(DomainError::OwnerRoleReserved),
            role => Ok(role),
        }
    }

    pub fn owner_role(&self) -> Option<&Role> {
        self.0.iter().find(|r| r.is_owner)
    }

    /// The union of the permissions of the given roles.
    pub fn permissions_of(&self, role_ids: &[Uuid]) -> PermissionSet {
        role_ids
            .iter()
            .filter_map(|id| self.by_id(*id))
            .fold(PermissionSet::EMPTY, |set, role| {
                set.union(role.permissions)
            })
    }

    /// Role names for the given ids, sorted for stable output.
    pub fn names_of(&self, role_ids: &[Uuid]) -> Vec<String> {
        let mut names: Vec<String> = role_ids
            .iter()
            .filter_map(|id| self.by_id(*id))
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    }

    pub fn holds_owner_role(&self, role_ids: &[Uuid]) -> bool {
        role_ids
            .iter()
            .any(|id| self.by_id(*id).is_some_and(|r| r.is_owner))
    }

    /// The owner stays (rule 10): a member holding the owner role cannot be removed, suspended
    /// or leave, since both presets allow exactly one owner; ownership moves first.
    pub fn ensure_not_owner(&self, role_ids: &[Uuid]) -> Result<(), DomainError> {
        match self.holds_owner_role(role_ids) {
            true => Err(DomainError::LastOwner),
            false => Ok(()),
        }
    }
}

/// Who a binding binds a role to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingSubject {
    User(Uuid),
    Group(Uuid),
}

/// The two kinds of binding subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    User,
    Group,
}

impl BindingSubject {
    pub fn kind(self) -> BindingKind {
        match self {
            BindingSubject::User(_) => BindingKind::User,
            BindingSubject::Group(_) => BindingKind::Group,
        }
    }

    /// The user's or the group's id.
    pub fn id(self) -> Uuid {
        match self {
            BindingSubject::User(id) | BindingSubject::Group(id) => id,
        }
    }
}

/// A custom role's name: a letter, then lower-case letters, digits and underscores, 1 to 64 in
/// all, so names read the same in every API, log and query.
pub fn check_custom_name(name: &str) -> Result<(), &'static str> {
    let valid = !name.is_empty()
        && name.len() <= super::validate::MAX_ROLE_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match valid {
        true => Ok(()),
        false => Err("must be 1 to 64 of a-z, 0-9 and _, starting with a letter"),
    }
}
