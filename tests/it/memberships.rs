//! MembershipService over a real server: rules 5-12 on their success paths and refusals.

use crate::common::*;
use membership_service::grpc::pb;
use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

fn target(tenant: &Tenant, user_id: Uuid) -> (String, String) {
    (tenant.id.clone(), user_id.to_string())
}

fn suspend(tenant: &Tenant, user_id: Uuid) -> pb::SuspendMembershipRequest {
    let (tenant_id, user_id) = target(tenant, user_id);
    pb::SuspendMembershipRequest {
        tenant_id,
        user_id,
        etag: String::new(),
    }
}

fn reactivate(tenant: &Tenant, user_id: Uuid) -> pb::ReactivateMembershipRequest {
    let (tenant_id, user_id) = target(tenant, user_id);
    pb::ReactivateMembershipRequest {
        tenant_id,
        user_id,
        etag: String::new(),
    }
}

fn delete(tenant: &Tenant, user_id: Uuid) -> pb::DeleteMembershipRequest {
    let (tenant_id, user_id) = target(tenant, user_id);
    pb::DeleteMembershipRequest {
        tenant_id,
        user_id,
        etag: String::new(),
        validate_only: false,
    }
}

fn leave(tenant: &Tenant) -> pb::LeaveTenantRequest {
    pb::LeaveTenantRequest {
        tenant_id: tenant.id.clone(),
    }
}

fn transfer(tenant: &Tenant, to: Uuid, keep: &str) -> pb::TransferOwnershipRequest {
    pb::TransferOwnershipRequest {
        tenant_id: tenant.id.clone(),
        new_owner_user_id: to.to_string(),
        previous_owner_role: keep.into(),
    }
}

async fn seats(server: &TestServer, tenant: &Tenant) -> (i32, Option<i32>) {
    let usage = seat_usage(server, tenant).await;
    (usage.used, usage.limit)
}

#[tokio::test]
async fn create_membership_links_a_user_with_one_role() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let user_id = user();
    let mut request = new_member(&tenant, user_id, "dev_admin");
    request.external_id = "scim-42".into();
    request.email = " Dev.Person@Acme.EXAMPLE".into();
    let created = server
        .members()
        .await
        .create_membership(as_user(request, tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let m = created.membership.unwrap();
    assert_eq!(m.status, pb::MembershipStatus::Active as i32);
    assert_eq!(m.source, pb::MembershipSource::Scim as i32);
    assert_eq!(m.r#type, pb::MembershipType::Member as i32);
    assert_eq!(m.roles, ["dev_admin"]);
    assert_eq!(m.email, "dev.person@acme.example");
    assert_eq!(m.external_id, "scim-42");
    assert_eq!(m.invited_by, tenant.owner.to_string());
    assert!(m.join_time.is_some());
    assert_eq!(get_member(&server, &tenant, user_id).await.unwrap(), m);
}

#[tokio::test]
async fn create_membership_refuses_invalid_fields() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut members = server.members().await;
    let mut request = new_member(&tenant, user(), "member");
    request.user_id = "123".into();
    request.email = "not an email".into();
    request.source = pb::MembershipSource::Unspecified as i32;
    request.r#type = pb::MembershipType::Owner as i32;
    request.display_name = "x".repeat(500);
    request.status = pb::MembershipStatus::Left as i32;
    let status = assert_refused(
        members.create_membership(as_system(request)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "display_name",
            "email",
            "source",
            "status",
            "type",
            "user_id"
        ]
    );

    let mut signup = new_member(&tenant, user(), "member");
    signup.source = pb::MembershipSource::Signup as i32;
    let status = assert_refused(
        members.create_membership(as_system(signup)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["source"]);

    let unknown_role = members
        .create_membership(as_system(new_member(&tenant, user(), "wizard")))
        .await;
    assert_refused(unknown_role, Code::NotFound, "ROLE_NOT_FOUND");
    let owner_role = members
        .create_membership(as_system(new_member(&tenant, user(), "super_admin")))
        .await;
    assert_refused(owner_role, Code::FailedPrecondition, "OWNER_ROLE_RESERVED");
    let missing_tenant = members
        .create_membership(as_system(new_member(
            &Tenant {
                id: Uuid::now_v7().to_string(),
                owner: user(),
            },
            user(),
            "member",
        )))
        .await;
    assert_refused(missing_tenant, Code::NotFound, "TENANT_NOT_FOUND");
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM memberships").await,
        1
    );
}

#[tokio::test]
async fn rule_6_direct_creation_respects_seats_and_existing_members() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(2)).await;
    let mut members = server.members().await;
    let existing = add_member(&server, &tenant, "member").await;
    assert_eq!(seats(&server, &tenant).await, (2, Some(2)));

    let refused_user = user();
    let full = members
        .create_membership(as_system(new_member(&tenant, refused_user, "member")))
        .await;
    let status = assert_refused(full, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");
    // Refused after its row was written: the row went with the refusal.
    let gone = get_member(&server, &tenant, refused_user).await;
    assert_refused(gone, Code::NotFound, "MEMBERSHIP_NOT_FOUND");
    let id = server.uuid_literal(&tenant.id);
    let rows = format!("SELECT COUNT(*) AS n FROM memberships WHERE tenant_id = {id}");
    assert_eq!(server.scalar(&rows).await, 2);
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("seats_missing").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        info.metadata.get("seat_limit").map(String::as_str),
        Some("2")
    );

    let again = members
        .create_membership(as_system(new_member(&tenant, existing, "member")))
        .await;
    assert_refused(again, Code::AlreadyExists, "MEMBER_EXISTS");

    // Existing members are never affected by a full tenant.
    let m = get_member(&server, &tenant, existing).await.unwrap();
    assert_eq!(m.status, pb::MembershipStatus::Active as i32);
}

#[tokio::test]
async fn rule_6_create_membership_is_idempotent_on_request_id() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(3)).await;
    let mut members = server.members().await;
    let user_id = user();
    let mut request = new_member(&tenant, user_id, "member");
    request.request_id = Uuid::new_v4().to_string();
    let first = members
        .create_membership(as_system(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let head = server.head().await;
    let retry = members
        .create_membership(as_system(request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.membership, retry.membership);
    assert_eq!(server.head().await, head, "the retry wrote nothing");
    assert_eq!(seats(&server, &tenant).await.0, 2);

    let mut reused = new_member(&tenant, user(), "member");
    reused.request_id = request.request_id.clone();
    let status = members.create_membership(as_system(reused)).await;
    assert_refused(status, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

#[tokio::test]
async fn rule_7_update_with_field_mask_and_etag() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let user_id = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;
    let current = get_member(&server, &tenant, user_id).await.unwrap();

    let changed = members
        .update_membership(as_user(
            update_membership(
                pb::Membership {
                    display_name: "Renamed".into(),
                    r#type: pb::MembershipType::Contractor as i32,
                    external_id: "ext-1".into(),
                    email: "ignored@acme.example".into(), // not in the mask
                    ..current.clone()
                },
                &["display_name", "type", "external_id"],
            ),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(changed.display_name, "Renamed");
    assert_eq!(changed.r#type, pb::MembershipType::Contractor as i32);
    assert_eq!(changed.external_id, "ext-1");
    assert_eq!(changed.email, current.email);
    assert_ne!(changed.etag, current.etag);

    let stale = members
        .update_membership(as_system(update_membership(
            current.clone(),
            &["display_name"],
        )))
        .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");

    // Status moves through the mask too, with the same rules as Suspend.
    let suspended = members
        .update_membership(as_system(update_membership(
            pb::Membership {
                status: pb::MembershipStatus::Suspended as i32,
                ..changed.clone()
            },
            &["status"],
        )))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(suspended.status, pb::MembershipStatus::Suspended as i32);

    for (membership, paths, field) in [
        (
            pb::Membership {
                status: pb::MembershipStatus::Left as i32,
                ..suspended.clone()
            },
            vec!["status"],
            "membership.status",
        ),
        (
            pb::Membership {
                r#type: pb::MembershipType::Owner as i32,
                ..suspended.clone()
            },
            vec!["type"],
            "membership.type",
        ),
        (suspended.clone(), vec!["email"], "update_mask"),
        (suspended.clone(), vec![], "update_mask"),
    ] {
        let result = members
            .update_membership(as_system(update_membership(membership, &paths)))
            .await;
        let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), [field], "{paths:?}");
    }
    let missing = members
        .update_membership(as_system(update_membership(
            pb::Membership {
                user_id: user().to_string(),
                ..suspended.clone()
            },
            &["display_name"],
        )))
        .await;
    assert_refused(missing, Code::NotFound, "MEMBERSHIP_NOT_FOUND");
}

#[tokio::test]
async fn rule_8_suspension_keeps_bindings_and_removes_every_right_at_once() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let admin = add_member(&server, &tenant, "admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;

    let suspended = members
        .suspend_membership(as_user(suspend(&tenant, admin), tenant.owner))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(suspended.status, pb::MembershipStatus::Suspended as i32);
    assert_eq!(suspended.roles, ["admin"]);
    // The suspended admin can no longer act in the tenant.
    let refused = members
        .delete_membership(as_user(delete(&tenant, member), admin))
        .await;
    assert_refused(refused, Code::PermissionDenied, "NOT_A_MEMBER");
    // Suspended members still hold their seat.
    assert_eq!(seats(&server, &tenant).await.0, 3);

    // Suspending again changes nothing and writes nothing.
    let head = server.head().await;
    members
        .suspend_membership(as_system(suspend(&tenant, admin)))
        .await
        .unwrap();
    assert_eq!(server.head().await, head);

    let back = members
        .reactivate_membership(as_user(reactivate(&tenant, admin), tenant.owner))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(back.status, pb::MembershipStatus::Active as i32);
    assert_eq!(back.roles, ["admin"]);
    assert_eq!(back.join_time, suspended.join_time);
    members
        .delete_membership(as_user(delete(&tenant, member), admin))
        .await
        .expect("the reactivated admin has their rights back");

    let stale = members
        .suspend_membership(as_system(pb::SuspendMembershipRequest {
            etag: suspended.etag,
            ..suspend(&tenant, admin)
        }))
        .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn rule_9_removal_frees_the_seat_and_the_user_can_come_back() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(2)).await;
    let user_id = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;

    // validate_only checks and changes nothing.
    members
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            validate_only: true,
            ..delete(&tenant, user_id)
        }))
        .await
        .unwrap();
    assert!(get_member(&server, &tenant, user_id).await.is_ok());

    members
        .delete_membership(as_user(delete(&tenant, user_id), tenant.owner))
        .await
        .unwrap();
    assert_refused(
        get_member(&server, &tenant, user_id).await,
        Code::NotFound,
        "MEMBERSHIP_NOT_FOUND",
    );
    assert_eq!(seats(&server, &tenant).await, (1, Some(2)));
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM role_bindings")
            .await,
        1,
        "only the owner's binding is left"
    );

    let again = members
        .delete_membership(as_system(delete(&tenant, user_id)))
        .await;
    assert_refused(again, Code::NotFound, "MEMBERSHIP_NOT_FOUND");

    let back = members
        .create_membership(as_system(new_member(&tenant, user_id, "finance_admin")))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(back.roles, ["finance_admin"]);
}

#[tokio::test]
async fn rule_10_the_last_owner_cannot_be_removed_suspended_demoted_or_leave() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut members = server.members().await;
    let head = server.head().await;
    let owner = get_member(&server, &tenant, tenant.owner).await.unwrap();

    let status = assert_refused(
        members
            .delete_membership(as_user(delete(&tenant, tenant.owner), tenant.owner))
            .await,
        Code::FailedPrecondition,
        "LAST_OWNER",
    );
    assert!(
        status
            .message()
            .contains("transfer ownership first, or dissolve the tenant")
    );
    assert_refused(
        members
            .suspend_membership(as_system(suspend(&tenant, tenant.owner)))
            .await,
        Code::FailedPrecondition,
        "LAST_OWNER",
    );
    assert_refused(
        members
            .leave_tenant(as_user(leave(&tenant), tenant.owner))
            .await,
        Code::FailedPrecondition,
        "LAST_OWNER",
    );
    assert_refused(
        members
            .update_membership(as_system(update_membership(
                pb::Membership {
                    status: pb::MembershipStatus::Suspended as i32,
                    ..owner.clone()
                },
                &["status"],
            )))
            .await,
        Code::FailedPrecondition,
        "LAST_OWNER",
    );
    let demote = members
        .update_membership(as_system(update_membership(
            pb::Membership {
                r#type: pb::MembershipType::Member as i32,
                ..owner.clone()
            },
            &["type"],
        )))
        .await;
    assert_refused(demote, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(server.head().await, head);
    assert_eq!(
        get_member(&server, &tenant, tenant.owner).await.unwrap(),
        owner
    );
}

#[tokio::test]
async fn rule_11_leaving_drops_bindings_and_frees_the_seat() {
    let server = TestServer::start().await;
    let tenant = organization(&server, Some(2)).await;
    let user_id = add_member(&server, &tenant, "admin").await;
    let mut members = server.members().await;

    let left = members
        .leave_tenant(as_user(leave(&tenant), user_id))
        .await
        .unwrap()
        .into_inner();
    let m = left.membership.unwrap();
    assert_eq!(m.status, pb::MembershipStatus::Left as i32);
    assert!(m.roles.is_empty());
    assert_eq!(seats(&server, &tenant).await, (1, Some(2)));
    // Gone means gone: no rights, and leaving twice is refused.
    assert_refused(
        members.leave_tenant(as_user(leave(&tenant), user_id)).await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    assert_refused(
        members
            .suspend_membership(as_system(suspend(&tenant, user_id)))
            .await,
        Code::FailedPrecondition,
        "INVALID_STATUS_TRANSITION",
    );
    // Leaving needs an actor, who must be a member.
    assert_refused(
        members.leave_tenant(as_system(leave(&tenant))).await,
        Code::Unauthenticated,
        "ACTOR_REQUIRED",
    );
    assert_refused(
        members.leave_tenant(as_user(leave(&tenant), user())).await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );

    // A member who left can be linked again.
    let back = members
        .create_membership(as_system(new_member(&tenant, user_id, "member")))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(back.status, pb::MembershipStatus::Active as i32);
    assert_eq!(back.roles, ["member"]);
    assert_eq!(
        back.join_time, m.join_time,
        "joined_at is the first time the member became active"
    );
}

#[tokio::test]
async fn rule_12_transfer_ownership_in_one_transaction() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let admin = add_member(&server, &tenant, "admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;

    // Only the owner transfers.
    assert_refused(
        members
            .transfer_ownership(as_user(transfer(&tenant, member, ""), admin))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // The target must be an ACTIVE member.
    members
        .suspend_membership(as_system(suspend(&tenant, member)))
        .await
        .unwrap();
    assert_refused(
        members
            .transfer_ownership(as_user(transfer(&tenant, member, ""), tenant.owner))
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_NOT_ACTIVE",
    );
    assert_refused(
        members
            .transfer_ownership(as_user(transfer(&tenant, user(), ""), tenant.owner))
            .await,
        Code::NotFound,
        "MEMBERSHIP_NOT_FOUND",
    );
    assert_refused(
        members
            .transfer_ownership(as_user(transfer(&tenant, tenant.owner, ""), tenant.owner))
            .await,
        Code::FailedPrecondition,
        "ALREADY_OWNER",
    );
    assert_refused(
        members
            .transfer_ownership(as_user(transfer(&tenant, admin, "owner"), tenant.owner))
            .await,
        Code::FailedPrecondition,
        "OWNER_ROLE_RESERVED",
    );

    let moved = members
        .transfer_ownership(as_user(transfer(&tenant, admin, "admin"), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let previous = moved.previous_owner.unwrap();
    let next = moved.new_owner.unwrap();
    assert_eq!(previous.roles, ["admin"]);
    assert_eq!(previous.r#type, pb::MembershipType::Admin as i32);
    assert_eq!(next.roles, ["admin", "owner"]);
    assert_eq!(next.r#type, pb::MembershipType::Owner as i32);

    // The new owner now holds the owner's rights, the previous owner does not.
    assert_refused(
        members
            .delete_membership(as_user(delete(&tenant, admin), tenant.owner))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    members
        .delete_membership(as_user(delete(&tenant, tenant.owner), admin))
        .await
        .expect("the new owner removes the previous one");
    // Default: the previous owner keeps `member`.
    members
        .reactivate_membership(as_system(reactivate(&tenant, member)))
        .await
        .unwrap();
    let back = members
        .transfer_ownership(as_user(transfer(&tenant, member, ""), admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        back.previous_owner.unwrap().roles,
        ["member"],
        "the previous owner keeps exactly the named role"
    );
}

#[tokio::test]
async fn rule_5_list_filters_and_reports_its_cursor() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let dev = add_member(&server, &tenant, "dev_admin").await;
    let finance = add_member(&server, &tenant, "finance_admin").await;
    let mut members = server.members().await;
    members
        .suspend_membership(as_system(suspend(&tenant, finance)))
        .await
        .unwrap();
    let list = |f: fn(&mut pb::ListMembershipsRequest)| {
        let mut request = pb::ListMembershipsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    let ids = |r: pb::ListMembershipsResponse| -> Vec<String> {
        r.memberships.into_iter().map(|m| m.user_id).collect()
    };

    let all = members
        .list_memberships(as_user(list(|_| {}), dev))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.cursor, server.head().await);
    assert_eq!(all.memberships.len(), 3);
    assert!(all.next_page_token.is_empty());
    let suspended = members
        .list_memberships(as_system(list(|r| {
            r.status = pb::MembershipStatus::Suspended as i32
        })))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(suspended), [finance.to_string()]);
    let devs = members
        .list_memberships(as_system(list(|r| r.role = "dev_admin".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(devs), [dev.to_string()]);
    let owners = members
        .list_memberships(as_system(list(|r| r.query = "OLIVIA".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(owners), [tenant.owner.to_string()]);
    let by_email = members
        .list_memberships(as_system(list(|r| r.order_by = "email desc".into())))
        .await
        .unwrap()
        .into_inner();
    let emails: Vec<String> = by_email
        .memberships
        .iter()
        .map(|m| m.email.clone())
        .collect();
    let mut sorted = emails.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(emails, sorted);
    // A suspended member cannot list.
    assert_refused(
        members
            .list_memberships(as_user(list(|_| {}), finance))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
}

// ---------------------------------------------------------------------------------------------
// Reads served from memory: every change shows at once on the replica that made it, and on
// another replica once its event arrives, or at once for a caller passing `min_cursor`.

fn page_of_everyone(tenant: &Tenant, min_cursor: i64) -> pb::ListMembershipsRequest {
    pb::ListMembershipsRequest {
        tenant_id: tenant.id.clone(),
        min_cursor,
        ..Default::default()
    }
}

/// The tenant's first page, as a system caller reads it.
async fn first_page(
    members: &mut MembershipServiceClient<tonic::transport::Channel>,
    tenant: &Tenant,
    min_cursor: i64,
) -> pb::ListMembershipsResponse {
    members
        .list_memberships(as_system(page_of_everyone(tenant, min_cursor)))
        .await
        .unwrap()
        .into_inner()
}

fn get_at(tenant: &Tenant, user_id: Uuid, min_cursor: i64) -> pb::GetMembershipRequest {
    pb::GetMembershipRequest {
        tenant_id: tenant.id.clone(),
        user_id: user_id.to_string(),
        min_cursor,
    }
}

/// The statuses a page shows, by member (user id or invitation id).
fn statuses(page: &pb::ListMembershipsResponse) -> std::collections::HashMap<String, i32> {
    page.memberships
        .iter()
        .map(|m| {
            let id = if m.invitation_id.is_empty() {
                m.user_id.clone()
            } else {
                m.invitation_id.clone()
            };
            (id, m.status)
        })
        .collect()
}

async fn invite_as_owner(
    invitations: &mut InvitationServiceClient<tonic::transport::Channel>,
    tenant: &Tenant,
    email: &str,
) -> pb::Invitation {
    invitations
        .create_invitation(as_user(
            pb::CreateInvitationRequest {
                tenant_id: tenant.id.clone(),
                email: email.into(),
                role: "member".into(),
                ttl: None,
                request_id: String::new(),
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap()
}

#[tokio::test]
async fn remembered_reads_follow_every_change_made_through_their_replica() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let member = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;
    let mut invitations = InvitationServiceClient::new(server.channel().await);

    // Read twice, so the second answer may come from memory.
    for _ in 0..2 {
        let got = members
            .get_membership(as_user(get_at(&tenant, member, 0), member))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            got.membership.unwrap().status,
            pb::MembershipStatus::Active as i32
        );
        let page = first_page(&mut members, &tenant, 0).await;
        assert_eq!(page.memberships.len(), 2);
    }

    let suspended = members
        .suspend_membership(as_user(suspend(&tenant, member), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let got = members
        .get_membership(as_user(get_at(&tenant, member, 0), member))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.membership.unwrap().status,
        pb::MembershipStatus::Suspended as i32
    );
    assert!(
        got.cursor >= suspended.cursor,
        "{} < {}",
        got.cursor,
        suspended.cursor
    );
    let page = first_page(&mut members, &tenant, 0).await;
    assert_eq!(
        statuses(&page).get(&member.to_string()),
        Some(&(pb::MembershipStatus::Suspended as i32))
    );
    assert!(page.cursor >= suspended.cursor);

    // A role change shows in the member's row; a role rename would too (a tenant-wide event).
    members
        .reactivate_membership(as_user(reactivate(&tenant, member), tenant.owner))
        .await
        .unwrap();
    membership_service::grpc::pb::role_service_client::RoleServiceClient::new(
        server.channel().await,
    )
    .set_member_role(as_user(
        pb::SetMemberRoleRequest {
            tenant_id: tenant.id.clone(),
            user_id: member.to_string(),
            role: "admin".into(),
        },
        tenant.owner,
    ))
    .await
    .unwrap();
    assert_eq!(
        get_member(&server, &tenant, member).await.unwrap().roles,
        vec!["admin".to_string()]
    );

    // An invitation enters the list, and leaves it when revoked.
    let invited = invite_as_owner(&mut invitations, &tenant, "newcomer@acme.example").await;
    let page = first_page(&mut members, &tenant, 0).await;
    assert_eq!(
        statuses(&page).get(&invited.invitation_id),
        Some(&(pb::MembershipStatus::Invited as i32))
    );
    first_page(&mut members, &tenant, 0).await;
    invitations
        .revoke_invitation(as_user(
            pb::RevokeInvitationRequest {
                tenant_id: tenant.id.clone(),
                invitation_id: invited.invitation_id.clone(),
            },
            tenant.owner,
        ))
        .await
        .unwrap();
    let page = first_page(&mut members, &tenant, 0).await;
    assert!(!statuses(&page).contains_key(&invited.invitation_id));

    // An invitation that expires leaves the list with no event at all.
    let expiring = invite_as_owner(&mut invitations, &tenant, "late@acme.example").await;
    for _ in 0..2 {
        let page = first_page(&mut members, &tenant, 0).await;
        assert!(statuses(&page).contains_key(&expiring.invitation_id));
    }
    let id = server.uuid_literal(&expiring.invitation_id);
    assert_eq!(server.expire_invitations(&format!("id = {id}")).await, 1);
    let page = first_page(&mut members, &tenant, 0).await;
    assert!(!statuses(&page).contains_key(&expiring.invitation_id));

    // Removal: gone from the list, and NOT_FOUND.
    members
        .delete_membership(as_user(delete(&tenant, member), tenant.owner))
        .await
        .unwrap();
    assert_refused(
        get_member(&server, &tenant, member).await,
        Code::NotFound,
        "MEMBERSHIP_NOT_FOUND",
    );
    let page = first_page(&mut members, &tenant, 0).await;
    assert_eq!(page.memberships.len(), 1);
}

#[tokio::test]
async fn another_replica_serves_reads_at_least_as_fresh_as_min_cursor() {
    let a = TestServer::start().await;
    let b = TestServer::start_shared(a.database.clone(), test_options()).await;
    let tenant = organization(&a, None).await;
    let demanded = add_member(&a, &tenant, "member").await;
    let polled = add_member(&a, &tenant, "member").await;
    let mut on_a = a.members().await;
    let mut on_b = b.members().await;
    // Warm B.
    for user_id in [demanded, polled] {
        for _ in 0..2 {
            on_b.get_membership(as_system(get_at(&tenant, user_id, 0)))
                .await
                .unwrap();
        }
    }
    for _ in 0..2 {
        first_page(&mut on_b, &tenant, 0).await;
    }

    let suspended = on_a
        .suspend_membership(as_user(suspend(&tenant, demanded), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let got = on_b
        .get_membership(as_system(get_at(&tenant, demanded, suspended.cursor)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.membership.unwrap().status,
        pb::MembershipStatus::Suspended as i32
    );
    assert!(got.cursor >= suspended.cursor);
    let page = first_page(&mut on_b, &tenant, suspended.cursor).await;
    assert_eq!(
        statuses(&page).get(&demanded.to_string()),
        Some(&(pb::MembershipStatus::Suspended as i32))
    );
    assert!(page.cursor >= suspended.cursor);

    // Without a cursor, B shows a change made through A once the feed has brought it.
    let renamed = on_a
        .update_membership(as_system(update_membership(
            pb::Membership {
                tenant_id: tenant.id.clone(),
                user_id: polled.to_string(),
                display_name: "Renamed Elsewhere".into(),
                ..Default::default()
            },
            &["display_name"],
        )))
        .await
        .unwrap()
        .into_inner();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = on_b
            .get_membership(as_system(get_at(&tenant, polled, 0)))
            .await
            .unwrap()
            .into_inner();
        let page = first_page(&mut on_b, &tenant, 0).await;
        let listed = page
            .memberships
            .iter()
            .find(|m| m.user_id == polled.to_string())
            .map(|m| m.display_name.clone());
        if got.membership.unwrap().display_name == "Renamed Elsewhere"
            && listed.as_deref() == Some("Renamed Elsewhere")
        {
            assert!(got.cursor >= renamed.cursor && page.cursor >= renamed.cursor);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica B still shows the old name"
        );
        // A pause between polls, not a synchronization: the loop ends on the answer.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    // A cursor the log has not reached is refused at once, by both reads.
    let ahead = a.head().await + 1_000;
    assert_refused(
        on_b.get_membership(as_system(get_at(&tenant, polled, ahead)))
            .await,
        Code::OutOfRange,
        "CURSOR_AHEAD",
    );
    assert_refused(
        on_b.list_memberships(as_system(page_of_everyone(&tenant, ahead)))
            .await,
        Code::OutOfRange,
        "CURSOR_AHEAD",
    );
}

/// Expiry writes no event, so a remembered page that shows a pending invitation ends at that
/// invitation's expiry: the list reports the earliest one on the page, and the cache honours it.
#[tokio::test]
async fn a_remembered_page_ends_when_an_invitation_on_it_expires() {
    use membership_service::domain::membership::{ListFilter, SortKey};
    use membership_service::domain::now_micros;
    use membership_service::events::{EventFeed, FeedOptions};
    use membership_service::service::authz::{AuthzCache, CachedPage};
    use membership_service::store::memberships::{PageRequest, list};

    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let mut invitations = InvitationServiceClient::new(server.channel().await);
    let first = invite_as_owner(&mut invitations, &tenant, "first@acme.example").await;
    let second = invite_as_owner(&mut invitations, &tenant, "second@acme.example").await;
    let micros = |invitation: &pb::Invitation| {
        let at = invitation.expire_time.as_ref().unwrap();
        at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000
    };
    let tenant_id: Uuid = tenant.id.parse().unwrap();
    let roles = membership_service::store::roles::list(&server.store.reader(), tenant_id)
        .await
        .unwrap();
    let listed = list(
        &server.store.reader(),
        &roles,
        tenant_id,
        &ListFilter::default(),
        PageRequest {
            sort: SortKey::CreateTime,
            descending: false,
            after: None,
            page_size: 50,
        },
        now_micros(),
    )
    .await
    .unwrap();
    assert_eq!(listed.members.len(), 3);
    assert_eq!(listed.changes_at, Some(micros(&first).min(micros(&second))));

    let feed = EventFeed::start(server.store.clone(), FeedOptions::default())
        .await
        .unwrap();
    let cache = AuthzCache::start(server.store.clone(), feed, 100)
        .await
        .unwrap();
    let head = server.head().await;
    let now = now_micros();
    for (key, changes_at) in [
        ("expired", Some(now - 1)),
        ("expiring later", Some(now + 3_600_000_000)),
        ("no invitation", None),
    ] {
        let page = CachedPage {
            memberships: Vec::new(),
            next_page_token: String::new(),
        };
        cache.remember_page(tenant_id, key.into(), page, head, changes_at);
    }
    assert!(cache.cached_page(tenant_id, "expired").is_none());
    assert!(cache.cached_page(tenant_id, "expiring later").is_some());
    assert!(cache.cached_page(tenant_id, "no invitation").is_some());
}
