//! Groups (DESIGN rules 24-28), over a real server: the lifecycle of a group and what makes it
//! unique, who is in a group, checks through a group naming the binding that grants, no
//! escalation through a group, what suspension, removal, leaving and deletion do to groups,
//! a second replica, races between member and group changes, and tenant isolation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::api::{Api, Caller};
use crate::common::*;
use futures::StreamExt;
use membership_service::grpc::pb;
use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
use membership_service::grpc::pb::role_service_client::RoleServiceClient;
use membership_service::grpc::pb::{CheckReason, GroupMemberOutcome};
use tokio::sync::Barrier;
use tonic::Code;
use uuid::Uuid;

/// The permission catalog, groups.manage included.
const CATALOG: [&str; 17] = [
    "tenant.delete",
    "tenant.manage",
    "owner.transfer",
    "admins.manage",
    "members.manage",
    "members.read",
    "roles.manage",
    "billing.manage",
    "apps.manage",
    "api_keys.manage",
    "oauth_clients.create",
    "webhooks.create",
    "logs.read",
    "audit_logs.read",
    "resources.create",
    "products.use",
    "groups.manage",
];

const MEMBER: &[&str] = &["members.read", "products.use"];

/// ORGANIZATION preset, the roles a group may hold: role, permissions.
const ORGANIZATION_ROLES: &[(&str, &[&str])] = &[
    (
        "admin",
        &[
            "members.manage",
            "members.read",
            "groups.manage",
            "oauth_clients.create",
            "api_keys.manage",
            "webhooks.create",
            "audit_logs.read",
            "apps.manage",
            "resources.create",
            "logs.read",
            "products.use",
        ],
    ),
    ("member", MEMBER),
];

/// ENTERPRISE preset, the roles a group may hold: role, permissions.
const ENTERPRISE_ROLES: &[(&str, &[&str])] = &[
    (
        "finance_admin",
        &["billing.manage", "members.read", "products.use"],
    ),
    (
        "dev_admin",
        &[
            "apps.manage",
            "api_keys.manage",
            "oauth_clients.create",
            "webhooks.create",
            "logs.read",
            "resources.create",
            "members.read",
            "products.use",
        ],
    ),
    ("member", MEMBER),
];

/// A check's reason, and the (role, group id) that granted it.
type Answer = (CheckReason, Option<(String, String)>);

const NOT_GRANTED: Answer = (CheckReason::NotGranted, None);

fn answer(allowed: bool, reason: i32, granted_by: Option<pb::Grant>) -> Answer {
    let reason = CheckReason::try_from(reason).unwrap_or_else(|_| panic!("reason {reason}"));
    assert_eq!(
        allowed,
        reason == CheckReason::Granted,
        "allowed={allowed} with {reason:?}"
    );
    (reason, granted_by.map(|g| (g.role, g.group_id)))
}

/// Granted by `role` bound to `group`.
fn through(role: &str, group: &pb::Group) -> Answer {
    (
        CheckReason::Granted,
        Some((role.to_string(), group.group_id.clone())),
    )
}

/// Granted by `role` bound to the member.
fn direct(role: &str) -> Answer {
    (
        CheckReason::Granted,
        Some((role.to_string(), String::new())),
    )
}

fn denied(reason: CheckReason) -> Answer {
    (reason, None)
}

/// CheckPermission as a system caller, at least as fresh as `min_cursor`; with its cursor.
async fn check_at(
    api: &Api,
    tenant: &Tenant,
    user_id: Uuid,
    permission: &str,
    min_cursor: i64,
) -> (Answer, i64) {
    let response = api
        .as_system()
        .check_permission(tenant, user_id, permission, min_cursor)
        .await
        .unwrap_or_else(|s| panic!("checking {permission} of {user_id}: {s:?}"));
    (
        answer(response.allowed, response.reason, response.granted_by),
        response.cursor,
    )
}

async fn check(api: &Api, tenant: &Tenant, user_id: Uuid, permission: &str) -> Answer {
    check_at(api, tenant, user_id, permission, 0).await.0
}

/// A group created by the tenant's owner.
async fn group(api: &Api, tenant: &Tenant, name: &str) -> pb::Group {
    api.as_user(tenant.owner)
        .create_group(tenant, name)
        .await
        .unwrap_or_else(|s| panic!("creating {name}: {s:?}"))
        .group
        .expect("a group")
}

/// A group holding `role` (if any) with `members` in it, set up by the tenant's owner.
async fn group_with(
    api: &Api,
    tenant: &Tenant,
    name: &str,
    role: Option<&str>,
    members: &[Uuid],
) -> pb::Group {
    let owner = api.as_user(tenant.owner);
    let mut group = group(api, tenant, name).await;
    if let Some(role) = role {
        let bound = owner
            .bind_role_to_group(tenant, &group.group_id, role)
            .await;
        group = bound
            .unwrap_or_else(|s| panic!("binding {role}: {s:?}"))
            .group
            .unwrap();
    }
    if !members.is_empty() {
        let added = owner
            .add_group_members(tenant, &group.group_id, members)
            .await;
        group = added.expect("adding members").group.unwrap();
    }
    group
}

fn outcomes(results: &[pb::GroupMemberResult]) -> Vec<(String, GroupMemberOutcome)> {
    results
        .iter()
        .map(|r| {
            let outcome = GroupMemberOutcome::try_from(r.outcome).expect("a known outcome");
            (r.user_id.clone(), outcome)
        })
        .collect()
}

/// The fields an INVALID_ARGUMENT refusal names.
#[track_caller]
fn invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> BTreeSet<String> {
    let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    ids(violated_fields(&status))
}

fn ids<S: ToString>(items: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

async fn member_count(caller: &Caller, tenant: &Tenant, group: &pb::Group) -> i32 {
    let got = caller.get_group(tenant, &group.group_id).await;
    got.expect("reading the group").member_count
}

/// The user ids ListMemberships gives for `group_id`, every page of `page_size`.
async fn listed_in_group(
    server: &TestServer,
    tenant: &Tenant,
    group_id: &str,
    page_size: i32,
) -> Vec<String> {
    let mut members = server.members().await;
    let (mut listed, mut token) = (Vec::new(), String::new());
    loop {
        let page = members
            .list_memberships(as_system(pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                group_id: group_id.to_string(),
                page_size,
                page_token: token,
                ..Default::default()
            }))
            .await
            .expect("listing the group's memberships")
            .into_inner();
        listed.extend(page.memberships.into_iter().map(|m| m.user_id));
        if page.next_page_token.is_empty() {
            return listed;
        }
        token = page.next_page_token;
    }
}

/// A pending invitation's id: how a member list shows someone not yet a user of the tenant.
async fn invite(server: &TestServer, tenant: &Tenant, email: &str) -> String {
    InvitationServiceClient::new(server.channel().await)
        .create_invitation(as_user(
            pb::CreateInvitationRequest {
                tenant_id: tenant.id.clone(),
                email: email.to_string(),
                role: "member".into(),
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .expect("inviting")
        .into_inner()
        .invitation
        .unwrap()
        .invitation_id
}

// ---------------------------------------------------------------------------------------------
// 1. Creating, reading, listing, changing and deleting groups.

#[tokio::test]
async fn a_group_is_created_read_renamed_and_deleted_with_an_event_each() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);

    let head = server.head().await;
    let created = owner
        .create_group_from(pb::CreateGroupRequest {
            tenant_id: tenant.id.clone(),
            name: "Platform Team".into(),
            description: "Runs the platform.".into(),
            source: pb::MembershipSource::Scim as i32,
            external_id: "scim-42".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let events = server
        .expect_events(head, &["group.created"], created.cursor, Some(tenant.owner))
        .await;
    let group = created.group.unwrap();
    assert_eq!(snapshot(&events[0].after)["name"], "Platform Team");
    assert!(
        Uuid::parse_str(&group.group_id).is_ok(),
        "{}",
        group.group_id
    );
    assert_eq!(group.tenant_id, tenant.id);
    assert_eq!(
        (group.name.as_str(), group.description.as_str()),
        ("Platform Team", "Runs the platform.")
    );
    assert_eq!(group.external_id, "scim-42");
    assert_eq!(group.source, pb::MembershipSource::Scim as i32);
    assert_eq!((group.member_count, group.roles.len()), (0, 0));
    assert!(!group.etag.is_empty() && group.create_time.is_some());
    assert_eq!(
        owner.get_group(&tenant, &group.group_id).await.unwrap(),
        group
    );
    let plain = owner
        .create_group(&tenant, "Plain")
        .await
        .unwrap()
        .group
        .unwrap();
    assert_eq!(
        plain.source,
        pb::MembershipSource::Api as i32,
        "API by default"
    );
    assert_eq!(plain.external_id, "");
    // Reading needs members.read only.
    let member = add_member(&server, &tenant, "member").await;
    let read = api
        .as_user(member)
        .get_group(&tenant, &group.group_id)
        .await;
    assert_eq!(read.unwrap(), group);

    // Renamed at its etag: only the masked field changes, the etag moves.
    let head = server.head().await;
    let renamed = owner
        .update_group(
            pb::Group {
                name: "Platform".into(),
                description: "Not in the mask.".into(),
                ..group.clone()
            },
            &["name"],
        )
        .await
        .unwrap();
    server
        .expect_events(head, &["group.updated"], renamed.cursor, Some(tenant.owner))
        .await;
    let renamed = renamed.group.unwrap();
    assert_eq!(renamed.name, "Platform");
    assert_eq!(renamed.description, "Runs the platform.");
    assert_ne!(renamed.etag, group.etag);

    // At the old etag: ABORTED, for an update and a deletion, and nothing is written.
    let head = server.head().await;
    let stale = pb::Group {
        description: "Stale.".into(),
        ..group.clone()
    };
    let refused = owner.update_group(stale, &["description"]).await;
    assert_refused(refused, Code::Aborted, "ETAG_MISMATCH");
    let refused = owner
        .delete_group(&tenant, &group.group_id, &group.etag, false)
        .await;
    assert_refused(refused, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(server.head().await, head);
    assert_eq!(
        owner.get_group(&tenant, &group.group_id).await.unwrap(),
        renamed
    );

    // Deleted at its etag: gone, and everything naming it finds nothing.
    let deleted = owner
        .delete_group(&tenant, &group.group_id, &renamed.etag, false)
        .await
        .unwrap();
    server
        .expect_events(head, &["group.deleted"], deleted.cursor, Some(tenant.owner))
        .await;
    let gone = owner.get_group(&tenant, &group.group_id).await;
    assert_refused(gone, Code::NotFound, "GROUP_NOT_FOUND");
    let again = owner
        .delete_group(&tenant, &group.group_id, "", false)
        .await;
    assert_refused(again, Code::NotFound, "GROUP_NOT_FOUND");
    let update = owner.update_group(renamed, &["description"]).await;
    assert_refused(update, Code::NotFound, "GROUP_NOT_FOUND");
}

#[tokio::test]
async fn group_names_case_aside_and_external_ids_are_unique_in_a_tenant() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let other = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let named = |tenant: &Tenant, name: &str, external_id: &str| pb::CreateGroupRequest {
        tenant_id: tenant.id.clone(),
        name: name.to_string(),
        external_id: external_id.to_string(),
        ..Default::default()
    };
    let first = owner
        .create_group_from(named(&tenant, "Équipe Design", "dir-1"))
        .await
        .unwrap()
        .group
        .unwrap();

    let head = server.head().await;
    for (name, external_id) in [
        ("équipe design", ""),
        ("ÉQUIPE DESIGN", "dir-2"),
        ("Another", "dir-1"),
    ] {
        let refused = owner
            .create_group_from(named(&tenant, name, external_id))
            .await;
        let status = assert_refused(refused, Code::AlreadyExists, "GROUP_EXISTS");
        assert!(!status.message().is_empty(), "{name} {external_id}");
    }
    assert_eq!(
        server.head().await,
        head,
        "a refused creation writes nothing"
    );
    // Another tenant may use both.
    api.as_user(other.owner)
        .create_group_from(named(&other, "Équipe Design", "dir-1"))
        .await
        .expect("names are unique per tenant only");

    // Renaming another group onto a taken name or external id is refused too.
    let second = owner
        .create_group_from(named(&tenant, "Second", "dir-2"))
        .await
        .unwrap()
        .group
        .unwrap();
    let head = server.head().await;
    let onto_name = pb::Group {
        name: "équipe DESIGN".into(),
        ..second.clone()
    };
    let refused = owner.update_group(onto_name, &["name"]).await;
    assert_refused(refused, Code::AlreadyExists, "GROUP_EXISTS");
    let onto_external_id = pb::Group {
        external_id: "dir-1".into(),
        ..second.clone()
    };
    let refused = owner.update_group(onto_external_id, &["external_id"]).await;
    assert_refused(refused, Code::AlreadyExists, "GROUP_EXISTS");
    assert_eq!(server.head().await, head);

    // A group may change the case of its own name; groups without an external id are many.
    let recased = pb::Group {
        name: "ÉQUIPE DESIGN".into(),
        ..first.clone()
    };
    let recased = owner.update_group(recased, &["name"]).await.unwrap();
    assert_eq!(recased.group.unwrap().name, "ÉQUIPE DESIGN");
    for name in ["Third", "Fourth"] {
        owner.create_group(&tenant, name).await.unwrap();
    }
    // An external id given up can be taken by another group.
    let cleared = pb::Group {
        external_id: String::new(),
        ..second.clone()
    };
    let cleared = owner.update_group(cleared, &["external_id"]).await.unwrap();
    assert_eq!(cleared.group.unwrap().external_id, "");
    owner
        .create_group_from(named(&tenant, "Fifth", "dir-2"))
        .await
        .expect("dir-2 is free again");
    let listed = owner
        .list_groups(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.groups.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creating_a_group_again_with_its_request_id_returns_the_same_group_once() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let request = pb::CreateGroupRequest {
        tenant_id: tenant.id.clone(),
        name: "Support".into(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };

    let head = server.head().await;
    let first = owner.create_group_from(request.clone()).await.unwrap();
    let retry = owner.create_group_from(request.clone()).await.unwrap();
    assert_eq!(retry.group, first.group);
    let events = server
        .expect_events(head, &["group.created"], first.cursor, Some(tenant.owner))
        .await;
    assert_eq!(
        events[0].request_id.as_deref(),
        Some(request.request_id.as_str())
    );

    // Retries racing each other: one group, one event.
    let racing = pb::CreateGroupRequest {
        name: "On call".into(),
        request_id: Uuid::new_v4().to_string(),
        ..request.clone()
    };
    let head = server.head().await;
    let calls = (0..6).map(|_| {
        let (api, request) = (api.clone(), racing.clone());
        tokio::spawn(async move { api.as_user(tenant.owner).create_group_from(request).await })
    });
    let mut created = BTreeSet::new();
    for call in futures::future::join_all(calls).await {
        let response = call
            .expect("the call's task")
            .expect("every retry succeeds");
        created.insert(response.group.unwrap().group_id);
    }
    assert_eq!(
        created.len(),
        1,
        "one group for one request id: {created:?}"
    );
    assert_eq!(server.event_types_after(head).await, vec!["group.created"]);

    // The same request id for another group is a mistake, not a retry.
    let reused = pb::CreateGroupRequest {
        name: "Something else".into(),
        ..request.clone()
    };
    let refused = owner.create_group_from(reused).await;
    assert_refused(refused, Code::InvalidArgument, "REQUEST_ID_REUSED");
    let listed = owner
        .list_groups(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = listed.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["On call", "Support"]);
}

#[tokio::test]
async fn groups_are_listed_by_name_in_keyset_pages_and_filtered_by_text_and_member() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let member = add_member(&server, &tenant, "member").await;
    let mut by_name = std::collections::HashMap::new();
    for name in ["delta", "Alpha", "charlie", "Bravo", "echo"] {
        by_name.insert(name, group(&api, &tenant, name).await.group_id);
    }
    for name in ["Bravo", "echo"] {
        owner
            .add_group_members(&tenant, &by_name[name], [member])
            .await
            .unwrap();
    }
    let list = |page_size: i32, query: &str, user_id: &str, page_token: &str| {
        owner.list_groups(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            page_size,
            page_token: page_token.to_string(),
            query: query.to_string(),
            source: 0,
            user_id: user_id.to_string(),
        })
    };
    let names = |page: &pb::ListGroupsResponse| -> Vec<String> {
        page.groups.iter().map(|g| g.name.clone()).collect()
    };

    // Pages of two over five groups, by name case aside.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(2, "", "", &token).await.unwrap();
        pages.push(names(&page));
        assert!(pages.len() <= 3, "more pages than groups: {pages:?}");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        pages,
        vec![
            vec!["Alpha", "Bravo"],
            vec!["charlie", "delta"],
            vec!["echo"]
        ]
    );
    let all = list(0, "", "", "").await.unwrap();
    assert_eq!(names(&all).len(), 5);
    assert!(all.next_page_token.is_empty());
    let counts: Vec<i32> = all.groups.iter().map(|g| g.member_count).collect();
    assert_eq!(counts, vec![0, 1, 0, 0, 1]);

    // A substring of the name, case aside; the groups of one member; both at once.
    assert_eq!(
        names(&list(0, "HA", "", "").await.unwrap()),
        vec!["Alpha", "charlie"]
    );
    assert_eq!(
        names(&list(0, "zulu", "", "").await.unwrap()),
        Vec::<String>::new()
    );
    let of_member = list(0, "", &member.to_string(), "").await.unwrap();
    assert_eq!(names(&of_member), vec!["Bravo", "echo"]);
    let first = list(1, "", &member.to_string(), "").await.unwrap();
    assert_eq!(names(&first), vec!["Bravo"]);
    let second = list(1, "", &member.to_string(), &first.next_page_token).await;
    assert_eq!(names(&second.unwrap()), vec!["echo"]);
    let both = list(0, "ECH", &member.to_string(), "").await.unwrap();
    assert_eq!(names(&both), vec!["echo"]);
    assert_eq!(
        owner.groups_of(&tenant, tenant.owner).await.unwrap(),
        Vec::<String>::new()
    );

    // Wildcards are text; the source filter.
    let scim = pb::CreateGroupRequest {
        tenant_id: tenant.id.clone(),
        name: "100% Sales".into(),
        source: pb::MembershipSource::Scim as i32,
        ..Default::default()
    };
    owner.create_group_from(scim).await.unwrap();
    owner.create_group(&tenant, "100_Sales").await.unwrap();
    owner.create_group(&tenant, "1000 Sales").await.unwrap();
    assert_eq!(
        names(&list(0, "%", "", "").await.unwrap()),
        vec!["100% Sales"]
    );
    assert_eq!(
        names(&list(0, "0_s", "", "").await.unwrap()),
        vec!["100_Sales"]
    );
    let from_scim = owner
        .list_groups(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            source: pb::MembershipSource::Scim as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(names(&from_scim), vec!["100% Sales"]);

    // A token belongs to its filters, and a tampered one is refused.
    let page = list(2, "", "", "").await.unwrap();
    let refused = list(2, "a", "", &page.next_page_token).await;
    assert_refused(refused, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    let mut tampered: Vec<char> = page.next_page_token.chars().collect();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let refused = list(2, "", "", &tampered).await;
    assert_refused(refused, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn invalid_group_requests_name_every_bad_field_and_change_nothing() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let group = group(&api, &tenant, "Valid").await;
    let head = server.head().await;

    let bad = owner
        .create_group_from(pb::CreateGroupRequest {
            tenant_id: "not-a-uuid".into(),
            name: "   ".into(),
            description: "d".repeat(501),
            source: pb::MembershipSource::Invite as i32,
            external_id: String::new(),
            request_id: "not-a-uuid-either".into(),
        })
        .await;
    assert_eq!(
        invalid(bad),
        ids(["description", "name", "request_id", "source", "tenant_id"])
    );
    let long = owner.create_group(&tenant, &"n".repeat(201)).await;
    assert_eq!(invalid(long), ids(["name"]));
    assert_eq!(
        invalid(owner.get_group(&tenant, "42").await),
        ids(["group_id"])
    );
    let nil = owner.get_group(&tenant, &Uuid::nil().to_string()).await;
    assert_eq!(invalid(nil), ids(["group_id"]));

    // User ids: at least one, at most 1,000, each a UUID.
    let too_many: Vec<Uuid> = (0..1001).map(|_| user()).collect();
    let refused = owner
        .add_group_members(&tenant, &group.group_id, &too_many)
        .await;
    assert_eq!(invalid(refused), ids(["user_ids"]));
    let refused = owner
        .remove_group_members(&tenant, &group.group_id, &too_many)
        .await;
    assert_eq!(invalid(refused), ids(["user_ids"]));
    let none: [Uuid; 0] = [];
    let refused = owner
        .add_group_members(&tenant, &group.group_id, none)
        .await;
    assert_eq!(invalid(refused), ids(["user_ids"]));
    let refused = owner
        .add_group_members(&tenant, "x", [user().to_string(), "bob".into()])
        .await;
    assert_eq!(invalid(refused), ids(["group_id", "user_ids[1]"]));

    // Lists, updates and bindings.
    let refused = owner
        .list_groups(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            page_size: -1,
            user_id: "someone".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(invalid(refused), ids(["page_size", "user_id"]));
    let refused = owner
        .list_group_members(&tenant, &group.group_id, -5, "")
        .await;
    assert_eq!(invalid(refused), ids(["page_size"]));
    let unnamed = pb::Group {
        name: String::new(),
        ..group.clone()
    };
    assert_eq!(
        invalid(owner.update_group(unnamed, &["name"]).await),
        ids(["group.name"])
    );
    let counted = owner.update_group(group.clone(), &["member_count"]).await;
    assert_eq!(invalid(counted), ids(["update_mask"]));
    let both = RoleServiceClient::new(server.channel().await)
        .bind_role(as_user(
            pb::BindRoleRequest {
                tenant_id: tenant.id.clone(),
                user_id: tenant.owner.to_string(),
                group_id: group.group_id.clone(),
                role: "member".into(),
            },
            tenant.owner,
        ))
        .await;
    assert_eq!(invalid(both), ids(["group_id"]));
    let bad_group = owner.bind_role_to_group(&tenant, "g-1", "member").await;
    assert_eq!(invalid(bad_group), ids(["group_id"]));

    assert_eq!(server.head().await, head, "nothing invalid was written");
    assert_eq!(
        owner.get_group(&tenant, &group.group_id).await.unwrap(),
        group
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Who is in a group.

#[tokio::test]
async fn adding_and_removing_members_answers_once_for_each_user_id() {
    use GroupMemberOutcome::{Done, NotAMember, NotActive, Unchanged};
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let active = add_member(&server, &tenant, "member").await;
    let suspended = add_member(&server, &tenant, "member").await;
    let left = add_member(&server, &tenant, "member").await;
    let outside = add_member(&server, &tenant, "member").await;
    owner.suspend_member(&tenant, suspended).await.unwrap();
    api.as_user(left).leave(&tenant).await.unwrap();
    let stranger = user();
    let group = group(&api, &tenant, "Readers").await;

    // Repeats count once; a result per user id, in request order.
    let head = server.head().await;
    let added = owner
        .add_group_members(
            &tenant,
            &group.group_id,
            [active, suspended, left, stranger, active],
        )
        .await
        .unwrap();
    let expected = vec![
        (active.to_string(), Done),
        (suspended.to_string(), Done),
        (left.to_string(), NotActive),
        (stranger.to_string(), NotAMember),
    ];
    assert_eq!(outcomes(&added.results), expected);
    assert_eq!(added.group.unwrap().member_count, 2);
    let events = server
        .expect_events(
            head,
            &["group.member_added"; 2],
            added.cursor,
            Some(tenant.owner),
        )
        .await;
    let subjects: Vec<_> = events.iter().map(|e| e.subject_id.clone()).collect();
    assert_eq!(
        subjects,
        vec![Some(active.to_string()), Some(suspended.to_string())]
    );
    assert_eq!(snapshot(&events[0].after)["group_id"], group.group_id);
    assert_eq!(member_count(&owner, &tenant, &group).await, 2);

    // Already in: unchanged, and nothing written.
    let head = server.head().await;
    let again = owner
        .add_group_members(&tenant, &group.group_id, [active])
        .await
        .unwrap();
    assert_eq!(
        outcomes(&again.results),
        vec![(active.to_string(), Unchanged)]
    );
    assert_eq!(again.group.unwrap().member_count, 2);
    assert_eq!(server.head().await, head);

    // The members, by user id, with their memberships.
    let listed = owner
        .list_group_members(&tenant, &group.group_id, 0, "")
        .await
        .unwrap();
    let mut expected = vec![active.to_string(), suspended.to_string()];
    expected.sort();
    let got: Vec<String> = listed
        .memberships
        .iter()
        .map(|m| m.user_id.clone())
        .collect();
    assert_eq!(got, expected);
    let status_of = |user_id: Uuid| {
        let user_id = user_id.to_string();
        listed
            .memberships
            .iter()
            .find(|m| m.user_id == user_id)
            .unwrap()
            .status
    };
    assert_eq!(status_of(active), pb::MembershipStatus::Active as i32);
    assert_eq!(status_of(suspended), pb::MembershipStatus::Suspended as i32);

    // Removing: a member out, one who was never in unchanged.
    let removed = owner
        .remove_group_members(&tenant, &group.group_id, [active, outside, active])
        .await
        .unwrap();
    let expected = vec![(active.to_string(), Done), (outside.to_string(), Unchanged)];
    assert_eq!(outcomes(&removed.results), expected);
    assert_eq!(removed.group.unwrap().member_count, 1);
    let events = server
        .expect_events(
            head,
            &["group.member_removed"],
            removed.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(events[0].subject_id, Some(active.to_string()));
    assert_eq!(
        owner.groups_of(&tenant, active).await.unwrap(),
        Vec::<String>::new()
    );
    let suspended_in = owner.groups_of(&tenant, suspended).await.unwrap();
    assert_eq!(suspended_in, vec![group.group_id.clone()]);
    assert_eq!(member_count(&owner, &tenant, &group).await, 1);
}

/// A pending invitation shows in member lists as an INVITED member, under its invitation id
/// (it has no user id yet); named to AddGroupMembers it is NOT_ACTIVE, as the API documents
/// ("a member, but not ACTIVE or SUSPENDED (an invitation, or one who left)").
#[tokio::test]
async fn an_invitation_id_named_to_add_group_members_is_not_a_member() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let group = group(&api, &tenant, "Readers").await;
    let invitation = invite(&server, &tenant, "invitee@acme.example").await;
    let listed = server
        .members()
        .await
        .list_memberships(as_system(pb::ListMembershipsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let shown = listed
        .memberships
        .iter()
        .find(|m| m.invitation_id == invitation);
    let shown = shown.expect("the invitation in the member list");
    assert_eq!(shown.status, pb::MembershipStatus::Invited as i32);

    let head = server.head().await;
    let added = owner
        .add_group_members(&tenant, &group.group_id, [invitation.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes(&added.results),
        vec![(invitation, GroupMemberOutcome::NotAMember)]
    );
    assert_eq!(server.head().await, head);
    assert_eq!(member_count(&owner, &tenant, &group).await, 0);
}

#[tokio::test]
async fn group_members_are_listed_in_pages_and_filter_the_member_list() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let mut members = Vec::new();
    for _ in 0..7 {
        members.push(add_member(&server, &tenant, "member").await);
    }
    let (inside, outside) = members.split_at(5);
    let group = group_with(&api, &tenant, "Five", None, inside).await;
    let other = group_with(&api, &tenant, "Other", None, outside).await;
    invite(&server, &tenant, "pending@acme.example").await;
    assert_eq!(group.member_count, 5);

    // ListGroupMembers: pages of two, by user id.
    let (mut pages, mut token) = (Vec::new(), String::new());
    loop {
        let page = owner
            .list_group_members(&tenant, &group.group_id, 2, &token)
            .await
            .unwrap();
        pages.push(
            page.memberships
                .iter()
                .map(|m| m.user_id.clone())
                .collect::<Vec<_>>(),
        );
        assert!(pages.len() <= 3, "{pages:?}");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    let flat: Vec<String> = pages.concat();
    let mut sorted = flat.clone();
    sorted.sort();
    assert_eq!(flat, sorted, "ordered by user id");
    assert_eq!(ids(&flat), ids(inside));
    let refused = owner
        .list_group_members(
            &tenant,
            &other.group_id,
            2,
            &token_of_first_page(&owner, &tenant, &group).await,
        )
        .await;
    assert_refused(refused, Code::InvalidArgument, "INVALID_PAGE_TOKEN");

    // ListMemberships with group_id: exactly the group's members, the owner, the others and
    // the pending invitation left out, in one page or in many.
    assert_eq!(
        ids(listed_in_group(&server, &tenant, &group.group_id, 0).await),
        ids(inside)
    );
    let paged = listed_in_group(&server, &tenant, &group.group_id, 2).await;
    assert_eq!(paged.len(), 5);
    assert_eq!(ids(paged), ids(inside));
    assert_eq!(
        ids(listed_in_group(&server, &tenant, &other.group_id, 0).await),
        ids(outside)
    );
    // A plain member reads the same (members.read).
    let page = server
        .members()
        .await
        .list_memberships(as_user(
            pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                group_id: group.group_id.clone(),
                ..Default::default()
            },
            outside[0],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(page.memberships.iter().map(|m| &m.user_id)),
        ids(inside)
    );

    // With other filters: a status, a role.
    owner.suspend_member(&tenant, inside[1]).await.unwrap();
    owner.bind_role(&tenant, inside[2], "admin").await.unwrap();
    owner.bind_role(&tenant, outside[0], "admin").await.unwrap();
    let filtered = |status: pb::MembershipStatus, role: &str| pb::ListMembershipsRequest {
        tenant_id: tenant.id.clone(),
        group_id: group.group_id.clone(),
        status: status as i32,
        role: role.to_string(),
        ..Default::default()
    };
    let mut client = server.members().await;
    for (request, expected) in [
        (filtered(pb::MembershipStatus::Suspended, ""), inside[1]),
        (
            filtered(pb::MembershipStatus::Unspecified, "admin"),
            inside[2],
        ),
    ] {
        let page = client.list_memberships(as_system(request)).await.unwrap();
        let got = ids(page.into_inner().memberships.iter().map(|m| &m.user_id));
        assert_eq!(got, ids([expected]));
    }

    // One out: out of both lists.
    owner
        .remove_group_members(&tenant, &group.group_id, [inside[0]])
        .await
        .unwrap();
    let left = listed_in_group(&server, &tenant, &group.group_id, 0).await;
    assert_eq!(ids(left), ids(&inside[1..]));
    let page = owner
        .list_group_members(&tenant, &group.group_id, 0, "")
        .await
        .unwrap();
    assert_eq!(
        ids(page.memberships.iter().map(|m| &m.user_id)),
        ids(&inside[1..])
    );
}

async fn token_of_first_page(owner: &Caller, tenant: &Tenant, group: &pb::Group) -> String {
    let page = owner
        .list_group_members(tenant, &group.group_id, 2, "")
        .await;
    let token = page.unwrap().next_page_token;
    assert!(!token.is_empty());
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_a_thousand_members_is_one_transaction_with_one_unbroken_run_of_the_tenants_events()
{
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let busy = organization(&server, None).await;
    let api = server.api().await;
    let client = server.members().await;
    let members: Vec<Uuid> = futures::stream::iter(0..1000)
        .map(|_| {
            let mut client = client.clone();
            let request = new_member(&tenant, user(), "member");
            async move {
                client
                    .create_membership(as_system(request.clone()))
                    .await
                    .expect("adding");
                request.user_id.parse::<Uuid>().unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Added by an admin into a group holding a role: each member's rights are checked.
    let admin = add_member(&server, &tenant, "admin").await;
    let group = group_with(&api, &tenant, "Everyone", Some("member"), &[]).await;

    // Another tenant's writer commits all along.
    let head = server.head().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut client, busy_id) = (stop.clone(), client.clone(), busy.id.clone());
        let (started, writing) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let busy = Tenant {
                id: busy_id,
                owner: Uuid::nil(),
            };
            let mut started = Some(started);
            let mut written = 0;
            while !stop.load(Ordering::SeqCst) {
                let request = new_member(&busy, user(), "member");
                client
                    .create_membership(as_system(request))
                    .await
                    .expect("the other writer");
                written += 1;
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
            }
            written
        });
        writing.await.expect("the other writer started");
        task
    };
    let added = api
        .as_user(admin)
        .add_group_members(&tenant, &group.group_id, &members)
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert!(written > 0, "the other writer wrote nothing");

    assert_eq!(added.results.len(), 1000);
    assert!(
        outcomes(&added.results)
            .iter()
            .all(|(_, o)| *o == GroupMemberOutcome::Done),
        "every member added"
    );
    assert_eq!(added.group.unwrap().member_count, 1000);
    let events = server.events_after(head).await;
    let run: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.event_type == "group.member_added")
        .collect();
    assert_eq!(run.len(), 1000, "one event per member added");
    assert!(run.iter().all(|e| e.actor_id == Some(admin)));
    // One transaction: no other change of the tenant falls inside its run. Another tenant's
    // events may, on PostgreSQL: positions are given after commit in staging order, and two
    // tenants' transactions stage side by side. SQLite writes one transaction at a time, so
    // there the run is unbroken.
    let (first, last) = (run[0].position, run[999].position);
    let of_tenant_in_run = server
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM events WHERE tenant_id = {} \
             AND position BETWEEN {first} AND {last}",
            server.uuid_literal(&tenant.id)
        ))
        .await;
    assert_eq!(
        of_tenant_in_run, 1000,
        "another change of the tenant came in between"
    );
    if !server.database.is_postgres() {
        assert_eq!(last - first, 999, "another commit came in between");
    }
    assert_eq!(
        run[999].position, added.cursor,
        "the response names the last one"
    );
    assert_eq!(
        ids(run.iter().map(|e| e.subject_id.clone().unwrap())),
        ids(&members)
    );
    let listed = listed_in_group(&server, &tenant, &group.group_id, 1000).await;
    assert_eq!(ids(listed), ids(&members));
    assert_eq!(member_count(&api.as_system(), &tenant, &group).await, 1000);
}

// ---------------------------------------------------------------------------------------------
// 3. Checks through groups.

#[tokio::test]
async fn a_role_bound_to_a_group_is_held_by_each_member_and_named_as_the_grant() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let first = add_member(&server, &tenant, "member").await;
    let second = add_member(&server, &tenant, "member").await;
    let outsider = add_member(&server, &tenant, "member").await;
    let group = group_with(&api, &tenant, "Ops", None, &[first, second]).await;
    assert_eq!(
        check(&api, &tenant, first, "members.manage").await,
        NOT_GRANTED
    );

    let head = server.head().await;
    let bound = owner
        .bind_role_to_group(&tenant, &group.group_id, "admin")
        .await
        .unwrap();
    assert!(
        bound.membership.is_none(),
        "a group's binding names no member"
    );
    assert_eq!(bound.group.as_ref().unwrap().roles, vec!["admin"]);
    let events = server
        .expect_events(
            head,
            &["role_binding.created"],
            bound.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(
        events[0].subject_id,
        Some(format!("group/{}", group.group_id))
    );
    assert_eq!(snapshot(&events[0].before)["roles"], serde_json::json!([]));
    assert_eq!(
        snapshot(&events[0].after)["roles"],
        serde_json::json!(["admin"])
    );

    // Each member holds admin through the group, and the answer says so.
    for member in [first, second] {
        let (got, cursor) = check_at(&api, &tenant, member, "members.manage", 0).await;
        assert_eq!(got, through("admin", &group));
        assert!(cursor >= bound.cursor);
        let got = check(&api, &tenant, member, "groups.manage").await;
        assert_eq!(got, through("admin", &group));
    }
    assert_eq!(
        check(&api, &tenant, outsider, "members.manage").await,
        NOT_GRANTED
    );
    assert_eq!(
        check(&api, &tenant, first, "billing.manage").await,
        NOT_GRANTED
    );
    // A permission held both ways is reported as direct: the member role holds products.use.
    assert_eq!(
        check(&api, &tenant, first, "products.use").await,
        direct("member")
    );
    // So is one a role bound to the member directly holds as well as the group's.
    owner.bind_role(&tenant, second, "admin").await.unwrap();
    assert_eq!(
        check(&api, &tenant, second, "members.manage").await,
        direct("admin")
    );
    assert_eq!(
        check(&api, &tenant, first, "members.manage").await,
        through("admin", &group)
    );

    // The batch form names the same bindings.
    let batch = RoleServiceClient::new(server.channel().await)
        .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
            checks: ["members.manage", "products.use", "billing.manage"]
                .iter()
                .map(|p| pb::PermissionCheck {
                    tenant_id: tenant.id.clone(),
                    user_id: first.to_string(),
                    permission: p.to_string(),
                })
                .collect(),
            min_cursor: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<Answer> = batch
        .results
        .into_iter()
        .map(|r| answer(r.allowed, r.reason, r.granted_by))
        .collect();
    assert_eq!(
        got,
        vec![through("admin", &group), direct("member"), NOT_GRANTED]
    );

    // Bound again, or unbinding a role it does not hold: nothing changes. An unknown role is
    // not found.
    let head = server.head().await;
    let again = owner
        .bind_role_to_group(&tenant, &group.group_id, "admin")
        .await
        .unwrap();
    assert_eq!(again.group.unwrap().roles, vec!["admin"]);
    let not_bound = owner
        .unbind_role_from_group(&tenant, &group.group_id, "member")
        .await
        .unwrap();
    assert_eq!(not_bound.group.unwrap().roles, vec!["admin"]);
    let unknown = owner
        .bind_role_to_group(&tenant, &group.group_id, "wizard")
        .await;
    assert_refused(unknown, Code::NotFound, "ROLE_NOT_FOUND");
    assert_eq!(server.head().await, head);
    let unbound = owner
        .unbind_role_from_group(&tenant, &group.group_id, "admin")
        .await
        .unwrap();
    assert!(unbound.group.unwrap().roles.is_empty());
    server
        .expect_events(
            head,
            &["role_binding.deleted"],
            unbound.cursor,
            Some(tenant.owner),
        )
        .await;
    let (got, cursor) = check_at(&api, &tenant, first, "members.manage", 0).await;
    assert_eq!(got, NOT_GRANTED);
    assert!(cursor >= unbound.cursor);
    assert_eq!(
        check(&api, &tenant, second, "members.manage").await,
        direct("admin")
    );
}

/// For each role of `roles`, a group holding it and a member holding nothing else: a check of
/// every permission of the catalog grants exactly the role's, each through that group.
/// Returns (role, member, group).
async fn assert_matrix_through_groups(
    server: &TestServer,
    tenant: &Tenant,
    roles: &[(&str, &[&str])],
) -> Vec<(String, Uuid, pb::Group)> {
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let mut reached = Vec::new();
    for (role, permissions) in roles {
        let member = add_member(server, tenant, "member").await;
        owner.unbind_role(tenant, member, "member").await.unwrap();
        let group = group_with(
            &api,
            tenant,
            &format!("{role} group"),
            Some(role),
            &[member],
        )
        .await;
        for permission in CATALOG {
            let expected = if permissions.contains(&permission) {
                through(role, &group)
            } else {
                NOT_GRANTED
            };
            let got = check(&api, tenant, member, permission).await;
            assert_eq!(got, expected, "{role} through a group, {permission}");
        }
        reached.push((role.to_string(), member, group));
    }
    reached
}

#[tokio::test]
async fn the_organization_roles_grant_exactly_their_permissions_through_a_group() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let reached = assert_matrix_through_groups(&server, &tenant, ORGANIZATION_ROLES).await;
    let (admin, member) = (reached[0].1, reached[1].1);
    let plain = add_member(&server, &tenant, "member").await;

    // An admin through a group acts as an admin: manages members and groups…
    let as_admin = api.as_user(admin);
    let suspended = as_admin.suspend_member(&tenant, plain).await.unwrap();
    let status = suspended.membership.unwrap().status;
    assert_eq!(status, pb::MembershipStatus::Suspended as i32);
    as_admin.reactivate_member(&tenant, plain).await.unwrap();
    as_admin
        .create_group(&tenant, "Made by an admin")
        .await
        .unwrap();
    // …but not the owner, and makes nobody an admin.
    denied_for(
        as_admin.suspend_member(&tenant, tenant.owner).await,
        "admins.manage",
    );
    denied_for(
        as_admin.bind_role(&tenant, plain, "admin").await,
        "admins.manage",
    );
    // A member through a group manages nothing.
    let as_member = api.as_user(member);
    denied_for(
        as_member.suspend_member(&tenant, plain).await,
        "members.manage",
    );
    denied_for(
        as_member.create_group(&tenant, "Mine").await,
        "groups.manage",
    );
}

#[tokio::test]
async fn the_enterprise_roles_grant_exactly_their_permissions_through_a_group() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let api = server.api().await;
    let reached = assert_matrix_through_groups(&server, &tenant, ENTERPRISE_ROLES).await;
    let (finance, finance_group) = (reached[0].1, &reached[0].2);
    let (dev, dev_group) = (reached[1].1, &reached[1].2);
    assert_eq!(
        check(&api, &tenant, finance, "billing.manage").await,
        through("finance_admin", finance_group)
    );
    assert_eq!(
        check(&api, &tenant, finance, "apps.manage").await,
        NOT_GRANTED
    );
    assert_eq!(
        check(&api, &tenant, dev, "apps.manage").await,
        through("dev_admin", dev_group)
    );
    assert_eq!(
        check(&api, &tenant, dev, "billing.manage").await,
        NOT_GRANTED
    );

    // Only the super admin manages groups; a finance or dev admin through a group does not.
    let plain = add_member(&server, &tenant, "member").await;
    for actor in [finance, dev] {
        let caller = api.as_user(actor);
        denied_for(caller.create_group(&tenant, "Mine").await, "groups.manage");
        let added = caller
            .add_group_members(&tenant, &dev_group.group_id, [plain])
            .await;
        denied_for(added, "groups.manage");
        denied_for(
            caller.suspend_member(&tenant, plain).await,
            "members.manage",
        );
    }
    // A member added to both groups holds both roles' permissions, each through its group.
    let owner = api.as_user(tenant.owner);
    for group in [finance_group, dev_group] {
        owner
            .add_group_members(&tenant, &group.group_id, [plain])
            .await
            .unwrap();
    }
    assert_eq!(
        check(&api, &tenant, plain, "billing.manage").await,
        through("finance_admin", finance_group)
    );
    assert_eq!(
        check(&api, &tenant, plain, "logs.read").await,
        through("dev_admin", dev_group)
    );
    assert_eq!(
        check(&api, &tenant, plain, "products.use").await,
        direct("member")
    );
    assert_eq!(
        check(&api, &tenant, plain, "groups.manage").await,
        NOT_GRANTED
    );
}

#[tokio::test]
async fn bindings_to_members_and_to_groups_are_listed_together_in_pages() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let first = add_member(&server, &tenant, "member").await;
    let second = add_member(&server, &tenant, "member").await;
    let readers = group_with(&api, &tenant, "Readers", Some("member"), &[first]).await;
    let admins = group_with(&api, &tenant, "Admins", Some("member"), &[]).await;
    api.as_user(tenant.owner)
        .bind_role_to_group(&tenant, &admins.group_id, "admin")
        .await
        .unwrap();
    let mut roles = RoleServiceClient::new(server.channel().await);
    let request = |group_id: &str, role: &str, page_size: i32, page_token: String| {
        as_system(pb::ListRoleBindingsRequest {
            tenant_id: tenant.id.clone(),
            group_id: group_id.to_string(),
            role: role.to_string(),
            page_size,
            page_token,
            ..Default::default()
        })
    };
    let key = |b: &pb::RoleBinding| (b.user_id.clone(), b.group_id.clone(), b.role.clone());

    // Pages of two over three bindings to members and three to groups: each exactly once.
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = roles
            .list_role_bindings(request("", "", 2, token))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(
            page.bindings.len() <= 2 && pages <= 4,
            "page {pages}: {page:?}"
        );
        for binding in &page.bindings {
            assert!(
                binding.user_id.is_empty() != binding.group_id.is_empty(),
                "exactly one subject: {binding:?}"
            );
        }
        seen.extend(page.bindings.iter().map(key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let user = |id: Uuid, role: &str| (id.to_string(), String::new(), role.to_string());
    let group = |g: &pb::Group, role: &str| (String::new(), g.group_id.clone(), role.to_string());
    let expected: BTreeSet<_> = [
        user(tenant.owner, "owner"),
        user(first, "member"),
        user(second, "member"),
        group(&readers, "member"),
        group(&admins, "member"),
        group(&admins, "admin"),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);

    // By role, across both kinds; by group.
    let members = roles
        .list_role_bindings(request("", "member", 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.bindings.len(), 4);
    let of_admins = roles
        .list_role_bindings(request(&admins.group_id, "", 1, String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_admins.bindings.len(), 1);
    let rest = roles
        .list_role_bindings(request(
            &admins.group_id,
            "",
            1,
            of_admins.next_page_token.clone(),
        ))
        .await
        .unwrap()
        .into_inner();
    let both: BTreeSet<_> = of_admins
        .bindings
        .iter()
        .chain(&rest.bindings)
        .map(key)
        .collect();
    assert_eq!(
        both,
        ids_of([group(&admins, "admin"), group(&admins, "member")])
    );
    assert!(rest.next_page_token.is_empty());
    // By user: their own bindings only, not their groups'.
    let of_first = roles
        .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
            tenant_id: tenant.id.clone(),
            user_id: first.to_string(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        of_first.bindings.iter().map(key).collect::<Vec<_>>(),
        vec![user(first, "member")]
    );
    // A user and a group at once is refused.
    let refused = roles
        .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
            tenant_id: tenant.id.clone(),
            user_id: first.to_string(),
            group_id: readers.group_id.clone(),
            ..Default::default()
        }))
        .await;
    assert_eq!(invalid(refused), ids(["group_id"]));
}

fn ids_of<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    items.into_iter().collect()
}

#[tokio::test]
async fn deleting_a_custom_role_bound_to_a_group_unbinds_it_there_too() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    owner
        .create_role(&tenant, "auditor", &["audit_logs.read"])
        .await
        .unwrap();
    let in_group = add_member(&server, &tenant, "member").await;
    let bound_directly = add_member(&server, &tenant, "member").await;
    let group = group_with(&api, &tenant, "Auditors", Some("auditor"), &[in_group]).await;
    owner
        .bind_role(&tenant, bound_directly, "auditor")
        .await
        .unwrap();
    let granted = check(&api, &tenant, in_group, "audit_logs.read").await;
    assert_eq!(granted, through("auditor", &group));
    let mut roles = RoleServiceClient::new(server.channel().await);
    let delete = |unbind_everywhere: bool| {
        as_user(
            pb::DeleteRoleRequest {
                tenant_id: tenant.id.clone(),
                role: "auditor".into(),
                unbind_everywhere,
            },
            tenant.owner,
        )
    };

    // In use by a member and a group: both count.
    let head = server.head().await;
    let status = assert_refused(
        roles.delete_role(delete(false)).await,
        Code::FailedPrecondition,
        "ROLE_IN_USE",
    );
    let info = tonic_types::StatusExt::get_details_error_info(&status).unwrap();
    assert_eq!(info.metadata.get("bindings").map(String::as_str), Some("2"));
    assert_eq!(server.head().await, head);

    // Unbound everywhere: from the group and the member, an event each, then the role.
    let deleted = roles.delete_role(delete(true)).await.unwrap().into_inner();
    assert_eq!(deleted.unbound_count, 2);
    let events = server
        .expect_events(
            head,
            &[
                "role_binding.deleted",
                "role_binding.deleted",
                "role.deleted",
            ],
            deleted.cursor,
            Some(tenant.owner),
        )
        .await;
    let subjects: BTreeSet<_> = events[..2].iter().map(|e| e.subject_id.clone()).collect();
    let expected = ids_of([
        Some(format!("group/{}", group.group_id)),
        Some(bound_directly.to_string()),
    ]);
    assert_eq!(subjects, expected);
    let after = owner.get_group(&tenant, &group.group_id).await.unwrap();
    assert!(after.roles.is_empty(), "{after:?}");
    assert_eq!(after.member_count, 1);
    for member in [in_group, bound_directly] {
        let (got, cursor) = check_at(&api, &tenant, member, "audit_logs.read", 0).await;
        assert_eq!(got, NOT_GRANTED);
        assert!(cursor >= deleted.cursor);
    }
}

#[tokio::test]
async fn group_changes_reach_watchers_with_the_group_or_the_link_as_their_state() {
    use pb::event_state::State;
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let member = add_member(&server, &tenant, "member").await;
    let mut stream = watch(&server, watch_after(server.head().await)).await;

    let group = group(&api, &tenant, "Ops").await;
    owner
        .bind_role_to_group(&tenant, &group.group_id, "admin")
        .await
        .unwrap();
    owner
        .add_group_members(&tenant, &group.group_id, [member])
        .await
        .unwrap();
    let renamed = pb::Group {
        name: "Ops Team".into(),
        ..owner.get_group(&tenant, &group.group_id).await.unwrap()
    };
    owner.update_group(renamed, &["name"]).await.unwrap();
    owner
        .delete_group(&tenant, &group.group_id, "", false)
        .await
        .unwrap();

    let state = |s: &Option<pb::EventState>| s.as_ref().and_then(|s| s.state.clone());
    let as_group = |s: Option<State>| match s {
        Some(State::Group(g)) => (g.name, g.roles, g.group_id),
        other => panic!("expected a group, got {other:?}"),
    };
    let as_link = |s: Option<State>| match s {
        Some(State::GroupMember(l)) => (l.group_id, l.user_id, l.group_name),
        other => panic!("expected a group member, got {other:?}"),
    };
    let (id, group_subject) = (group.group_id.clone(), format!("group/{}", group.group_id));
    let link = |name: &str| (id.clone(), member.to_string(), name.to_string());
    let named = |name: &str, roles: &[&str]| {
        let roles = roles.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        (name.to_string(), roles, id.clone())
    };

    let created = next_event(&mut stream).await;
    assert_eq!(created.r#type, "group.created");
    assert_eq!(created.subject_id, group_subject);
    assert_eq!(created.actor_id, tenant.owner.to_string());
    assert!(state(&created.before).is_none());
    assert_eq!(as_group(state(&created.after)), named("Ops", &[]));
    let bound = next_event(&mut stream).await;
    assert_eq!(bound.r#type, "role_binding.created");
    assert_eq!(bound.subject_id, group_subject);
    assert_eq!(as_group(state(&bound.before)), named("Ops", &[]));
    assert_eq!(as_group(state(&bound.after)), named("Ops", &["admin"]));
    let added = next_event(&mut stream).await;
    assert_eq!(added.r#type, "group.member_added");
    assert_eq!(added.subject_id, member.to_string());
    assert_eq!(as_link(state(&added.after)), link("Ops"));
    let updated = next_event(&mut stream).await;
    assert_eq!(updated.r#type, "group.updated");
    assert_eq!(as_group(state(&updated.before)).0, "Ops");
    assert_eq!(as_group(state(&updated.after)).0, "Ops Team");

    // The deletion: the binding, the link, the group, in that order.
    let unbound = next_event(&mut stream).await;
    assert_eq!(unbound.r#type, "role_binding.deleted");
    assert_eq!(as_group(state(&unbound.after)), named("Ops Team", &[]));
    let unlinked = next_event(&mut stream).await;
    assert_eq!(unlinked.r#type, "group.member_removed");
    assert_eq!(as_link(state(&unlinked.before)), link("Ops Team"));
    assert!(state(&unlinked.after).is_none());
    let deleted = next_event(&mut stream).await;
    assert_eq!(deleted.r#type, "group.deleted");
    assert_eq!(
        as_group(state(&deleted.before)),
        named("Ops Team", &["admin"])
    );
    assert!(state(&deleted.after).is_none());
}

// ---------------------------------------------------------------------------------------------
// 4. No escalation through groups.

#[tokio::test]
async fn an_admin_can_neither_gain_nor_hand_out_admin_rights_through_a_group() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let admin = add_member(&server, &tenant, "admin").await;
    let other_admin = add_member(&server, &tenant, "admin").await;
    let plain = add_member(&server, &tenant, "member").await;
    let hopeful = add_member(&server, &tenant, "member").await;
    owner
        .create_role(&tenant, "billing", &["billing.manage"])
        .await
        .unwrap();
    let as_admin = api.as_user(admin);
    // An admin manages groups (groups.manage)…
    let team = as_admin
        .create_group(&tenant, "Team")
        .await
        .unwrap()
        .group
        .unwrap();
    let admins = group_with(&api, &tenant, "Admins", Some("admin"), &[]).await;
    let mixed = group_with(&api, &tenant, "Mixed", None, &[other_admin]).await;

    let head = server.head().await;
    // …but binding admin to a group is binding it to a member: admins.manage.
    let refused = as_admin
        .bind_role_to_group(&tenant, &team.group_id, "admin")
        .await;
    denied_for(refused, "admins.manage");
    // Nor a role holding a permission the admin lacks.
    let refused = as_admin
        .bind_role_to_group(&tenant, &team.group_id, "billing")
        .await;
    denied_for(refused, "billing.manage");
    // Binding even `member` to a group with an admin in it acts on that admin.
    let refused = as_admin
        .bind_role_to_group(&tenant, &mixed.group_id, "member")
        .await;
    denied_for(refused, "admins.manage");
    // Nobody joins a group bound to admin through an admin, the admin themselves included;
    // nor does the admin unbind admin from it or delete it.
    for joining in [hopeful, admin] {
        let refused = as_admin
            .add_group_members(&tenant, &admins.group_id, [joining])
            .await;
        denied_for(refused, "admins.manage");
    }
    let refused = as_admin
        .unbind_role_from_group(&tenant, &admins.group_id, "admin")
        .await;
    denied_for(refused, "admins.manage");
    let refused = as_admin
        .delete_group(&tenant, &admins.group_id, "", false)
        .await;
    denied_for(refused, "admins.manage");
    assert_eq!(
        server.head().await,
        head,
        "no refused attempt wrote anything"
    );

    // A group holding a role: the admin adds plain members, not the owner or another admin;
    // one refused id refuses the whole call.
    as_admin
        .bind_role_to_group(&tenant, &team.group_id, "member")
        .await
        .expect("an admin grants member");
    let head = server.head().await;
    for target in [tenant.owner, other_admin] {
        let refused = as_admin
            .add_group_members(&tenant, &team.group_id, [target])
            .await;
        denied_for(refused, "admins.manage");
    }
    let refused = as_admin
        .add_group_members(&tenant, &team.group_id, [plain, other_admin])
        .await;
    denied_for(refused, "admins.manage");
    assert_eq!(server.head().await, head);
    assert_eq!(member_count(&owner, &tenant, &team).await, 0);
    assert_eq!(
        owner.groups_of(&tenant, plain).await.unwrap(),
        Vec::<String>::new()
    );
    as_admin
        .add_group_members(&tenant, &team.group_id, [plain])
        .await
        .expect("an admin adds a plain member");
    // Taking an admin out of a group holding a role acts on them too.
    owner
        .add_group_members(&tenant, &team.group_id, [other_admin])
        .await
        .unwrap();
    let head = server.head().await;
    let refused = as_admin
        .remove_group_members(&tenant, &team.group_id, [other_admin])
        .await;
    denied_for(refused, "admins.manage");
    assert_eq!(server.head().await, head);

    // Whatever was refused, nobody holds more than before.
    for (user_id, permission) in [
        (hopeful, "members.manage"),
        (admin, "admins.manage"),
        (plain, "members.manage"),
        (admin, "billing.manage"),
    ] {
        assert_eq!(check(&api, &tenant, user_id, permission).await, NOT_GRANTED);
    }
    assert_eq!(
        check(&api, &tenant, plain, "products.use").await,
        direct("member")
    );
}

#[tokio::test]
async fn only_group_managers_change_groups_and_no_group_holds_the_owner_role() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let ent = enterprise(&server, None).await;
    let personal = create_tenant(
        &server,
        pb::TenantKind::Personal,
        pb::RolePreset::Organization,
        None,
    )
    .await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let plain = add_member(&server, &tenant, "member").await;
    let ent_group = group(&api, &ent, "Team").await;
    let group = group_with(&api, &tenant, "Team", Some("member"), &[]).await;

    // A plain member reads groups but changes none (groups.manage).
    let head = server.head().await;
    let as_plain = api.as_user(plain);
    as_plain.get_group(&tenant, &group.group_id).await.unwrap();
    let listed = as_plain
        .list_groups(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.groups.len(), 1);
    as_plain
        .list_group_members(&tenant, &group.group_id, 0, "")
        .await
        .unwrap();
    denied_for(
        as_plain.create_group(&tenant, "Mine").await,
        "groups.manage",
    );
    let renamed = pb::Group {
        name: "Renamed".into(),
        ..group.clone()
    };
    denied_for(
        as_plain.update_group(renamed, &["name"]).await,
        "groups.manage",
    );
    let added = as_plain
        .add_group_members(&tenant, &group.group_id, [plain])
        .await;
    denied_for(added, "groups.manage");
    let removed = as_plain
        .remove_group_members(&tenant, &group.group_id, [plain])
        .await;
    denied_for(removed, "groups.manage");
    let bound = as_plain
        .bind_role_to_group(&tenant, &group.group_id, "member")
        .await;
    denied_for(bound, "groups.manage");
    denied_for(
        as_plain
            .delete_group(&tenant, &group.group_id, "", false)
            .await,
        "groups.manage",
    );

    // The owner role is never a group's: not for the owner, not for a system caller.
    for caller in [owner, api.as_system()] {
        let refused = caller
            .bind_role_to_group(&tenant, &group.group_id, "owner")
            .await;
        assert_refused(refused, Code::FailedPrecondition, "OWNER_ROLE_RESERVED");
        let refused = caller
            .unbind_role_from_group(&tenant, &group.group_id, "owner")
            .await;
        assert_refused(refused, Code::FailedPrecondition, "OWNER_ROLE_RESERVED");
    }
    let refused = api
        .as_user(ent.owner)
        .bind_role_to_group(&ent, &ent_group.group_id, "super_admin")
        .await;
    assert_refused(refused, Code::FailedPrecondition, "OWNER_ROLE_RESERVED");
    assert_eq!(server.head().await, head);
    let unchanged = api.as_system().get_group(&tenant, &group.group_id).await;
    assert_eq!(unchanged.unwrap().roles, vec!["member"]);

    // Groups are for enterprise tenants.
    let refused = api
        .as_user(personal.owner)
        .create_group(&personal, "Family")
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE");

    // The catalog names groups.manage, described.
    let catalog = RoleServiceClient::new(server.channel().await)
        .list_permissions(as_system(pb::ListPermissionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .permissions;
    let groups_manage = catalog.iter().find(|p| p.name == "groups.manage");
    let groups_manage = groups_manage.expect("groups.manage in the catalog");
    assert!(!groups_manage.description.trim().is_empty());
    assert_eq!(ids(catalog.iter().map(|p| &p.name)), ids(CATALOG));
}

#[tokio::test]
async fn an_admin_cannot_act_on_someone_who_is_an_admin_through_a_group() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let admin = add_member(&server, &tenant, "admin").await;
    let via_group = add_member(&server, &tenant, "member").await;
    let group = group_with(&api, &tenant, "Admins", Some("admin"), &[via_group]).await;
    let as_admin = api.as_user(admin);

    let head = server.head().await;
    denied_for(
        as_admin.suspend_member(&tenant, via_group).await,
        "admins.manage",
    );
    denied_for(
        as_admin.remove_member(&tenant, via_group).await,
        "admins.manage",
    );
    let demoted = as_admin.set_member_role(&tenant, via_group, "member").await;
    denied_for(demoted, "admins.manage");
    denied_for(
        as_admin.bind_role(&tenant, via_group, "member").await,
        "admins.manage",
    );
    let renamed = server
        .members()
        .await
        .update_membership(as_user(
            update_membership(
                pb::Membership {
                    tenant_id: tenant.id.clone(),
                    user_id: via_group.to_string(),
                    display_name: "Renamed".into(),
                    ..Default::default()
                },
                &["display_name"],
            ),
            admin,
        ))
        .await;
    denied_for(renamed, "admins.manage");
    let taken_out = as_admin
        .remove_group_members(&tenant, &group.group_id, [via_group])
        .await;
    denied_for(taken_out, "admins.manage");
    assert_eq!(
        server.head().await,
        head,
        "no refused attempt wrote anything"
    );
    let still = check(&api, &tenant, via_group, "members.manage").await;
    assert_eq!(still, through("admin", &group));

    // The owner may.
    let owner = api.as_user(tenant.owner);
    owner.suspend_member(&tenant, via_group).await.unwrap();
    owner.reactivate_member(&tenant, via_group).await.unwrap();
    owner
        .remove_group_members(&tenant, &group.group_id, [via_group])
        .await
        .unwrap();
    // Out of the group, a plain member again: the admin manages them.
    as_admin.suspend_member(&tenant, via_group).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Suspension, removal, leaving, dissolution and deletion.

#[tokio::test]
async fn a_suspended_member_is_denied_whatever_their_groups_hold() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let member = add_member(&server, &tenant, "member").await;
    let group = group_with(&api, &tenant, "Admins", Some("admin"), &[member]).await;
    let granted = check(&api, &tenant, member, "members.manage").await;
    assert_eq!(granted, through("admin", &group));

    let suspended = owner.suspend_member(&tenant, member).await.unwrap();
    for permission in ["members.manage", "groups.manage", "products.use"] {
        let (got, cursor) = check_at(&api, &tenant, member, permission, 0).await;
        assert_eq!(
            got,
            denied(CheckReason::MembershipSuspended),
            "{permission}"
        );
        assert!(cursor >= suspended.cursor);
    }
    // Nor can they act on what the group holds.
    let refused = api.as_user(member).create_group(&tenant, "Mine").await;
    assert_refused(refused, Code::PermissionDenied, "NOT_A_MEMBER");
    // Still in the group (a suspended member keeps their place), and a group binding made
    // while suspended grants nothing either.
    let still_in = owner.groups_of(&tenant, member).await.unwrap();
    assert_eq!(still_in, vec![group.group_id.clone()]);
    let other = group_with(&api, &tenant, "Apps", None, &[member]).await;
    let bound = owner
        .bind_role_to_group(&tenant, &other.group_id, "member")
        .await
        .unwrap();
    let (got, cursor) = check_at(&api, &tenant, member, "products.use", 0).await;
    assert_eq!(got, denied(CheckReason::MembershipSuspended));
    assert!(cursor >= bound.cursor);

    // Reactivated: the same grants as before, through the same group.
    let reactivated = owner.reactivate_member(&tenant, member).await.unwrap();
    let (got, cursor) = check_at(&api, &tenant, member, "members.manage", 0).await;
    assert_eq!(got, through("admin", &group));
    assert!(cursor >= reactivated.cursor);
}

#[tokio::test]
async fn removal_and_leaving_take_a_member_out_of_every_group() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let removed = add_member(&server, &tenant, "member").await;
    let leaver = add_member(&server, &tenant, "member").await;
    let stays = add_member(&server, &tenant, "member").await;
    let one = group_with(
        &api,
        &tenant,
        "One",
        Some("admin"),
        &[removed, leaver, stays],
    )
    .await;
    let two = group_with(&api, &tenant, "Two", None, &[removed, leaver]).await;
    let both = ids([&one.group_id, &two.group_id]);
    let groups_in = |events: &[StoredEvent]| -> BTreeSet<String> {
        let links = events
            .iter()
            .filter(|e| e.event_type == "group.member_removed");
        links
            .map(|e| {
                snapshot(&e.before)["group_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };

    // Removed: out of both groups in the removal's transaction, an event each.
    let head = server.head().await;
    let deleted = owner.remove_member(&tenant, removed).await.unwrap();
    let events = server
        .expect_events(
            head,
            &[
                "group.member_removed",
                "group.member_removed",
                "membership.deleted",
            ],
            deleted.cursor,
            Some(tenant.owner),
        )
        .await;
    assert!(
        events
            .iter()
            .all(|e| e.subject_id == Some(removed.to_string()))
    );
    assert_eq!(groups_in(&events), both);
    assert_eq!(
        owner.groups_of(&tenant, removed).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(member_count(&owner, &tenant, &one).await, 2);
    assert_eq!(member_count(&owner, &tenant, &two).await, 1);
    let listed = listed_in_group(&server, &tenant, &one.group_id, 0).await;
    assert_eq!(ids(listed), ids([leaver, stays]));
    let got = check(&api, &tenant, removed, "members.manage").await;
    assert_eq!(got, denied(CheckReason::NotAMember));

    // Left: the same, by their own hand.
    let head = server.head().await;
    let left = api.as_user(leaver).leave(&tenant).await.unwrap();
    let events = server
        .expect_events(
            head,
            &[
                "group.member_removed",
                "group.member_removed",
                "membership.left",
            ],
            left.cursor,
            Some(leaver),
        )
        .await;
    assert_eq!(groups_in(&events), both);
    assert_eq!(
        owner.groups_of(&tenant, leaver).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(member_count(&owner, &tenant, &one).await, 1);
    assert_eq!(member_count(&owner, &tenant, &two).await, 0);
    let got = check(&api, &tenant, leaver, "members.manage").await;
    assert_eq!(got, denied(CheckReason::MembershipLeft));
    let page = owner
        .list_group_members(&tenant, &two.group_id, 0, "")
        .await;
    assert!(page.unwrap().memberships.is_empty());

    // Back in the tenant, the removed member is in no group and holds nothing of theirs.
    server
        .members()
        .await
        .create_membership(as_system(new_member(&tenant, removed, "member")))
        .await
        .unwrap();
    assert_eq!(
        owner.groups_of(&tenant, removed).await.unwrap(),
        Vec::<String>::new()
    );
    let got = check(&api, &tenant, removed, "members.manage").await;
    assert_eq!(got, NOT_GRANTED);
    assert_eq!(
        check(&api, &tenant, stays, "members.manage").await,
        through("admin", &one)
    );
}

#[tokio::test]
async fn dissolving_a_tenant_takes_everyone_out_of_every_group() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let first = add_member(&server, &tenant, "member").await;
    let second = add_member(&server, &tenant, "member").await;
    let group = group_with(&api, &tenant, "All", Some("admin"), &[first, second]).await;

    let head = server.head().await;
    api.as_user(tenant.owner)
        .dissolve_tenant(&tenant)
        .await
        .unwrap();
    let events = server.events_after(head).await;
    let unlinked: Vec<Option<String>> = events
        .iter()
        .filter(|e| e.event_type == "group.member_removed")
        .map(|e| e.subject_id.clone())
        .collect();
    assert_eq!(ids(unlinked.into_iter().flatten()), ids([first, second]));
    let system = api.as_system();
    for member in [first, second] {
        assert_eq!(
            system.groups_of(&tenant, member).await.unwrap(),
            Vec::<String>::new()
        );
    }
    assert_eq!(member_count(&system, &tenant, &group).await, 0);
    let links = server
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM group_members WHERE group_id = {}",
            server.uuid_literal(&group.group_id)
        ))
        .await;
    assert_eq!(links, 0);
    // Nothing changes in a dissolved tenant's groups.
    let refused = system.create_group(&tenant, "Late").await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_DISSOLVED");
    let refused = system
        .add_group_members(&tenant, &group.group_id, [first])
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_DISSOLVED");
    let refused = system
        .delete_group(&tenant, &group.group_id, "", false)
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_DISSOLVED");
}

#[tokio::test]
async fn deleting_a_group_takes_its_permissions_away_at_the_next_check() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let first = add_member(&server, &tenant, "member").await;
    let second = add_member(&server, &tenant, "member").await;
    let group = group_with(&api, &tenant, "Admins", Some("admin"), &[first, second]).await;
    let granted = check(&api, &tenant, first, "members.manage").await;
    assert_eq!(granted, through("admin", &group));

    // validate_only: checked, nothing changes.
    let head = server.head().await;
    owner
        .delete_group(&tenant, &group.group_id, &group.etag, true)
        .await
        .expect("validated");
    assert_eq!(server.head().await, head);
    assert_eq!(
        owner.get_group(&tenant, &group.group_id).await.unwrap(),
        group
    );
    assert_eq!(check(&api, &tenant, first, "members.manage").await, granted);
    let in_group = listed_in_group(&server, &tenant, &group.group_id, 0).await;
    assert_eq!(ids(in_group), ids([first, second]));
    // validate_only still refuses what the deletion would refuse.
    let stale = owner
        .delete_group(&tenant, &group.group_id, "\"stale\"", true)
        .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");
    let as_admin = api.as_user(add_member(&server, &tenant, "admin").await);
    let head = server.head().await;
    let refused = as_admin
        .delete_group(&tenant, &group.group_id, "", true)
        .await;
    denied_for(refused, "admins.manage");

    // Deleted: its binding and links go with it, an event each, and the next check denies.
    let deleted = owner
        .delete_group(&tenant, &group.group_id, &group.etag, false)
        .await
        .unwrap();
    let events = server
        .expect_events(
            head,
            &[
                "role_binding.deleted",
                "group.member_removed",
                "group.member_removed",
                "group.deleted",
            ],
            deleted.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(
        events[0].subject_id,
        Some(format!("group/{}", group.group_id))
    );
    for member in [first, second] {
        let (got, cursor) = check_at(&api, &tenant, member, "members.manage", 0).await;
        assert_eq!(got, NOT_GRANTED);
        assert!(cursor >= deleted.cursor);
        assert_eq!(
            check(&api, &tenant, member, "products.use").await,
            direct("member")
        );
        assert_eq!(
            owner.groups_of(&tenant, member).await.unwrap(),
            Vec::<String>::new()
        );
    }
    let gone = owner.get_group(&tenant, &group.group_id).await;
    assert_refused(gone, Code::NotFound, "GROUP_NOT_FOUND");
    let bindings = RoleServiceClient::new(server.channel().await)
        .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
            tenant_id: tenant.id.clone(),
            role: "admin".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .bindings;
    assert!(
        bindings.iter().all(|b| b.group_id.is_empty()),
        "{bindings:?}"
    );
    for table in ["group_members", "group_role_bindings"] {
        let rows = server
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE group_id = {}",
                server.uuid_literal(&group.group_id)
            ))
            .await;
        assert_eq!(rows, 0, "{table}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Two replicas over one database.

#[tokio::test]
async fn a_group_change_through_one_replica_holds_on_another_at_its_cursor() {
    let a = TestServer::start().await;
    let b = TestServer::start_shared(a.database.clone(), test_options()).await;
    let tenant = organization(&a, None).await;
    let member = add_member(&a, &tenant, "member").await;
    let (api_a, api_b) = (a.api().await, b.api().await);
    let owner_a = api_a.as_user(tenant.owner);
    let group = group_with(&api_a, &tenant, "Admins", None, &[member]).await;
    // Warm B.
    for _ in 0..2 {
        assert_eq!(
            check(&api_b, &tenant, member, "members.manage").await,
            NOT_GRANTED
        );
    }

    // A binding through A: B grants at its cursor, through the group.
    let bound = owner_a
        .bind_role_to_group(&tenant, &group.group_id, "admin")
        .await
        .unwrap();
    let (got, cursor) = check_at(&api_b, &tenant, member, "members.manage", bound.cursor).await;
    assert_eq!(got, through("admin", &group));
    assert!(cursor >= bound.cursor);
    assert_eq!(
        check(&api_b, &tenant, member, "members.manage").await,
        through("admin", &group)
    );

    // The group deleted through A: B denies at the deletion's cursor.
    let deleted = owner_a
        .delete_group(&tenant, &group.group_id, "", false)
        .await
        .unwrap();
    let (got, cursor) = check_at(&api_b, &tenant, member, "members.manage", deleted.cursor).await;
    assert_eq!(got, NOT_GRANTED);
    assert!(cursor >= deleted.cursor);
    let gone = api_b.as_system().get_group(&tenant, &group.group_id).await;
    assert_refused(gone, Code::NotFound, "GROUP_NOT_FOUND");

    // Membership of a group moves on B at the cursor too: in, then out.
    let admins = group_with(&api_a, &tenant, "Admins again", Some("admin"), &[]).await;
    assert_eq!(
        check(&api_b, &tenant, member, "members.manage").await,
        NOT_GRANTED
    );
    let added = owner_a
        .add_group_members(&tenant, &admins.group_id, [member])
        .await
        .unwrap();
    let (got, _) = check_at(&api_b, &tenant, member, "members.manage", added.cursor).await;
    assert_eq!(got, through("admin", &admins));
    let removed = owner_a
        .remove_group_members(&tenant, &admins.group_id, [member])
        .await
        .unwrap();
    let (got, cursor) = check_at(&api_b, &tenant, member, "members.manage", removed.cursor).await;
    assert_eq!(got, NOT_GRANTED);
    assert!(cursor >= removed.cursor);
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Races.

/// Rounds of each race: enough for both orders to come up on two cores.
const ROUNDS: usize = 8;

/// Runs `first` and `second` at the same moment, on two tasks.
async fn race<A, B>(
    first: impl Future<Output = A> + Send + 'static,
    second: impl Future<Output = B> + Send + 'static,
) -> (A, B)
where
    A: Send + 'static,
    B: Send + 'static,
{
    let start = Arc::new(Barrier::new(2));
    let (a, b) = (start.clone(), start);
    let first = tokio::spawn(async move {
        a.wait().await;
        first.await
    });
    let second = tokio::spawn(async move {
        b.wait().await;
        second.await
    });
    (first.await.unwrap(), second.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_members_while_the_group_is_deleted_leaves_no_link_or_permission_behind() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(add_member(&server, &tenant, "member").await);
    }
    let (mut added_first, mut deleted_first) = (0, 0);
    for round in 0..ROUNDS {
        let group = group_with(&api, &tenant, &format!("Race {round}"), Some("admin"), &[]).await;
        let (adder, deleter) = (server.api().await, server.api().await);
        let (tenant_a, tenant_d) = (tenant_of(&tenant), tenant_of(&tenant));
        let (id_a, id_d, to_add) = (
            group.group_id.clone(),
            group.group_id.clone(),
            members.clone(),
        );
        let owner = tenant.owner;
        let (added, deleted) = race(
            async move {
                let caller = adder.as_user(owner);
                caller.add_group_members(&tenant_a, &id_a, to_add).await
            },
            async move {
                let caller = deleter.as_user(owner);
                caller.delete_group(&tenant_d, &id_d, "", false).await
            },
        )
        .await;
        deleted.unwrap_or_else(|s| panic!("round {round}: the deletion failed: {s:?}"));
        match added {
            Ok(added) => {
                assert!(
                    outcomes(&added.results)
                        .iter()
                        .all(|(_, o)| *o == GroupMemberOutcome::Done),
                    "round {round}: {added:?}"
                );
                added_first += 1;
            }
            Err(status) => {
                assert_refused::<()>(Err(status), Code::NotFound, "GROUP_NOT_FOUND");
                deleted_first += 1;
            }
        }
        let gone = api.as_system().get_group(&tenant, &group.group_id).await;
        assert_refused(gone, Code::NotFound, "GROUP_NOT_FOUND");
        for member in &members {
            let groups = api.as_system().groups_of(&tenant, *member).await.unwrap();
            assert!(
                groups.is_empty(),
                "round {round}: {member} still in {groups:?}"
            );
            let got = check(&api, &tenant, *member, "members.manage").await;
            assert_eq!(got, NOT_GRANTED, "round {round}: {member}");
        }
        let links = server
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM group_members WHERE group_id = {}",
                server.uuid_literal(&group.group_id)
            ))
            .await;
        assert_eq!(links, 0, "round {round}: links of a deleted group");
    }
    assert_eq!(added_first + deleted_first, ROUNDS);
    for table in ["groups", "group_members", "group_role_bindings"] {
        let rows = server
            .scalar(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .await;
        assert_eq!(rows, 0, "{table}");
    }
}

fn tenant_of(tenant: &Tenant) -> Tenant {
    Tenant {
        id: tenant.id.clone(),
        owner: tenant.owner,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_a_member_while_they_are_removed_or_leave_leaves_no_link_or_permission_behind() {
    use GroupMemberOutcome::{Done, NotAMember, NotActive};
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let group = group_with(&api, &tenant, "Admins", Some("admin"), &[]).await;
    for round in 0..ROUNDS {
        let member = add_member(&server, &tenant, "member").await;
        let leaves = round % 2 == 1;
        let (adder, remover) = (server.api().await, server.api().await);
        let (tenant_a, tenant_r) = (tenant_of(&tenant), tenant_of(&tenant));
        let (group_id, owner) = (group.group_id.clone(), tenant.owner);
        let (added, gone) = race(
            async move {
                let caller = adder.as_user(owner);
                caller
                    .add_group_members(&tenant_a, &group_id, [member])
                    .await
            },
            async move {
                if leaves {
                    remover
                        .as_user(member)
                        .leave(&tenant_r)
                        .await
                        .map(|r| r.cursor)
                } else {
                    let removed = remover
                        .as_user(owner)
                        .remove_member(&tenant_r, member)
                        .await;
                    removed.map(|r| r.cursor)
                }
            },
        )
        .await;
        gone.unwrap_or_else(|s| panic!("round {round}: removal or leave failed: {s:?}"));
        let added = added.unwrap_or_else(|s| panic!("round {round}: adding failed: {s:?}"));
        let outcome = outcomes(&added.results)[0].1;
        let too_late = if leaves { NotActive } else { NotAMember };
        assert!(
            outcome == Done || outcome == too_late,
            "round {round}: {outcome:?}"
        );

        let groups = api.as_system().groups_of(&tenant, member).await.unwrap();
        assert!(groups.is_empty(), "round {round}: still in {groups:?}");
        let page = api
            .as_system()
            .list_group_members(&tenant, &group.group_id, 0, "")
            .await;
        let listed = page.unwrap().memberships;
        assert!(listed.is_empty(), "round {round}: {listed:?}");
        assert_eq!(
            member_count(&api.as_system(), &tenant, &group).await,
            0,
            "round {round}"
        );
        let expected = if leaves {
            CheckReason::MembershipLeft
        } else {
            CheckReason::NotAMember
        };
        let got = check(&api, &tenant, member, "members.manage").await;
        assert_eq!(got, denied(expected), "round {round}");
        if !leaves {
            // Back in the tenant: nothing of the group's left behind.
            server
                .members()
                .await
                .create_membership(as_system(new_member(&tenant, member, "member")))
                .await
                .unwrap();
            let got = check(&api, &tenant, member, "members.manage").await;
            assert_eq!(got, NOT_GRANTED, "round {round}");
        }
    }
    let links = server
        .scalar("SELECT COUNT(*) AS n FROM group_members")
        .await;
    assert_eq!(links, 0);
}

// ---------------------------------------------------------------------------------------------
// 8. Tenants apart.

#[tokio::test]
async fn a_group_of_one_tenant_is_not_found_in_another_and_unreadable_to_its_users() {
    let server = TestServer::start().await;
    let a = organization(&server, None).await;
    let b = organization(&server, None).await;
    let api = server.api().await;
    let member_of_a = add_member(&server, &a, "member").await;
    let member_of_b = add_member(&server, &b, "member").await;
    let group = group_with(&api, &a, "Tenant A", Some("member"), &[member_of_a]).await;
    let head = server.head().await;

    // A's group named in tenant B: not found there, whoever asks.
    for caller in [api.as_user(b.owner), api.as_system()] {
        let id = group.group_id.as_str();
        let not_found = |result: Result<(), tonic::Status>| {
            assert_refused(result, Code::NotFound, "GROUP_NOT_FOUND");
        };
        not_found(caller.get_group(&b, id).await.map(drop));
        not_found(
            caller
                .add_group_members(&b, id, [member_of_b])
                .await
                .map(drop),
        );
        not_found(
            caller
                .remove_group_members(&b, id, [member_of_a])
                .await
                .map(drop),
        );
        not_found(caller.list_group_members(&b, id, 0, "").await.map(drop));
        let moved = pb::Group {
            tenant_id: b.id.clone(),
            name: "Taken over".into(),
            ..group.clone()
        };
        not_found(caller.update_group(moved, &["name"]).await.map(drop));
        not_found(caller.delete_group(&b, id, "", false).await.map(drop));
        not_found(caller.bind_role_to_group(&b, id, "member").await.map(drop));
        not_found(
            caller
                .unbind_role_from_group(&b, id, "member")
                .await
                .map(drop),
        );
        let listed = caller
            .list_groups(pb::ListGroupsRequest {
                tenant_id: b.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(listed.groups.is_empty());
    }
    assert!(
        listed_in_group(&server, &b, &group.group_id, 0)
            .await
            .is_empty()
    );
    let bindings = RoleServiceClient::new(server.channel().await)
        .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
            tenant_id: b.id.clone(),
            group_id: group.group_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(bindings.bindings.is_empty(), "{bindings:?}");

    // B's users ask in tenant A: not a member, nothing shown.
    for intruder in [b.owner, member_of_b] {
        let caller = api.as_user(intruder);
        let refused = |result: Result<(), tonic::Status>| {
            assert_refused(result, Code::PermissionDenied, "NOT_A_MEMBER");
        };
        refused(caller.get_group(&a, &group.group_id).await.map(drop));
        refused(caller.groups_of(&a, member_of_a).await.map(drop));
        refused(
            caller
                .list_group_members(&a, &group.group_id, 0, "")
                .await
                .map(drop),
        );
        refused(caller.create_group(&a, "Planted").await.map(drop));
        let added = caller
            .add_group_members(&a, &group.group_id, [intruder])
            .await;
        refused(added.map(drop));
        refused(
            caller
                .delete_group(&a, &group.group_id, "", false)
                .await
                .map(drop),
        );
    }
    assert_eq!(
        server.head().await,
        head,
        "nothing was written across tenants"
    );

    // A's owner cannot put B's member into A's group: not a member of A.
    let added = api
        .as_user(a.owner)
        .add_group_members(&a, &group.group_id, [member_of_b])
        .await
        .unwrap();
    let expected = vec![(member_of_b.to_string(), GroupMemberOutcome::NotAMember)];
    assert_eq!(outcomes(&added.results), expected);
    let kept = api
        .as_system()
        .get_group(&a, &group.group_id)
        .await
        .unwrap();
    assert_eq!(kept, group);
    assert_eq!(
        check(&api, &b, member_of_b, "members.read").await,
        direct("member")
    );
    let got = check(&api, &a, member_of_b, "products.use").await;
    assert_eq!(got, denied(CheckReason::NotAMember));
}

// ---------------------------------------------------------------------------------------------
// The migration that brings groups to a database of an earlier version.

/// A tenant's built-in roles as a version without groups stored them: its preset's, without
/// `groups.manage`.
async fn store_tenant_of_an_earlier_version(
    conn: &sea_orm::DatabaseConnection,
    preset: membership_service::domain::tenant::RolePreset,
) -> Uuid {
    use membership_service::domain::permissions::{Permission, PermissionSet, builtin_roles};
    use membership_service::store::entities::{roles, tenants};
    use sea_orm::{EntityTrait, Set};
    let tenant_id = Uuid::now_v7();
    tenants::Entity::insert(tenants::ActiveModel {
        id: Set(tenant_id),
        name: Set("Earlier".into()),
        kind: Set("enterprise".into()),
        role_preset: Set(preset.as_str().into()),
        seat_limit: Set(None),
        state: Set("active".into()),
        version: Set(1),
        created_at: Set(1),
        updated_at: Set(1),
        dissolved_at: Set(None),
        seated_members: Set(0),
        held_invitations: Set(0),
        seats_counted_until: Set(0),
        // Added after this version.
        pending_invitations: sea_orm::NotSet,
        roles_stamp: Set(0),
    })
    .exec(conn)
    .await
    .unwrap();
    for role in builtin_roles(preset) {
        let earlier: PermissionSet = (role.permissions.iter())
            .filter(|p| *p != Permission::GroupsManage)
            .collect();
        roles::Entity::insert(roles::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(tenant_id),
            name: Set(role.name.into()),
            description: Set(role.description.into()),
            builtin: Set(true),
            is_owner: Set(role.is_owner),
            permissions: Set(earlier.to_stored()),
            version: Set(1),
            created_at: Set(1),
            updated_at: Set(1),
        })
        .exec(conn)
        .await
        .unwrap();
    }
    tenant_id
}

/// A database of the version before groups, its tenants' built-in roles stored then, is
/// migrated by the server: the owner roles of both presets and the organization's admin gain
/// `groups.manage`, and no other role does.
#[tokio::test]
async fn migrating_an_earlier_database_grants_groups_manage_to_the_presets_roles() {
    use membership_service::domain::tenant::RolePreset;
    use migration::{Migrator, MigratorTrait};
    let database = TestDatabase::create().await;
    let tenants = {
        let store = membership_service::store::Store::connect(&database.url, 1)
            .await
            .unwrap();
        let earlier = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261207_000001_groups")
            .expect("the groups migration") as u32;
        Migrator::up(store.connection(), Some(earlier))
            .await
            .unwrap();
        let mut tenants = Vec::new();
        for preset in [RolePreset::Organization, RolePreset::Enterprise] {
            tenants.push(store_tenant_of_an_earlier_version(store.connection(), preset).await);
        }
        tenants
    };
    let server = TestServer::start_on(database).await;
    let mut roles = RoleServiceClient::new(server.channel().await);
    let mut with_groups_manage = BTreeSet::new();
    for tenant_id in &tenants {
        let listed = roles
            .list_roles(as_system(pb::ListRolesRequest {
                tenant_id: tenant_id.to_string(),
            }))
            .await
            .unwrap()
            .into_inner()
            .roles;
        assert!(listed.len() >= 3, "{listed:?}");
        for role in listed {
            if role.permissions.iter().any(|p| p == "groups.manage") {
                with_groups_manage.insert(role.name);
            }
        }
    }
    let expected: BTreeSet<String> = ["owner", "admin", "super_admin"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(with_groups_manage, expected);
}

// ---------------------------------------------------------------------------------------------
// Edges found in review.

/// A name of 200 characters that lower-cases to more (`İ` becomes two) is a valid name on both
/// backends, and still unique.
#[tokio::test]
async fn a_name_that_grows_when_lower_cased_is_still_a_valid_name() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let name = "İ".repeat(200);
    let created = owner.create_group(&tenant, &name).await.unwrap();
    assert_eq!(created.group.unwrap().name, name);
    let again = owner.create_group(&tenant, &name).await;
    assert_refused(again, Code::AlreadyExists, "GROUP_EXISTS");
}

/// Changing the directory key or the name of a group that holds roles decides who will hold
/// them: an admin may not repoint a group bound to `admin`, but may repoint one without roles.
#[tokio::test]
async fn repointing_a_group_that_holds_roles_needs_the_rights_to_grant_them() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let admin = add_member(&server, &tenant, "admin").await;
    let as_admin = api.as_user(admin);
    let admins = group_with(&api, &tenant, "Admins", Some("admin"), &[]).await;
    let plain = group_with(&api, &tenant, "Plain", None, &[]).await;
    let head = server.head().await;
    for path in ["external_id", "name"] {
        let repointed = pb::Group {
            external_id: "scim-interns".into(),
            name: "Interns".into(),
            ..admins.clone()
        };
        denied_for(
            as_admin.update_group(repointed, &[path]).await,
            "admins.manage",
        );
    }
    assert_eq!(server.head().await, head, "nothing written");
    // The description is not a key: the admin may change it.
    let described = pb::Group {
        description: "Org admins".into(),
        ..admins.clone()
    };
    as_admin
        .update_group(described, &["description"])
        .await
        .unwrap();
    let repointed = pb::Group {
        external_id: "scim-plain".into(),
        ..plain
    };
    let updated = as_admin.update_group(repointed, &["external_id"]).await;
    assert_eq!(updated.unwrap().group.unwrap().external_id, "scim-plain");
}

/// A retry of a create finds its group after a rename; another name under the same request id
/// is still refused.
#[tokio::test]
async fn a_create_retried_after_a_rename_returns_the_renamed_group() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let request = pb::CreateGroupRequest {
        tenant_id: tenant.id.clone(),
        name: "Engineering".into(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let created = owner.create_group_from(request.clone()).await.unwrap();
    let group = created.group.unwrap();
    let renamed = pb::Group {
        name: "Platform".into(),
        ..group.clone()
    };
    owner.update_group(renamed, &["name"]).await.unwrap();
    let retried = owner.create_group_from(request.clone()).await.unwrap();
    let retried = retried.group.unwrap();
    assert_eq!(
        (retried.group_id, retried.name),
        (group.group_id, "Platform".into())
    );
    let other = pb::CreateGroupRequest {
        name: "Sales".into(),
        ..request
    };
    let reused = owner.create_group_from(other).await;
    assert_refused(reused, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

/// A member without `groups.manage` learns nothing of which group ids exist: a change to a
/// group is refused for the permission, not for a missing group.
#[tokio::test]
async fn group_ids_cannot_be_probed_without_groups_manage() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let plain = api.as_user(add_member(&server, &tenant, "member").await);
    let existing = group(&api, &tenant, "Existing").await.group_id;
    for group_id in [existing, Uuid::now_v7().to_string()] {
        let added = plain
            .add_group_members(&tenant, &group_id, [Uuid::now_v7()])
            .await;
        denied_for(added, "groups.manage");
        denied_for(
            plain.bind_role_to_group(&tenant, &group_id, "member").await,
            "groups.manage",
        );
        denied_for(
            plain.delete_group(&tenant, &group_id, "", false).await,
            "groups.manage",
        );
    }
}

/// A watcher in a group that held no role when the watch began gains what is later bound to
/// the group: losing the same role directly then ends nothing.
#[tokio::test]
async fn a_watch_follows_a_role_bound_later_to_a_group_its_watcher_is_in() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let watcher = add_member(&server, &tenant, "admin").await;
    let team = group_with(&api, &tenant, "Team", None, &[watcher]).await;
    let mut stream = server
        .members()
        .await
        .watch_membership_events(as_user(
            pb::WatchMembershipEventsRequest {
                tenant_id: tenant.id.clone(),
                ..Default::default()
            },
            watcher,
        ))
        .await
        .unwrap()
        .into_inner();
    owner
        .bind_role_to_group(&tenant, &team.group_id, "admin")
        .await
        .unwrap();
    owner.unbind_role(&tenant, watcher, "admin").await.unwrap();
    let later = add_member(&server, &tenant, "member").await;
    let mut seen = Vec::new();
    loop {
        let event = next_event(&mut stream).await;
        seen.push(event.r#type.clone());
        if event.subject_id == later.to_string() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "role_binding.created",
            "role_binding.deleted",
            "membership.created"
        ],
        "the watch went on through the group's role"
    );
}

/// A group's etag follows its members: adding or removing one makes a new version, so a
/// DeleteGroup at an etag read before is refused.
#[tokio::test]
async fn a_groups_etag_changes_with_its_members() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let api = server.api().await;
    let owner = api.as_user(tenant.owner);
    let member = add_member(&server, &tenant, "member").await;
    let read_before = group(&api, &tenant, "Team").await;
    let added = owner
        .add_group_members(&tenant, &read_before.group_id, [member])
        .await
        .unwrap()
        .group
        .unwrap();
    assert_ne!(added.etag, read_before.etag);
    assert_eq!(
        owner.get_group(&tenant, &added.group_id).await.unwrap(),
        added
    );
    let stale = owner
        .delete_group(&tenant, &read_before.group_id, &read_before.etag, false)
        .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");
    let removed = owner
        .remove_group_members(&tenant, &added.group_id, [member])
        .await
        .unwrap()
        .group
        .unwrap();
    assert_ne!(removed.etag, added.etag);
    assert_eq!(
        owner.get_group(&tenant, &added.group_id).await.unwrap(),
        removed
    );
    owner
        .delete_group(&tenant, &removed.group_id, &removed.etag, false)
        .await
        .unwrap();
}
