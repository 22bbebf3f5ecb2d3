//! The outbox (DESIGN §5): each mutation commits exactly its events with its change, with actor,
//! subject and before/after snapshots, and answers with the position of its last event; a refused
//! mutation leaves neither events nor rows; a mutation that changes nothing writes nothing.

use crate::common::*;
use membership_service::grpc::pb;
use serde_json::Value;
use tonic::Code;
use uuid::Uuid;

fn subject(event: &StoredEvent) -> &str {
    event.subject_id.as_deref().expect("a subject")
}

fn member_ref(tenant_id: &str, user_id: Uuid) -> (String, String) {
    (tenant_id.to_string(), user_id.to_string())
}

/// Initech: an ENTERPRISE tenant with ten seats, created by `owner` with `request_id`.
fn initech(owner: Uuid, request_id: &str) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        name: "Initech".into(),
        kind: pb::TenantKind::Enterprise as i32,
        role_preset: pb::RolePreset::Enterprise as i32,
        seat_limit: Some(10),
        owner_user_id: owner.to_string(),
        owner_email: "bill@initech.example".into(),
        owner_display_name: "Bill Lumbergh".into(),
        request_id: request_id.to_string(),
    }
}

/// Initech, created through the API; the tests below write to it.
async fn initech_tenant(server: &TestServer) -> Tenant {
    let owner = user();
    let created = server
        .tenants()
        .await
        .create_tenant(as_user(initech(owner, ""), owner))
        .await
        .expect("creating Initech")
        .into_inner();
    Tenant {
        id: created.tenant.expect("a tenant").tenant_id,
        owner,
    }
}

/// Adds `user_id` as a plain member in `status`, as a system caller.
async fn add_in_status(
    server: &TestServer,
    tenant: &Tenant,
    user_id: Uuid,
    status: pb::MembershipStatus,
) {
    server
        .members()
        .await
        .create_membership(as_system(pb::CreateMembershipRequest {
            status: status as i32,
            ..new_member(tenant, user_id, "member")
        }))
        .await
        .expect("adding a member");
}

/// CreateTenant and UpdateTenant, by the owner with a request id.
#[tokio::test]
async fn tenant_creation_and_update_write_their_events_with_actor_and_snapshots() {
    let server = TestServer::start().await;
    let mut tenants = server.tenants().await;
    let owner = user();

    // CreateTenant → tenant.created, membership.created (the first owner).
    let head = server.head().await;
    let request_id = Uuid::new_v4().to_string();
    let created = tenants
        .create_tenant(as_user(initech(owner, &request_id), owner))
        .await
        .unwrap()
        .into_inner();
    let tenant = created.tenant.unwrap();
    let tid = tenant.tenant_id.clone();
    let events = server
        .expect_events(
            head,
            &["tenant.created", "membership.created"],
            created.cursor,
            Some(owner),
        )
        .await;
    assert_eq!(subject(&events[0]), tid);
    assert_eq!(events[0].before, None);
    let after = snapshot(&events[0].after);
    assert_eq!(after["name"], "Initech");
    assert_eq!(after["state"], "active");
    assert_eq!(after["kind"], "enterprise");
    assert_eq!(subject(&events[1]), owner.to_string());
    assert_eq!(events[1].before, None);
    let after = snapshot(&events[1].after);
    assert_eq!(after["status"], "active");
    assert_eq!(after["member_type"], "owner");
    assert_eq!(after["roles"], serde_json::json!(["super_admin"]));
    for event in &events {
        assert_eq!(event.request_id.as_deref(), Some(request_id.as_str()));
    }

    // UpdateTenant → tenant.updated.
    let head = server.head().await;
    let updated = tenants
        .update_tenant(as_user(
            update_tenant(
                pb::Tenant {
                    name: "Initech Inc".into(),
                    ..tenant.clone()
                },
                &["name"],
            ),
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(head, &["tenant.updated"], updated.cursor, Some(owner))
        .await;
    assert_eq!(subject(&events[0]), tid);
    assert_eq!(snapshot(&events[0].before)["name"], "Initech");
    assert_eq!(snapshot(&events[0].after)["name"], "Initech Inc");
    assert_eq!(
        snapshot(&events[0].after)["version"].as_i64(),
        snapshot(&events[0].before)["version"]
            .as_i64()
            .map(|v| v + 1)
    );
}

/// CreateMembership (with a request id), UpdateMembership, Suspend and Reactivate, by the owner.
#[tokio::test]
async fn membership_changes_by_the_owner_write_their_events_with_actor_and_snapshots() {
    let server = TestServer::start().await;
    let mut members = server.members().await;
    let t = initech_tenant(&server).await;
    let (tid, owner) = (t.id.clone(), t.owner);

    // CreateMembership (by the owner, with a request id) → membership.created.
    let member = user();
    let head = server.head().await;
    let request_id = Uuid::new_v4().to_string();
    let created = members
        .create_membership(as_user(
            pb::CreateMembershipRequest {
                request_id: request_id.clone(),
                display_name: "Peter Gibbons".into(),
                ..new_member(&t, member, "member")
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(head, &["membership.created"], created.cursor, Some(owner))
        .await;
    assert_eq!(subject(&events[0]), member.to_string());
    assert_eq!(events[0].request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(events[0].before, None);
    let after = snapshot(&events[0].after);
    assert_eq!(after["status"], "active");
    assert_eq!(after["display_name"], "Peter Gibbons");
    assert_eq!(after["roles"], serde_json::json!(["member"]));
    assert_eq!(after["invited_by"], owner.to_string());
    assert_eq!(after["tenant_id"], tid);
    let current = created.membership.unwrap();

    // UpdateMembership → membership.updated.
    let head = server.head().await;
    let updated = members
        .update_membership(as_user(
            update_membership(
                pb::Membership {
                    display_name: "Peter G.".into(),
                    ..current.clone()
                },
                &["display_name"],
            ),
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(head, &["membership.updated"], updated.cursor, Some(owner))
        .await;
    assert_eq!(subject(&events[0]), member.to_string());
    assert_eq!(snapshot(&events[0].before)["display_name"], "Peter Gibbons");
    assert_eq!(snapshot(&events[0].after)["display_name"], "Peter G.");
    let current = updated.membership.unwrap();

    // SuspendMembership → membership.suspended; the bindings stay.
    let head = server.head().await;
    let (tenant_id, user_id) = member_ref(&tid, member);
    let suspended = members
        .suspend_membership(as_user(
            pb::SuspendMembershipRequest {
                tenant_id: tenant_id.clone(),
                user_id: user_id.clone(),
                etag: current.etag.clone(),
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(
            head,
            &["membership.suspended"],
            suspended.cursor,
            Some(owner),
        )
        .await;
    assert_eq!(subject(&events[0]), member.to_string());
    assert_eq!(snapshot(&events[0].before)["status"], "active");
    let after = snapshot(&events[0].after);
    assert_eq!(after["status"], "suspended");
    assert_eq!(after["roles"], serde_json::json!(["member"]));

    // ReactivateMembership → membership.reactivated.
    let head = server.head().await;
    let reactivated = members
        .reactivate_membership(as_user(
            pb::ReactivateMembershipRequest {
                tenant_id: tenant_id.clone(),
                user_id: user_id.clone(),
                etag: suspended.membership.unwrap().etag,
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(
            head,
            &["membership.reactivated"],
            reactivated.cursor,
            Some(owner),
        )
        .await;
    assert_eq!(snapshot(&events[0].before)["status"], "suspended");
    assert_eq!(snapshot(&events[0].after)["status"], "active");
}

#[tokio::test]
async fn a_system_callers_events_carry_no_actor() {
    let server = TestServer::start().await;
    let mut members = server.members().await;
    let t = initech_tenant(&server).await;

    // A system caller's events carry no actor.
    for status in [
        pb::MembershipStatus::Active,
        pb::MembershipStatus::Suspended,
    ] {
        let id = user();
        let head = server.head().await;
        let created = members
            .create_membership(as_system(pb::CreateMembershipRequest {
                status: status as i32,
                ..new_member(&t, id, "member")
            }))
            .await
            .unwrap()
            .into_inner();
        let events = server
            .expect_events(head, &["membership.created"], created.cursor, None)
            .await;
        assert_eq!(events[0].request_id, None);
        assert_eq!(
            snapshot(&events[0].after)["status"],
            if status == pb::MembershipStatus::Active {
                "active"
            } else {
                "suspended"
            }
        );
    }
}

#[tokio::test]
async fn removal_and_leaving_write_their_events_with_the_state_before() {
    let server = TestServer::start().await;
    let mut members = server.members().await;
    let t = initech_tenant(&server).await;
    let (tid, owner) = (t.id.clone(), t.owner);

    let (removed, leaving) = (user(), user());
    for id in [removed, leaving] {
        add_in_status(&server, &t, id, pb::MembershipStatus::Active).await;
    }

    // DeleteMembership → membership.deleted, with the state before and nothing after.
    let head = server.head().await;
    let deleted = members
        .delete_membership(as_user(
            pb::DeleteMembershipRequest {
                tenant_id: tid.clone(),
                user_id: removed.to_string(),
                etag: String::new(),
                validate_only: false,
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(head, &["membership.deleted"], deleted.cursor, Some(owner))
        .await;
    assert_eq!(subject(&events[0]), removed.to_string());
    assert_eq!(snapshot(&events[0].before)["status"], "active");
    assert_eq!(events[0].after, None);

    // LeaveTenant (the member themselves) → membership.left.
    let head = server.head().await;
    let left = members
        .leave_tenant(as_user(
            pb::LeaveTenantRequest {
                tenant_id: tid.clone(),
            },
            leaving,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(head, &["membership.left"], left.cursor, Some(leaving))
        .await;
    assert_eq!(subject(&events[0]), leaving.to_string());
    assert_eq!(snapshot(&events[0].before)["status"], "active");
    let after = snapshot(&events[0].after);
    assert_eq!(after["status"], "left");
    assert_eq!(after["roles"], serde_json::json!([]));
}

/// TransferOwnership, then DissolveTenant by the new owner, in a tenant where one member was
/// removed and one left before: they are not seated, and not ended again.
#[tokio::test]
async fn transfer_and_dissolution_write_their_events_for_every_seated_member() {
    let server = TestServer::start().await;
    let mut members = server.members().await;
    let t = initech_tenant(&server).await;
    let (tid, owner) = (t.id.clone(), t.owner);

    let member = user();
    let kept_suspended = user();
    add_in_status(&server, &t, member, pb::MembershipStatus::Active).await;
    add_in_status(&server, &t, kept_suspended, pb::MembershipStatus::Suspended).await;
    let (removed, leaving) = (user(), user());
    for id in [removed, leaving] {
        add_in_status(&server, &t, id, pb::MembershipStatus::Active).await;
    }
    let api = server.api().await;
    api.as_user(owner)
        .remove_member(&t, removed)
        .await
        .expect("removing a member");
    api.as_user(leaving).leave(&t).await.expect("leaving");
    let mut tenants = server.tenants().await;

    // TransferOwnership → the previous owner's update, the new owner's, then the transfer.
    let head = server.head().await;
    let transferred = members
        .transfer_ownership(as_user(
            pb::TransferOwnershipRequest {
                tenant_id: tid.clone(),
                new_owner_user_id: member.to_string(),
                previous_owner_role: String::new(),
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(
            head,
            &[
                "membership.updated",
                "membership.updated",
                "ownership.transferred",
            ],
            transferred.cursor,
            Some(owner),
        )
        .await;
    assert_eq!(subject(&events[0]), owner.to_string());
    assert_eq!(snapshot(&events[0].before)["member_type"], "owner");
    let after = snapshot(&events[0].after);
    assert_eq!(after["member_type"], "member");
    assert_eq!(after["roles"], serde_json::json!(["member"]));
    assert_eq!(subject(&events[1]), member.to_string());
    assert_eq!(snapshot(&events[1].before)["member_type"], "member");
    let after = snapshot(&events[1].after);
    assert_eq!(after["member_type"], "owner");
    assert!(
        after["roles"]
            .as_array()
            .unwrap()
            .contains(&Value::from("super_admin")),
        "{after}"
    );
    assert_eq!(subject(&events[2]), member.to_string());
    assert_eq!(
        snapshot(&events[2].before)["owner_user_id"],
        owner.to_string()
    );
    assert_eq!(
        snapshot(&events[2].after)["owner_user_id"],
        member.to_string()
    );

    // DissolveTenant (by the new owner) → membership.left for every seated member, then
    // tenant.dissolved. The member who left and the one removed are not seated any more.
    let head = server.head().await;
    let dissolved = tenants
        .dissolve_tenant(as_user(
            pb::DissolveTenantRequest {
                tenant_id: tid.clone(),
                etag: String::new(),
                validate_only: false,
            },
            member,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = server
        .expect_events(
            head,
            &[
                "membership.left",
                "membership.left",
                "membership.left",
                "tenant.dissolved",
            ],
            dissolved.cursor,
            Some(member),
        )
        .await;
    let mut ended: Vec<&str> = events[..3].iter().map(subject).collect();
    ended.sort_unstable();
    let mut seated = vec![
        owner.to_string(),
        member.to_string(),
        kept_suspended.to_string(),
    ];
    seated.sort_unstable();
    assert_eq!(ended, seated);
    for event in &events[..3] {
        assert!(
            matches!(
                snapshot(&event.before)["status"].as_str(),
                Some("active" | "suspended")
            ),
            "{event:?}"
        );
        let after = snapshot(&event.after);
        assert_eq!(after["status"], "left");
        assert_eq!(after["roles"], serde_json::json!([]));
    }
    assert_eq!(subject(&events[3]), tid);
    assert_eq!(snapshot(&events[3].before)["state"], "active");
    assert_eq!(snapshot(&events[3].after)["state"], "dissolved");
}

/// Everything a refused mutation could have touched.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    head: i64,
    events: i64,
    tenants: i64,
    tenant_versions: i64,
    memberships: i64,
    membership_versions: i64,
    role_bindings: i64,
    request_ids: i64,
}

async fn footprint(server: &TestServer) -> Footprint {
    Footprint {
        head: server.head().await,
        events: server.event_count().await,
        tenants: server.scalar("SELECT COUNT(*) AS n FROM tenants").await,
        tenant_versions: server
            .scalar("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) AS n FROM tenants")
            .await,
        memberships: server.scalar("SELECT COUNT(*) AS n FROM memberships").await,
        membership_versions: server
            .scalar("SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) AS n FROM memberships")
            .await,
        role_bindings: server
            .scalar("SELECT COUNT(*) AS n FROM role_bindings")
            .await,
        request_ids: server.scalar("SELECT COUNT(*) AS n FROM request_ids").await,
    }
}

/// A tenant with two seats, both taken: the owner's and a plain member's (returned).
async fn full_tenant(server: &TestServer) -> (Tenant, Uuid) {
    let tenant = enterprise(server, Some(2)).await;
    let member = add_member(server, &tenant, "member").await;
    (tenant, member)
}

#[tokio::test]
async fn a_creation_refused_for_want_of_a_seat_leaves_nothing_not_even_its_request_id() {
    let server = TestServer::start().await;
    let (t, member) = full_tenant(&server).await;
    let mut members = server.members().await;
    let (tid, mid) = member_ref(&t.id, member);

    // No free seat, with a request id that must not be remembered.
    let request_id = Uuid::new_v4().to_string();
    let newcomer = user();
    let before = footprint(&server).await;
    let refused = members
        .create_membership(as_system(pb::CreateMembershipRequest {
            request_id: request_id.clone(),
            ..new_member(&t, newcomer, "member")
        }))
        .await;
    assert_refused(refused, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");
    assert_eq!(footprint(&server).await, before, "seat limit");

    // The refused creation's request id was not kept: once a seat is free, the same request
    // creates the member instead of replaying the refusal.
    members
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            tenant_id: tid.clone(),
            user_id: mid.clone(),
            etag: String::new(),
            validate_only: false,
        }))
        .await
        .unwrap();
    let head = server.head().await;
    let created = members
        .create_membership(as_system(pb::CreateMembershipRequest {
            request_id,
            ..new_member(&t, newcomer, "member")
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.membership.unwrap().user_id, newcomer.to_string());
    assert_eq!(server.event_types_after(head).await, ["membership.created"]);
}

#[tokio::test]
async fn refusals_of_a_member_twice_a_plain_members_add_and_the_last_owner_leave_nothing() {
    let server = TestServer::start().await;
    let (t, member) = full_tenant(&server).await;
    let mut members = server.members().await;
    let tid = t.id.clone();
    let before = footprint(&server).await;

    // Already a member.
    let refused = members
        .create_membership(as_system(new_member(&t, member, "member")))
        .await;
    assert_refused(refused, Code::AlreadyExists, "MEMBER_EXISTS");
    assert_eq!(footprint(&server).await, before, "member exists");

    // A plain member may not add anyone.
    let refused = members
        .create_membership(as_user(new_member(&t, user(), "member"), member))
        .await;
    assert_refused(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(footprint(&server).await, before, "permission");

    // The owner can be neither removed, suspended, nor leave.
    let refused = members
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            tenant_id: tid.clone(),
            user_id: t.owner.to_string(),
            etag: String::new(),
            validate_only: false,
        }))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "LAST_OWNER");
    let refused = members
        .suspend_membership(as_system(pb::SuspendMembershipRequest {
            tenant_id: tid.clone(),
            user_id: t.owner.to_string(),
            etag: String::new(),
        }))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "LAST_OWNER");
    let refused = members
        .leave_tenant(as_user(
            pb::LeaveTenantRequest {
                tenant_id: tid.clone(),
            },
            t.owner,
        ))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "LAST_OWNER");
    assert_eq!(footprint(&server).await, before, "last owner");
}

#[tokio::test]
async fn validate_only_checks_everything_changes_nothing_and_answers_with_the_head() {
    let server = TestServer::start().await;
    let (t, member) = full_tenant(&server).await;
    let mut members = server.members().await;
    let (tid, mid) = member_ref(&t.id, member);
    let mut tenants = server.tenants().await;
    let before = footprint(&server).await;

    // validate_only checks everything and changes nothing; its cursor is the head.
    let checked = members
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            tenant_id: tid.clone(),
            user_id: mid.clone(),
            etag: String::new(),
            validate_only: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.cursor, before.head);
    assert_eq!(footprint(&server).await, before, "validate_only delete");
    let still = get_member(&server, &t, member).await.unwrap();
    assert_eq!(still.status, pb::MembershipStatus::Active as i32);
    assert_eq!(still.roles, ["member"]);
    let validated = tenants
        .dissolve_tenant(as_system(pb::DissolveTenantRequest {
            tenant_id: tid.clone(),
            etag: String::new(),
            validate_only: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.cursor, before.head);
    assert_eq!(footprint(&server).await, before, "validate_only dissolve");
}

#[tokio::test]
async fn a_stale_etag_and_a_transfer_to_a_suspended_member_leave_nothing() {
    let server = TestServer::start().await;
    let (t, member) = full_tenant(&server).await;
    let mut members = server.members().await;
    let (tid, mid) = member_ref(&t.id, member);
    let still = get_member(&server, &t, member).await.unwrap();

    // A stale etag, after a real change moved the member on.
    let stale = still.clone();
    members
        .update_membership(as_system(update_membership(
            pb::Membership {
                display_name: "Renamed".into(),
                ..still.clone()
            },
            &["display_name"],
        )))
        .await
        .unwrap();
    let before = footprint(&server).await;
    let refused = members
        .update_membership(as_system(update_membership(
            pb::Membership {
                display_name: "Lost update".into(),
                ..stale.clone()
            },
            &["display_name"],
        )))
        .await;
    assert_refused(refused, Code::Aborted, "ETAG_MISMATCH");
    for refused in [
        members
            .suspend_membership(as_system(pb::SuspendMembershipRequest {
                tenant_id: tid.clone(),
                user_id: mid.clone(),
                etag: stale.etag.clone(),
            }))
            .await
            .map(drop),
        members
            .delete_membership(as_system(pb::DeleteMembershipRequest {
                tenant_id: tid.clone(),
                user_id: mid.clone(),
                etag: stale.etag.clone(),
                validate_only: false,
            }))
            .await
            .map(drop),
    ] {
        assert_refused(refused, Code::Aborted, "ETAG_MISMATCH");
    }
    assert_eq!(footprint(&server).await, before, "stale etag");
    assert_eq!(
        get_member(&server, &t, member).await.unwrap().display_name,
        "Renamed"
    );

    // Ownership moves only to an ACTIVE member.
    members
        .suspend_membership(as_system(pb::SuspendMembershipRequest {
            tenant_id: tid.clone(),
            user_id: mid.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    let before = footprint(&server).await;
    let refused = members
        .transfer_ownership(as_system(pb::TransferOwnershipRequest {
            tenant_id: tid.clone(),
            new_owner_user_id: mid.clone(),
            previous_owner_role: String::new(),
        }))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "MEMBERSHIP_NOT_ACTIVE");
    assert_eq!(
        footprint(&server).await,
        before,
        "transfer to a suspended member"
    );
}

/// Another tenant's writes move the head past a member's last event, so a no-op must answer
/// with the head, not with that member's last position.
async fn move_head(server: &TestServer) {
    enterprise(server, None).await;
}

#[tokio::test]
async fn a_mutation_that_changes_nothing_writes_no_event_and_answers_with_the_head() {
    let server = TestServer::start().await;
    let t = enterprise(&server, None).await;
    let member = add_member(&server, &t, "member").await;
    let mut members = server.members().await;
    let mut tenants = server.tenants().await;
    let (tid, mid) = member_ref(&t.id, member);
    let suspend = || pb::SuspendMembershipRequest {
        tenant_id: tid.clone(),
        user_id: mid.clone(),
        etag: String::new(),
    };
    let reactivate = || pb::ReactivateMembershipRequest {
        tenant_id: tid.clone(),
        user_id: mid.clone(),
        etag: String::new(),
    };

    let suspended = members
        .suspend_membership(as_system(suspend()))
        .await
        .unwrap()
        .into_inner();
    move_head(&server).await;
    let head = server.head().await;
    assert!(head > suspended.cursor);
    let again = members
        .suspend_membership(as_user(suspend(), t.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.cursor, head);
    assert_eq!(server.head().await, head, "suspending a suspended member");
    let again = again.membership.unwrap();
    let suspended = suspended.membership.unwrap();
    assert_eq!(again.status, pb::MembershipStatus::Suspended as i32);
    assert_eq!(again.etag, suspended.etag, "no change, no new version");
    assert_eq!(again.update_time, suspended.update_time);

    let reactivated = members
        .reactivate_membership(as_system(reactivate()))
        .await
        .unwrap()
        .into_inner();
    move_head(&server).await;
    let head = server.head().await;
    assert!(head > reactivated.cursor);
    let again = members
        .reactivate_membership(as_system(reactivate()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.cursor, head);
    assert_eq!(server.head().await, head, "reactivating an active member");
    let current = reactivated.membership.unwrap();
    assert_eq!(again.membership.unwrap().etag, current.etag);

    // An update to the values already there, with and without the etag, and with whitespace
    // that is trimmed away.
    for (membership, paths) in [
        (current.clone(), vec!["display_name"]),
        (
            pb::Membership {
                etag: String::new(),
                ..current.clone()
            },
            vec!["display_name", "type", "status"],
        ),
        (
            pb::Membership {
                display_name: format!("  {}  ", current.display_name),
                ..current.clone()
            },
            vec!["display_name", "external_id"],
        ),
    ] {
        let unchanged = members
            .update_membership(as_user(update_membership(membership, &paths), t.owner))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(unchanged.cursor, head, "{paths:?}");
        assert_eq!(server.head().await, head, "{paths:?}");
        assert_eq!(
            unchanged.membership.unwrap().etag,
            current.etag,
            "{paths:?}"
        );
    }

    // The same for a tenant.
    let tenant = tenants
        .get_tenant(as_system(pb::GetTenantRequest {
            tenant_id: tid.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let unchanged = tenants
        .update_tenant(as_user(
            update_tenant(tenant.clone(), &["name", "seat_limit", "kind"]),
            t.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.cursor, head);
    assert_eq!(server.head().await, head, "an unchanged tenant");
    assert_eq!(unchanged.tenant.unwrap().etag, tenant.etag);
    assert_eq!(server.event_count().await, head);
}
