//! `membership.v1.RoleService`.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::pb::role_service_server::RoleService;
use super::pb::*;
use super::{caller, convert, respond};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::validate::{MAX_ROLE_NAME_CHARS, Validator, truncate};
use crate::domain::{Caller, DomainError};
use crate::service::Services;
use crate::service::authz;
use crate::service::roles::{RoleChange, RolePatch};

pub struct RoleApi {
    pub services: Services,
}

/// Most checks in one BatchCheckPermissions call.
pub const MAX_BATCH: usize = 100;
const MAX_DESCRIPTION_CHARS: usize = 500;

/// A custom role's name: a letter, then lower-case letters, digits and underscores.
fn role_name(v: &mut Validator, field: &str, raw: &str) -> String {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_ROLE_NAME_CHARS
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        v.violation(
            field,
            "must be 1 to 64 of a-z, 0-9 and _, starting with a letter",
        );
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

impl RoleApi {
    /// SetMemberRole, BindRole and UnbindRole: the same fields, validated alike.
    async fn change_member_role(
        &self,
        caller: Caller,
        tenant_id: &str,
        user_id: &str,
        role: &str,
        change: RoleChange,
    ) -> Result<(Membership, i64), DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", tenant_id);
        let user_id = v.uuid("user_id", user_id);
        let role = v.text("role", role, MAX_ROLE_NAME_CHARS, true);
        v.finish()?;
        let (membership, cursor) = self
            .services
            .change_member_role(caller, tenant_id, user_id, role, change)
            .await?;
        Ok((convert::membership(&membership), cursor))
    }
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
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            v.finish()?;
            let roles = self.services.list_roles(caller, tenant_id).await?;
            Ok(ListRolesResponse {
                roles: roles.0.iter().map(convert::role).collect(),
            })
        }
        .await;
        respond(result)
    }

    async fn get_role(
        &self,
        request: Request<GetRoleRequest>,
    ) -> Result<Response<GetRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let name = v.text("role", &r.role, MAX_ROLE_NAME_CHARS, true);
            v.finish()?;
            let role = self.services.get_role(caller, tenant_id, &name).await?;
            Ok(GetRoleResponse {
                role: Some(convert::role(&role)),
            })
        }
        .await;
        respond(result)
    }

    async fn create_role(
        &self,
        request: Request<CreateRoleRequest>,
    ) -> Result<Response<CreateRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let name = role_name(&mut v, "name", &r.name);
            let description = v.text("description", &r.description, MAX_DESCRIPTION_CHARS, false);
            let permissions = permission_set(&mut v, "permissions", &r.permissions);
            v.finish()?;
            let (role, cursor) = self
                .services
                .create_role(caller, tenant_id, name, description, permissions)
                .await?;
            Ok(CreateRoleResponse {
                role: Some(convert::role(&role)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn update_role(
        &self,
        request: Request<UpdateRoleRequest>,
    ) -> Result<Response<UpdateRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let Some(role) = r.role else {
                return Err(DomainError::invalid("role", "is required"));
            };
            let tenant_id = v.uuid("role.tenant_id", &role.tenant_id);
            let name = v.text("role.name", &role.name, MAX_ROLE_NAME_CHARS, true);
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
            let (role, cursor) = self
                .services
                .update_role(caller, tenant_id, name, role.etag, patch)
                .await?;
            Ok(UpdateRoleResponse {
                role: Some(convert::role(&role)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn delete_role(
        &self,
        request: Request<DeleteRoleRequest>,
    ) -> Result<Response<DeleteRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let name = v.text("role", &r.role, MAX_ROLE_NAME_CHARS, true);
            v.finish()?;
            let (unbound, cursor) = self
                .services
                .delete_role(caller, tenant_id, name, r.unbind_everywhere)
                .await?;
            Ok(DeleteRoleResponse {
                unbound_count: unbound as i32,
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn set_member_role(
        &self,
        request: Request<SetMemberRoleRequest>,
    ) -> Result<Response<SetMemberRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = self
            .change_member_role(caller, &r.tenant_id, &r.user_id, &r.role, RoleChange::Set)
            .await
            .map(|(membership, cursor)| SetMemberRoleResponse {
                membership: Some(membership),
                cursor,
            });
        respond(result)
    }

    async fn bind_role(
        &self,
        request: Request<BindRoleRequest>,
    ) -> Result<Response<BindRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = self
            .change_member_role(caller, &r.tenant_id, &r.user_id, &r.role, RoleChange::Bind)
            .await
            .map(|(membership, cursor)| BindRoleResponse {
                membership: Some(membership),
                cursor,
            });
        respond(result)
    }

    async fn unbind_role(
        &self,
        request: Request<UnbindRoleRequest>,
    ) -> Result<Response<UnbindRoleResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = self
            .change_member_role(
                caller,
                &r.tenant_id,
                &r.user_id,
                &r.role,
                RoleChange::Unbind,
            )
            .await
            .map(|(membership, cursor)| UnbindRoleResponse {
                membership: Some(membership),
                cursor,
            });
        respond(result)
    }

    async fn list_role_bindings(
        &self,
        request: Request<ListRoleBindingsRequest>,
    ) -> Result<Response<ListRoleBindingsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.optional_uuid("user_id", &r.user_id);
            let role = v.text("role", &r.role, MAX_ROLE_NAME_CHARS, false);
            let page_size = super::memberships::page_size(&mut v, r.page_size);
            v.finish()?;
            let (bindings, next_page_token) = self
                .services
                .list_role_bindings(
                    caller,
                    tenant_id,
                    user_id,
                    (!role.is_empty()).then_some(role),
                    page_size,
                    &r.page_token,
                )
                .await?;
            Ok(ListRoleBindingsResponse {
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
            })
        }
        .await;
        respond(result)
    }

    async fn check_permission(
        &self,
        request: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let user_id = v.uuid("user_id", &r.user_id);
            let permission = permission(&mut v, "permission", &r.permission);
            let min_cursor = v.cursor("min_cursor", r.min_cursor);
            v.finish()?;
            let (reasons, cursor) = self
                .services
                .check_permissions(caller, vec![(tenant_id, user_id, permission)], min_cursor)
                .await?;
            let (allowed, reason) = reason(reasons[0]);
            Ok(CheckPermissionResponse {
                allowed,
                reason: reason as i32,
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn batch_check_permissions(
        &self,
        request: Request<BatchCheckPermissionsRequest>,
    ) -> Result<Response<BatchCheckPermissionsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            if r.checks.is_empty() {
                v.violation("checks", "is required");
            } else if r.checks.len() > MAX_BATCH {
                v.violation("checks", format!("at most {MAX_BATCH} per request"));
            }
            let checks: Vec<(Uuid, Uuid, Permission)> = r
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
            let (reasons, cursor) = self
                .services
                .check_permissions(caller, checks, min_cursor)
                .await?;
            Ok(BatchCheckPermissionsResponse {
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
                cursor,
            })
        }
        .await;
        respond(result)
    }
}
