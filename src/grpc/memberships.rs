//! `membership.v1.MembershipService`.

use tonic::{Request, Response, Status};

use super::pb::membership_service_server::MembershipService;
use super::pb::*;
use super::{caller, convert, respond};
use crate::domain::DomainError;
use crate::domain::events::EventFilter;
use crate::domain::membership::{MembershipStatus, MembershipType};
use crate::domain::validate::{
    MAX_EXTERNAL_ID_CHARS, MAX_NAME_CHARS, MAX_QUERY_CHARS, MAX_ROLE_NAME_CHARS, Validator,
};
use crate::events::StartAt;
use crate::service::Services;
use crate::service::domains::JoinOutcome;
use crate::service::events::ListEvents;
use crate::service::memberships::{
    CreateMembership, ListMemberships, MembershipPatch, default_role,
};
use crate::store::memberships::{ListFilter, SortKey, TextQuery};

pub struct MembershipApi {
    pub services: Services,
}

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Parses AIP-132 `order_by`: a field, optionally followed by ` desc` or ` asc`.
fn order_by(v: &mut Validator, text: &str) -> (SortKey, bool) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let key = match words.first().copied() {
        None | Some("create_time") => Some(SortKey::CreateTime),
        Some("email") => Some(SortKey::Email),
        Some("display_name") => Some(SortKey::DisplayName),
        Some(_) => None,
    };
    let descending = match words.get(1..) {
        None | Some([]) | Some(["asc"]) => Some(false),
        Some(["desc"]) => Some(true),
        Some(_) => None,
    };
    match (key, descending) {
        (Some(key), Some(descending)) => (key, descending),
        _ => {
            v.violation(
                "order_by",
                "must be create_time, email or display_name, optionally followed by desc",
            );
            (SortKey::CreateTime, false)
        }
    }
}

pub(crate) fn page_size(v: &mut Validator, raw: i32) -> u64 {
    match raw {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => {
            v.violation("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        n => (n as u64).min(MAX_PAGE_SIZE),
    }
}

fn role_name(v: &mut Validator, field: &str, raw: &str) -> String {
    default_role(&v.text(field, raw, MAX_ROLE_NAME_CHARS, false))
}

#[tonic::async_trait]
impl MembershipService for MembershipApi {
    type WatchMembershipEventsStream = super::events::WatchStream;

    async fn auto_join(
        &self,
        request: Request<AutoJoinRequest>,
    ) -> Result<Response<AutoJoinResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let user_id = v.uuid("user_id", &r.user_id);
            let email = v.email("email", &r.email);
            let display_name = v.text("display_name", &r.display_name, MAX_NAME_CHARS, false);
            v.finish()?;
            let (results, cursor) = self
                .services
                .auto_join(caller, user_id, email, display_name)
                .await?;
            Ok(AutoJoinResponse {
                results: results
                    .into_iter()
                    .map(|(tenant_id, outcome)| {
                        let (outcome, membership) = match outcome {
                            JoinOutcome::Joined(m) => (AutoJoinOutcome::Joined, Some(m)),
                            JoinOutcome::AlreadyMember(m) => {
                                (AutoJoinOutcome::AlreadyMember, Some(m))
                            }
                            JoinOutcome::NoSeat => (AutoJoinOutcome::NoSeat, None),
                        };
                        AutoJoinResult {
                            tenant_id: tenant_id.to_string(),
                            outcome: outcome as i32,
                            membership: membership.as_ref().map(convert::membership),
                        }
                    })
                    .collect(),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn list_membership_events(
        &self,
        request: Request<ListMembershipEventsRequest>,
    ) -> Result<Response<ListMembershipEventsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.optional_uuid("tenant_id", &r.tenant_id);
            let page_size = page_size(&mut v, r.page_size);
            let types = convert::event_types(&mut v, "types", &r.types);
            let actor_id = v.optional_uuid("actor_id", &r.actor_id);
            let subject_id = v.text("subject_id", &r.subject_id, 64, false);
            let start = convert::micros(&mut v, "start_time", r.start_time.as_ref());
            let end = convert::micros(&mut v, "end_time", r.end_time.as_ref());
            let after_cursor = r.after_cursor.map(|c| v.cursor("after_cursor", c));
            let descending = match r.order_by.trim() {
                "" | "position" | "position asc" => false,
                "position desc" => true,
                _ => {
                    v.violation("order_by", "must be `position` or `position desc`");
                    false
                }
            };
            v.finish()?;
            let page = self
                .services
                .list_events(
                    caller,
                    ListEvents {
                        filter: EventFilter { tenant_id, types },
                        actor_id,
                        subject_id: (!subject_id.is_empty()).then_some(subject_id),
                        start,
                        end,
                        descending,
                        after_cursor,
                        page_size,
                        page_token: r.page_token,
                    },
                )
                .await?;
            Ok(ListMembershipEventsResponse {
                events: page.events.iter().map(convert::event).collect(),
                next_page_token: page.next_page_token,
                cursor: page.cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn watch_membership_events(
        &self,
        request: Request<WatchMembershipEventsRequest>,
    ) -> Result<Response<Self::WatchMembershipEventsStream>, Status> {
        let caller = caller(&request)?;
        let credential_expiry = super::credential_expiry(&request);
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.optional_uuid("tenant_id", &r.tenant_id);
            let types = convert::event_types(&mut v, "types", &r.types);
            let start = match (r.after_cursor, r.from_oldest) {
                (Some(cursor), _) => StartAt::After(v.cursor("after_cursor", cursor)),
                (None, true) => StartAt::Oldest,
                (None, false) => StartAt::Now,
            };
            v.finish()?;
            let items = self
                .services
                .watch_events(caller, EventFilter { tenant_id, types }, start)
                .await?;
            Ok(super::events::WatchStream::new(
                items,
                self.services.feed.shutdown_token(),
                credential_expiry,
            ))
        }
        .await;
        respond(result)
    }

    async fn list_memberships(
        &self,
        request: Request<ListMembershipsRequest>,
    ) -> Result<Response<ListMembershipsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let page_size = page_size(&mut v, r.page_size);
            let (sort, descending) = order_by(&mut v, &r.order_by);
            let query = v.text("query", &r.query, MAX_QUERY_CHARS, false);
            let role = v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false);
            let min_cursor = v.cursor("min_cursor", r.min_cursor);
            let filter = ListFilter {
                status: convert::membership_status(&mut v, "status", r.status),
                member_type: convert::membership_type(&mut v, "type", r.r#type),
                source: convert::membership_source(&mut v, "source", r.source),
                role_id: None,
                query: (!query.is_empty()).then(|| TextQuery::new(&query)),
            };
            v.finish()?;
            let page = self
                .services
                .list_memberships(
                    caller,
                    ListMemberships {
                        tenant_id,
                        filter,
                        role_name: (!role.is_empty()).then_some(role),
                        sort,
                        descending,
                        page_size,
                        page_token: r.page_token,
                        min_cursor,
                    },
                )
                .await?;
            Ok(ListMembershipsResponse {
                memberships: page
                    .listed
                    .memberships
                    .iter()
                    .map(convert::membership)
                    .collect(),
                next_page_token: page.listed.next_page_token.clone(),
                cursor: page.cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn get_membership(
        &self,
        request: Request<GetMembershipRequest>,
    ) -> Result<Response<GetMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.uuid("user_id", &r.user_id);
            let min_cursor = v.cursor("min_cursor", r.min_cursor);
            v.finish()?;
            let (membership, cursor) = self
                .services
                .get_membership(caller, tenant_id, user_id, min_cursor)
                .await?;
            Ok(GetMembershipResponse {
                membership: Some(convert::membership(&membership)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn create_membership(
        &self,
        request: Request<CreateMembershipRequest>,
    ) -> Result<Response<CreateMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.uuid("user_id", &r.user_id);
            let email = v.email("email", &r.email);
            let display_name = v.text("display_name", &r.display_name, MAX_NAME_CHARS, false);
            let member_type = convert::membership_type(&mut v, "type", r.r#type)
                .unwrap_or(MembershipType::Member);
            if member_type == MembershipType::Owner {
                v.violation(
                    "type",
                    "OWNER belongs to the owner role's holder and follows TransferOwnership",
                );
            }
            let source = convert::membership_source(&mut v, "source", r.source);
            let source = convert::required(&mut v, "source", source, r.source);
            if let Some(source) = source
                && !source.is_direct()
            {
                v.violation(
                    "source",
                    "must be SCIM, OIDC_JIT, SAML_JIT, API or MIGRATION; SIGNUP and INVITE memberships come from sign-up and invitations",
                );
            }
            let external_id = v.text("external_id", &r.external_id, MAX_EXTERNAL_ID_CHARS, false);
            let role = role_name(&mut v, "role", &r.role);
            let status = convert::membership_status(&mut v, "status", r.status)
                .unwrap_or(MembershipStatus::Active);
            if !matches!(status, MembershipStatus::Active | MembershipStatus::Suspended) {
                v.violation("status", "must be ACTIVE or SUSPENDED");
            }
            let request_id = v.request_id("request_id", &r.request_id);
            v.finish()?;
            let Some(source) = source else {
                return Err(DomainError::Internal("validated source missing".into()));
            };
            let (membership, cursor) = self
                .services
                .create_membership(
                    caller,
                    CreateMembership {
                        tenant_id,
                        user_id,
                        email,
                        display_name,
                        member_type,
                        source,
                        external_id: (!external_id.is_empty()).then_some(external_id),
                        role,
                        status,
                        request_id,
                    },
                )
                .await?;
            Ok(CreateMembershipResponse {
                membership: Some(convert::membership(&membership)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn update_membership(
        &self,
        request: Request<UpdateMembershipRequest>,
    ) -> Result<Response<UpdateMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let Some(m) = r.membership else {
                return Err(DomainError::invalid("membership", "is required"));
            };
            let tenant_id = v.uuid("membership.tenant_id", &m.tenant_id);
            let user_id = v.uuid("membership.user_id", &m.user_id);
            let paths = convert::mask_paths(
                &mut v,
                r.update_mask.as_ref(),
                &["display_name", "type", "external_id", "status"],
            );
            let mut patch = MembershipPatch::default();
            for path in &paths {
                match path.as_str() {
                    "display_name" => {
                        patch.display_name = Some(v.text(
                            "membership.display_name",
                            &m.display_name,
                            MAX_NAME_CHARS,
                            false,
                        ))
                    }
                    "type" => {
                        let t = convert::membership_type(&mut v, "membership.type", m.r#type);
                        patch.member_type =
                            convert::required(&mut v, "membership.type", t, m.r#type);
                    }
                    "external_id" => {
                        let id = v.text(
                            "membership.external_id",
                            &m.external_id,
                            MAX_EXTERNAL_ID_CHARS,
                            false,
                        );
                        patch.external_id = Some((!id.is_empty()).then_some(id));
                    }
                    "status" => {
                        let s = convert::membership_status(&mut v, "membership.status", m.status);
                        let s = convert::required(&mut v, "membership.status", s, m.status);
                        if let Some(s) = s
                            && !matches!(s, MembershipStatus::Active | MembershipStatus::Suspended)
                        {
                            v.violation(
                                "membership.status",
                                "must be ACTIVE or SUSPENDED; use LeaveTenant or DeleteMembership to end a membership",
                            );
                        }
                        patch.status = s;
                    }
                    _ => {}
                }
            }
            v.finish()?;
            let (membership, cursor) = self
                .services
                .update_membership(caller, tenant_id, user_id, m.etag, patch)
                .await?;
            Ok(UpdateMembershipResponse {
                membership: Some(convert::membership(&membership)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn suspend_membership(
        &self,
        request: Request<SuspendMembershipRequest>,
    ) -> Result<Response<SuspendMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.uuid("user_id", &r.user_id);
            v.finish()?;
            let (membership, cursor) = self
                .services
                .suspend_membership(caller, tenant_id, user_id, r.etag)
                .await?;
            Ok(SuspendMembershipResponse {
                membership: Some(convert::membership(&membership)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn reactivate_membership(
        &self,
        request: Request<ReactivateMembershipRequest>,
    ) -> Result<Response<ReactivateMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.uuid("user_id", &r.user_id);
            v.finish()?;
            let (membership, cursor) = self
                .services
                .reactivate_membership(caller, tenant_id, user_id, r.etag)
                .await?;
            Ok(ReactivateMembershipResponse {
                membership: Some(convert::membership(&membership)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn delete_membership(
        &self,
        request: Request<DeleteMembershipRequest>,
    ) -> Result<Response<DeleteMembershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.uuid("user_id", &r.user_id);
            v.finish()?;
            let cursor = self
                .services
                .delete_membership(caller, tenant_id, user_id, r.etag, r.validate_only)
                .await?;
            Ok(DeleteMembershipResponse { cursor })
        }
        .await;
        respond(result)
    }

    async fn leave_tenant(
        &self,
        request: Request<LeaveTenantRequest>,
    ) -> Result<Response<LeaveTenantResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            v.finish()?;
            let (membership, cursor) = self.services.leave_tenant(caller, tenant_id).await?;
            Ok(LeaveTenantResponse {
                membership: Some(convert::membership(&membership)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn transfer_ownership(
        &self,
        request: Request<TransferOwnershipRequest>,
    ) -> Result<Response<TransferOwnershipResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let new_owner = v.uuid("new_owner_user_id", &r.new_owner_user_id);
            let kept_role = role_name(&mut v, "previous_owner_role", &r.previous_owner_role);
            v.finish()?;
            let (previous, next, cursor) = self
                .services
                .transfer_ownership(caller, tenant_id, new_owner, kept_role)
                .await?;
            Ok(TransferOwnershipResponse {
                previous_owner: Some(convert::membership(&previous)),
                new_owner: Some(convert::membership(&next)),
                cursor,
            })
        }
        .await;
        respond(result)
    }
}
