//! The outbox (DESIGN §5): each mutation commits exactly its events with its change, with actor,
//! subject and before/after snapshots, and answers with the position of its last event; a refused
//! mutation leaves neither events nor rows; a mutation that changes nothing writes nothing.

mod common;

use common::*;
use membership_service::grpc::pb;
use prost_types::FieldMask;
use serde_json::Value;
use tonic::Code;
use uuid::Uuid;

fn json(text: &Option<String>) -> Value {
    serde_json::from_str(text.as_deref().expect("a snapshot")).expect("snapshot JSON")
}

/// Asserts the events written after `head`: their types in order, contiguous positions ending
/// at the response's `cursor`, and the actor on each. Returns them for closer checks.
#[track_caller]
fn assert_events(
    events: Vec<StoredEvent>,
    head: i64,
    types: &[&str],
    cursor: i64,
    actor: Option<Uuid>,
) -> Vec<StoredEvent> {
    let written: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(written, types);
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    let expected: Vec<i64> = (head + 1..=head + types.len() as i64).collect();
    assert_eq!(
        positions, expected,
        "positions follow the head without a gap"
    );
    assert_eq!(
        cursor,
        head + types.len() as i64,
        "the response names the last event"
    );
    for event in &events {
        assert_eq!(event.actor_id, actor, "{}", event.event_type);
    }
    events
}

fn subject(event: &StoredEvent) -> &str {
    event.subject_id.as_deref().expect("a subject")
}

fn update_member(membership: pb::Membership, paths: &[&str]) -> pb::UpdateMembershipRequest {
    pb::UpdateMembershipRequest {
        membership: Some(membership),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

fn update_tenant(tenant: pb::Tenant, paths: &[&str]) -> pb::UpdateTenantRequest {
    pb::UpdateTenantRequest {
        tenant: Some(tenant),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

fn member_ref(tenant_id: &str, user_id: Uuid) -> (String, String) {
    (tenant_id.to_string(), user_id.to_string())
}

#[tokio::test]
async fn each_mutation_commits_exactly_its_events_with_actor_subject_and_snapshots() {
    let server = TestServer::start().await;
    let mut tenants = server.tenants().await;
    let mut members = server.members().await;
    let owner = user();

    // CreateTenant → tenant.created, membership.created (the first owner).
    let head = server.head().await;
    let request_id = Uuid::new_v4().to_string();
    let created = tenants
        .create_tenant(as_user(
            pb::CreateTenantRequest {
                name: "Initech".into(),
                kind: pb::TenantKind::Enterprise as i32,
                role_preset: pb::RolePreset::Enterprise as i32,
                seat_limit: Some(10),
                owner_user_id: owner.to_string(),
                owner_email: "bill@initech.example".into(),
                owner_display_name: "Bill Lumbergh".into(),
                request_id: request_id.clone(),
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let tenant = created.tenant.unwrap();
    let tid = tenant.tenant_id.clone();
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["tenant.created", "membership.created"],
        created.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), tid);
    assert_eq!(events[0].before, None);
    let after = json(&events[0].after);
    assert_eq!(after["name"], "Initech");
    assert_eq!(after["state"], "active");
    assert_eq!(after["kind"], "enterprise");
    assert_eq!(subject(&events[1]), owner.to_string());
    assert_eq!(events[1].before, None);
    let after = json(&events[1].after);
    assert_eq!(after["status"], "active");
    assert_eq!(after["member_type"], "owner");
    assert_eq!(after["roles"], serde_json::json!(["super_admin"]));
    for event in &events {
        assert_eq!(event.request_id.as_deref(), Some(request_id.as_str()));
    }
    let t = Tenant {
        id: tid.clone(),
        owner,
    };

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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["tenant.updated"],
        updated.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), tid);
    assert_eq!(json(&events[0].before)["name"], "Initech");
    assert_eq!(json(&events[0].after)["name"], "Initech Inc");
    assert_eq!(
        json(&events[0].after)["version"].as_i64(),
        json(&events[0].before)["version"].as_i64().map(|v| v + 1)
    );

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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["membership.created"],
        created.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), member.to_string());
    assert_eq!(events[0].request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(events[0].before, None);
    let after = json(&events[0].after);
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
            update_member(
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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["membership.updated"],
        updated.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), member.to_string());
    assert_eq!(json(&events[0].before)["display_name"], "Peter Gibbons");
    assert_eq!(json(&events[0].after)["display_name"], "Peter G.");
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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["membership.suspended"],
        suspended.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), member.to_string());
    assert_eq!(json(&events[0].before)["status"], "active");
    let after = json(&events[0].after);
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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["membership.reactivated"],
        reactivated.cursor,
        Some(owner),
    );
    assert_eq!(json(&events[0].before)["status"], "suspended");
    assert_eq!(json(&events[0].after)["status"], "active");

    // A system caller's events carry no actor.
    let removed = user();
    let leaving = user();
    let kept_suspended = user();
    for (id, status) in [
        (removed, pb::MembershipStatus::Active),
        (leaving, pb::MembershipStatus::Active),
        (kept_suspended, pb::MembershipStatus::Suspended),
    ] {
        let head = server.head().await;
        let created = members
            .create_membership(as_system(pb::CreateMembershipRequest {
                status: status as i32,
                ..new_member(&t, id, "member")
            }))
            .await
            .unwrap()
            .into_inner();
        let events = assert_events(
            server.events_after(head).await,
            head,
            &["membership.created"],
            created.cursor,
            None,
        );
        assert_eq!(events[0].request_id, None);
        assert_eq!(
            json(&events[0].after)["status"],
            if status == pb::MembershipStatus::Active {
                "active"
            } else {
                "suspended"
            }
        );
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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["membership.deleted"],
        deleted.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), removed.to_string());
    assert_eq!(json(&events[0].before)["status"], "active");
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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &["membership.left"],
        left.cursor,
        Some(leaving),
    );
    assert_eq!(subject(&events[0]), leaving.to_string());
    assert_eq!(json(&events[0].before)["status"], "active");
    let after = json(&events[0].after);
    assert_eq!(after["status"], "left");
    assert_eq!(after["roles"], serde_json::json!([]));

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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &[
            "membership.updated",
            "membership.updated",
            "ownership.transferred",
        ],
        transferred.cursor,
        Some(owner),
    );
    assert_eq!(subject(&events[0]), owner.to_string());
    assert_eq!(json(&events[0].before)["member_type"], "owner");
    let after = json(&events[0].after);
    assert_eq!(after["member_type"], "member");
    assert_eq!(after["roles"], serde_json::json!(["member"]));
    assert_eq!(subject(&events[1]), member.to_string());
    assert_eq!(json(&events[1].before)["member_type"], "member");
    let after = json(&events[1].after);
    assert_eq!(after["member_type"], "owner");
    assert!(
        after["roles"]
            .as_array()
            .unwrap()
            .contains(&Value::from("super_admin")),
        "{after}"
    );
    assert_eq!(subject(&events[2]), member.to_string());
    assert_eq!(json(&events[2].before)["owner_user_id"], owner.to_string());
    assert_eq!(json(&events[2].after)["owner_user_id"], member.to_string());

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
    let events = assert_events(
        server.events_after(head).await,
        head,
        &[
            "membership.left",
            "membership.left",
            "membership.left",
            "tenant.dissolved",
        ],
        dissolved.cursor,
        Some(member),
    );
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
                json(&event.before)["status"].as_str(),
                Some("active" | "suspended")
            ),
            "{event:?}"
        );
        let after = json(&event.after);
        assert_eq!(after["status"], "left");
        assert_eq!(after["roles"], serde_json::json!([]));
    }
    assert_eq!(subject(&events[3]), tid);
    assert_eq!(json(&events[3].before)["state"], "active");
    assert_eq!(json(&events[3].after)["state"], "dissolved");
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

#[tokio::test]
async fn a_refused_mutation_leaves_no_events_and_no_rows() {
    let server = TestServer::start().await;
    // Two seats: the owner's and the member's, so the tenant is full.
    let t = enterprise(&server, Some(2)).await;
    let member = add_member(&server, &t, "member").await;
    let mut members = server.members().await;
    let mut tenants = server.tenants().await;
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

    // A stale etag, after a real change moved the member on.
    let stale = still.clone();
    members
        .update_membership(as_system(update_member(
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
        .update_membership(as_system(update_member(
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
            .update_membership(as_user(update_member(membership, &paths), t.owner))
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
