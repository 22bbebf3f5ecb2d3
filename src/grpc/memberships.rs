//! `membership.v1.MembershipService`: each handler hands its converted request to one use case.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::pb::membership_service_server::MembershipService;
use super::pb::*;
use super::{convert, handle};
use crate::domain::DomainError;
use crate::domain::events::{AuditQuery, EventCursor, EventFilter};
use crate::domain::membership::{
    ListFilter, Membership, MembershipSource, MembershipStatus, MembershipType, SortKey, TextQuery,
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

api_service! {
    impl MembershipService for MembershipApi {
        auto_join(AutoJoinRequest) -> AutoJoinResponse;
        list_membership_events(ListMembershipEventsRequest) -> ListMembershipEventsResponse
            => list_events;
        list_memberships(ListMembershipsRequest) -> ListMembershipsResponse;
        get_membership(GetMembershipRequest) -> GetMembershipResponse;
        create_membership(CreateMembershipRequest) -> CreateMembershipResponse;
        update_membership(UpdateMembershipRequest) -> UpdateMembershipResponse;
        suspend_membership(SuspendMembershipRequest) -> SuspendMembershipResponse
            => set_membership_status, MembershipStatus::Suspended;
        reactivate_membership(ReactivateMembershipRequest) -> ReactivateMembershipResponse
            => set_membership_status, MembershipStatus::Active;
        delete_membership(DeleteMembershipRequest) -> DeleteMembershipResponse;
        leave_tenant(LeaveTenantRequest) -> LeaveTenantResponse;
        transfer_ownership(TransferOwnershipRequest) -> TransferOwnershipResponse;
    }

    type WatchMembershipEventsStream = super::events::WatchStream;

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
        Validator::check(|v| AutoJoin {
            user_id: v.uuid("user_id", &r.user_id),
            email: v.email("email", &r.email),
            display_name: v.text("display_name", &r.display_name, MAX_NAME_CHARS, false),
        })
    }
}

impl TryFrom<ListMembershipEventsRequest> for ListEvents {
    type Error = DomainError;

    fn try_from(r: ListMembershipEventsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| {
            let tenant_id = v.optional_uuid("tenant_id", &r.tenant_id);
            let limit = v.page_size("page_size", r.page_size);
            let filter = EventFilter {
                tenant_id,
                types: convert::event_types(v, "types", &r.types),
            };
            ListEvents {
                query: AuditQuery {
                    filter,
                    actor_id: v.optional_uuid("actor_id", &r.actor_id),
                    subject_id: convert::optional(v.text("subject_id", &r.subject_id, 64, false)),
                    start: convert::micros(v, "start_time", r.start_time.as_ref()),
                    end: convert::micros(v, "end_time", r.end_time.as_ref()),
                    after: r.after_cursor.map(|c| v.cursor("after_cursor", c)),
                    descending: match r.order_by.trim() {
                        "" | "position" | "position asc" => false,
                        "position desc" => true,
                        _ => {
                            v.violation("order_by", "must be `position` or `position desc`");
                            false
                        }
                    },
                    limit,
                },
                page_token: r.page_token,
            }
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
        Validator::check(|v| Watch {
            filter: EventFilter {
                tenant_id: v.optional_uuid("tenant_id", &r.tenant_id),
                types: convert::event_types(v, "types", &r.types),
            },
            start: match (r.after_cursor, r.from_oldest) {
                (Some(cursor), _) => StartAt::After(v.cursor("after_cursor", cursor)),
                (None, true) => StartAt::Oldest,
                (None, false) => StartAt::Now,
            },
        })
    }
}

impl TryFrom<ListMembershipsRequest> for ListMemberships {
    type Error = DomainError;

    fn try_from(r: ListMembershipsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| {
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let page_size = v.page_size("page_size", r.page_size);
            let (sort, descending) = order_by(v, &r.order_by);
            let query = v.text("query", &r.query, MAX_QUERY_CHARS, false);
            let role = v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false);
            ListMemberships {
                tenant_id,
                min_cursor: EventCursor(v.cursor("min_cursor", r.min_cursor)),
                filter: ListFilter {
                    status: convert::enum_field(v, "status", r.status),
                    member_type: convert::enum_field(v, "type", r.r#type),
                    source: convert::enum_field(v, "source", r.source),
                    role_id: None,
                    query: (!query.is_empty()).then(|| TextQuery::new(&query)),
                    group_id: v.optional_uuid("group_id", &r.group_id),
                },
                role_name: convert::optional(role),
                sort,
                descending,
                page_size,
                page_token: r.page_token,
            }
        })
    }
}

impl TryFrom<GetMembershipRequest> for GetMembership {
    type Error = DomainError;

    fn try_from(r: GetMembershipRequest) -> Result<Self, DomainError> {
        Validator::check(|v| GetMembership {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            user_id: v.uuid("user_id", &r.user_id),
            min_cursor: EventCursor(v.cursor("min_cursor", r.min_cursor)),
        })
    }
}

impl TryFrom<CreateMembershipRequest> for CreateMembership {
    type Error = DomainError;

    fn try_from(r: CreateMembershipRequest) -> Result<Self, DomainError> {
        Validator::check(|v| CreateMembership {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            user_id: v.uuid("user_id", &r.user_id),
            email: v.email("email", &r.email),
            display_name: v.text("display_name", &r.display_name, MAX_NAME_CHARS, false),
            member_type: {
                let member_type = convert::enum_field(v, "type", r.r#type);
                let member_type = member_type.unwrap_or(MembershipType::Member);
                if let Some(refusal) = member_type.refuse_direct() {
                    v.violation("type", refusal);
                }
                member_type
            },
            source: {
                let source = convert::enum_field(v, "source", r.source);
                if source.is_some_and(|source: MembershipSource| !source.is_direct()) {
                    v.violation(
                        "source",
                        "must be SCIM, OIDC_JIT, SAML_JIT, API or MIGRATION; SIGNUP and INVITE memberships come from sign-up and invitations",
                    );
                }
                convert::required(v, "source", r.source, source)
            },
            external_id: convert::optional(v.text(
                "external_id",
                &r.external_id,
                MAX_EXTERNAL_ID_CHARS,
                false,
            )),
            role: role_name(v, "role", &r.role),
            status: {
                let status = convert::enum_field(v, "status", r.status);
                let status = status.unwrap_or(MembershipStatus::Active);
                if !status.is_settable() {
                    v.violation("status", "must be ACTIVE or SUSPENDED");
                }
                status
            },
            request_id: v.request_id("request_id", &r.request_id),
        })
    }
}

/// The member a request names, at the etag it read it at.
fn member_at(tenant_id: &str, user_id: &str, etag: String) -> Result<MemberAt, DomainError> {
    Validator::check(|v| MemberAt {
        tenant_id: v.uuid("tenant_id", tenant_id),
        user_id: v.uuid("user_id", user_id),
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
        let Some(m) = r.membership else {
            return Err(DomainError::invalid("membership", "is required"));
        };
        Validator::check(|v| {
            let tenant_id = v.uuid("membership.tenant_id", &m.tenant_id);
            let user_id = v.uuid("membership.user_id", &m.user_id);
            let allowed = ["display_name", "type", "external_id", "status"];
            let mut patch = MembershipPatch::default();
            for path in convert::mask_paths(v, r.update_mask.as_ref(), &allowed) {
                match path.as_str() {
                    "display_name" => {
                        let name = &m.display_name;
                        patch.display_name =
                            Some(v.text("membership.display_name", name, MAX_NAME_CHARS, false))
                    }
                    "type" => {
                        patch.member_type =
                            Some(convert::required_enum(v, "membership.type", m.r#type))
                    }
                    "external_id" => {
                        let id = &m.external_id;
                        let id = v.text("membership.external_id", id, MAX_EXTERNAL_ID_CHARS, false);
                        patch.external_id = Some(convert::optional(id));
                    }
                    "status" => {
                        let field = "membership.status";
                        let status = convert::enum_field(v, field, m.status);
                        if status.is_some_and(|status: MembershipStatus| !status.is_settable()) {
                            v.violation(
                                field,
                                "must be ACTIVE or SUSPENDED; use LeaveTenant or DeleteMembership to end a membership",
                            );
                        }
                        patch.status = Some(convert::required(v, field, m.status, status));
                    }
                    _ => {}
                }
            }
            UpdateMembership {
                tenant_id,
                user_id,
                etag: m.etag,
                patch,
            }
        })
    }
}

impl TryFrom<TransferOwnershipRequest> for TransferOwnership {
    type Error = DomainError;

    fn try_from(r: TransferOwnershipRequest) -> Result<Self, DomainError> {
        Validator::check(|v| TransferOwnership {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            new_owner_id: v.uuid("new_owner_user_id", &r.new_owner_user_id),
            previous_owner_role: role_name(v, "previous_owner_role", &r.previous_owner_role),
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
