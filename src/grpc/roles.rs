//! `membership.v1.RoleService`: roles, who holds them, and permission checks.

use tonic::{Request, Response, Status};

use super::pb::role_service_server::RoleService;
use super::pb::*;
use super::{convert, handle};
use crate::domain::DomainError;
use crate::domain::events::EventCursor;
use crate::domain::membership::Membership;
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::role::{self, Role, TenantRoles};
use crate::domain::validate::{MAX_ROLE_NAME_CHARS, Validator, truncate};
use crate::service::Checks;
use crate::service::Services;
use crate::service::authz;
use crate::service::roles::{
    CreateRole, DeleteRole, ListRoleBindings, MemberRole, RoleChange, RolePatch, RoleRef,
    UpdateRole,
};
use crate::store::entities::role_bindings;

pub struct RoleApi {
    pub services: Services,
}

#[tonic::async_trait]
impl RoleService for RoleApi {
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

    async fn list_roles(
        &self,
        request: Request<ListRolesRequest>,
    ) -> Result<Response<ListRolesResponse>, Status> {
        handle(request, |caller, tenant_id| {
            self.services.list_roles(caller, tenant_id)
        })
        .await
    }

    async fn get_role(
        &self,
        request: Request<GetRoleRequest>,
    ) -> Result<Response<GetRoleResponse>, Status> {
        handle(request, |caller, r| self.services.get_role(caller, r)).await
    }

    async fn create_role(
        &self,
        request: Request<CreateRoleRequest>,
    ) -> Result<Response<CreateRoleResponse>, Status> {
        handle(request, |caller, c| self.services.create_role(caller, c)).await
    }

    async fn update_role(
        &self,
        request: Request<UpdateRoleRequest>,
    ) -> Result<Response<UpdateRoleResponse>, Status> {
        handle(request, |caller, u| self.services.update_role(caller, u)).await
    }

    async fn delete_role(
        &self,
        request: Request<DeleteRoleRequest>,
    ) -> Result<Response<DeleteRoleResponse>, Status> {
        handle(request, |caller, d| self.services.delete_role(caller, d)).await
    }

    async fn set_member_role(
        &self,
        request: Request<SetMemberRoleRequest>,
    ) -> Result<Response<SetMemberRoleResponse>, Status> {
        handle(request, |caller, c| {
            self.services.change_member_role(caller, c, RoleChange::Set)
        })
        .await
    }

    async fn bind_role(
        &self,
        request: Request<BindRoleRequest>,
    ) -> Result<Response<BindRoleResponse>, Status> {
        handle(request, |caller, c| {
            self.services
                .change_member_role(caller, c, RoleChange::Bind)
        })
        .await
    }

    async fn unbind_role(
        &self,
        request: Request<UnbindRoleRequest>,
    ) -> Result<Response<UnbindRoleResponse>, Status> {
        handle(request, |caller, c| {
            self.services
                .change_member_role(caller, c, RoleChange::Unbind)
        })
        .await
    }

    async fn list_role_bindings(
        &self,
        request: Request<ListRoleBindingsRequest>,
    ) -> Result<Response<ListRoleBindingsResponse>, Status> {
        handle(request, |caller, l| {
            self.services.list_role_bindings(caller, l)
        })
        .await
    }

    async fn check_permission(
        &self,
        request: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        handle(request, |caller, c| {
            self.services.check_permissions(caller, c)
        })
        .await
    }

    async fn batch_check_permissions(
        &self,
        request: Request<BatchCheckPermissionsRequest>,
    ) -> Result<Response<BatchCheckPermissionsResponse>, Status> {
        handle(request, |caller, c| {
            self.services.check_permissions(caller, c)
        })
        .await
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
        let mut v = Validator::new();
        let role = role_ref(&mut v, "", &r.tenant_id, &r.role, "role");
        v.finish()?;
        Ok(role)
    }
}

impl TryFrom<CreateRoleRequest> for CreateRole {
    type Error = DomainError;

    fn try_from(r: CreateRoleRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let name = role_name(&mut v, "name", &r.name);
        let description = v.text("description", &r.description, MAX_DESCRIPTION_CHARS, false);
        let permissions = permission_set(&mut v, "permissions", &r.permissions);
        v.finish()?;
        Ok(CreateRole {
            tenant_id,
            name,
            description,
            permissions,
        })
    }
}

impl TryFrom<UpdateRoleRequest> for UpdateRole {
    type Error = DomainError;

    fn try_from(r: UpdateRoleRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let Some(role) = r.role else {
            return Err(DomainError::invalid("role", "is required"));
        };
        let RoleRef { tenant_id, name } =
            role_ref(&mut v, "role.", &role.tenant_id, &role.name, "name");
        let paths = convert::mask_paths(
            &mut v,
            r.update_mask.as_ref(),
            &["description", "permissions"],
        );
        let mut patch = RolePatch::default();
        for path in &paths {
            match path.as_str() {
                "description" => {
                    patch.description = Some(v.text(
                        "role.description",
                        &role.description,
                        MAX_DESCRIPTION_CHARS,
                        false,
                    ))
                }
                "permissions" => {
                    patch.permissions = Some(permission_set(
                        &mut v,
                        "role.permissions",
                        &role.permissions,
                    ))
                }
                _ => {}
            }
        }
        v.finish()?;
        Ok(UpdateRole {
            tenant_id,
            name,
            etag: role.etag,
            patch,
        })
    }
}

impl TryFrom<DeleteRoleRequest> for DeleteRole {
    type Error = DomainError;

    fn try_from(r: DeleteRoleRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let RoleRef { tenant_id, name } = role_ref(&mut v, "", &r.tenant_id, &r.role, "role");
        v.finish()?;
        Ok(DeleteRole {
            tenant_id,
            name,
            unbind_everywhere: r.unbind_everywhere,
        })
    }
}

/// SetMemberRole, BindRole and UnbindRole: the same fields, validated alike.
fn member_role(tenant_id: &str, user_id: &str, role: &str) -> Result<MemberRole, DomainError> {
    let mut v = Validator::new();
    let tenant_id = v.uuid("tenant_id", tenant_id);
    let user_id = v.uuid("user_id", user_id);
    let role = v.text("role", role, MAX_ROLE_NAME_CHARS, true);
    v.finish()?;
    Ok(MemberRole {
        tenant_id,
        user_id,
        role,
    })
}

impl TryFrom<SetMemberRoleRequest> for MemberRole {
    type Error = DomainError;

    fn try_from(r: SetMemberRoleRequest) -> Result<Self, DomainError> {
        member_role(&r.tenant_id, &r.user_id, &r.role)
    }
}

impl TryFrom<BindRoleRequest> for MemberRole {
    type Error = DomainError;

    fn try_from(r: BindRoleRequest) -> Result<Self, DomainError> {
        member_role(&r.tenant_id, &r.user_id, &r.role)
    }
}

impl TryFrom<UnbindRoleRequest> for MemberRole {
    type Error = DomainError;

    fn try_from(r: UnbindRoleRequest) -> Result<Self, DomainError> {
        member_role(&r.tenant_id, &r.user_id, &r.role)
    }
}

impl TryFrom<ListRoleBindingsRequest> for ListRoleBindings {
    type Error = DomainError;

    fn try_from(r: ListRoleBindingsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let user_id = v.optional_uuid("user_id", &r.user_id);
        let role = v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false);
        let page_size = v.page_size("page_size", r.page_size);
        v.finish()?;
        Ok(ListRoleBindings {
            tenant_id,
            user_id,
            role: convert::optional(role),
            page_size,
            page_token: r.page_token,
        })
    }
}

impl TryFrom<CheckPermissionRequest> for Checks {
    type Error = DomainError;

    fn try_from(r: CheckPermissionRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let user_id = v.uuid("user_id", &r.user_id);
        let permission = permission(&mut v, "permission", &r.permission);
        let min_cursor = v.cursor("min_cursor", r.min_cursor);
        v.finish()?;
        Ok(Checks {
            checks: vec![(tenant_id, user_id, permission)],
            min_cursor,
        })
    }
}

impl TryFrom<BatchCheckPermissionsRequest> for Checks {
    type Error = DomainError;

    fn try_from(r: BatchCheckPermissionsRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        if r.checks.is_empty() {
            v.violation("checks", "is required");
        } else if r.checks.len() > MAX_BATCH {
            v.violation("checks", format!("at most {MAX_BATCH} per request"));
        }
        let checks = r
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    v.uuid(&format!("checks[{i}].tenant_id"), &c.tenant_id),
                    v.uuid(&format!("checks[{i}].user_id"), &c.user_id),
                    permission(&mut v, &format!("checks[{i}].permission"), &c.permission),
                )
            })
            .collect();
        let min_cursor = v.cursor("min_cursor", r.min_cursor);
        v.finish()?;
        Ok(Checks { checks, min_cursor })
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
changed_responses!(membership: Membership => convert::membership;
    SetMemberRoleResponse,
    BindRoleResponse,
    UnbindRoleResponse,
);

impl From<(usize, EventCursor)> for DeleteRoleResponse {
    fn from((unbound, cursor): (usize, EventCursor)) -> Self {
        DeleteRoleResponse {
            unbound_count: unbound as i32,
            cursor: cursor.into(),
        }
    }
}

impl From<(Vec<(role_bindings::Model, String)>, String)> for ListRoleBindingsResponse {
    fn from((bindings, next_page_token): (Vec<(role_bindings::Model, String)>, String)) -> Self {
        ListRoleBindingsResponse {
            bindings: bindings
                .into_iter()
                .map(|(b, role)| RoleBinding {
                    tenant_id: b.tenant_id.to_string(),
                    user_id: b.user_id.to_string(),
                    role,
                    create_time: Some(convert::timestamp(b.created_at)),
                })
                .collect(),
            next_page_token,
        }
    }
}

impl From<(Vec<authz::CheckReason>, EventCursor)> for CheckPermissionResponse {
    fn from((reasons, cursor): (Vec<authz::CheckReason>, EventCursor)) -> Self {
        // One check asked, one answered.
        let (allowed, reason) = reasons
            .first()
            .map_or((false, CheckReason::Unspecified), |r| reason(*r));
        CheckPermissionResponse {
            allowed,
            reason: reason as i32,
            cursor: cursor.into(),
        }
    }
}

impl From<(Vec<authz::CheckReason>, EventCursor)> for BatchCheckPermissionsResponse {
    fn from((reasons, cursor): (Vec<authz::CheckReason>, EventCursor)) -> Self {
        BatchCheckPermissionsResponse {
            results: reasons
                .into_iter()
                .map(|r| {
                    let (allowed, reason) = reason(r);
                    PermissionCheckResult {
                        allowed,
                        reason: reason as i32,
                    }
                })
                .collect(),
            cursor: cursor.into(),
        }
    }
}
