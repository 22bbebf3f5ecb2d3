//! `membership.v1.MembershipService`: each handler hands its converted request to one use case.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::pb::membership_service_server::MembershipService;
use super::pb::*;
use super::{convert, handle};
use crate::domain::DomainError;
use crate::domain::events::{EventCursor, EventFilter};
use crate::domain::membership::{
    ListFilter, Membership, MembershipStatus, MembershipType, SortKey, TextQuery,
};
use crate::domain::validate::{
    MAX_EXTERNAL_ID_CHARS, MAX_NAME_CHARS, MAX_QUERY_CHARS, MAX_ROLE_NAME_CHARS, Validator,
};
use crate::events::StartAt;
use crate::service::Services;
use crate::service::domains::{AutoJoin, JoinOutcome};
use crate::service::events::{EventPage, ListEvents};
use crate::service::memberships::{
    CreateMembership, DeleteMembership, GetMembership, ListMemberships, MemberAt, MembershipPage,
    MembershipPatch, TransferOwnership, UpdateMembership, default_role,
};

pub struct MembershipApi {
    pub services: Services,
}

#[tonic::async_trait]
impl MembershipService for MembershipApi {
    type WatchMembershipEventsStream = super::events::WatchStream;

    async fn auto_join(
        &self,
        request: Request<AutoJoinRequest>,
    ) -> Result<Response<AutoJoinResponse>, Status> {
        handle(request, |caller, j| self.services.auto_join(caller, j)).await
    }

    async fn list_membership_events(
        &self,
        request: Request<ListMembershipEventsRequest>,
    ) -> Result<Response<ListMembershipEventsResponse>, Status> {
        handle(request, |caller, query| {
            self.services.list_events(caller, query)
        })
        .await
    }

    async fn watch_membership_events(
        &self,
        request: Request<WatchMembershipEventsRequest>,
    ) -> Result<Response<Self::WatchMembershipEventsStream>, Status> {
        let credential_expiry = super::credential_expiry(&request);
        let shutdown = self.services.feed.shutdown_token();
        handle(request, |caller, w: Watch| async move {
            let items = self
                .services
                .watch_events(caller, w.filter, w.start)
                .await?;
            Ok(super::events::WatchStream::new(
                items,
                shutdown,
                credential_expiry,
            ))
        })
        .await
    }

    async fn list_memberships(
        &self,
        request: Request<ListMembershipsRequest>,
    ) -> Result<Response<ListMembershipsResponse>, Status> {
        handle(request, |caller, query| {
            self.services.list_memberships(caller, query)
        })
        .await
    }

    async fn get_membership(
        &self,
        request: Request<GetMembershipRequest>,
    ) -> Result<Response<GetMembershipResponse>, Status> {
        handle(request, |caller, g| self.services.get_membership(caller, g)).await
    }

    async fn create_membership(
        &self,
        request: Request<CreateMembershipRequest>,
    ) -> Result<Response<CreateMembershipResponse>, Status> {
        handle(request, |caller, command| {
            self.services.create_membership(caller, command)
        })
        .await
    }

    async fn update_membership(
        &self,
        request: Request<UpdateMembershipRequest>,
    ) -> Result<Response<UpdateMembershipResponse>, Status> {
        handle(request, |caller, u| {
            self.services.update_membership(caller, u)
        })
        .await
    }

    async fn suspend_membership(
        &self,
        request: Request<SuspendMembershipRequest>,
    ) -> Result<Response<SuspendMembershipResponse>, Status> {
        handle(request, |caller, m| {
            self.services.suspend_membership(caller, m)
        })
        .await
    }

    async fn reactivate_membership(
        &self,
        request: Request<ReactivateMembershipRequest>,
    ) -> Result<Response<ReactivateMembershipResponse>, Status> {
        handle(request, |caller, m| {
            self.services.reactivate_membership(caller, m)
        })
        .await
    }

    async fn delete_membership(
        &self,
        request: Request<DeleteMembershipRequest>,
    ) -> Result<Response<DeleteMembershipResponse>, Status> {
        handle(request, |caller, d| {
            self.services.delete_membership(caller, d)
        })
        .await
    }

    async fn leave_tenant(
        &self,
        request: Request<LeaveTenantRequest>,
    ) -> Result<Response<LeaveTenantResponse>, Status> {
        handle(request, |caller, tenant_id| {
            self.services.leave_tenant(caller, tenant_id)
        })
        .await
    }

    async fn transfer_ownership(
        &self,
        request: Request<TransferOwnershipRequest>,
    ) -> Result<Response<TransferOwnershipResponse>, Status> {
        handle(request, |caller, t| {
            self.services.transfer_ownership(caller, t)
        })
        .await
    }
}

// Requests, converted: every bad field is reported at once.

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

fn role_name(v: &mut Validator, field: &str, raw: &str) -> String {
    default_role(&v.text(field, raw, MAX_ROLE_NAME_CHARS, false))
}

impl TryFrom<AutoJoinRequest> for AutoJoin {
    type Error = DomainError;

    fn try_from(r: AutoJoinRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let user_id = v.uuid("user_id", &r.user_id);
        let email = v.email("email", &r.email);
        let display_name = v.text("display_name", &r.display_name, MAX_NAME_CHARS, false);
        v.finish()?;
        Ok(AutoJoin {
            user_id,
            email,
            display_name,
        })
    }
}

impl TryFrom<ListMembershipEventsRequest> for ListEvents {
    type Error = DomainError;

    fn try_from(r: ListMembershipEventsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.optional_uuid("tenant_id", &r.tenant_id);
        let page_size = v.page_size("page_size", r.page_size);
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
        Ok(ListEvents {
            filter: EventFilter { tenant_id, types },
            actor_id,
            subject_id: convert::optional(subject_id),
            start,
            end,
            descending,
            after_cursor,
            page_size,
            page_token: r.page_token,
        })
    }
}

pub(crate) struct Watch {
    filter: EventFilter,
    start: StartAt,
}

impl TryFrom<WatchMembershipEventsRequest> for Watch {
    type Error = DomainError;

    fn try_from(r: WatchMembershipEventsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.optional_uuid("tenant_id", &r.tenant_id);
        let types = convert::event_types(&mut v, "types", &r.types);
        let start = match (r.after_cursor, r.from_oldest) {
            (Some(cursor), _) => StartAt::After(v.cursor("after_cursor", cursor)),
            (None, true) => StartAt::Oldest,
            (None, false) => StartAt::Now,
        };
        v.finish()?;
        Ok(Watch {
            filter: EventFilter { tenant_id, types },
            start,
        })
    }
}

impl TryFrom<ListMembershipsRequest> for ListMemberships {
    type Error = DomainError;

    fn try_from(r: ListMembershipsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let page_size = v.page_size("page_size", r.page_size);
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
        Ok(ListMemberships {
            tenant_id,
            filter,
            role_name: convert::optional(role),
            sort,
            descending,
            page_size,
            page_token: r.page_token,
            min_cursor,
        })
    }
}

impl TryFrom<GetMembershipRequest> for GetMembership {
    type Error = DomainError;

    fn try_from(r: GetMembershipRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let user_id = v.uuid("user_id", &r.user_id);
        let min_cursor = v.cursor("min_cursor", r.min_cursor);
        v.finish()?;
        Ok(GetMembership {
            tenant_id,
            user_id,
            min_cursor,
        })
    }
}

impl TryFrom<CreateMembershipRequest> for CreateMembership {
    type Error = DomainError;

    fn try_from(r: CreateMembershipRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let user_id = v.uuid("user_id", &r.user_id);
        let email = v.email("email", &r.email);
        let display_name = v.text("display_name", &r.display_name, MAX_NAME_CHARS, false);
        let member_type =
            convert::membership_type(&mut v, "type", r.r#type).unwrap_or(MembershipType::Member);
        if let Some(refusal) = member_type.refuse_direct() {
            v.violation("type", refusal);
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
        if !status.is_settable() {
            v.violation("status", "must be ACTIVE or SUSPENDED");
        }
        let request_id = v.request_id("request_id", &r.request_id);
        v.finish()?;
        let Some(source) = source else {
            return Err(DomainError::Internal("validated source missing".into()));
        };
        Ok(CreateMembership {
            tenant_id,
            user_id,
            email,
            display_name,
            member_type,
            source,
            external_id: convert::optional(external_id),
            role,
            status,
            request_id,
        })
    }
}

/// The member a request names, at the etag it read it at.
fn member_at(tenant_id: &str, user_id: &str, etag: String) -> Result<MemberAt, DomainError> {
    let mut v = Validator::new();
    let tenant_id = v.uuid("tenant_id", tenant_id);
    let user_id = v.uuid("user_id", user_id);
    v.finish()?;
    Ok(MemberAt {
        tenant_id,
        user_id,
        etag,
    })
}

impl TryFrom<SuspendMembershipRequest> for MemberAt {
    type Error = DomainError;

    fn try_from(r: SuspendMembershipRequest) -> Result<Self, DomainError> {
        member_at(&r.tenant_id, &r.user_id, r.etag)
    }
}

impl TryFrom<ReactivateMembershipRequest> for MemberAt {
    type Error = DomainError;

    fn try_from(r: ReactivateMembershipRequest) -> Result<Self, DomainError> {
        member_at(&r.tenant_id, &r.user_id, r.etag)
    }
}

impl TryFrom<DeleteMembershipRequest> for DeleteMembership {
    type Error = DomainError;

    fn try_from(r: DeleteMembershipRequest) -> Result<Self, DomainError> {
        let MemberAt {
            tenant_id,
            user_id,
            etag,
        } = member_at(&r.tenant_id, &r.user_id, r.etag)?;
        Ok(DeleteMembership {
            tenant_id,
            user_id,
            etag,
            validate_only: r.validate_only,
        })
    }
}

impl TryFrom<UpdateMembershipRequest> for UpdateMembership {
    type Error = DomainError;

    fn try_from(r: UpdateMembershipRequest) -> Result<Self, DomainError> {
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
                    patch.member_type = convert::required(&mut v, "membership.type", t, m.r#type);
                }
                "external_id" => {
                    let id = v.text(
                        "membership.external_id",
                        &m.external_id,
                        MAX_EXTERNAL_ID_CHARS,
                        false,
                    );
                    patch.external_id = Some(convert::optional(id));
                }
                "status" => {
                    let s = convert::membership_status(&mut v, "membership.status", m.status);
                    let s = convert::required(&mut v, "membership.status", s, m.status);
                    if let Some(s) = s
                        && !s.is_settable()
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
        Ok(UpdateMembership {
            tenant_id,
            user_id,
            etag: m.etag,
            patch,
        })
    }
}

impl TryFrom<TransferOwnershipRequest> for TransferOwnership {
    type Error = DomainError;

    fn try_from(r: TransferOwnershipRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let new_owner_id = v.uuid("new_owner_user_id", &r.new_owner_user_id);
        let previous_owner_role = role_name(&mut v, "previous_owner_role", &r.previous_owner_role);
        v.finish()?;
        Ok(TransferOwnership {
            tenant_id,
            new_owner_id,
            previous_owner_role,
        })
    }
}

// Results, converted.

impl From<(Vec<(Uuid, JoinOutcome)>, EventCursor)> for AutoJoinResponse {
    fn from((results, cursor): (Vec<(Uuid, JoinOutcome)>, EventCursor)) -> Self {
        let results = results
            .into_iter()
            .map(|(tenant_id, outcome)| {
                let (outcome, membership) = match outcome {
                    JoinOutcome::Joined(m) => (AutoJoinOutcome::Joined, Some(m)),
                    JoinOutcome::AlreadyMember(m) => (AutoJoinOutcome::AlreadyMember, Some(m)),
                    JoinOutcome::NoSeat => (AutoJoinOutcome::NoSeat, None),
                };
                AutoJoinResult {
                    tenant_id: tenant_id.to_string(),
                    outcome: outcome as i32,
                    membership: membership.as_ref().map(convert::membership),
                }
            })
            .collect();
        AutoJoinResponse {
            results,
            cursor: cursor.into(),
        }
    }
}

impl From<EventPage> for ListMembershipEventsResponse {
    fn from(page: EventPage) -> Self {
        ListMembershipEventsResponse {
            events: page.events.iter().map(convert::event).collect(),
            next_page_token: page.next_page_token,
            cursor: page.cursor.into(),
        }
    }
}

impl From<MembershipPage> for ListMembershipsResponse {
    fn from(page: MembershipPage) -> Self {
        ListMembershipsResponse {
            memberships: page
                .listed
                .memberships
                .iter()
                .map(convert::membership)
                .collect(),
            next_page_token: page.listed.next_page_token.clone(),
            cursor: page.cursor.into(),
        }
    }
}

changed_responses!(membership: Membership => convert::membership;
    GetMembershipResponse,
    CreateMembershipResponse,
    UpdateMembershipResponse,
    SuspendMembershipResponse,
    ReactivateMembershipResponse,
    LeaveTenantResponse,
);
cursor_responses!(DeleteMembershipResponse);
tenant_requests!(LeaveTenantRequest);

impl From<(Membership, Membership, EventCursor)> for TransferOwnershipResponse {
    fn from((previous, next, cursor): (Membership, Membership, EventCursor)) -> Self {
        TransferOwnershipResponse {
            previous_owner: Some(convert::membership(&previous)),
            new_owner: Some(convert::membership(&next)),
            cursor: cursor.into(),
        }
    }
}
