//! Events: one per committed change, carrying the state before and after it.

use serde::Serialize;
use uuid::Uuid;

use super::stored_enum;

stored_enum! {
    EventType {
        TenantCreated => "tenant.created",
        TenantUpdated => "tenant.updated",
        TenantDissolved => "tenant.dissolved",
        MembershipCreated => "membership.created",
        MembershipUpdated => "membership.updated",
        MembershipSuspended => "membership.suspended",
        MembershipReactivated => "membership.reactivated",
        MembershipDeleted => "membership.deleted",
        MembershipLeft => "membership.left",
        OwnershipTransferred => "ownership.transferred",
        InvitationCreated => "invitation.created",
        InvitationResent => "invitation.resent",
        InvitationRevoked => "invitation.revoked",
        InvitationAccepted => "invitation.accepted",
        DomainAdded => "domain.added",
        DomainVerified => "domain.verified",
        DomainUpdated => "domain.updated",
        DomainRemoved => "domain.removed",
        RoleBindingCreated => "role_binding.created",
        RoleBindingDeleted => "role_binding.deleted",
        RoleCreated => "role.created",
        RoleUpdated => "role.updated",
        RoleDeleted => "role.deleted",
        GroupCreated => "group.created",
        GroupUpdated => "group.updated",
        GroupDeleted => "group.deleted",
        GroupMemberAdded => "group.member_added",
        GroupMemberRemoved => "group.member_removed",
    }
}

/// A position in the event log: the state a response reflects, and where a watch or a list of
/// events resumes. Positions grow with commit order; 0 is before the first event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventCursor(pub i64);

impl From<EventCursor> for i64 {
    fn from(cursor: EventCursor) -> i64 {
        cursor.0
    }
}

/// An event about to be appended inside a writing transaction; its position is assigned at
/// commit.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub tenant_id: Option<Uuid>,
    pub event_type: EventType,
    pub actor_id: Option<Uuid>,
    /// What the event is about: a user id for membership events, a tenant id for tenant events.
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Serializes a state snapshot for an event; domain types always serialize.
pub fn snapshot<T: Serialize>(state: &T) -> Option<serde_json::Value> {
    serde_json::to_value(state).ok()
}

/// Something events are about: it belongs to a tenant and has an id.
pub trait EventSubject: Serialize {
    fn tenant_id(&self) -> Uuid;
    fn subject_id(&self) -> String;
}

impl NewEvent {
    /// Marks the event as made by a call with `request_id` (AIP-155), if it had one.
    pub fn for_request(&mut self, request_id: Option<&str>) {
        self.request_id = request_id.map(str::to_string);
    }

    /// An event about one subject, carrying its state before and after the change.
    pub fn about<T: EventSubject>(
        event_type: EventType,
        actor_id: Option<Uuid>,
        request_id: Option<&str>,
        before: Option<&T>,
        after: Option<&T>,
    ) -> NewEvent {
        let subject = after.or(before);
        NewEvent {
            tenant_id: subject.map(|s| s.tenant_id()),
            event_type,
            actor_id,
            subject_id: subject.map(|s| s.subject_id()),
            request_id: request_id.map(str::to_string),
            before: before.and_then(snapshot),
            after: after.and_then(snapshot),
        }
    }
}

impl EventSubject for super::tenant::Tenant {
    fn tenant_id(&self) -> Uuid {
        self.id
    }
    fn subject_id(&self) -> String {
        self.id.to_string()
    }
}

impl EventSubject for super::membership::Membership {
    fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    fn subject_id(&self) -> String {
        self.user_id.to_string()
    }
}

impl EventSubject for super::invitation::Invitation {
    fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    fn subject_id(&self) -> String {
        self.id.to_string()
    }
}

impl EventSubject for super::email_domain::TenantDomain {
    fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    fn subject_id(&self) -> String {
        self.id.to_string()
    }
}

impl EventSubject for super::role::Role {
    fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    fn subject_id(&self) -> String {
        self.id.to_string()
    }
}

impl EventSubject for super::group::Group {
    fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    /// Marked, so a binding event about a group never reads as one about a user.
    fn subject_id(&self) -> String {
        format!("group/{}", self.id)
    }
}

/// A member's place in a group: the subject of `group.member_added` and `group.member_removed`
/// is the user, whose permissions the change moves.
impl EventSubject for super::group::GroupMember {
    fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }
    fn subject_id(&self) -> String {
        self.user_id.to_string()
    }
}

/// A committed event as the feed and the audit log read it back.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    pub position: i64,
    pub tenant_id: Option<Uuid>,
    pub event_type: String,
    pub occurred_at: super::Micros,
    pub actor_id: Option<Uuid>,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub before: Option<EventState>,
    pub after: Option<EventState>,
    /// Its number among its tenant's events, when a sequencer numbered it after commit
    /// (PostgreSQL): how the writer that staged it learns its position.
    pub tenant_seq: Option<i64>,
}

/// The state of an event's subject, decoded by the event type's family.
#[derive(Clone, Debug, PartialEq)]
pub enum EventState {
    Tenant(super::tenant::Tenant),
    Membership(super::membership::Membership),
    Ownership { owner_user_id: Uuid },
    Invitation(super::invitation::Invitation),
    Domain(super::email_domain::TenantDomain),
    Role(super::role::Role),
    Group(super::group::Group),
    GroupMember(super::group::GroupMember),
}

impl EventState {
    /// Decodes a stored snapshot; `None` when the family is unknown or the JSON does not fit
    /// (an event written by a newer version), so readers skip the state rather than fail.
    pub fn decode(event_type: &str, json: &str) -> Option<EventState> {
        #[derive(serde::Deserialize)]
        struct Ownership {
            owner_user_id: Uuid,
        }
        let family = event_type.split('.').next().unwrap_or_default();
        match family {
            "tenant" => serde_json::from_str(json).ok().map(EventState::Tenant),
            "membership" => serde_json::from_str(json).ok().map(EventState::Membership),
            // Binding events carry the member's state, with its roles, or the group's.
            "role_binding" => serde_json::from_str(json)
                .ok()
                .map(EventState::Membership)
                .or_else(|| serde_json::from_str(json).ok().map(EventState::Group)),
            "group" if event_type.starts_with("group.member_") => {
                serde_json::from_str(json).ok().map(EventState::GroupMember)
            }
            "group" => serde_json::from_str(json).ok().map(EventState::Group),
            "role" => serde_json::from_str(json).ok().map(EventState::Role),
            "ownership" => {
                serde_json::from_str::<Ownership>(json)
                    .ok()
                    .map(|o| EventState::Ownership {
                        owner_user_id: o.owner_user_id,
                    })
            }
            "invitation" => serde_json::from_str(json).ok().map(EventState::Invitation),
            "domain" => serde_json::from_str(json).ok().map(EventState::Domain),
            _ => None,
        }
    }
}

/// Which events a reader wants: one tenant's or all, some types or all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub tenant_id: Option<Uuid>,
    pub types: Vec<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &FeedEvent) -> bool {
        self.tenant_id.is_none_or(|t| event.tenant_id == Some(t))
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
}

/// A page of the audit log.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub filter: EventFilter,
    pub actor_id: Option<Uuid>,
    pub subject_id: Option<String>,
    /// Inclusive lower bound on the time of occurrence.
    pub start: Option<super::Micros>,
    /// Exclusive upper bound on the time of occurrence.
    pub end: Option<super::Micros>,
    pub descending: bool,
    /// Keyset: positions strictly after (or before, when descending) this one.
    pub after: Option<i64>,
    pub limit: u64,
}
