//! `membership.v1.InvitationService`: invitations, sent, resent, revoked and accepted.

use tonic::{Request, Response, Status};

use super::pb::invitation_service_server::InvitationService;
use super::pb::*;
use super::{convert, handle};
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

#[tonic::async_trait]
impl InvitationService for InvitationApi {
    async fn create_invitation(
        &self,
        request: Request<CreateInvitationRequest>,
    ) -> Result<Response<CreateInvitationResponse>, Status> {
        handle(request, |caller, command| {
            self.services.create_invitation(caller, command)
        })
        .await
    }

    async fn bulk_create_invitations(
        &self,
        request: Request<BulkCreateInvitationsRequest>,
    ) -> Result<Response<BulkCreateInvitationsResponse>, Status> {
        handle(request, |caller, b| {
            self.services.bulk_create_invitations(caller, b)
        })
        .await
    }

    async fn get_invitation(
        &self,
        request: Request<GetInvitationRequest>,
    ) -> Result<Response<GetInvitationResponse>, Status> {
        handle(request, |caller, i| self.services.get_invitation(caller, i)).await
    }

    async fn list_invitations(
        &self,
        request: Request<ListInvitationsRequest>,
    ) -> Result<Response<ListInvitationsResponse>, Status> {
        handle(request, |caller, l| {
            self.services.list_invitations(caller, l)
        })
        .await
    }

    async fn resend_invitation(
        &self,
        request: Request<ResendInvitationRequest>,
    ) -> Result<Response<ResendInvitationResponse>, Status> {
        handle(request, |caller, r| {
            self.services.resend_invitation(caller, r)
        })
        .await
    }

    async fn revoke_invitation(
        &self,
        request: Request<RevokeInvitationRequest>,
    ) -> Result<Response<RevokeInvitationResponse>, Status> {
        handle(request, |caller, i| {
            self.services.revoke_invitation(caller, i)
        })
        .await
    }

    async fn accept_invitation(
        &self,
        request: Request<AcceptInvitationRequest>,
    ) -> Result<Response<AcceptInvitationResponse>, Status> {
        handle(request, |caller, a| {
            self.services.accept_invitation(caller, a)
        })
        .await
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
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let email = v.email("email", &r.email);
        let role = role(&mut v, &r.role);
        let ttl = ttl(&mut v, r.ttl.as_ref());
        let request_id = v.request_id("request_id", &r.request_id);
        v.finish()?;
        Ok(CreateInvitation {
            tenant_id,
            email,
            role,
            ttl,
            request_id,
        })
    }
}

impl TryFrom<BulkCreateInvitationsRequest> for BulkCreateInvitations {
    type Error = DomainError;

    fn try_from(r: BulkCreateInvitationsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let role = role(&mut v, &r.role);
        let ttl = ttl(&mut v, r.ttl.as_ref());
        if r.emails.is_empty() {
            v.violation("emails", "is required");
        } else if r.emails.len() > MAX_BULK {
            v.violation("emails", format!("at most {MAX_BULK} per request"));
        }
        v.finish()?;
        Ok(BulkCreateInvitations {
            tenant_id,
            emails: r.emails,
            role,
            ttl,
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
        let mut v = Validator::new();
        let invitation = invitation_ref(&mut v, &r.tenant_id, &r.invitation_id);
        v.finish()?;
        Ok(invitation)
    }
}

impl TryFrom<RevokeInvitationRequest> for InvitationRef {
    type Error = DomainError;

    fn try_from(r: RevokeInvitationRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let invitation = invitation_ref(&mut v, &r.tenant_id, &r.invitation_id);
        v.finish()?;
        Ok(invitation)
    }
}

impl TryFrom<ResendInvitationRequest> for ResendInvitation {
    type Error = DomainError;

    fn try_from(r: ResendInvitationRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let InvitationRef { tenant_id, id } =
            invitation_ref(&mut v, &r.tenant_id, &r.invitation_id);
        let ttl = ttl(&mut v, r.ttl.as_ref());
        v.finish()?;
        Ok(ResendInvitation { tenant_id, id, ttl })
    }
}

impl TryFrom<ListInvitationsRequest> for ListInvitations {
    type Error = DomainError;

    fn try_from(r: ListInvitationsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let page_size = v.page_size("page_size", r.page_size);
        let state = convert::invitation_state(&mut v, "state", r.state);
        let query = email::search_form(&v.text("query", &r.query, MAX_QUERY_CHARS, false));
        v.finish()?;
        Ok(ListInvitations {
            tenant_id,
            filter: InvitationFilter {
                state,
                query: convert::optional(query),
            },
            page_size,
            page_token: r.page_token,
        })
    }
}

impl TryFrom<AcceptInvitationRequest> for AcceptInvitation {
    type Error = DomainError;

    fn try_from(r: AcceptInvitationRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let token = r.token.trim().to_string();
        if token.is_empty() {
            v.violation("token", "is required");
        } else if token.len() > 128 {
            v.violation("token", "is not an invitation token");
        }
        let user_id = v.uuid("user_id", &r.user_id);
        let email = v.email("email", &r.email);
        let display_name = v.text("display_name", &r.display_name, MAX_NAME_CHARS, false);
        v.finish()?;
        Ok(AcceptInvitation {
            token,
            user_id,
            email,
            display_name,
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
