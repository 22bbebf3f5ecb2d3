//! `membership.v1.InvitationService`: invitations, sent, resent, revoked and accepted.

use super::convert;
use super::pb::invitation_service_server::InvitationService;
use super::pb::*;
use crate::domain::events::EventCursor;
use crate::domain::invitation::{self as domain, DEFAULT_TTL, InvitationFilter, MAX_BULK};
use crate::domain::membership::Membership;
use crate::domain::validate::{MAX_NAME_CHARS, MAX_QUERY_CHARS, MAX_ROLE_NAME_CHARS, Validator};
use crate::domain::{DomainError, Micros, email, now_micros};
use crate::service::Services;
use crate::service::invitations::{
    AcceptInvitation, BulkCreateInvitations, BulkOutcome, BulkResult, CreateInvitation,
    InvitationRef, ListInvitations, ResendInvitation, Sent,
};
use crate::service::memberships::default_role;

pub struct InvitationApi {
    pub services: Services,
}

api_service! {
    impl InvitationService for InvitationApi {
        create_invitation(CreateInvitationRequest) -> CreateInvitationResponse;
        bulk_create_invitations(BulkCreateInvitationsRequest) -> BulkCreateInvitationsResponse;
        get_invitation(GetInvitationRequest) -> GetInvitationResponse;
        list_invitations(ListInvitationsRequest) -> ListInvitationsResponse;
        resend_invitation(ResendInvitationRequest) -> ResendInvitationResponse;
        revoke_invitation(RevokeInvitationRequest) -> RevokeInvitationResponse;
        accept_invitation(AcceptInvitationRequest) -> AcceptInvitationResponse;
    }
}

// Requests, converted: every bad field is reported at once.

fn role(v: &mut Validator, raw: &str) -> String {
    default_role(&v.text("role", raw, MAX_ROLE_NAME_CHARS, false))
}

fn ttl(v: &mut Validator, raw: Option<&prost_types::Duration>) -> Micros {
    convert::ttl(v, "ttl", raw).unwrap_or(DEFAULT_TTL)
}

impl TryFrom<CreateInvitationRequest> for CreateInvitation {
    type Error = DomainError;

    fn try_from(r: CreateInvitationRequest) -> Result<Self, DomainError> {
        Validator::check(|v| CreateInvitation {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            email: v.email("email", &r.email),
            role: role(v, &r.role),
            ttl: ttl(v, r.ttl.as_ref()),
            request_id: v.request_id("request_id", &r.request_id),
        })
    }
}

impl TryFrom<BulkCreateInvitationsRequest> for BulkCreateInvitations {
    type Error = DomainError;

    fn try_from(r: BulkCreateInvitationsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| BulkCreateInvitations {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            role: role(v, &r.role),
            ttl: ttl(v, r.ttl.as_ref()),
            emails: {
                if r.emails.is_empty() {
                    v.violation("emails", "is required");
                } else if r.emails.len() > MAX_BULK {
                    v.violation("emails", format!("at most {MAX_BULK} per request"));
                }
                r.emails
            },
        })
    }
}

fn invitation_ref(v: &mut Validator, tenant_id: &str, invitation_id: &str) -> InvitationRef {
    InvitationRef {
        tenant_id: v.uuid("tenant_id", tenant_id),
        id: v.uuid("invitation_id", invitation_id),
    }
}

impl TryFrom<GetInvitationRequest> for InvitationRef {
    type Error = DomainError;

    fn try_from(r: GetInvitationRequest) -> Result<Self, DomainError> {
        Validator::check(|v| invitation_ref(v, &r.tenant_id, &r.invitation_id))
    }
}

impl TryFrom<RevokeInvitationRequest> for InvitationRef {
    type Error = DomainError;

    fn try_from(r: RevokeInvitationRequest) -> Result<Self, DomainError> {
        Validator::check(|v| invitation_ref(v, &r.tenant_id, &r.invitation_id))
    }
}

impl TryFrom<ResendInvitationRequest> for ResendInvitation {
    type Error = DomainError;

    fn try_from(r: ResendInvitationRequest) -> Result<Self, DomainError> {
        Validator::check(|v| {
            let InvitationRef { tenant_id, id } = invitation_ref(v, &r.tenant_id, &r.invitation_id);
            let ttl = ttl(v, r.ttl.as_ref());
            ResendInvitation { tenant_id, id, ttl }
        })
    }
}

impl TryFrom<ListInvitationsRequest> for ListInvitations {
    type Error = DomainError;

    fn try_from(r: ListInvitationsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| ListInvitations {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            page_size: v.page_size("page_size", r.page_size),
            filter: InvitationFilter {
                state: convert::enum_field(v, "state", r.state),
                query: convert::optional(email::search_form(&v.text(
                    "query",
                    &r.query,
                    MAX_QUERY_CHARS,
                    false,
                ))),
            },
            page_token: r.page_token,
        })
    }
}

impl TryFrom<AcceptInvitationRequest> for AcceptInvitation {
    type Error = DomainError;

    fn try_from(r: AcceptInvitationRequest) -> Result<Self, DomainError> {
        Validator::check(|v| AcceptInvitation {
            token: {
                let token = r.token.trim().to_string();
                if token.is_empty() {
                    v.violation("token", "is required");
                } else if token.len() > 128 {
                    v.violation("token", "is not an invitation token");
                }
                token
            },
            user_id: v.uuid("user_id", &r.user_id),
            email: v.email("email", &r.email),
            display_name: v.text("display_name", &r.display_name, MAX_NAME_CHARS, false),
        })
    }
}

// Results, converted.

/// An invitation as callers see it: its state (an expired one shows EXPIRED) as of now.
fn invitation(i: &domain::Invitation) -> Invitation {
    convert::invitation(i, now_micros())
}

/// The pieces of a create or resend response.
fn sent_parts(sent: &Sent) -> (Option<Invitation>, String, String, Option<Delivery>) {
    (
        Some(invitation(&sent.invitation)),
        sent.token.clone().unwrap_or_default(),
        sent.accept_url.clone().unwrap_or_default(),
        sent.delivery.as_ref().map(convert::delivery),
    )
}

/// Responses to a call that sent an invitation: the invitation, its token and link (once), how
/// its email fared, and the cursor of the change.
macro_rules! sent_responses {
    ($($response:ident),*) => {$(
        impl From<(Sent, EventCursor)> for $response {
            fn from((sent, cursor): (Sent, EventCursor)) -> Self {
                let (invitation, token, accept_url, delivery) = sent_parts(&sent);
                $response {
                    invitation,
                    token,
                    accept_url,
                    delivery,
                    cursor: cursor.into(),
                }
            }
        }
    )*};
}

sent_responses!(CreateInvitationResponse, ResendInvitationResponse);
changed_responses!(invitation: domain::Invitation => invitation; RevokeInvitationResponse);

impl From<domain::Invitation> for GetInvitationResponse {
    fn from(i: domain::Invitation) -> Self {
        GetInvitationResponse {
            invitation: Some(invitation(&i)),
        }
    }
}

impl From<(Vec<domain::Invitation>, String)> for ListInvitationsResponse {
    fn from((invitations, next_page_token): (Vec<domain::Invitation>, String)) -> Self {
        let now = now_micros();
        ListInvitationsResponse {
            invitations: invitations
                .iter()
                .map(|i| convert::invitation(i, now))
                .collect(),
            next_page_token,
        }
    }
}

impl From<(Membership, domain::Invitation, EventCursor)> for AcceptInvitationResponse {
    fn from((membership, i, cursor): (Membership, domain::Invitation, EventCursor)) -> Self {
        AcceptInvitationResponse {
            membership: Some(convert::membership(&membership)),
            invitation: Some(invitation(&i)),
            cursor: cursor.into(),
        }
    }
}

impl From<(Vec<BulkResult>, EventCursor)> for BulkCreateInvitationsResponse {
    fn from((results, cursor): (Vec<BulkResult>, EventCursor)) -> Self {
        let mut created_count = 0;
        let results = results
            .into_iter()
            .map(|result| {
                let mut out = BulkInvitationResult {
                    email: result.email,
                    ..Default::default()
                };
                let (outcome, detail) = match result.outcome {
                    BulkOutcome::Created(sent) => {
                        created_count += 1;
                        let (invitation, token, accept_url, delivery) = sent_parts(&sent);
                        out.invitation = invitation;
                        out.token = token;
                        out.accept_url = accept_url;
                        out.delivery = delivery;
                        (BulkInvitationOutcome::Created, String::new())
                    }
                    BulkOutcome::InvalidEmail(why) => (BulkInvitationOutcome::InvalidEmail, why),
                    BulkOutcome::AlreadyMember => (
                        BulkInvitationOutcome::AlreadyMember,
                        "already a member of this tenant".into(),
                    ),
                    BulkOutcome::AlreadyInvited => (
                        BulkInvitationOutcome::AlreadyInvited,
                        "already has a pending invitation".into(),
                    ),
                    BulkOutcome::Duplicate => (
                        BulkInvitationOutcome::Duplicate,
                        "appears earlier in this request".into(),
                    ),
                };
                out.outcome = outcome as i32;
                out.detail = detail;
                out
            })
            .collect();
        BulkCreateInvitationsResponse {
            results,
            created_count,
            cursor: cursor.into(),
        }
    }
}
