//! Conversions between protobuf messages and domain types. Enum fields arrive as raw numbers:
//! unknown numbers and UNSPECIFIED where a value is required are field violations.

use prost_types::Timestamp;

use super::pb;
use crate::domain::Micros;
use crate::domain::email_domain::{DomainState, TenantDomain};
use crate::domain::events::{EventState, EventType, FeedEvent};
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
        kind: match t.kind {
            TenantKind::Personal => pb::TenantKind::Personal,
            TenantKind::Enterprise => pb::TenantKind::Enterprise,
        } as i32,
        role_preset: match t.role_preset {
            RolePreset::Enterprise => pb::RolePreset::Enterprise,
            RolePreset::Organization => pb::RolePreset::Organization,
        } as i32,
        seat_limit: t.seat_limit,
        state: match t.state {
            TenantState::Active => pb::TenantState::Active,
            TenantState::Dissolved => pb::TenantState::Dissolved,
        } as i32,
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
        status: status_to_pb(m.status) as i32,
        r#type: type_to_pb(m.member_type) as i32,
        source: source_to_pb(m.source) as i32,
        external_id: m.external_id.clone().unwrap_or_default(),
        invited_by: m.invited_by.map(|id| id.to_string()).unwrap_or_default(),
        join_time: m.joined_at.map(timestamp),
        create_time: Some(timestamp(m.created_at)),
        update_time: Some(timestamp(m.updated_at)),
        roles: m.roles.clone(),
        etag: m.etag(),
    }
}

fn status_to_pb(status: MembershipStatus) -> pb::MembershipStatus {
    match status {
        MembershipStatus::Active => pb::MembershipStatus::Active,
        MembershipStatus::Invited => pb::MembershipStatus::Invited,
        MembershipStatus::Suspended => pb::MembershipStatus::Suspended,
        MembershipStatus::Left => pb::MembershipStatus::Left,
    }
}

fn type_to_pb(member_type: MembershipType) -> pb::MembershipType {
    match member_type {
        MembershipType::Owner => pb::MembershipType::Owner,
        MembershipType::Admin => pb::MembershipType::Admin,
        MembershipType::Member => pb::MembershipType::Member,
        MembershipType::Contractor => pb::MembershipType::Contractor,
        MembershipType::ServiceOperator => pb::MembershipType::ServiceOperator,
        MembershipType::ReadonlyAuditor => pb::MembershipType::ReadonlyAuditor,
    }
}

fn source_to_pb(source: MembershipSource) -> pb::MembershipSource {
    match source {
        MembershipSource::Signup => pb::MembershipSource::Signup,
        MembershipSource::Invite => pb::MembershipSource::Invite,
        MembershipSource::Scim => pb::MembershipSource::Scim,
        MembershipSource::OidcJit => pb::MembershipSource::OidcJit,
        MembershipSource::SamlJit => pb::MembershipSource::SamlJit,
        MembershipSource::Api => pb::MembershipSource::Api,
        MembershipSource::Migration => pb::MembershipSource::Migration,
    }
}

/// Reads an enum field: `Ok(None)` for UNSPECIFIED, a violation for an unknown number.
fn enum_field<P, D>(
    v: &mut Validator,
    field: &str,
    raw: i32,
    convert: impl Fn(P) -> Option<D>,
) -> Option<D>
where
    P: TryFrom<i32>,
{
    match P::try_from(raw) {
        Ok(value) => convert(value),
        Err(_) => {
            v.violation(field, format!("unknown value {raw}"));
            None
        }
    }
}

/// Reports UNSPECIFIED on a required enum field.
pub fn required<T>(v: &mut Validator, field: &str, value: Option<T>, raw: i32) -> Option<T> {
    if value.is_none() && raw == 0 {
        v.violation(field, "is required (UNSPECIFIED is not a value)");
    }
    value
}

pub fn tenant_kind(v: &mut Validator, field: &str, raw: i32) -> Option<TenantKind> {
    enum_field(v, field, raw, |p: pb::TenantKind| match p {
        pb::TenantKind::Unspecified => None,
        pb::TenantKind::Personal => Some(TenantKind::Personal),
        pb::TenantKind::Enterprise => Some(TenantKind::Enterprise),
    })
}

pub fn role_preset(v: &mut Validator, field: &str, raw: i32) -> Option<RolePreset> {
    enum_field(v, field, raw, |p: pb::RolePreset| match p {
        pb::RolePreset::Unspecified => None,
        pb::RolePreset::Enterprise => Some(RolePreset::Enterprise),
        pb::RolePreset::Organization => Some(RolePreset::Organization),
    })
}

pub fn membership_status(v: &mut Validator, field: &str, raw: i32) -> Option<MembershipStatus> {
    enum_field(v, field, raw, |p: pb::MembershipStatus| match p {
        pb::MembershipStatus::Unspecified => None,
        pb::MembershipStatus::Active => Some(MembershipStatus::Active),
        pb::MembershipStatus::Invited => Some(MembershipStatus::Invited),
        pb::MembershipStatus::Suspended => Some(MembershipStatus::Suspended),
        pb::MembershipStatus::Left => Some(MembershipStatus::Left),
    })
}

pub fn membership_type(v: &mut Validator, field: &str, raw: i32) -> Option<MembershipType> {
    enum_field(v, field, raw, |p: pb::MembershipType| match p {
        pb::MembershipType::Unspecified => None,
        pb::MembershipType::Owner => Some(MembershipType::Owner),
        pb::MembershipType::Admin => Some(MembershipType::Admin),
        pb::MembershipType::Member => Some(MembershipType::Member),
        pb::MembershipType::Contractor => Some(MembershipType::Contractor),
        pb::MembershipType::ServiceOperator => Some(MembershipType::ServiceOperator),
        pb::MembershipType::ReadonlyAuditor => Some(MembershipType::ReadonlyAuditor),
    })
}

pub fn membership_source(v: &mut Validator, field: &str, raw: i32) -> Option<MembershipSource> {
    enum_field(v, field, raw, |p: pb::MembershipSource| match p {
        pb::MembershipSource::Unspecified => None,
        pb::MembershipSource::Signup => Some(MembershipSource::Signup),
        pb::MembershipSource::Invite => Some(MembershipSource::Invite),
        pb::MembershipSource::Scim => Some(MembershipSource::Scim),
        pb::MembershipSource::OidcJit => Some(MembershipSource::OidcJit),
        pb::MembershipSource::SamlJit => Some(MembershipSource::SamlJit),
        pb::MembershipSource::Api => Some(MembershipSource::Api),
        pb::MembershipSource::Migration => Some(MembershipSource::Migration),
    })
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
        state: invitation_state_to_pb(i.state_at(now)) as i32,
        expire_time: Some(timestamp(i.expires_at)),
        send_count: i.send_count,
        last_send_time: Some(timestamp(i.last_sent_at)),
        create_time: Some(timestamp(i.created_at)),
        accept_time: i.accepted_at.map(timestamp),
        accepted_user_id: i.accepted_by.map(|id| id.to_string()).unwrap_or_default(),
        etag: i.etag(),
    }
}

fn invitation_state_to_pb(state: InvitationState) -> pb::InvitationState {
    match state {
        InvitationState::Pending => pb::InvitationState::Pending,
        InvitationState::Accepted => pb::InvitationState::Accepted,
        InvitationState::Revoked => pb::InvitationState::Revoked,
        InvitationState::Expired => pb::InvitationState::Expired,
    }
}

pub fn invitation_state(v: &mut Validator, field: &str, raw: i32) -> Option<InvitationState> {
    enum_field(v, field, raw, |p: pb::InvitationState| match p {
        pb::InvitationState::Unspecified => None,
        pb::InvitationState::Pending => Some(InvitationState::Pending),
        pb::InvitationState::Accepted => Some(InvitationState::Accepted),
        pb::InvitationState::Revoked => Some(InvitationState::Revoked),
        pb::InvitationState::Expired => Some(InvitationState::Expired),
    })
}

pub fn domain(d: &TenantDomain) -> pb::Domain {
    pb::Domain {
        domain_id: d.id.to_string(),
        tenant_id: d.tenant_id.to_string(),
        domain: d.domain.clone(),
        state: match d.state {
            DomainState::Pending => pb::DomainState::Pending,
            DomainState::Verified => pb::DomainState::Verified,
        } as i32,
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
