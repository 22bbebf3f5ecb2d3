//! Memberships: statuses, types, sources and the state machine between statuses.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DomainError, Micros, stored_enum};

stored_enum! {
    MembershipStatus {
        Active => "active",
        Invited => "invited",
        Suspended => "suspended",
        Left => "left",
    }
}
stored_enum! {
    /// Metadata for filtering and reporting; never a permission.
    MembershipType {
        Owner => "owner",
        Admin => "admin",
        Member => "member",
        Contractor => "contractor",
        ServiceOperator => "service_operator",
        ReadonlyAuditor => "readonly_auditor",
    }
}
stored_enum! {
    MembershipSource {
        Signup => "signup",
        Invite => "invite",
        Scim => "scim",
        OidcJit => "oidc_jit",
        SamlJit => "saml_jit",
        Api => "api",
        Migration => "migration",
    }
}

impl MembershipStatus {
    /// Whether a membership row in this status occupies a seat. (INVITED entries are pending
    /// invitations, counted from the invitations themselves.)
    pub fn holds_seat(self) -> bool {
        matches!(self, MembershipStatus::Active | MembershipStatus::Suspended)
    }

    /// Whether a caller may create a membership with this status, or set it: the others come
    /// from invitations (INVITED) and from leaving (LEFT).
    pub fn is_settable(self) -> bool {
        matches!(self, MembershipStatus::Active | MembershipStatus::Suspended)
    }

    /// The stored names of the statuses that hold a seat, for queries.
    pub fn seated() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|s| s.holds_seat())
            .map(|s| s.as_str())
            .collect()
    }
}

impl MembershipType {
    /// Why a caller may not give a member this type directly, if it may not.
    pub fn refuse_direct(self) -> Option<&'static str> {
        (self == MembershipType::Owner)
            .then_some("OWNER belongs to the owner role's holder and follows TransferOwnership")
    }
}

impl MembershipSource {
    /// Sources a caller may name when linking a user directly (CreateMembership).
    pub fn is_direct(self) -> bool {
        matches!(
            self,
            MembershipSource::Scim
                | MembershipSource::OidcJit
                | MembershipSource::SamlJit
                | MembershipSource::Api
                | MembershipSource::Migration
        )
    }
}

/// A membership with the names of its bound roles, as stored and as carried in events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub status: MembershipStatus,
    pub member_type: MembershipType,
    pub source: MembershipSource,
    pub external_id: Option<String>,
    pub invited_by: Option<Uuid>,
    pub joined_at: Option<Micros>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub version: i64,
    pub roles: Vec<String>,
    /// Set on the INVITED entries member lists show for pending invitations; their `user_id`
    /// is then the invitation id, as no user exists yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<Uuid>,
}

impl Membership {
    /// A member joining at `now` with the one role `role`: ACTIVE, a MEMBER who signed up.
    /// Callers set what differs with struct update syntax.
    pub fn joining(
        (tenant_id, user_id): (Uuid, Uuid),
        email: String,
        display_name: String,
        role: &str,
        now: Micros,
    ) -> Membership {
        Membership {
            tenant_id,
            user_id,
            email,
            display_name,
            status: MembershipStatus::Active,
            member_type: MembershipType::Member,
            source: MembershipSource::Signup,
            external_id: None,
            invited_by: None,
            joined_at: Some(now),
            created_at: now,
            updated_at: now,
            version: 1,
            roles: vec![role.to_string()],
            invitation_id: None,
        }
    }

    /// This membership as the next version of `previous`, the row of a member who left and
    /// comes back on it: the row's history (creation, first join, versions) goes on.
    pub fn returning(self, previous: Option<&Membership>) -> Membership {
        match previous {
            None => self,
            Some(previous) => Membership {
                joined_at: previous.joined_at.or(self.joined_at),
                created_at: previous.created_at,
                version: previous.version + 1,
                ..self
            },
        }
    }

    pub fn etag(&self) -> String {
        super::tenant::etag(self.version)
    }

    /// Moves to `next`, enforcing the status machine:
    /// ACTIVE <-> SUSPENDED, ACTIVE|SUSPENDED -> LEFT. INVITED changes only by invitation flows.
    pub fn change_status(
        &mut self,
        next: MembershipStatus,
        now: Micros,
    ) -> Result<(), DomainError> {
        use MembershipStatus::*;
        let allowed = match (self.status, next) {
            (Active, Suspended) | (Suspended, Active) | (Active, Left) | (Suspended, Left) => true,
            (from, to) if from == to => true,
            _ => false,
        };
        if !allowed {
            let verb = match next {
                Active => "reactivated",
                Suspended => "suspended",
                Left => "removed",
                Invited => "invited",
            };
            return Err(DomainError::InvalidStatusTransition(
                self.status.as_str(),
                verb,
            ));
        }
        if next == Active && self.joined_at.is_none() {
            self.joined_at = Some(now);
        }
        self.status = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(status: MembershipStatus) -> Membership {
        Membership {
            tenant_id: Uuid::nil(),
            user_id: Uuid::nil(),
            email: "a@example.com".into(),
            display_name: String::new(),
            status,
            member_type: MembershipType::Member,
            source: MembershipSource::Api,
            external_id: None,
            invited_by: None,
            joined_at: None,
            created_at: 0,
            updated_at: 0,
            version: 1,
            roles: vec![],
            invitation_id: None,
        }
    }

    #[test]
    fn status_machine() {
        let mut m = member(MembershipStatus::Suspended);
        m.change_status(MembershipStatus::Active, 5).unwrap();
        assert_eq!(m.joined_at, Some(5));
        m.change_status(MembershipStatus::Left, 6).unwrap();
        assert!(m.change_status(MembershipStatus::Active, 7).is_err());
        let mut invited = member(MembershipStatus::Invited);
        assert!(
            invited
                .change_status(MembershipStatus::Suspended, 1)
                .is_err()
        );
    }
}

/// What a list page is sorted by; ties are broken by user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    CreateTime,
    Email,
    DisplayName,
}

/// Filters of ListMemberships, already validated and resolved.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<MembershipStatus>,
    pub member_type: Option<MembershipType>,
    pub source: Option<MembershipSource>,
    /// A role id; the service resolves names (an unknown name matches nobody).
    pub role_id: Option<Uuid>,
    /// Substring of the email or the display name.
    pub query: Option<TextQuery>,
    /// Only members of this group.
    pub group_id: Option<Uuid>,
}

/// A free-text query in the two forms it is matched in: emails are canonical (only ASCII
/// letters folded in the local part, so the query folds the same way and `K` never finds
/// `karl@…`), display names are stored lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextQuery {
    pub email: String,
    pub name: String,
}

impl TextQuery {
    pub fn new(query: &str) -> Self {
        Self {
            email: super::email::search_form(query),
            name: query.to_lowercase(),
        }
    }
}
