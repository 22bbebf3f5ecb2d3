//! `membership.v1.GroupService`: groups of a tenant's members, each RPC handed to one use case.

use uuid::Uuid;

use super::convert;
use super::pb::group_service_server::GroupService;
use super::pb::*;
use crate::domain::DomainError;
use crate::domain::events::EventCursor;
use crate::domain::group::{
    Group as DomainGroup, MAX_DESCRIPTION_CHARS, MAX_MEMBERS_PER_CALL, MAX_NAME_CHARS,
    MemberOutcome, is_group_source,
};
use crate::domain::membership::{Membership as DomainMembership, MembershipSource};
use crate::domain::validate::{MAX_EXTERNAL_ID_CHARS, MAX_QUERY_CHARS, Validator};
use crate::service::Services;
use crate::service::groups::{
    CreateGroup, DeleteGroup, GroupMembers, GroupPatch, GroupRef, ListGroupMembers, ListGroups,
    MembersChanged, UpdateGroup,
};

pub struct GroupApi {
    pub services: Services,
}

api_service! {
    impl GroupService for GroupApi {
        create_group(CreateGroupRequest) -> CreateGroupResponse;
        get_group(GetGroupRequest) -> GetGroupResponse;
        list_groups(ListGroupsRequest) -> ListGroupsResponse;
        update_group(UpdateGroupRequest) -> UpdateGroupResponse;
        delete_group(DeleteGroupRequest) -> DeleteGroupResponse;
        add_group_members(AddGroupMembersRequest) -> AddGroupMembersResponse;
        remove_group_members(RemoveGroupMembersRequest) -> RemoveGroupMembersResponse;
        list_group_members(ListGroupMembersRequest) -> ListGroupMembersResponse;
    }
}

// Requests, converted: every bad field is reported at once.

fn group_source(v: &mut Validator, raw: i32) -> MembershipSource {
    let source: Option<MembershipSource> = convert::enum_field(v, "source", raw);
    match source {
        None => MembershipSource::Api,
        Some(source) if is_group_source(source) => source,
        Some(_) => {
            v.violation(
                "source",
                "must be API, SCIM, SAML_JIT, OIDC_JIT or MIGRATION",
            );
            MembershipSource::Api
        }
    }
}

fn external_id(v: &mut Validator, field: &str, raw: &str) -> Option<String> {
    convert::optional(v.text(field, raw, MAX_EXTERNAL_ID_CHARS, false))
}

impl TryFrom<CreateGroupRequest> for CreateGroup {
    type Error = DomainError;

    fn try_from(r: CreateGroupRequest) -> Result<Self, DomainError> {
        Validator::check(|v| CreateGroup {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            name: v.text("name", &r.name, MAX_NAME_CHARS, true),
            description: v.text("description", &r.description, MAX_DESCRIPTION_CHARS, false),
            source: group_source(v, r.source),
            external_id: external_id(v, "external_id", &r.external_id),
            request_id: v.request_id("request_id", &r.request_id),
        })
    }
}

impl TryFrom<GetGroupRequest> for GroupRef {
    type Error = DomainError;

    fn try_from(r: GetGroupRequest) -> Result<Self, DomainError> {
        Validator::check(|v| GroupRef {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            group_id: v.uuid("group_id", &r.group_id),
        })
    }
}

impl TryFrom<ListGroupsRequest> for ListGroups {
    type Error = DomainError;

    fn try_from(r: ListGroupsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| ListGroups {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            query: convert::optional(v.text("query", &r.query, MAX_QUERY_CHARS, false)),
            source: convert::enum_field(v, "source", r.source),
            user_id: v.optional_uuid("user_id", &r.user_id),
            page_size: v.page_size("page_size", r.page_size),
            page_token: r.page_token,
        })
    }
}

impl TryFrom<UpdateGroupRequest> for UpdateGroup {
    type Error = DomainError;

    fn try_from(r: UpdateGroupRequest) -> Result<Self, DomainError> {
        let Some(group) = r.group else {
            return Err(DomainError::invalid("group", "is required"));
        };
        Validator::check(|v| {
            let mut patch = GroupPatch::default();
            let allowed = ["name", "description", "external_id"];
            for path in convert::mask_paths(v, r.update_mask.as_ref(), &allowed) {
                match path.as_str() {
                    "name" => {
                        patch.name = Some(v.text("group.name", &group.name, MAX_NAME_CHARS, true))
                    }
                    "description" => {
                        let description = &group.description;
                        let field = "group.description";
                        patch.description =
                            Some(v.text(field, description, MAX_DESCRIPTION_CHARS, false))
                    }
                    "external_id" => {
                        patch.external_id =
                            Some(external_id(v, "group.external_id", &group.external_id))
                    }
                    _ => {}
                }
            }
            UpdateGroup {
                tenant_id: v.uuid("group.tenant_id", &group.tenant_id),
                group_id: v.uuid("group.group_id", &group.group_id),
                etag: group.etag,
                patch,
            }
        })
    }
}

impl TryFrom<DeleteGroupRequest> for DeleteGroup {
    type Error = DomainError;

    fn try_from(r: DeleteGroupRequest) -> Result<Self, DomainError> {
        Validator::check(|v| DeleteGroup {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            group_id: v.uuid("group_id", &r.group_id),
            etag: r.etag,
            validate_only: r.validate_only,
        })
    }
}

/// AddGroupMembers and RemoveGroupMembers: 1 to 1,000 user ids, repeats counted once.
fn group_members(
    tenant_id: &str,
    group_id: &str,
    user_ids: &[String],
) -> Result<GroupMembers, DomainError> {
    Validator::check(|v| {
        if user_ids.is_empty() {
            v.violation("user_ids", "is required");
        } else if user_ids.len() > MAX_MEMBERS_PER_CALL {
            v.violation(
                "user_ids",
                format!("at most {MAX_MEMBERS_PER_CALL} per request"),
            );
        }
        let mut seen = std::collections::HashSet::new();
        let user_ids: Vec<Uuid> = (user_ids.iter().enumerate())
            .take(MAX_MEMBERS_PER_CALL)
            .map(|(i, raw)| v.uuid(&format!("user_ids[{i}]"), raw))
            .filter(|id| seen.insert(*id))
            .collect();
        GroupMembers {
            tenant_id: v.uuid("tenant_id", tenant_id),
            group_id: v.uuid("group_id", group_id),
            user_ids,
        }
    })
}

impl TryFrom<AddGroupMembersRequest> for GroupMembers {
    type Error = DomainError;

    fn try_from(r: AddGroupMembersRequest) -> Result<Self, DomainError> {
        group_members(&r.tenant_id, &r.group_id, &r.user_ids)
    }
}

impl TryFrom<RemoveGroupMembersRequest> for GroupMembers {
    type Error = DomainError;

    fn try_from(r: RemoveGroupMembersRequest) -> Result<Self, DomainError> {
        group_members(&r.tenant_id, &r.group_id, &r.user_ids)
    }
}

impl TryFrom<ListGroupMembersRequest> for ListGroupMembers {
    type Error = DomainError;

    fn try_from(r: ListGroupMembersRequest) -> Result<Self, DomainError> {
        Validator::check(|v| ListGroupMembers {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            group_id: v.uuid("group_id", &r.group_id),
            page_size: v.page_size("page_size", r.page_size),
            page_token: r.page_token,
        })
    }
}

// Results, converted.

changed_responses!(group: DomainGroup => convert::group; CreateGroupResponse, UpdateGroupResponse);
cursor_responses!(DeleteGroupResponse);

impl From<DomainGroup> for GetGroupResponse {
    fn from(group: DomainGroup) -> Self {
        GetGroupResponse {
            group: Some(convert::group(&group)),
        }
    }
}

impl From<(Vec<DomainGroup>, String)> for ListGroupsResponse {
    fn from((groups, next_page_token): (Vec<DomainGroup>, String)) -> Self {
        ListGroupsResponse {
            groups: groups.iter().map(convert::group).collect(),
            next_page_token,
        }
    }
}

fn results(outcomes: &[(Uuid, MemberOutcome)]) -> Vec<GroupMemberResult> {
    outcomes
        .iter()
        .map(|(user_id, outcome)| GroupMemberResult {
            user_id: user_id.to_string(),
            outcome: match outcome {
                MemberOutcome::Done => GroupMemberOutcome::Done,
                MemberOutcome::Unchanged => GroupMemberOutcome::Unchanged,
                MemberOutcome::NotAMember => GroupMemberOutcome::NotAMember,
                MemberOutcome::NotActive => GroupMemberOutcome::NotActive,
            } as i32,
        })
        .collect()
}

impl From<(MembersChanged, EventCursor)> for AddGroupMembersResponse {
    fn from(((outcomes, group), cursor): (MembersChanged, EventCursor)) -> Self {
        AddGroupMembersResponse {
            results: results(&outcomes),
            group: Some(convert::group(&group)),
            cursor: cursor.into(),
        }
    }
}

impl From<(MembersChanged, EventCursor)> for RemoveGroupMembersResponse {
    fn from(((outcomes, group), cursor): (MembersChanged, EventCursor)) -> Self {
        RemoveGroupMembersResponse {
            results: results(&outcomes),
            group: Some(convert::group(&group)),
            cursor: cursor.into(),
        }
    }
}

impl From<(Vec<DomainMembership>, String)> for ListGroupMembersResponse {
    fn from((members, next_page_token): (Vec<DomainMembership>, String)) -> Self {
        ListGroupMembersResponse {
            memberships: members.iter().map(convert::membership).collect(),
            next_page_token,
        }
    }
}
