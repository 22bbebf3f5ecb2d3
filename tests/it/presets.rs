//! Who may do what (rules 13 and 14): both role presets and cross-tenant isolation.

use crate::common::*;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

/// The mutations an actor can attempt on a target member.
#[derive(Clone, Copy, Debug)]
enum Act {
    Suspend,
    Rename,
    Remove,
}

async fn attempt(
    members: &mut MembershipServiceClient<Channel>,
    tenant: &Tenant,
    actor: Uuid,
    target: Uuid,
    act: Act,
) -> Result<(), Status> {
    let (tenant_id, user_id) = (tenant.id.clone(), target.to_string());
    match act {
        Act::Suspend => members
            .suspend_membership(as_user(
                pb::SuspendMembershipRequest {
                    tenant_id,
                    user_id,
                    etag: String::new(),
                },
                actor,
            ))
            .await
            .map(|_| ()),
        Act::Rename => members
            .update_membership(as_user(
                pb::UpdateMembershipRequest {
                    membership: Some(pb::Membership {
                        tenant_id,
                        user_id,
                        display_name: "Renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                },
                actor,
            ))
            .await
            .map(|_| ()),
        Act::Remove => members
            .delete_membership(as_user(
                pb::DeleteMembershipRequest {
                    tenant_id,
                    user_id,
                    etag: String::new(),
                    validate_only: false,
                },
                actor,
            ))
            .await
            .map(|_| ()),
    }
}

#[tokio::test]
async fn enterprise_preset_only_the_super_admin_changes_or_removes_members() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let finance = add_member(&server, &tenant, "finance_admin").await;
    let dev = add_member(&server, &tenant, "dev_admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;
    let head = server.head().await;

    for actor in [finance, dev, member] {
        for target in [member, finance, dev, tenant.owner] {
            for act in [Act::Suspend, Act::Rename, Act::Remove] {
                denied_for(
                    attempt(&mut members, &tenant, actor, target, act).await,
                    "members.manage",
                );
            }
        }
        let add = members
            .create_membership(as_user(new_member(&tenant, user(), "member"), actor))
            .await;
        denied_for(add.map(|_| ()), "members.manage");
        let transfer = members
            .transfer_ownership(as_user(
                pb::TransferOwnershipRequest {
                    tenant_id: tenant.id.clone(),
                    new_owner_user_id: actor.to_string(),
                    previous_owner_role: String::new(),
                },
                actor,
            ))
            .await;
        denied_for(transfer.map(|_| ()), "owner.transfer");
    }
    assert_eq!(
        server.head().await,
        head,
        "no refused attempt wrote anything"
    );

    // Everyone may read the member list; only the super admin acts.
    for actor in [finance, dev, member] {
        members
            .list_memberships(as_user(
                pb::ListMembershipsRequest {
                    tenant_id: tenant.id.clone(),
                    ..Default::default()
                },
                actor,
            ))
            .await
            .expect("members.read");
    }
    for target in [finance, dev] {
        attempt(&mut members, &tenant, tenant.owner, target, Act::Rename)
            .await
            .unwrap();
        attempt(&mut members, &tenant, tenant.owner, target, Act::Suspend)
            .await
            .unwrap();
        attempt(&mut members, &tenant, tenant.owner, target, Act::Remove)
            .await
            .unwrap();
    }
    for role in ["super_admin"] {
        let refused = members
            .create_membership(as_user(new_member(&tenant, user(), role), tenant.owner))
            .await;
        assert_refused(refused, Code::FailedPrecondition, "OWNER_ROLE_RESERVED");
    }
    for role in ["finance_admin", "dev_admin", "member"] {
        members
            .create_membership(as_user(new_member(&tenant, user(), role), tenant.owner))
            .await
            .unwrap_or_else(|s| panic!("super_admin grants {role}: {s:?}"));
    }
}

#[tokio::test]
async fn organization_preset_admins_manage_members_but_not_admins_or_the_owner() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let admin = add_member(&server, &tenant, "admin").await;
    let other_admin = add_member(&server, &tenant, "admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;

    // An admin manages members…
    attempt(&mut members, &tenant, admin, member, Act::Rename)
        .await
        .unwrap();
    attempt(&mut members, &tenant, admin, member, Act::Suspend)
        .await
        .unwrap();
    members
        .create_membership(as_user(new_member(&tenant, user(), "member"), admin))
        .await
        .expect("an admin adds members");
    // …but not other admins or the owner, and cannot make anyone an admin.
    for target in [other_admin, tenant.owner] {
        for act in [Act::Suspend, Act::Rename, Act::Remove] {
            denied_for(
                attempt(&mut members, &tenant, admin, target, act).await,
                "admins.manage",
            );
        }
    }
    let make_admin = members
        .create_membership(as_user(new_member(&tenant, user(), "admin"), admin))
        .await;
    denied_for(make_admin.map(|_| ()), "admins.manage");
    let dissolve = server
        .tenants()
        .await
        .dissolve_tenant(as_user(
            pb::DissolveTenantRequest {
                tenant_id: tenant.id.clone(),
                etag: String::new(),
                validate_only: true,
            },
            admin,
        ))
        .await;
    denied_for(dissolve.map(|_| ()), "tenant.delete");

    // A member manages nobody.
    let plain = add_member(&server, &tenant, "member").await;
    for target in [member, admin] {
        for act in [Act::Suspend, Act::Rename, Act::Remove] {
            denied_for(
                attempt(&mut members, &tenant, plain, target, act).await,
                "members.manage",
            );
        }
    }

    // The owner manages admins.
    members
        .create_membership(as_user(new_member(&tenant, user(), "admin"), tenant.owner))
        .await
        .expect("the owner adds admins");
    attempt(
        &mut members,
        &tenant,
        tenant.owner,
        other_admin,
        Act::Remove,
    )
    .await
    .unwrap();
    attempt(&mut members, &tenant, admin, member, Act::Remove)
        .await
        .unwrap();
}

#[tokio::test]
async fn rule_14_an_actor_of_another_tenant_gets_no_data_and_changes_nothing() {
    let server = TestServer::start().await;
    let a = organization(&server, None).await;
    let b = organization(&server, None).await;
    let member_of_a = add_member(&server, &a, "member").await;
    let mut members = server.members().await;
    let mut tenants = server.tenants().await;
    let head = server.head().await;
    let intruder = b.owner;

    let list = members
        .list_memberships(as_user(
            pb::ListMembershipsRequest {
                tenant_id: a.id.clone(),
                ..Default::default()
            },
            intruder,
        ))
        .await;
    assert_refused(list, Code::PermissionDenied, "NOT_A_MEMBER");
    let get = members
        .get_membership(as_user(
            pb::GetMembershipRequest {
                tenant_id: a.id.clone(),
                user_id: member_of_a.to_string(),
                ..Default::default()
            },
            intruder,
        ))
        .await;
    assert_refused(get, Code::PermissionDenied, "NOT_A_MEMBER");
    let seats = tenants
        .get_seat_usage(as_user(
            pb::GetSeatUsageRequest {
                tenant_id: a.id.clone(),
            },
            intruder,
        ))
        .await;
    assert_refused(seats, Code::PermissionDenied, "NOT_A_MEMBER");
    for act in [Act::Suspend, Act::Rename, Act::Remove] {
        assert_refused(
            attempt(&mut members, &a, intruder, member_of_a, act).await,
            Code::PermissionDenied,
            "NOT_A_MEMBER",
        );
    }
    let add = members
        .create_membership(as_user(new_member(&a, user(), "member"), intruder))
        .await;
    assert_refused(add, Code::PermissionDenied, "NOT_A_MEMBER");
    let transfer = members
        .transfer_ownership(as_user(
            pb::TransferOwnershipRequest {
                tenant_id: a.id.clone(),
                new_owner_user_id: intruder.to_string(),
                previous_owner_role: String::new(),
            },
            intruder,
        ))
        .await;
    assert_refused(transfer, Code::PermissionDenied, "NOT_A_MEMBER");
    let dissolve = tenants
        .dissolve_tenant(as_user(
            pb::DissolveTenantRequest {
                tenant_id: a.id.clone(),
                etag: String::new(),
                validate_only: false,
            },
            intruder,
        ))
        .await;
    assert_refused(dissolve, Code::PermissionDenied, "NOT_A_MEMBER");
    assert_eq!(server.head().await, head);

    // Naming tenant B while targeting a member of A finds nothing in B.
    let across = members
        .delete_membership(as_user(
            pb::DeleteMembershipRequest {
                tenant_id: b.id.clone(),
                user_id: member_of_a.to_string(),
                etag: String::new(),
                validate_only: false,
            },
            intruder,
        ))
        .await;
    assert_refused(across, Code::NotFound, "MEMBERSHIP_NOT_FOUND");
    assert!(get_member(&server, &a, member_of_a).await.is_ok());

    // A member reads their own membership without members.read; nobody else's.
    let own = members
        .get_membership(as_user(
            pb::GetMembershipRequest {
                tenant_id: a.id.clone(),
                user_id: member_of_a.to_string(),
                ..Default::default()
            },
            member_of_a,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.membership.unwrap().user_id, member_of_a.to_string());
}
