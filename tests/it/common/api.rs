//! The typed fixture: the API as one caller sees it, so a test says who acts and what they do,
//! `api.as_user(owner).bind_role(&tenant, bob, "admin")`, and keeps the whole answer (a response
//! or the refusal) to assert on.

use tonic::transport::Channel;
use tonic::{Request, Status};
use uuid::Uuid;

use membership_service::grpc::pb;
use membership_service::grpc::pb::group_service_client::GroupServiceClient;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::role_service_client::RoleServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;

use super::{ServerProcess, Tenant, TestServer, req};

/// One connection to a test server; `as_user`, `as_system` or `acting` name who calls.
#[derive(Clone)]
pub struct Api {
    channel: Channel,
}

impl TestServer {
    pub async fn api(&self) -> Api {
        Api {
            channel: self.channel().await,
        }
    }
}

impl ServerProcess {
    pub async fn api(&self) -> Api {
        Api {
            channel: self.channel().await,
        }
    }
}

impl Api {
    pub fn as_user(&self, actor: Uuid) -> Caller {
        self.acting(Some(actor))
    }

    /// A trusted system caller (provisioning, migration), acting without a user.
    pub fn as_system(&self) -> Caller {
        self.acting(None)
    }

    /// `actor`, or a system caller when `None`.
    pub fn acting(&self, actor: Option<Uuid>) -> Caller {
        Caller {
            channel: self.channel.clone(),
            actor,
        }
    }
}

/// Calls made on behalf of one actor. Each returns the call's response, or its refusal.
pub struct Caller {
    channel: Channel,
    actor: Option<Uuid>,
}

impl Caller {
    fn request<T>(&self, message: T) -> Request<T> {
        req(message, self.actor)
    }

    fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }

    fn tenants(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channel.clone())
    }

    fn members(&self) -> MembershipServiceClient<Channel> {
        MembershipServiceClient::new(self.channel.clone())
    }

    fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    /// Dissolves `tenant`, without an etag.
    pub async fn dissolve_tenant(
        &self,
        tenant: &Tenant,
    ) -> Result<pb::DissolveTenantResponse, Status> {
        let request = self.request(pb::DissolveTenantRequest {
            tenant_id: tenant.id.clone(),
            etag: String::new(),
            validate_only: false,
        });
        self.tenants()
            .dissolve_tenant(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Suspends `user_id`, without an etag.
    pub async fn suspend_member(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
    ) -> Result<pb::SuspendMembershipResponse, Status> {
        let request = self.request(pb::SuspendMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            etag: String::new(),
        });
        self.members()
            .suspend_membership(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Reactivates `user_id`, without an etag.
    pub async fn reactivate_member(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
    ) -> Result<pb::ReactivateMembershipResponse, Status> {
        let request = self.request(pb::ReactivateMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            etag: String::new(),
        });
        self.members()
            .reactivate_membership(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Removes `user_id` from `tenant`, without an etag.
    pub async fn remove_member(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
    ) -> Result<pb::DeleteMembershipResponse, Status> {
        let request = self.request(pb::DeleteMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            etag: String::new(),
            validate_only: false,
        });
        self.members()
            .delete_membership(request)
            .await
            .map(|r| r.into_inner())
    }

    /// The caller leaves `tenant`.
    pub async fn leave(&self, tenant: &Tenant) -> Result<pb::LeaveTenantResponse, Status> {
        let request = self.request(pb::LeaveTenantRequest {
            tenant_id: tenant.id.clone(),
        });
        self.members()
            .leave_tenant(request)
            .await
            .map(|r| r.into_inner())
    }

    /// A custom role named `name` granting `permissions`.
    pub async fn create_role(
        &self,
        tenant: &Tenant,
        name: &str,
        permissions: &[&str],
    ) -> Result<pb::CreateRoleResponse, Status> {
        let request = self.request(pb::CreateRoleRequest {
            tenant_id: tenant.id.clone(),
            name: name.to_string(),
            description: format!("The {name} role."),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        });
        self.roles()
            .create_role(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Replaces every role `user_id` holds with `role`.
    pub async fn set_member_role(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
        role: &str,
    ) -> Result<pb::SetMemberRoleResponse, Status> {
        let request = self.request(pb::SetMemberRoleRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            role: role.to_string(),
        });
        self.roles()
            .set_member_role(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn bind_role(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
        role: &str,
    ) -> Result<pb::BindRoleResponse, Status> {
        let request = self.request(pb::BindRoleRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            role: role.to_string(),
            ..Default::default()
        });
        self.roles()
            .bind_role(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn unbind_role(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
        role: &str,
    ) -> Result<pb::UnbindRoleResponse, Status> {
        let request = self.request(pb::UnbindRoleRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            role: role.to_string(),
            ..Default::default()
        });
        self.roles()
            .unbind_role(request)
            .await
            .map(|r| r.into_inner())
    }

    /// A group named `name` (source API, no external id, no request id).
    pub async fn create_group(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<pb::CreateGroupResponse, Status> {
        self.create_group_from(pb::CreateGroupRequest {
            tenant_id: tenant.id.clone(),
            name: name.to_string(),
            ..Default::default()
        })
        .await
    }

    /// CreateGroup with every field as given.
    pub async fn create_group_from(
        &self,
        request: pb::CreateGroupRequest,
    ) -> Result<pb::CreateGroupResponse, Status> {
        let request = self.request(request);
        self.groups()
            .create_group(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get_group(&self, tenant: &Tenant, group_id: &str) -> Result<pb::Group, Status> {
        let request = self.request(pb::GetGroupRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
        });
        self.groups()
            .get_group(request)
            .await
            .map(|r| r.into_inner().group.expect("a group"))
    }

    /// ListGroups with every field as given.
    pub async fn list_groups(
        &self,
        request: pb::ListGroupsRequest,
    ) -> Result<pb::ListGroupsResponse, Status> {
        let request = self.request(request);
        self.groups()
            .list_groups(request)
            .await
            .map(|r| r.into_inner())
    }

    /// The ids of every group `user_id` is in (one page of up to 1,000).
    pub async fn groups_of(&self, tenant: &Tenant, user_id: Uuid) -> Result<Vec<String>, Status> {
        let page = self
            .list_groups(pb::ListGroupsRequest {
                tenant_id: tenant.id.clone(),
                user_id: user_id.to_string(),
                page_size: 1000,
                ..Default::default()
            })
            .await?;
        Ok(page.groups.into_iter().map(|g| g.group_id).collect())
    }

    /// UpdateGroup of `paths` to the values in `group` (its etag included).
    pub async fn update_group(
        &self,
        group: pb::Group,
        paths: &[&str],
    ) -> Result<pb::UpdateGroupResponse, Status> {
        let request = self.request(pb::UpdateGroupRequest {
            group: Some(group),
            update_mask: super::field_mask(paths),
        });
        self.groups()
            .update_group(request)
            .await
            .map(|r| r.into_inner())
    }

    /// Deletes a group at `etag` (empty: whatever its version); `validate_only` checks without
    /// deleting.
    pub async fn delete_group(
        &self,
        tenant: &Tenant,
        group_id: &str,
        etag: &str,
        validate_only: bool,
    ) -> Result<pb::DeleteGroupResponse, Status> {
        let request = self.request(pb::DeleteGroupRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            etag: etag.to_string(),
            validate_only,
        });
        self.groups()
            .delete_group(request)
            .await
            .map(|r| r.into_inner())
    }

    /// AddGroupMembers of `user_ids` (user ids, or any text standing for one).
    pub async fn add_group_members<I: ToString>(
        &self,
        tenant: &Tenant,
        group_id: &str,
        user_ids: impl IntoIterator<Item = I>,
    ) -> Result<pb::AddGroupMembersResponse, Status> {
        let request = self.request(pb::AddGroupMembersRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            user_ids: user_ids.into_iter().map(|u| u.to_string()).collect(),
        });
        self.groups()
            .add_group_members(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn remove_group_members<I: ToString>(
        &self,
        tenant: &Tenant,
        group_id: &str,
        user_ids: impl IntoIterator<Item = I>,
    ) -> Result<pb::RemoveGroupMembersResponse, Status> {
        let request = self.request(pb::RemoveGroupMembersRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            user_ids: user_ids.into_iter().map(|u| u.to_string()).collect(),
        });
        self.groups()
            .remove_group_members(request)
            .await
            .map(|r| r.into_inner())
    }

    /// One page of a group's members.
    pub async fn list_group_members(
        &self,
        tenant: &Tenant,
        group_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListGroupMembersResponse, Status> {
        let request = self.request(pb::ListGroupMembersRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            page_size,
            page_token: page_token.to_string(),
        });
        self.groups()
            .list_group_members(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn bind_role_to_group(
        &self,
        tenant: &Tenant,
        group_id: &str,
        role: &str,
    ) -> Result<pb::BindRoleResponse, Status> {
        let request = self.request(pb::BindRoleRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            role: role.to_string(),
            ..Default::default()
        });
        self.roles()
            .bind_role(request)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn unbind_role_from_group(
        &self,
        tenant: &Tenant,
        group_id: &str,
        role: &str,
    ) -> Result<pb::UnbindRoleResponse, Status> {
        let request = self.request(pb::UnbindRoleRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            role: role.to_string(),
            ..Default::default()
        });
        self.roles()
            .unbind_role(request)
            .await
            .map(|r| r.into_inner())
    }

    /// CheckPermission of `user_id`, at least as fresh as `min_cursor`.
    pub async fn check_permission(
        &self,
        tenant: &Tenant,
        user_id: Uuid,
        permission: &str,
        min_cursor: i64,
    ) -> Result<pb::CheckPermissionResponse, Status> {
        let request = self.request(pb::CheckPermissionRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            permission: permission.to_string(),
            min_cursor,
        });
        self.roles()
            .check_permission(request)
            .await
            .map(|r| r.into_inner())
    }
}
