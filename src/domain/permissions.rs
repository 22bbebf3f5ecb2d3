//! The permission catalog, permission sets, and the built-in roles of both presets.
//!
//! Permissions come only from role bindings; a membership's type grants nothing.

use super::stored_enum;
use super::tenant::RolePreset;

stored_enum! {
    /// One entry of the fixed permission catalog.
    Permission {
        TenantDelete => "tenant.delete",
        TenantManage => "tenant.manage",
        OwnerTransfer => "owner.transfer",
        AdminsManage => "admins.manage",
        MembersManage => "members.manage",
        MembersRead => "members.read",
        RolesManage => "roles.manage",
        BillingManage => "billing.manage",
        AppsManage => "apps.manage",
        ApiKeysManage => "api_keys.manage",
        OauthClientsCreate => "oauth_clients.create",
        WebhooksCreate => "webhooks.create",
        LogsRead => "logs.read",
        AuditLogsRead => "audit_logs.read",
        ResourcesCreate => "resources.create",
        ProductsUse => "products.use",
        GroupsManage => "groups.manage",
    }
}

impl Permission {
    pub fn description(self) -> &'static str {
        match self {
            Permission::TenantDelete => "Dissolve the tenant.",
            Permission::TenantManage => "Rename the tenant, upgrade it, change its seat limit.",
            Permission::OwnerTransfer => "Transfer ownership to another member.",
            Permission::AdminsManage => {
                "Act on members who hold members.manage, and grant or revoke such roles."
            }
            Permission::MembersManage => "Add, update, suspend, remove and invite members.",
            Permission::MembersRead => "List and view members and seat usage.",
            Permission::RolesManage => "Create, edit and delete custom roles.",
            Permission::BillingManage => "Manage billing, recharges and invoices.",
            Permission::AppsManage => "Manage applications.",
            Permission::ApiKeysManage => "Create and revoke API keys.",
            Permission::OauthClientsCreate => "Create OAuth clients.",
            Permission::WebhooksCreate => "Create webhooks.",
            Permission::LogsRead => "Read application logs.",
            Permission::AuditLogsRead => "Read the membership audit log.",
            Permission::ResourcesCreate => "Create and manage resources.",
            Permission::ProductsUse => "Use licensed products.",
            Permission::GroupsManage => {
                "Create, change and delete groups, and add or remove their members."
            }
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of permissions as a bit set: cheap to copy, union and test on the hot path. In events
/// and JSON it is the list of catalog names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "Vec<String>", from = "Vec<String>")]
pub struct PermissionSet(u32);

impl From<PermissionSet> for Vec<String> {
    fn from(set: PermissionSet) -> Self {
        set.iter().map(|p| p.as_str().to_string()).collect()
    }
}

impl From<Vec<String>> for PermissionSet {
    fn from(names: Vec<String>) -> Self {
        names.iter().filter_map(|n| Permission::parse(n)).collect()
    }
}

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub fn all() -> Self {
        Self::from_iter(Permission::ALL.iter().copied())
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn is_superset_of(self, other: PermissionSet) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: PermissionSet) -> Self {
        PermissionSet(self.0 | other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    /// The storage form: catalog names separated by spaces, in catalog order.
    pub fn to_stored(self) -> String {
        self.iter()
            .map(Permission::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Reads the storage form; unknown names (from a newer catalog) are ignored.
    pub fn from_stored(text: &str) -> Self {
        Self::from_iter(text.split_whitespace().filter_map(Permission::parse))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        PermissionSet(iter.into_iter().fold(0, |bits, p| bits | p.bit()))
    }
}

/// A role every tenant of a preset starts with. Built-in roles cannot be edited.
pub struct BuiltinRole {
    pub name: &'static str,
    pub description: &'static str,
    pub permissions: PermissionSet,
    /// The owner role: exactly one holder, moved only by TransferOwnership.
    pub is_owner: bool,
}

/// The name of the role every preset grants to ordinary members.
pub const MEMBER_ROLE: &str = "member";

pub fn builtin_roles(preset: RolePreset) -> Vec<BuiltinRole> {
    use Permission::*;
    let set = |ps: &[Permission]| ps.iter().copied().collect::<PermissionSet>();
    let member = BuiltinRole {
        name: MEMBER_ROLE,
        description: "Basic access: sees the member list and uses licensed products.",
        permissions: set(&[MembersRead, ProductsUse]),
        is_owner: false,
    };
    match preset {
        RolePreset::Enterprise => vec![
            BuiltinRole {
                name: "super_admin",
                description: "Full access to all enterprise features; the enterprise's owner.",
                permissions: PermissionSet::all(),
                is_owner: true,
            },
            BuiltinRole {
                name: "finance_admin",
                description: "Manages billing, recharges and invoices.",
                permissions: set(&[BillingManage, MembersRead, ProductsUse]),
                is_owner: false,
            },
            BuiltinRole {
                name: "dev_admin",
                description: "Manages applications and API keys, and views logs.",
                permissions: set(&[
                    AppsManage,
                    ApiKeysManage,
                    OauthClientsCreate,
                    WebhooksCreate,
                    LogsRead,
                    ResourcesCreate,
                    MembersRead,
                    ProductsUse,
                ]),
                is_owner: false,
            },
            member,
        ],
        RolePreset::Organization => vec![
            BuiltinRole {
                name: "owner",
                description: "Full control of the organization, including admins, billing and deletion.",
                permissions: PermissionSet::all(),
                is_owner: true,
            },
            BuiltinRole {
                name: "admin",
                description: "Manages members (not the owner or other admins) and resources; views audit logs.",
                permissions: set(&[
                    MembersManage,
                    MembersRead,
                    GroupsManage,
                    OauthClientsCreate,
                    ApiKeysManage,
                    WebhooksCreate,
                    AuditLogsRead,
                    AppsManage,
                    ResourcesCreate,
                    LogsRead,
                    ProductsUse,
                ]),
                is_owner: false,
            },
            member,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        let set: PermissionSet = [Permission::MembersRead, Permission::AuditLogsRead]
            .into_iter()
            .collect();
        assert_eq!(set.to_stored(), "members.read audit_logs.read");
        assert_eq!(PermissionSet::from_stored(&set.to_stored()), set);
    }

    #[test]
    fn only_owner_roles_hold_admins_manage() {
        for preset in [RolePreset::Enterprise, RolePreset::Organization] {
            for role in builtin_roles(preset) {
                assert_eq!(
                    role.permissions.contains(Permission::AdminsManage),
                    role.is_owner,
                    "{}",
                    role.name
                );
            }
        }
    }
}
