//! Groups (DESIGN rules 24–28): named sets of a tenant's members. A role bound to a group is
//! held by each of its members; groups do not nest.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Micros;
use super::membership::{MembershipSource, MembershipStatus};

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest group description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most user ids one AddGroupMembers or RemoveGroupMembers call names.
pub const MAX_MEMBERS_PER_CALL: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub source: MembershipSource,
    pub external_id: Option<String>,
    /// Names of the roles bound to the group, sorted.
    pub roles: Vec<String>,
    pub member_count: i64,
    pub version: i64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl Group {
    pub fn etag(&self) -> String {
        super::tenant::etag(self.version)
    }

    /// What names compare as: unique in a tenant, case aside.
    pub fn name_key(name: &str) -> String {
        name.to_lowercase()
    }
}

/// A member's place in a group, as the events about it carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub tenant_id: Uuid,
    pub group_id: Uuid,
    pub user_id: Uuid,
    /// The group's name when the change was made.
    pub group_name: String,
    /// The names of the roles bound to the group when the change was made: what the member
    /// gained or lost with it.
    #[serde(default)]
    pub group_roles: Vec<String>,
}

impl GroupMember {
    pub fn of(group: &Group, user_id: Uuid) -> GroupMember {
        GroupMember {
            tenant_id: group.tenant_id,
            group_id: group.id,
            user_id,
            group_name: group.name.clone(),
            group_roles: group.roles.clone(),
        }
    }
}

/// Sources a group may name: where directories and callers create groups from.
pub fn is_group_source(source: MembershipSource) -> bool {
    source.is_direct()
}

/// What AddGroupMembers or RemoveGroupMembers did with one user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberOutcome {
    Done,
    Unchanged,
    NotAMember,
    NotActive,
}

/// Whether a member in `status` may be in a group: only those with a seat (rule 24).
pub fn may_join(status: MembershipStatus) -> bool {
    status.holds_seat()
}
