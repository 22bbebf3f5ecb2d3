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
        RoleBindingCreated => "role_binding.created",
        RoleBindingDeleted => "role_binding.deleted",
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

/// A role binding's state in events.
#[derive(Clone, Debug, Serialize)]
pub struct RoleBindingSnapshot {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
}
