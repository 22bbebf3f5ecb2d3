//! `membership.v1.InvitationService`.

use tonic::{Request, Response, Status};

use super::pb::invitation_service_server::InvitationService;
use super::pb::*;
use super::{caller, convert, respond};
use crate::domain::email;
use crate::domain::invitation::{DEFAULT_TTL, MAX_BULK};
use crate::domain::now_micros;
use crate::domain::validate::{MAX_NAME_CHARS, MAX_QUERY_CHARS, MAX_ROLE_NAME_CHARS, Validator};
use crate::service::Services;
use crate::service::invitations::{BulkOutcome, CreateInvitation, Sent};
use crate::service::memberships::default_role;
use crate::store::invitations::InvitationFilter;

pub struct InvitationApi {
    pub services: Services,
}

/// The pieces of a create or resend response.
fn sent_parts(sent: &Sent) -> (Option<Invitation>, String, String, Option<Delivery>) {
    (
        Some(convert::invitation(&sent.invitation, now_micros())),
        sent.token.clone().unwrap_or_default(),
        sent.accept_url.clone().unwrap_or_default(),
        sent.delivery.as_ref().map(convert::delivery),
    )
}

#[tonic::async_trait]
impl InvitationService for InvitationApi {
    async fn create_invitation(
        &self,
        request: Request<CreateInvitationRequest>,
    ) -> Result<Response<CreateInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let email = v.email("email", &r.email);
            let role = default_role(&v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false));
            let ttl = convert::ttl(&mut v, "ttl", r.ttl.as_ref()).unwrap_or(DEFAULT_TTL);
            let request_id = v.request_id("request_id", &r.request_id);
            v.finish()?;
            let (sent, cursor) = self
                .services
                .create_invitation(
                    caller,
                    CreateInvitation {
                        tenant_id,
                        email,
                        role,
                        ttl,
                        request_id,
                    },
                )
                .await?;
            let (invitation, token, accept_url, delivery) = sent_parts(&sent);
            Ok(CreateInvitationResponse {
                invitation,
                token,
                accept_url,
                delivery,
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn bulk_create_invitations(
        &self,
        request: Request<BulkCreateInvitationsRequest>,
    ) -> Result<Response<BulkCreateInvitationsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let role = default_role(&v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false));
            let ttl = convert::ttl(&mut v, "ttl", r.ttl.as_ref()).unwrap_or(DEFAULT_TTL);
            if r.emails.is_empty() {
                v.violation("emails", "is required");
            } else if r.emails.len() > MAX_BULK {
                v.violation("emails", format!("at most {MAX_BULK} per request"));
            }
            v.finish()?;
            let (results, cursor) = self
                .services
                .bulk_create_invitations(caller, tenant_id, r.emails, role, ttl)
                .await?;
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
                        BulkOutcome::InvalidEmail(why) => {
                            (BulkInvitationOutcome::InvalidEmail, why)
                        }
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
            Ok(BulkCreateInvitationsResponse {
                results,
                created_count,
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn get_invitation(
        &self,
        request: Request<GetInvitationRequest>,
    ) -> Result<Response<GetInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let id = v.uuid("invitation_id", &r.invitation_id);
            v.finish()?;
            let invitation = self.services.get_invitation(caller, tenant_id, id).await?;
            Ok(GetInvitationResponse {
                invitation: Some(convert::invitation(&invitation, now_micros())),
            })
        }
        .await;
        respond(result)
    }

    async fn list_invitations(
        &self,
        request: Request<ListInvitationsRequest>,
    ) -> Result<Response<ListInvitationsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let page_size = super::memberships::page_size(&mut v, r.page_size);
            let state = convert::invitation_state(&mut v, "state", r.state);
            let query = email::search_form(&v.text("query", &r.query, MAX_QUERY_CHARS, false));
            v.finish()?;
            let (invitations, next_page_token) = self
                .services
                .list_invitations(
                    caller,
                    tenant_id,
                    InvitationFilter {
                        state,
                        query: (!query.is_empty()).then_some(query),
                    },
                    page_size,
                    &r.page_token,
                )
                .await?;
            let now = now_micros();
            Ok(ListInvitationsResponse {
                invitations: invitations
                    .iter()
                    .map(|i| convert::invitation(i, now))
                    .collect(),
                next_page_token,
            })
        }
        .await;
        respond(result)
    }

    async fn resend_invitation(
        &self,
        request: Request<ResendInvitationRequest>,
    ) -> Result<Response<ResendInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let id = v.uuid("invitation_id", &r.invitation_id);
            let ttl = convert::ttl(&mut v, "ttl", r.ttl.as_ref()).unwrap_or(DEFAULT_TTL);
            v.finish()?;
            let (sent, cursor) = self
                .services
                .resend_invitation(caller, tenant_id, id, ttl)
                .await?;
            let (invitation, token, accept_url, delivery) = sent_parts(&sent);
            Ok(ResendInvitationResponse {
                invitation,
                token,
                accept_url,
                delivery,
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn revoke_invitation(
        &self,
        request: Request<RevokeInvitationRequest>,
    ) -> Result<Response<RevokeInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let id = v.uuid("invitation_id", &r.invitation_id);
            v.finish()?;
            let (invitation, cursor) = self
                .services
                .revoke_invitation(caller, tenant_id, id)
                .await?;
            Ok(RevokeInvitationResponse {
                invitation: Some(convert::invitation(&invitation, now_micros())),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn accept_invitation(
        &self,
        request: Request<AcceptInvitationRequest>,
    ) -> Result<Response<AcceptInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
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
            let (membership, invitation, cursor) = self
                .services
                .accept_invitation(caller, token, user_id, email, display_name)
                .await?;
            Ok(AcceptInvitationResponse {
                membership: Some(convert::membership(&membership)),
                invitation: Some(convert::invitation(&invitation, now_micros())),
                cursor,
            })
        }
        .await;
        respond(result)
    }
}
