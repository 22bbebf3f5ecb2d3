//! What a user watching a tenant's events may see, kept current from the very events the watch
//! reads (DESIGN rule 8): a user who loses access — removed, suspended, left, a role changed or
//! unbound, a role's permissions edited, taken out of a group or a group's role unbound, the
//! tenant dissolved — must see nothing committed after that. The feed carries every such change in commit order, so the check needs no database
//! read: each event of the tenant is applied before anything after it is delivered.

use std::collections::HashMap;

use uuid::Uuid;

use super::events::{EventState, FeedEvent};
use super::membership::{Membership, MembershipStatus};
use super::permissions::{Permission, PermissionSet};
use super::role::TenantRoles;

/// One watcher's access to one tenant, as of some position of the log.
#[derive(Clone, Debug)]
pub struct WatcherAccess {
    tenant_id: Uuid,
    user_id: Uuid,
    needs: Permission,
    active: bool,
    /// The names of the roles bound to the watcher (membership events carry names).
    roles: Vec<String>,
    /// The groups the watcher is in, with the names of the roles bound to each.
    groups: HashMap<Uuid, Vec<String>>,
    /// Every role of the tenant by name, with its permissions.
    role_permissions: HashMap<String, PermissionSet>,
}

impl WatcherAccess {
    /// The watcher's access as read with `membership` and the tenant's `roles`; the watch must
    /// hold `needs` to see anything.
    /// `groups` are every group the watcher is in, with the names of its roles (none, for a
    /// group that holds none yet: a role bound to it later reaches the watcher).
    pub fn new(
        membership: &Membership,
        role_ids: &[Uuid],
        groups: HashMap<Uuid, Vec<String>>,
        roles: &TenantRoles,
        needs: Permission,
    ) -> Self {
        Self {
            tenant_id: membership.tenant_id,
            user_id: membership.user_id,
            needs,
            active: membership.status == MembershipStatus::Active,
            roles: roles.names_of(role_ids),
            groups,
            role_permissions: roles
                .0
                .iter()
                .map(|role| (role.name.clone(), role.permissions))
                .collect(),
        }
    }

    /// Whether the watcher may see events now.
    pub fn allowed(&self) -> bool {
        self.active
            && (self.roles.iter())
                .chain(self.groups.values().flatten())
                .filter_map(|name| self.role_permissions.get(name))
                .any(|permissions| permissions.contains(self.needs))
    }

    /// Applies one committed event; returns whether the watcher may still see what follows it.
    /// A change about the watcher whose new state cannot be read counts as losing access.
    pub fn apply(&mut self, event: &FeedEvent) -> bool {
        if event.tenant_id != Some(self.tenant_id) {
            return self.allowed();
        }
        let about_watcher = event.subject_id.as_deref() == Some(&*self.user_id.to_string());
        let family = event.event_type.split('.').next().unwrap_or_default();
        match (family, event.event_type.as_str()) {
            (_, "tenant.dissolved") => self.active = false,
            ("membership" | "role_binding", _) if about_watcher => match &event.after {
                Some(EventState::Membership(after)) => {
                    self.active = after.status == MembershipStatus::Active;
                    self.roles = after.roles.clone();
                }
                // Deleted, or a state this version cannot read.
                _ => self.active = false,
            },
            (_, "role.created" | "role.updated") => {
                if let (Some(EventState::Role(before)), Some(EventState::Role(after))) =
                    (&event.before, &event.after)
                    && before.name != after.name
                {
                    self.role_permissions.remove(&before.name);
                    for name in self.roles.iter_mut().filter(|name| **name == before.name) {
                        *name = after.name.clone();
                    }
                }
                match &event.after {
                    Some(EventState::Role(after)) => {
                        self.role_permissions
                            .insert(after.name.clone(), after.permissions);
                    }
                    _ => self.active = false,
                }
            }
            (_, "role.deleted") => {
                if let Some(EventState::Role(before)) = &event.before {
                    self.role_permissions.remove(&before.name);
                    self.roles.retain(|name| *name != before.name);
                    for names in self.groups.values_mut() {
                        names.retain(|name| *name != before.name);
                    }
                }
            }
            // The watcher joins a group: they hold its roles.
            (_, "group.member_added") if about_watcher => match &event.after {
                Some(EventState::GroupMember(link)) => {
                    self.groups.insert(link.group_id, link.group_roles.clone());
                }
                _ => self.active = false,
            },
            (_, "group.member_removed") if about_watcher => match &event.before {
                Some(EventState::GroupMember(link)) => {
                    self.groups.remove(&link.group_id);
                }
                _ => self.active = false,
            },
            // A group's roles changed, or the group went: it matters if the watcher is in it.
            ("role_binding" | "group", _) => {
                if let Some(EventState::Group(group)) =
                    event.after.as_ref().or(event.before.as_ref())
                    && let Some(names) = self.groups.get_mut(&group.id)
                {
                    match (&event.after, event.event_type.as_str()) {
                        (_, "group.deleted") => {
                            self.groups.remove(&group.id);
                        }
                        (Some(EventState::Group(after)), _) => *names = after.roles.clone(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        self.allowed()
    }
}
