//! `membership.v1.RoleService`: roles, who holds them, and permission checks.

use tonic::{Request, Response, Status};

use super::convert;
use super::pb::role_service_server::RoleService;
use super::pb::*;
use crate::domain::DomainError;
use crate::domain::events::EventCursor;
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{self, BindingSubject, Role, TenantRoles};
use crate::domain::validate::{MAX_ROLE_NAME_CHARS, Validator, truncate};
use crate::service::Checks;
use crate::service::Services;
use crate::service::authz;
use crate::service::roles::{
    BindingRow, Bound, CreateRole, DeleteRole, ListRoleBindings, MemberRole, RoleChange, RolePatch,
    RoleRef, UpdateRole,
};
use uuid::Uuid;

pub struct RoleApi {
    pub services: Services,
}

api_service! {
    impl RoleService for RoleApi {
        list_roles(ListRolesRequest) -> ListRolesResponse;
        get_role(GetRoleRequest) -> GetRoleResponse;
        create_role(CreateRoleRequest) -> CreateRoleResponse;
        update_role(UpdateRoleRequest) -> UpdateRoleResponse;
        delete_role(DeleteRoleRequest) -> DeleteRoleResponse;
        set_member_role(SetMemberRoleRequest) -> SetMemberRoleResponse
            => change_member_role, RoleChange::Set;
        bind_role(BindRoleRequest) -> BindRoleResponse => change_member_role, RoleChange::Bind;
        unbind_role(UnbindRoleRequest) -> UnbindRoleResponse
            => change_member_role, RoleChange::Unbind;
        list_role_bindings(ListRoleBindingsRequest) -> ListRoleBindingsResponse;
        check_permission(CheckPermissionRequest) -> CheckPermissionResponse => check_permissions;
        batch_check_permissions(BatchCheckPermissionsRequest) -> BatchCheckPermissionsResponse
            => check_permissions;
    }

    async fn list_permissions(
        &self,
        _request: Request<ListPermissionsRequest>,
    ) -> Result<Response<ListPermissionsResponse>, Status> {
        Ok(Response::new(ListPermissionsResponse {
            permissions: Permission::ALL
                .iter()
                .map(|p| PermissionInfo {
                    name: p.as_str().to_string(),
                    description: p.description().to_string(),
                })
                .collect(),
        }))
    }
}

// Requests, converted: every bad field is reported at once.

/// Most checks in one BatchCheckPermissions call.
pub const MAX_BATCH: usize = 100;
const MAX_DESCRIPTION_CHARS: usize = 500;

/// A custom role's name, by the rule of `domain::role::check_custom_name`.
fn role_name(v: &mut Validator, field: &str, raw: &str) -> String {
    if let Err(description) = role::check_custom_name(raw) {
        v.violation(field, description);
    }
    raw.to_string()
}

fn permission(v: &mut Validator, field: &str, raw: &str) -> Permission {
    Permission::parse(raw).unwrap_or_else(|| {
        v.violation(
            field,
            format!(
                "unknown permission {:?}; see ListPermissions",
                truncate(raw)
            ),
        );
        Permission::ProductsUse
    })
}

fn permission_set(v: &mut Validator, field: &str, raw: &[String]) -> PermissionSet {
    raw.iter().map(|name| permission(v, field, name)).collect()
}

fn reason(reason: authz::CheckReason) -> (bool, CheckReason) {
    use authz::CheckReason as R;
    let pb = match reason {
        R::Granted => CheckReason::Granted,
        R::NotGranted => CheckReason::NotGranted,
        R::NotAMember => CheckReason::NotAMember,
        R::MembershipInvited => CheckReason::MembershipInvited,
        R::MembershipSuspended => CheckReason::MembershipSuspended,
        R::MembershipLeft => CheckReason::MembershipLeft,
        R::TenantDissolved => CheckReason::TenantDissolved,
        R::TenantNotFound => CheckReason::TenantNotFound,
    };
    (reason == R::Granted, pb)
}

tenant_requests!(ListRolesRequest);

/// The role a request names; `prefix` is where its fields are (`role.` in an update).
fn role_ref(v: &mut Validator, prefix: &str, tenant_id: &str, name: &str, field: &str) -> RoleRef {
    RoleRef {
        tenant_id: v.uuid(&format!("{prefix}tenant_id"), tenant_id),
        name: v.text(&format!("{prefix}{field}"), name, MAX_ROLE_NAME_CHARS, true),
    }
}

impl TryFrom<GetRoleRequest> for RoleRef {
    type Error = DomainError;

    fn try_from(r: GetRoleRequest) -> Result<Self, DomainError> {
        Validator::check(|v| role_ref(v, "", &r.tenant_id, &r.role, "role"))
    }
}

impl TryFrom<CreateRoleRequest> for CreateRole {
    type Error = DomainError;

    fn try_from(r: CreateRoleRequest) -> Result<Self, DomainError> {
        Validator::check(|v| CreateRole {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            name: role_name(v, "name", &r.name),
            description: v.text("description", &r.description, MAX_DESCRIPTION_CHARS, false),
            permissions: permission_set(v, "permissions", &r.permissions),
        })
    }
}

impl TryFrom<UpdateRoleRequest> for UpdateRole {
    type Error = DomainError;

    fn try_from(r: UpdateRoleRequest) -> Result<Self, DomainError> {
        let Some(role) = r.role else {
            return Err(DomainError::invalid("role", "is required"));
        };
        Validator::check(|v| {
            let RoleRef { tenant_id, name } =
                role_ref(v, "role.", &role.tenant_id, &role.name, "name");
            let mut patch = RolePatch::default();
            let allowed = ["description", "permissions"];
            for path in convert::mask_paths(v, r.update_mask.as_ref(), &allowed) {
                match path.as_str() {
                    "description" => {
                        let description = &role.description;
                        let field = "role.description";
                        patch.description =
                            Some(v.text(field, description, MAX_DESCRIPTION_CHARS, false))
                    }
                    "permissions" => {
                        patch.permissions =
                            Some(permission_set(v, "role.permissions", &role.permissions))
                    }
                    _ => {}
                }
            }
            UpdateRole {
                tenant_id,
                name,
                etag: role.etag,
                patch,
            }
        })
    }
}

impl TryFrom<DeleteRoleRequest> for DeleteRole {
    type Error = DomainError;

    fn try_from(r: DeleteRoleRequest) -> Result<Self, DomainError> {
        let RoleRef { tenant_id, name } =
            Validator::check(|v| role_ref(v, "", &r.tenant_id, &r.role, "role"))?;
        Ok(DeleteRole {
            tenant_id,
            name,
            unbind_everywhere: r.unbind_everywhere,
        })
    }
}

/// SetMemberRole, BindRole and UnbindRole: the same fields, validated alike. The subject is
/// the member `user_id` or the group `group_id`: exactly one of them.
fn member_role(
    tenant_id: &str,
    user_id: &str,
    group_id: &str,
    role: &str,
) -> Result<MemberRole, DomainError> {
    Validator::check(|v| MemberRole {
        tenant_id: v.uuid("tenant_id", tenant_id),
        subject: match (user_id.is_empty(), group_id.is_empty()) {
            (_, true) => BindingSubject::User(v.uuid("user_id", user_id)),
            (true, false) => BindingSubject::Group(v.uuid("group_id", group_id)),
            (false, false) => {
                v.violation("group_id", "set user_id or group_id, not both");
                BindingSubject::User(Uuid::nil())
            }
        },
        role: v.text("role", role, MAX_ROLE_NAME_CHARS, true),
    })
}

impl TryFrom<SetMemberRoleRequest> for MemberRole {
    type Error = DomainError;

    fn try_from(r: SetMemberRoleRequest) -> Result<Self, DomainError> {
        member_role(&r.tenant_id, &r.user_id, "", &r.role)
    }
}

impl TryFrom<BindRoleRequest> for MemberRole {
    type Error = DomainError;

    fn try_from(r: BindRoleRequest) -> Result<Self, DomainError> {
        member_role(&r.tenant_id, &r.user_id, &r.group_id, &r.role)
    }
}

impl TryFrom<UnbindRoleRequest> for MemberRole {
    type Error = DomainError;

    fn try_from(r: UnbindRoleRequest) -> Result<Self, DomainError> {
        member_role(&r.tenant_id, &r.user_id, &r.group_id, &r.role)
    }
}

impl TryFrom<ListRoleBindingsRequest> for ListRoleBindings {
    type Error = DomainError;

    fn try_from(r: ListRoleBindingsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| ListRoleBindings {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            user_id: v.optional_uuid("user_id", &r.user_id),
            group_id: v.optional_uuid("group_id", &r.group_id),
            role: convert::optional(v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false)),
            page_size: v.page_size("page_size", r.page_size),
            page_token: r.page_token,
        })
    }
}

impl TryFrom<CheckPermissionRequest> for Checks {
    type Error = DomainError;

    fn try_from(r: CheckPermissionRequest) -> Result<Self, DomainError> {
        Validator::check(|v| Checks {
            checks: vec![(
                v.uuid("tenant_id", &r.tenant_id),
                v.uuid("user_id", &r.user_id),
                permission(v, "permission", &r.permission),
            )],
            min_cursor: EventCursor(v.cursor("min_cursor", r.min_cursor)),
        })
    }
}

impl TryFrom<BatchCheckPermissionsRequest> for Checks {
    type Error = DomainError;

    fn try_from(r: BatchCheckPermissionsRequest) -> Result<Self, DomainError> {
        Validator::check(|v| {
            if r.checks.is_empty() {
                v.violation("checks", "is required");
            } else if r.checks.len() > MAX_BATCH {
                v.violation("checks", format!("at most {MAX_BATCH} per request"));
            }
            let checks = (r.checks.iter().enumerate())
                .map(|(i, c)| {
                    (
                        v.uuid(&format!("checks[{i}].tenant_id"), &c.tenant_id),
                        v.uuid(&format!("checks[{i}].user_id"), &c.user_id),
                        permission(v, &format!("checks[{i}].permission"), &c.permission),
                    )
                })
                .collect();
            Checks {
                checks,
                min_cursor: EventCursor(v.cursor("min_cursor", r.min_cursor)),
            }
        })
    }
}

// Results, converted.

impl From<TenantRoles> for ListRolesResponse {
    fn from(roles: TenantRoles) -> Self {
        ListRolesResponse {
            roles: roles.0.iter().map(convert::role).collect(),
        }
    }
}

impl From<Role> for GetRoleResponse {
    fn from(role: Role) -> Self {
        GetRoleResponse {
            role: Some(convert::role(&role)),
        }
    }
}

changed_responses!(role: Role => convert::role; CreateRoleResponse, UpdateRoleResponse);
/// Responses to a change of one subject's bindings: the member or the group after it.
macro_rules! bound_responses {
    ($($response:ident),* $(,)?) => {$(
        impl From<(Bound, EventCursor)> for $response {
            fn from((bound, cursor): (Bound, EventCursor)) -> Self {
                let (membership, group) = match bound {
                    Bound::Member(m) => (Some(convert::membership(&m)), None),
                    Bound::Group(g) => (None, Some(convert::group(&g))),
                };
                $response {
                    membership,
                    group,
                    cursor: cursor.into(),
                }
            }
        }
    )*};
}

bound_responses!(BindRoleResponse, UnbindRoleResponse);

impl From<(Bound, EventCursor)> for SetMemberRoleResponse {
    fn from((bound, cursor): (Bound, EventCursor)) -> Self {
        SetMemberRoleResponse {
            membership: match bound {
                Bound::Member(m) => Some(convert::membership(&m)),
                Bound::Group(_) => None,
            },
            cursor: cursor.into(),
        }
    }
}

impl From<(usize, EventCursor)> for DeleteRoleResponse {
    fn from((unbound, cursor): (usize, EventCursor)) -> Self {
        DeleteRoleResponse {
            unbound_count: unbound as i32,
            cursor: cursor.into(),
        }
    }
}

impl From<(Vec<BindingRow>, String)> for ListRoleBindingsResponse {
    fn from((bindings, next_page_token): (Vec<BindingRow>, String)) -> Self {
        ListRoleBindingsResponse {
            bindings: bindings
                .into_iter()
                .map(|b| {
                    let (user_id, group_id) = match b.subject {
                        BindingSubject::User(user) => (user.to_string(), String::new()),
                        BindingSubject::Group(group) => (String::new(), group.to_string()),
                    };
                    RoleBinding {
                        tenant_id: b.tenant_id.to_string(),
                        user_id,
                        group_id,
                        role: b.role,
                        create_time: Some(convert::timestamp(b.created_at)),
                    }
                })
                .collect(),
            next_page_token,
        }
    }
}

fn granted_by(decision: &authz::Decision) -> Option<Grant> {
    decision.granted_by.as_ref().map(|g| Grant {
        role: g.role.clone(),
        group_id: g.group_id.map(|id| id.to_string()).unwrap_or_default(),
    })
}

impl From<(Vec<authz::Decision>, EventCursor)> for CheckPermissionResponse {
    fn from((decisions, cursor): (Vec<authz::Decision>, EventCursor)) -> Self {
        // One check asked, one answered.
        let (allowed, reason) = decisions
            .first()
            .map_or((false, CheckReason::Unspecified), |d| reason(d.reason));
        CheckPermissionResponse {
            allowed,
            reason: reason as i32,
            cursor: cursor.into(),
            granted_by: decisions.first().and_then(granted_by),
        }
    }
}

impl From<(Vec<authz::Decision>, EventCursor)> for BatchCheckPermissionsResponse {
    fn from((decisions, cursor): (Vec<authz::Decision>, EventCursor)) -> Self {
        BatchCheckPermissionsResponse {
            results: decisions
                .iter()
                .map(|d| {
                    let (allowed, reason) = reason(d.reason);
                    PermissionCheckResult {
                        allowed,
                        reason: reason as i32,
                        granted_by: granted_by(d),
                    }
                })
                .collect(),
            cursor: cursor.into(),
        }
    }
}
