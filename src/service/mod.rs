//! Use cases. Each write opens one transaction, locks the tenant, checks the rules, writes the
//! rows and emits the events that commit with them; reads use one snapshot.

pub mod access;
pub mod events;
pub mod memberships;
pub mod page_token;
pub mod tenants;

use uuid::Uuid;

use crate::domain::Caller;
use crate::domain::events::{EventType, NewEvent, snapshot};
use crate::domain::membership::Membership;
use crate::events::EventFeed;
use crate::store::Store;

/// The use cases, over one store and this process's event feed.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub feed: EventFeed,
}

impl Services {
    pub fn new(store: Store, feed: EventFeed) -> Self {
        Self { store, feed }
    }
}

/// An event about one membership, carrying its state before and after the change.
pub(crate) fn membership_event(
    event_type: EventType,
    caller: Caller,
    request_id: Option<&str>,
    before: Option<&Membership>,
    after: Option<&Membership>,
) -> NewEvent {
    let subject = after.or(before);
    NewEvent {
        tenant_id: subject.map(|m| m.tenant_id),
        event_type,
        actor_id: caller.user_id(),
        subject_id: subject.map(|m| m.user_id.to_string()),
        request_id: request_id.map(str::to_string),
        before: before.and_then(snapshot),
        after: after.and_then(snapshot),
    }
}

/// The idempotency key of a membership: tenant and user.
pub(crate) fn membership_key(tenant_id: Uuid, user_id: Uuid) -> String {
    format!("{tenant_id}/{user_id}")
}
