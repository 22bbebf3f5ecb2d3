//! Conversions between protobuf messages and domain types. Enum fields arrive as raw numbers:
//! unknown numbers and UNSPECIFIED where a value is required are field violations.

use prost_types::Timestamp;

use super::pb;
use crate::domain::Micros;
use crate::domain::email_domain::{DomainState, TenantDomain};
use crate::domain::events::{EventState, EventType, FeedEvent};
use crate::domain::group::{Group, GroupMember};
use crate::domain::invitation::{Invitation, InvitationState};
use crate::domain::membership::{Membership, MembershipSource, MembershipStatus, MembershipType};
use crate::domain::role::Role;
use crate::domain::tenant::{RolePreset, Tenant, TenantKind, TenantState};
use crate::domain::validate::{Validator, truncate};
use crate::mail::Delivery;

pub fn timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

pub fn tenant(t: &Tenant) -> pb::Tenant {
    pb::Tenant {
        tenant_id: t.id.to_string(),
        name: t.name.clone(),
        kind: pb::TenantKind::from(t.kind) as i32,
        role_preset: pb::RolePreset::from(t.role_preset) as i32,
        seat_limit: t.seat_limit,
        state: pb::TenantState::from(t.state) as i32,
        etag: t.etag(),
        create_time: Some(timestamp(t.created_at)),
        update_time: Some(timestamp(t.updated_at)),
        dissolve_time: t.dissolved_at.map(timestamp),
    }
}

pub fn membership(m: &Membership) -> pb::Membership {
    pb::Membership {
        tenant_id: m.tenant_id.to_string(),
        // INVITED entries have no user yet; their id is the invitation's.
        user_id: if m.invitation_id.is_some() {
            String::new()
        } else {
            m.user_id.to_string()
        },
        invitation_id: m.invitation_id.map(|id| id.to_string()).unwrap_or_default(),
        email: m.email.clone(),
        display_name: m.display_name.clone(),
        status: pb::MembershipStatus::from(m.status) as i32,
        r#type: pb::MembershipType::from(m.member_type) as i32,
        source: pb::MembershipSource::from(m.source) as i32,
        external_id: m.external_id.clone().unwrap_or_default(),
        invited_by: m.invited_by.map(|id| id.to_string()).unwrap_or_default(),
        join_time: m.joined_at.map(timestamp),
        create_time: Some(timestamp(m.created_at)),
        update_time: Some(timestamp(m.updated_at)),
        roles: m.roles.clone(),
        etag: m.etag(),
    }
}

/// Domain enums and their protobuf twins, whose variants have the same names: each converts to
/// its twin, and those a request carries (`read`) are read back from a field's number.
macro_rules! twin_enums {
    ($($domain:ident $variants:tt $($read:ident)?;)+) => {$(
        twin_enums!(@from $domain $variants);
        $(twin_enums!(@$read $domain $variants);)?
    )+};
    (@from $domain:ident { $($variant:ident),+ $(,)? }) => {
        impl From<$domain> for pb::$domain {
            fn from(value: $domain) -> Self {
                match value {
                    $($domain::$variant => pb::$domain::$variant),+
                }
            }
        }
    };
    (@read $domain:ident { $first:ident $(, $variant:ident)* $(,)? }) => {
        impl EnumField for $domain {
            const PLACEHOLDER: Self = $domain::$first;

            fn read(v: &mut Validator, field: &str, raw: i32) -> Option<Self> {
                let Ok(value) = pb::$domain::try_from(raw) else {
                    v.violation(field, format!("unknown value {raw}"));
                    return None;
                };
                match value {
                    pb::$domain::Unspecified => None,
                    pb::$domain::$first => Some($domain::$first),
                    $(pb::$domain::$variant => Some($domain::$variant)),*
                }
            }
        }
    };
}

twin_enums! {
    TenantKind { Personal, Enterprise } read;
    RolePreset { Enterprise, Organization } read;
    TenantState { Active, Dissolved };
    MembershipStatus { Active, Invited, Suspended, Left } read;
    MembershipType { Owner, Admin, Member, Contractor, ServiceOperator, ReadonlyAuditor } read;
    MembershipSource { Signup, Invite, Scim, OidcJit, SamlJit, Api, Migration } read;
    InvitationState { Pending, Accepted, Revoked, Expired } read;
    DomainState { Pending, Verified };
}

/// A domain enum a request field carries as its protobuf twin's number.
pub trait EnumField: Sized {
    /// What a required field reads as after its violation is reported (never used: the
    /// request is refused).
    const PLACEHOLDER: Self;

    /// `None` for UNSPECIFIED; a violation of `field` for an unknown number.
    fn read(v: &mut Validator, field: &str, raw: i32) -> Option<Self>;
}

/// An optional enum field: UNSPECIFIED reads as absent.
pub fn enum_field<T: EnumField>(v: &mut Validator, field: &str, raw: i32) -> Option<T> {
    T::read(v, field, raw)
}

/// A required enum field: UNSPECIFIED is a violation.
pub fn required_enum<T: EnumField>(v: &mut Validator, field: &str, raw: i32) -> T {
    let value = T::read(v, field, raw);
    required(v, field, raw, value)
}

/// A required enum field already read (`value`, from `raw`): UNSPECIFIED is a violation.
pub fn required<T: EnumField>(v: &mut Validator, field: &str, raw: i32, value: Option<T>) -> T {
    if value.is_none() && raw == 0 {
        v.violation(field, "is required (UNSPECIFIED is not a value)");
    }
    value.unwrap_or(T::PLACEHOLDER)
}

/// An optional text field: empty means absent.
pub fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Field mask paths, each checked against the allowed set.
pub fn mask_paths(
    v: &mut Validator,
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Vec<String> {
    let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        v.violation(
            "update_mask",
            format!("is required; allowed paths: {}", allowed.join(", ")),
        );
    }
    for path in &paths {
        if !allowed.contains(&path.as_str()) {
            v.violation(
                "update_mask",
                format!(
                    "unknown path {:?}; allowed paths: {}",
                    truncate(path),
                    allowed.join(", ")
                ),
            );
        }
    }
    paths
}

/// An optional seat limit must be at least 1.
pub fn seat_limit(v: &mut Validator, field: &str, value: Option<i32>) -> Option<i32> {
    if let Some(limit) = value
        && limit < 1
    {
        v.violation(field, "must be at least 1 (leave it unset for unlimited)");
    }
    value
}

/// An optional Timestamp field; a malformed one is a violation of `field`.
pub fn micros(v: &mut Validator, field: &str, timestamp: Option<&Timestamp>) -> Option<Micros> {
    let t = timestamp?;
    v.timestamp(field, t.seconds, t.nanos)
}

pub fn event(e: &FeedEvent) -> pb::MembershipEvent {
    pb::MembershipEvent {
        position: e.position,
        tenant_id: e.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        r#type: e.event_type.clone(),
        occur_time: Some(timestamp(e.occurred_at)),
        actor_id: e.actor_id.map(|a| a.to_string()).unwrap_or_default(),
        subject_id: e.subject_id.clone().unwrap_or_default(),
        request_id: e.request_id.clone().unwrap_or_default(),
        before: e.before.as_ref().map(event_state),
        after: e.after.as_ref().map(event_state),
    }
}

fn event_state(state: &EventState) -> pb::EventState {
    use pb::event_state::State;
    pb::EventState {
        state: Some(match state {
            EventState::Tenant(t) => State::Tenant(tenant(t)),
            EventState::Membership(m) => State::Membership(membership(m)),
            EventState::Ownership { owner_user_id } => State::Ownership(pb::Ownership {
                owner_user_id: owner_user_id.to_string(),
            }),
            EventState::Invitation(i) => State::Invitation(invitation(i, i.updated_at)),
            EventState::Domain(d) => State::Domain(domain(d)),
            EventState::Role(r) => State::Role(role(r)),
            EventState::Group(g) => State::Group(group(g)),
            EventState::GroupMember(link) => State::GroupMember(group_member(link)),
        }),
    }
}

/// Event types to filter on: each must be a known type.
pub fn event_types(v: &mut Validator, field: &str, types: &[String]) -> Vec<String> {
    for t in types {
        if EventType::parse(t).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            v.violation(
                field,
                format!(
                    "unknown event type {:?}; known: {}",
                    truncate(t),
                    known.join(", ")
                ),
            );
        }
    }
    types.to_vec()
}

/// An invitation as of `now` (a pending one past its expiry reads as EXPIRED).
pub fn invitation(i: &Invitation, now: Micros) -> pb::Invitation {
    pb::Invitation {
        invitation_id: i.id.to_string(),
        tenant_id: i.tenant_id.to_string(),
        email: i.email.clone(),
        role: i.role.clone(),
        inviter_id: i.inviter_id.map(|id| id.to_string()).unwrap_or_default(),
        state: pb::InvitationState::from(i.state_at(now)) as i32,
        expire_time: Some(timestamp(i.expires_at)),
        send_count: i.send_count,
        last_send_time: Some(timestamp(i.last_sent_at)),
        create_time: Some(timestamp(i.created_at)),
        accept_time: i.accepted_at.map(timestamp),
        accepted_user_id: i.accepted_by.map(|id| id.to_string()).unwrap_or_default(),
        etag: i.etag(),
    }
}

pub fn domain(d: &TenantDomain) -> pb::Domain {
    pb::Domain {
        domain_id: d.id.to_string(),
        tenant_id: d.tenant_id.to_string(),
        domain: d.domain.clone(),
        state: pb::DomainState::from(d.state) as i32,
        auto_join: d.auto_join,
        verification_record_name: d.record_name(),
        verification_record_value: d.record_value(),
        create_time: Some(timestamp(d.created_at)),
        verify_time: d.verified_at.map(timestamp),
        etag: d.etag(),
    }
}

pub fn delivery(d: &Delivery) -> pb::Delivery {
    match d {
        Delivery::NotConfigured => pb::Delivery {
            status: pb::DeliveryStatus::NotConfigured as i32,
            error: String::new(),
        },
        Delivery::Sent => pb::Delivery {
            status: pb::DeliveryStatus::Sent as i32,
            error: String::new(),
        },
        Delivery::Failed(error) => pb::Delivery {
            status: pb::DeliveryStatus::Failed as i32,
            error: error.clone(),
        },
    }
}

/// An optional time to live, in microseconds; checked by the domain.
pub fn ttl(
    v: &mut Validator,
    field: &str,
    duration: Option<&prost_types::Duration>,
) -> Option<Micros> {
    let d = duration?;
    let micros = v.duration(field, d.seconds, d.nanos)?;
    match crate::domain::invitation::ttl(Some(micros)) {
        Ok(ttl) => Some(ttl),
        Err(description) => {
            v.violation(field, description);
            None
        }
    }
}

pub fn role(r: &Role) -> pb::Role {
    pb::Role {
        role_id: r.id.to_string(),
        tenant_id: r.tenant_id.to_string(),
        name: r.name.clone(),
        description: r.description.clone(),
        permissions: r
            .permissions
            .iter()
            .map(|p| p.as_str().to_string())
            .collect(),
        builtin: r.builtin,
        owner: r.is_owner,
        etag: r.etag(),
        create_time: Some(timestamp(r.created_at)),
        update_time: Some(timestamp(r.updated_at)),
    }
}

pub fn group(g: &Group) -> pb::Group {
    pb::Group {
        group_id: g.id.to_string(),
        tenant_id: g.tenant_id.to_string(),
        name: g.name.clone(),
        description: g.description.clone(),
        source: pb::MembershipSource::from(g.source) as i32,
        external_id: g.external_id.clone().unwrap_or_default(),
        roles: g.roles.clone(),
        member_count: g.member_count.try_into().unwrap_or(i32::MAX),
        etag: g.etag(),
        create_time: Some(timestamp(g.created_at)),
        update_time: Some(timestamp(g.updated_at)),
    }
}

fn group_member(link: &GroupMember) -> pb::GroupMember {
    pb::GroupMember {
        group_id: link.group_id.to_string(),
        user_id: link.user_id.to_string(),
        group_name: link.group_name.clone(),
        group_roles: link.group_roles.clone(),
    }
}
