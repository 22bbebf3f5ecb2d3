//! Roles, role bindings and permission checks (DESIGN rules 13, 21-23), over a real server:
//! both presets' permission matrices, escalation refusals, the check hot path's freshness on one
//! replica and across two, custom role lifecycle, "change role" semantics and who may check.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use membership_service::app::ServeOptions;
use membership_service::events::FeedOptions;
use membership_service::grpc::pb;
use membership_service::grpc::pb::CheckReason;
use membership_service::grpc::pb::role_service_client::RoleServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

type Roles = RoleServiceClient<Channel>;

/// The permission catalog (DESIGN section 2), written out.
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

/// ENTERPRISE preset (seed 000): role, owner role?, permissions granted.
const ENTERPRISE_MATRIX: &[(&str, bool, &[&str])] = &[
    ("super_admin", true, &CATALOG),
    (
        "finance_admin",
        false,
        &["billing.manage", "members.read", "products.use"],
    ),
    (
        "dev_admin",
        false,
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
    ("member", false, &["members.read", "products.use"]),
];

/// ORGANIZATION preset (seed 001): role, owner role?, permissions granted. The admin lacks
/// tenant.delete, tenant.manage, owner.transfer, admins.manage, roles.manage, billing.manage.
const ORGANIZATION_MATRIX: &[(&str, bool, &[&str])] = &[
    ("owner", true, &CATALOG),
    (
        "admin",
        false,
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
    ("member", false, &["members.read", "products.use"]),
];

const GRANTED: (bool, CheckReason) = (true, CheckReason::Granted);
const NOT_GRANTED: (bool, CheckReason) = (false, CheckReason::NotGranted);
const SUSPENDED: (bool, CheckReason) = (false, CheckReason::MembershipSuspended);

/// How long a replica may take to notice a change made through another one.
const REPLICA_DEADLINE: Duration = Duration::from_secs(10);

async fn roles(server: &TestServer) -> Roles {
    RoleServiceClient::new(server.channel().await)
}

fn set<S: ToString>(items: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

/// The owner of `tenant` deletes its `support` role, unbinding it everywhere or not.
async fn delete_support(
    client: &mut Roles,
    tenant: &Tenant,
    unbind_everywhere: bool,
) -> Result<pb::DeleteRoleResponse, tonic::Status> {
    let request = pb::DeleteRoleRequest {
        tenant_id: tenant.id.clone(),
        role: "support".into(),
        unbind_everywhere,
    };
    client
        .delete_role(as_user(request, tenant.owner))
        .await
        .map(tonic::Response::into_inner)
}

fn reason_of(raw: i32) -> CheckReason {
    CheckReason::try_from(raw).unwrap_or_else(|_| panic!("unknown check reason {raw}"))
}

/// (allowed, reason), checking that `allowed` is true exactly for GRANTED.
fn outcome(allowed: bool, raw: i32) -> (bool, CheckReason) {
    let reason = reason_of(raw);
    assert_eq!(
        allowed,
        reason == CheckReason::Granted,
        "allowed={allowed} with reason {reason:?}"
    );
    (allowed, reason)
}

fn check_request(
    tenant_id: &str,
    user_id: Uuid,
    permission: &str,
    min_cursor: i64,
) -> pb::CheckPermissionRequest {
    pb::CheckPermissionRequest {
        tenant_id: tenant_id.to_string(),
        user_id: user_id.to_string(),
        permission: permission.to_string(),
        min_cursor,
    }
}

/// One CheckPermission as a system caller; returns the outcome and the response cursor.
async fn check(
    client: &mut Roles,
    tenant_id: &str,
    user_id: Uuid,
    permission: &str,
) -> ((bool, CheckReason), i64) {
    check_at(client, tenant_id, user_id, permission, 0).await
}

async fn check_at(
    client: &mut Roles,
    tenant_id: &str,
    user_id: Uuid,
    permission: &str,
    min_cursor: i64,
) -> ((bool, CheckReason), i64) {
    let response = client
        .check_permission(as_system(check_request(
            tenant_id, user_id, permission, min_cursor,
        )))
        .await
        .unwrap_or_else(|s| panic!("checking {permission} of {user_id}: {s:?}"))
        .into_inner();
    (outcome(response.allowed, response.reason), response.cursor)
}

fn checks_of(tenant_id: &str, user_id: Uuid, permissions: &[&str]) -> Vec<pb::PermissionCheck> {
    permissions
        .iter()
        .map(|p| pb::PermissionCheck {
            tenant_id: tenant_id.to_string(),
            user_id: user_id.to_string(),
            permission: p.to_string(),
        })
        .collect()
}

/// BatchCheckPermissions as a system caller; returns the outcomes and the response cursor.
async fn batch(
    client: &mut Roles,
    checks: Vec<pb::PermissionCheck>,
) -> (Vec<(bool, CheckReason)>, i64) {
    let count = checks.len();
    let response = client
        .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
            checks,
            min_cursor: 0,
        }))
        .await
        .expect("batch check")
        .into_inner();
    assert_eq!(response.results.len(), count, "one result per check");
    (
        response
            .results
            .iter()
            .map(|r| outcome(r.allowed, r.reason))
            .collect(),
        response.cursor,
    )
}

/// The outcomes of checking `permissions` of one user.
async fn answers(
    client: &mut Roles,
    tenant: &Tenant,
    user_id: Uuid,
    permissions: &[&str],
) -> Vec<(bool, CheckReason)> {
    batch(client, checks_of(&tenant.id, user_id, permissions))
        .await
        .0
}

async fn role_names_of(server: &TestServer, tenant: &Tenant, user_id: Uuid) -> BTreeSet<String> {
    set(get_member(server, tenant, user_id).await.unwrap().roles)
}

/// The names listed under `key` in a JSON snapshot.
fn names_in(snapshot: &serde_json::Value, key: &str) -> BTreeSet<String> {
    snapshot[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not a list in {snapshot}"))
        .iter()
        .map(|v| v.as_str().expect("a name").to_string())
        .collect()
}

/// All bindings of a listing, page by page, checking each page's size.
async fn all_bindings(
    client: &mut Roles,
    tenant: &Tenant,
    user_id: Option<Uuid>,
    role: &str,
    page_size: i32,
) -> Vec<pb::RoleBinding> {
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = client
            .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
                tenant_id: tenant.id.clone(),
                user_id: user_id.map(|u| u.to_string()).unwrap_or_default(),
                role: role.to_string(),
                page_size,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .expect("listing bindings")
            .into_inner();
        assert!(page.bindings.len() <= page_size as usize);
        if !page.next_page_token.is_empty() {
            assert_eq!(page.bindings.len(), page_size as usize, "a full page");
        }
        all.extend(page.bindings);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The permission matrix of both presets.

#[tokio::test]
async fn list_permissions_returns_the_whole_catalog_with_descriptions() {
    let server = TestServer::start().await;
    let mut client = roles(&server).await;
    let listed = client
        .list_permissions(as_system(pb::ListPermissionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .permissions;
    let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(set(&names), set(CATALOG), "exactly the catalog");
    assert_eq!(names.len(), CATALOG.len(), "no duplicates: {names:?}");
    for permission in &listed {
        assert!(
            !permission.description.trim().is_empty(),
            "{} has no description",
            permission.name
        );
    }
    // Any caller, even a user who belongs nowhere.
    let anyone = client
        .list_permissions(as_user(pb::ListPermissionsRequest {}, user()))
        .await
        .unwrap()
        .into_inner()
        .permissions;
    assert_eq!(anyone, listed);
}

/// Checks every built-in role of a fresh tenant against `matrix`, for every listed permission.
async fn assert_matrix(
    server: &TestServer,
    tenant: &Tenant,
    matrix: &[(&str, bool, &[&str])],
) -> Vec<(String, Uuid)> {
    let mut client = roles(server).await;
    let catalog: Vec<String> = client
        .list_permissions(as_system(pb::ListPermissionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .permissions
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(set(&catalog), set(CATALOG));

    // The tenant's built-in roles are exactly the preset's, with these permissions.
    let listed = client
        .list_roles(as_system(pb::ListRolesRequest {
            tenant_id: tenant.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(
        set(listed.iter().map(|r| &r.name)),
        set(matrix.iter().map(|(name, _, _)| name))
    );
    for (name, is_owner, granted) in matrix {
        let role = listed.iter().find(|r| r.name == *name).unwrap();
        assert!(role.builtin, "{name} is built in");
        assert_eq!(role.owner, *is_owner, "{name}");
        assert_eq!(set(&role.permissions), set(*granted), "{name}");
        assert_eq!(role.tenant_id, tenant.id);
        assert!(!role.description.is_empty());
    }

    // One holder per role: the owner holds the owner role.
    let mut holders = Vec::new();
    for (name, is_owner, _) in matrix {
        let holder = if *is_owner {
            tenant.owner
        } else {
            add_member(server, tenant, name).await
        };
        assert_eq!(role_names_of(server, tenant, holder).await, set([name]));
        holders.push((name.to_string(), holder));
    }

    // Every (role, permission) in one batch.
    let mut checks = Vec::new();
    let mut expected = Vec::new();
    for ((name, _, granted), (_, holder)) in matrix.iter().zip(&holders) {
        for permission in &catalog {
            checks.extend(checks_of(&tenant.id, *holder, &[permission]));
            let answer = if granted.contains(&permission.as_str()) {
                GRANTED
            } else {
                NOT_GRANTED
            };
            expected.push((name.to_string(), permission.clone(), answer));
        }
    }
    assert!(checks.len() <= 100);
    let (results, _) = batch(&mut client, checks).await;
    for ((role, permission, want), got) in expected.iter().zip(&results) {
        assert_eq!(got, want, "{role} / {permission} (batch)");
    }

    // And one by one, asked by the holder themselves, for every role and permission.
    for ((name, _, granted), (_, holder)) in matrix.iter().zip(&holders) {
        for permission in &catalog {
            let response = client
                .check_permission(as_user(
                    check_request(&tenant.id, *holder, permission, 0),
                    *holder,
                ))
                .await
                .unwrap()
                .into_inner();
            let want = if granted.contains(&permission.as_str()) {
                GRANTED
            } else {
                NOT_GRANTED
            };
            assert_eq!(
                outcome(response.allowed, response.reason),
                want,
                "{name} / {permission} (single)"
            );
            assert!(response.cursor > 0, "the answer names a cursor");
        }
    }
    holders
}

#[tokio::test]
async fn enterprise_preset_permission_matrix() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    assert_matrix(&server, &tenant, ENTERPRISE_MATRIX).await;
}

#[tokio::test]
async fn organization_preset_permission_matrix() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let holders = assert_matrix(&server, &tenant, ORGANIZATION_MATRIX).await;

    // Spelled out for the organization admin (seed 001's comparison table).
    let admin = holders.iter().find(|(n, _)| n == "admin").unwrap().1;
    let mut client = roles(&server).await;
    for permission in [
        "members.manage",
        "audit_logs.read",
        "api_keys.manage",
        "oauth_clients.create",
        "webhooks.create",
        "products.use",
    ] {
        assert_eq!(
            check(&mut client, &tenant.id, admin, permission).await.0,
            GRANTED,
            "admin / {permission}"
        );
    }
    for permission in [
        "tenant.delete",
        "owner.transfer",
        "admins.manage",
        "billing.manage",
        "roles.manage",
        "tenant.manage",
    ] {
        assert_eq!(
            check(&mut client, &tenant.id, admin, permission).await.0,
            NOT_GRANTED,
            "admin / {permission}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Escalation is refused.

#[tokio::test]
async fn organization_admin_cannot_escalate() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = Some(tenant.owner);
    let admin = add_member(&server, &tenant, "admin").await;
    let other_admin = add_member(&server, &tenant, "admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let second = add_member(&server, &tenant, "member").await;
    let api = server.api().await;

    // Custom roles the owner defines: one within an admin's reach, one beyond it.
    api.acting(owner)
        .create_role(
            &tenant,
            "support",
            &["members.read", "products.use", "logs.read"],
        )
        .await
        .unwrap();
    api.acting(owner)
        .create_role(
            &tenant,
            "billing_viewer",
            &["billing.manage", "members.read"],
        )
        .await
        .unwrap();

    let head = server.head().await;
    let actor = Some(admin);
    // Making someone an admin needs admins.manage.
    denied_for(
        api.acting(actor)
            .set_member_role(&tenant, member, "admin")
            .await,
        "admins.manage",
    );
    denied_for(
        api.acting(actor).bind_role(&tenant, member, "admin").await,
        "admins.manage",
    );
    // So does acting on another admin, or on the owner.
    denied_for(
        api.acting(actor)
            .set_member_role(&tenant, other_admin, "member")
            .await,
        "admins.manage",
    );
    denied_for(
        api.acting(actor)
            .unbind_role(&tenant, other_admin, "admin")
            .await,
        "admins.manage",
    );
    denied_for(
        api.acting(actor)
            .bind_role(&tenant, other_admin, "support")
            .await,
        "admins.manage",
    );
    denied_for(
        api.acting(actor)
            .set_member_role(&tenant, tenant.owner, "member")
            .await,
        "admins.manage",
    );
    // Nobody grants a permission they do not hold.
    denied_for(
        api.acting(actor)
            .set_member_role(&tenant, second, "billing_viewer")
            .await,
        "billing.manage",
    );
    denied_for(
        api.acting(actor)
            .bind_role(&tenant, second, "billing_viewer")
            .await,
        "billing.manage",
    );
    // Defining roles needs roles.manage.
    denied_for(
        api.acting(actor)
            .create_role(&tenant, "helpers", &["products.use"])
            .await,
        "roles.manage",
    );
    assert_eq!(
        server.head().await,
        head,
        "no refused attempt wrote anything"
    );
    assert_eq!(
        role_names_of(&server, &tenant, member).await,
        set(["member"])
    );
    assert_eq!(
        role_names_of(&server, &tenant, other_admin).await,
        set(["admin"])
    );
    assert_eq!(
        role_names_of(&server, &tenant, second).await,
        set(["member"])
    );

    // Within reach: a member-level custom role.
    let changed = api
        .acting(actor)
        .set_member_role(&tenant, member, "support")
        .await
        .expect("an admin changes a member to a member-level role");
    assert_eq!(set(changed.membership.unwrap().roles), set(["support"]));
    assert_eq!(
        role_names_of(&server, &tenant, member).await,
        set(["support"])
    );
    assert!(changed.cursor > head);
    api.acting(actor)
        .set_member_role(&tenant, member, "member")
        .await
        .expect("and back");

    // The owner changes admins.
    let demoted = api
        .acting(owner)
        .set_member_role(&tenant, other_admin, "member")
        .await
        .expect("the owner demotes an admin");
    assert_eq!(set(demoted.membership.unwrap().roles), set(["member"]));
    api.acting(owner)
        .set_member_role(&tenant, second, "billing_viewer")
        .await
        .expect("the owner grants billing");
}

#[tokio::test]
async fn nobody_binds_or_unbinds_the_owner_role() {
    let server = TestServer::start().await;
    for preset in [pb::RolePreset::Organization, pb::RolePreset::Enterprise] {
        let tenant = create_tenant(&server, pb::TenantKind::Enterprise, preset, None).await;
        let owner_role = if preset == pb::RolePreset::Organization {
            "owner"
        } else {
            "super_admin"
        };
        let member = add_member(&server, &tenant, "member").await;
        let api = server.api().await;
        let head = server.head().await;
        for actor in [None, Some(tenant.owner)] {
            assert_refused(
                api.acting(actor)
                    .set_member_role(&tenant, member, owner_role)
                    .await,
                Code::FailedPrecondition,
                "OWNER_ROLE_RESERVED",
            );
            assert_refused(
                api.acting(actor)
                    .bind_role(&tenant, member, owner_role)
                    .await,
                Code::FailedPrecondition,
                "OWNER_ROLE_RESERVED",
            );
            assert_refused(
                api.acting(actor)
                    .unbind_role(&tenant, tenant.owner, owner_role)
                    .await,
                Code::FailedPrecondition,
                "OWNER_ROLE_RESERVED",
            );
        }
        assert_eq!(server.head().await, head);
        assert_eq!(
            role_names_of(&server, &tenant, tenant.owner).await,
            set([owner_role])
        );
        assert_eq!(
            role_names_of(&server, &tenant, member).await,
            set(["member"])
        );
    }
}

#[tokio::test]
async fn enterprise_only_the_super_admin_changes_roles() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let finance = add_member(&server, &tenant, "finance_admin").await;
    let dev = add_member(&server, &tenant, "dev_admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let api = server.api().await;
    let head = server.head().await;

    for actor in [finance, dev, member] {
        for target in [member, finance, dev] {
            for role in ["member", "dev_admin", "finance_admin"] {
                denied_for(
                    api.as_user(actor)
                        .set_member_role(&tenant, target, role)
                        .await,
                    "members.manage",
                );
                denied_for(
                    api.as_user(actor).bind_role(&tenant, target, role).await,
                    "members.manage",
                );
            }
            denied_for(
                api.as_user(actor)
                    .unbind_role(&tenant, target, "member")
                    .await,
                "members.manage",
            );
        }
        denied_for(
            api.as_user(actor)
                .create_role(&tenant, "helpers", &["products.use"])
                .await,
            "roles.manage",
        );
    }
    assert_eq!(server.head().await, head);

    let changed = api
        .as_user(tenant.owner)
        .set_member_role(&tenant, member, "dev_admin")
        .await
        .expect("the super admin changes roles");
    assert_eq!(set(changed.membership.unwrap().roles), set(["dev_admin"]));
    api.as_user(tenant.owner)
        .set_member_role(&tenant, finance, "member")
        .await
        .expect("the super admin changes roles");
    assert_eq!(
        role_names_of(&server, &tenant, finance).await,
        set(["member"])
    );
}

#[tokio::test]
async fn defining_roles_needs_roles_manage_and_every_permission_in_them() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = Some(tenant.owner);
    let mut client = roles(&server).await;
    let api = server.api().await;
    api.acting(owner)
        .create_role(
            &tenant,
            "role_editor",
            &["roles.manage", "members.read", "products.use"],
        )
        .await
        .unwrap();
    api.acting(owner)
        .create_role(
            &tenant,
            "billing_viewer",
            &["billing.manage", "members.read"],
        )
        .await
        .unwrap();
    let editor = add_member(&server, &tenant, "member").await;
    api.acting(owner)
        .set_member_role(&tenant, editor, "role_editor")
        .await
        .unwrap();
    let head = server.head().await;
    let actor = Some(editor);

    denied_for(
        api.acting(actor)
            .create_role(&tenant, "payers", &["billing.manage"])
            .await,
        "billing.manage",
    );
    denied_for(
        api.acting(actor)
            .create_role(&tenant, "managers", &["products.use", "members.manage"])
            .await,
        "members.manage",
    );
    // Editing or deleting a role that grants more than the editor holds is refused too.
    let narrow = client
        .update_role(as_user(
            pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    tenant_id: tenant.id.clone(),
                    name: "billing_viewer".into(),
                    permissions: vec!["members.read".into()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["permissions".into()],
                }),
            },
            editor,
        ))
        .await;
    denied_for(narrow, "billing.manage");
    let delete = client
        .delete_role(as_user(
            pb::DeleteRoleRequest {
                tenant_id: tenant.id.clone(),
                role: "billing_viewer".into(),
                unbind_everywhere: false,
            },
            editor,
        ))
        .await;
    denied_for(delete, "billing.manage");
    assert_eq!(server.head().await, head);

    let created = api
        .acting(actor)
        .create_role(&tenant, "readers", &["products.use", "members.read"])
        .await
        .expect("within the editor's own permissions");
    let role = created.role.unwrap();
    assert_eq!(role.name, "readers");
    assert_eq!(
        set(&role.permissions),
        set(["products.use", "members.read"])
    );

    // Nor can a role the editor may edit be widened beyond the editor's permissions.
    let head = server.head().await;
    for extra in ["billing.manage", "members.manage", "admins.manage"] {
        let widen = client
            .update_role(as_user(
                pb::UpdateRoleRequest {
                    role: Some(pb::Role {
                        tenant_id: tenant.id.clone(),
                        name: "readers".into(),
                        permissions: vec!["products.use".into(), extra.into()],
                        etag: role.etag.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["permissions".into()],
                    }),
                },
                editor,
            ))
            .await;
        denied_for(widen, extra);
    }
    assert_eq!(server.head().await, head);
}

// ---------------------------------------------------------------------------------------------
// 3. Checks reflect this replica's own mutations at once.

/// What the checks below ask of an admin of an ORGANIZATION tenant.
const ADMIN_CHECKS: [&str; 6] = [
    "members.manage",
    "members.read",
    "billing.manage",
    "audit_logs.read",
    "products.use",
    "tenant.delete",
];

#[tokio::test]
async fn a_suspended_member_is_denied_at_once_and_reactivation_restores_every_answer() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = tenant.owner;
    let admin = add_member(&server, &tenant, "admin").await;
    let mut client = roles(&server).await;
    let api = server.api().await;

    let before = answers(&mut client, &tenant, admin, &ADMIN_CHECKS).await;
    assert_eq!(
        before,
        vec![GRANTED, GRANTED, NOT_GRANTED, GRANTED, GRANTED, NOT_GRANTED]
    );

    // Suspended: the very next check denies.
    let suspended = api
        .as_user(owner)
        .suspend_member(&tenant, admin)
        .await
        .unwrap();
    let (answer, cursor) = check(&mut client, &tenant.id, admin, "members.manage").await;
    assert_eq!(answer, SUSPENDED);
    assert!(
        cursor >= suspended.cursor,
        "answer cursor {cursor} < mutation cursor {}",
        suspended.cursor
    );
    let (all, cursor) = batch(&mut client, checks_of(&tenant.id, admin, &ADMIN_CHECKS)).await;
    assert_eq!(all, vec![SUSPENDED; ADMIN_CHECKS.len()]);
    assert!(cursor >= suspended.cursor);
    // Asked by the suspended user themselves, and with the mutation's cursor: the same.
    let own = client
        .check_permission(as_user(
            check_request(&tenant.id, admin, "products.use", 0),
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(own.allowed, own.reason), SUSPENDED);
    let (answer, cursor) = check_at(
        &mut client,
        &tenant.id,
        admin,
        "products.use",
        suspended.cursor,
    )
    .await;
    assert_eq!(answer, SUSPENDED);
    assert!(cursor >= suspended.cursor);

    // Reactivated: exactly the previous answers.
    let reactivated = api
        .as_user(owner)
        .reactivate_member(&tenant, admin)
        .await
        .unwrap();
    let (after, cursor) = batch(&mut client, checks_of(&tenant.id, admin, &ADMIN_CHECKS)).await;
    assert_eq!(after, before);
    assert!(cursor >= reactivated.cursor);
}

#[tokio::test]
async fn a_role_change_changes_the_next_answer() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = tenant.owner;
    let admin = add_member(&server, &tenant, "admin").await;
    let mut client = roles(&server).await;
    let api = server.api().await;
    assert_eq!(
        check(&mut client, &tenant.id, admin, "members.manage")
            .await
            .0,
        GRANTED
    );

    // A role change changes the next answer.
    let changed = api
        .as_user(owner)
        .set_member_role(&tenant, admin, "member")
        .await
        .unwrap();
    let (answer, cursor) = check(&mut client, &tenant.id, admin, "members.manage").await;
    assert_eq!(answer, NOT_GRANTED);
    assert!(cursor >= changed.cursor);
    assert_eq!(
        answers(&mut client, &tenant, admin, &ADMIN_CHECKS).await,
        vec![
            NOT_GRANTED,
            GRANTED,
            NOT_GRANTED,
            NOT_GRANTED,
            GRANTED,
            NOT_GRANTED
        ]
    );
}

/// Removal, leaving and dissolution each change the very next answer, with its own reason;
/// a stranger and an unknown tenant have theirs.
#[tokio::test]
async fn removal_leaving_and_dissolution_change_the_next_answer() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = tenant.owner;
    let admin = add_member(&server, &tenant, "admin").await;
    let leaver = add_member(&server, &tenant, "member").await;
    let removed = add_member(&server, &tenant, "member").await;
    let mut client = roles(&server).await;
    let api = server.api().await;

    // Removed: not a member.
    assert_eq!(
        check(&mut client, &tenant.id, removed, "products.use")
            .await
            .0,
        GRANTED
    );
    let deleted = api
        .as_user(owner)
        .remove_member(&tenant, removed)
        .await
        .unwrap();
    let (answer, cursor) = check(&mut client, &tenant.id, removed, "products.use").await;
    assert_eq!(answer, (false, CheckReason::NotAMember));
    assert!(cursor >= deleted.cursor);

    // Left: membership left.
    assert_eq!(
        check(&mut client, &tenant.id, leaver, "products.use")
            .await
            .0,
        GRANTED
    );
    let left = api.as_user(leaver).leave(&tenant).await.unwrap();
    let (answer, cursor) = check(&mut client, &tenant.id, leaver, "products.use").await;
    assert_eq!(answer, (false, CheckReason::MembershipLeft));
    assert!(cursor >= left.cursor);
    // A member who left has no bindings to change.
    let head = server.head().await;
    assert_refused(
        api.as_user(owner)
            .set_member_role(&tenant, leaver, "member")
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_NOT_ACTIVE",
    );
    assert_refused(
        api.as_user(owner)
            .bind_role(&tenant, leaver, "member")
            .await,
        Code::FailedPrecondition,
        "MEMBERSHIP_NOT_ACTIVE",
    );
    assert_eq!(server.head().await, head);

    // Never a member; an unknown tenant.
    assert_eq!(
        check(&mut client, &tenant.id, user(), "products.use")
            .await
            .0,
        (false, CheckReason::NotAMember)
    );
    assert_eq!(
        check(
            &mut client,
            &Uuid::now_v7().to_string(),
            owner,
            "products.use"
        )
        .await
        .0,
        (false, CheckReason::TenantNotFound)
    );

    // Dissolved: every check of the tenant names it.
    for user_id in [owner, admin] {
        assert_eq!(
            check(&mut client, &tenant.id, user_id, "products.use")
                .await
                .0,
            GRANTED
        );
    }
    let dissolved = server
        .api()
        .await
        .as_user(owner)
        .dissolve_tenant(&tenant)
        .await
        .unwrap();
    for user_id in [owner, admin, leaver, removed] {
        let (answer, cursor) = check(&mut client, &tenant.id, user_id, "products.use").await;
        assert_eq!(answer, (false, CheckReason::TenantDissolved), "{user_id}");
        assert!(cursor >= dissolved.cursor);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Custom role lifecycle.

/// A custom role for the lifecycle tests: an ORGANIZATION tenant with two plain members, and
/// `support` (logs.read, products.use) created by the owner, bound to both when `bound`.
struct SupportRole {
    server: TestServer,
    tenant: Tenant,
    first: Uuid,
    second: Uuid,
    role: pb::Role,
}

async fn support_role(bound: bool) -> SupportRole {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let first = add_member(&server, &tenant, "member").await;
    let second = add_member(&server, &tenant, "member").await;
    let owner = server.api().await.as_user(tenant.owner);
    let role = owner
        .create_role(&tenant, "support", &["logs.read", "products.use"])
        .await
        .expect("creating the support role")
        .role
        .expect("a role");
    if bound {
        for holder in [first, second] {
            owner
                .bind_role(&tenant, holder, "support")
                .await
                .expect("binding support");
        }
    }
    SupportRole {
        server,
        tenant,
        first,
        second,
        role,
    }
}

/// A custom role is created with what it grants, and one `role.created` event.
#[tokio::test]
async fn a_custom_role_is_created_with_its_event() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = Some(tenant.owner);
    let api = server.api().await;
    // Create.
    let head = server.head().await;
    let created = api
        .acting(owner)
        .create_role(&tenant, "support", &["logs.read", "products.use"])
        .await
        .unwrap();
    let role = created.role.clone().unwrap();
    assert_eq!(role.name, "support");
    assert_eq!(role.tenant_id, tenant.id);
    assert_eq!(role.description, "The support role.");
    assert_eq!(set(&role.permissions), set(["logs.read", "products.use"]));
    assert!(!role.builtin);
    assert!(!role.owner);
    assert!(!role.etag.is_empty());
    assert!(role.create_time.is_some());
    assert!(Uuid::parse_str(&role.role_id).is_ok());
    assert!(created.cursor > head);
    let events = server.events_after(head).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "role.created");
    assert_eq!(events[0].position, created.cursor);
    assert_eq!(events[0].subject_id.as_deref(), Some(role.role_id.as_str()));
    assert_eq!(events[0].actor_id, Some(tenant.owner));
    assert!(events[0].before.is_none());
    let snapshot = snapshot(&events[0].after);
    assert_eq!(snapshot["name"], "support");
    assert_eq!(
        names_in(&snapshot, "permissions"),
        set(["logs.read", "products.use"])
    );
}

/// Taken names, malformed names and unknown permissions are refused; 64 characters is the limit.
#[tokio::test]
async fn custom_role_names_and_permissions_are_checked_and_refusals_write_nothing() {
    let SupportRole { server, tenant, .. } = support_role(false).await;
    let owner = Some(tenant.owner);
    let api = server.api().await;
    let head = server.head().await;
    for name in ["support", "admin", "member", "owner"] {
        assert_refused(
            api.acting(owner)
                .create_role(&tenant, name, &["products.use"])
                .await,
            Code::AlreadyExists,
            "ROLE_EXISTS",
        );
    }
    let too_long = format!("r{}", "x".repeat(64));
    for name in [
        "", "Support", "1st_line", "_support", "sup-port", "sup port", &too_long,
    ] {
        let status = assert_refused(
            api.acting(owner)
                .create_role(&tenant, name, &["products.use"])
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violated_fields(&status), vec!["name"], "{name:?}");
    }
    let status = assert_refused(
        api.acting(owner)
            .create_role(&tenant, "writers", &["products.use", "logs.write"])
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["permissions"]);
    assert_eq!(server.head().await, head, "refusals write nothing");
    let longest = format!("r{}", "x".repeat(63));
    api.acting(owner)
        .create_role(&tenant, &longest, &[])
        .await
        .expect("64 characters is the limit");
}

#[tokio::test]
async fn a_custom_role_is_read_and_listed_with_the_builtin_ones() {
    let SupportRole {
        server,
        tenant,
        first,
        role,
        ..
    } = support_role(false).await;
    let mut client = roles(&server).await;
    let longest = format!("r{}", "x".repeat(63));
    server
        .api()
        .await
        .as_user(tenant.owner)
        .create_role(&tenant, &longest, &[])
        .await
        .unwrap();
    let got = client
        .get_role(as_system(pb::GetRoleRequest {
            tenant_id: tenant.id.clone(),
            role: "support".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    assert_eq!(got, role);
    let status = assert_refused(
        client
            .get_role(as_system(pb::GetRoleRequest {
                tenant_id: tenant.id.clone(),
                role: "nobody".into(),
            }))
            .await,
        Code::NotFound,
        "ROLE_NOT_FOUND",
    );
    assert_eq!(
        status
            .get_details_error_info()
            .unwrap()
            .metadata
            .get("role"),
        Some(&"nobody".to_string())
    );
    let listed = client
        .list_roles(as_user(
            pb::ListRolesRequest {
                tenant_id: tenant.id.clone(),
            },
            first,
        ))
        .await
        .expect("members.read lists roles")
        .into_inner()
        .roles;
    assert_eq!(
        set(listed.iter().map(|r| &r.name)),
        set(["owner", "admin", "member", "support", longest.as_str()])
    );
    assert_eq!(listed.iter().find(|r| r.name == "support").unwrap(), &role);
}

#[tokio::test]
async fn binding_a_custom_role_grants_its_permissions_and_lists_the_bindings_in_pages() {
    let SupportRole {
        server,
        tenant,
        first,
        second,
        ..
    } = support_role(false).await;
    let owner = Some(tenant.owner);
    let mut client = roles(&server).await;
    let api = server.api().await;
    // Bind to two members; both now hold its permissions.
    for holder in [first, second] {
        assert_eq!(
            check(&mut client, &tenant.id, holder, "logs.read").await.0,
            NOT_GRANTED
        );
        let bound = api
            .acting(owner)
            .bind_role(&tenant, holder, "support")
            .await
            .unwrap();
        assert_eq!(
            set(bound.membership.unwrap().roles),
            set(["member", "support"])
        );
        let (answer, cursor) = check(&mut client, &tenant.id, holder, "logs.read").await;
        assert_eq!(answer, GRANTED);
        assert!(cursor >= bound.cursor);
    }

    // Bindings by user, by role and all, in pages.
    let extra = [
        add_member(&server, &tenant, "member").await,
        add_member(&server, &tenant, "member").await,
        add_member(&server, &tenant, "member").await,
    ];
    let by_user = all_bindings(&mut client, &tenant, Some(first), "", 1).await;
    assert_eq!(by_user.len(), 2);
    assert_eq!(
        set(by_user.iter().map(|b| &b.role)),
        set(["member", "support"])
    );
    for binding in &by_user {
        assert_eq!(binding.user_id, first.to_string());
        assert_eq!(binding.tenant_id, tenant.id);
        assert!(binding.create_time.is_some());
    }
    let by_role = all_bindings(&mut client, &tenant, None, "support", 1).await;
    assert_eq!(by_role.len(), 2);
    assert_eq!(
        set(by_role.iter().map(|b| &b.user_id)),
        set([first, second])
    );
    assert!(by_role.iter().all(|b| b.role == "support"));
    let members_role = all_bindings(&mut client, &tenant, None, "member", 2).await;
    assert_eq!(members_role.len(), 5);
    assert_eq!(
        set(members_role.iter().map(|b| &b.user_id)),
        set([first, second, extra[0], extra[1], extra[2]])
    );
    let everything = all_bindings(&mut client, &tenant, None, "", 3).await;
    assert_eq!(
        everything.len(),
        1 + 5 + 2,
        "owner, five members, two support"
    );
    let distinct = set(everything
        .iter()
        .map(|b| format!("{}/{}", b.user_id, b.role)));
    assert_eq!(distinct.len(), everything.len(), "no binding listed twice");
    let one_of_user_and_role = all_bindings(&mut client, &tenant, Some(second), "support", 5).await;
    assert_eq!(one_of_user_and_role.len(), 1);
    // A token from one filter is refused under another.
    let page = client
        .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
            tenant_id: tenant.id.clone(),
            role: "support".into(),
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_page_token.is_empty());
    assert_refused(
        client
            .list_role_bindings(as_system(pb::ListRoleBindingsRequest {
                tenant_id: tenant.id.clone(),
                role: "member".into(),
                page_size: 1,
                page_token: page.next_page_token,
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
}

/// Checks follow a role's new permissions at once; a stale etag, and any edit of a built-in
/// role, are refused and write nothing.
#[tokio::test]
async fn a_custom_role_is_updated_with_its_etag_and_checks_follow_at_once() {
    let SupportRole {
        server,
        tenant,
        first,
        second,
        role,
    } = support_role(true).await;
    let mut client = roles(&server).await;
    // Update the permissions with the etag: the next check changes at once.
    let head = server.head().await;
    let update = |etag: &str, permissions: &[&str]| pb::UpdateRoleRequest {
        role: Some(pb::Role {
            tenant_id: tenant.id.clone(),
            name: "support".into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            etag: etag.to_string(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["permissions".into()],
        }),
    };
    let updated = client
        .update_role(as_user(
            update(&role.etag, &["products.use", "webhooks.create"]),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let new_role = updated.role.unwrap();
    assert_eq!(
        set(&new_role.permissions),
        set(["products.use", "webhooks.create"])
    );
    assert_ne!(new_role.etag, role.etag);
    assert_eq!(new_role.description, role.description);
    for holder in [first, second] {
        let (answer, cursor) = check(&mut client, &tenant.id, holder, "logs.read").await;
        assert_eq!(answer, NOT_GRANTED);
        assert!(cursor >= updated.cursor);
        assert_eq!(
            check(&mut client, &tenant.id, holder, "webhooks.create")
                .await
                .0,
            GRANTED
        );
    }
    let events = server.events_after(head).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "role.updated");
    assert_eq!(events[0].subject_id.as_deref(), Some(role.role_id.as_str()));
    assert_eq!(
        names_in(&snapshot(&events[0].before), "permissions"),
        set(["logs.read", "products.use"])
    );
    assert_eq!(
        names_in(&snapshot(&events[0].after), "permissions"),
        set(["products.use", "webhooks.create"])
    );
    // A stale etag is refused and changes nothing.
    let head = server.head().await;
    assert_refused(
        client
            .update_role(as_user(update(&role.etag, &["products.use"]), tenant.owner))
            .await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    // Built-in roles cannot be edited or deleted.
    for builtin in ["owner", "admin", "member"] {
        let mut request = update("", &["products.use"]);
        request.role.as_mut().unwrap().name = builtin.into();
        assert_refused(
            client.update_role(as_user(request, tenant.owner)).await,
            Code::FailedPrecondition,
            "ROLE_BUILTIN",
        );
        assert_refused(
            client
                .delete_role(as_user(
                    pb::DeleteRoleRequest {
                        tenant_id: tenant.id.clone(),
                        role: builtin.into(),
                        unbind_everywhere: true,
                    },
                    tenant.owner,
                ))
                .await,
            Code::FailedPrecondition,
            "ROLE_BUILTIN",
        );
    }
    assert_eq!(server.head().await, head, "the refusals write nothing");
}

#[tokio::test]
async fn a_custom_role_in_use_is_deleted_only_with_its_bindings_and_its_name_is_free_again() {
    let SupportRole {
        server,
        tenant,
        first,
        second,
        role,
    } = support_role(true).await;
    let owner = Some(tenant.owner);
    let mut client = roles(&server).await;
    let api = server.api().await;
    let head = server.head().await;
    // Still bound: refused, with the number of bindings, and nothing changes.
    let status = assert_refused(
        delete_support(&mut client, &tenant, false).await,
        Code::FailedPrecondition,
        "ROLE_IN_USE",
    );
    assert_eq!(
        status
            .get_details_error_info()
            .unwrap()
            .metadata
            .get("bindings"),
        Some(&"2".to_string())
    );
    assert_eq!(server.head().await, head);
    for holder in [first, second] {
        assert_eq!(
            role_names_of(&server, &tenant, holder).await,
            set(["member", "support"])
        );
        assert_eq!(
            check(&mut client, &tenant.id, holder, "logs.read").await.0,
            GRANTED
        );
    }
    let unchanged = client
        .get_role(as_system(pb::GetRoleRequest {
            tenant_id: tenant.id.clone(),
            role: "support".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .role
        .unwrap();
    assert_eq!(unchanged, role);

    // Unbound everywhere, then deleted: an event per binding, then the role's.
    let deleted = delete_support(&mut client, &tenant, true).await.unwrap();
    assert_eq!(deleted.unbound_count, 2);
    let events = server.events_after(head).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec![
            "role_binding.deleted",
            "role_binding.deleted",
            "role.deleted"
        ]
    );
    assert_eq!(deleted.cursor, events[2].position);
    assert_eq!(
        set(events[..2].iter().map(|e| e.subject_id.clone().unwrap())),
        set([first, second])
    );
    for event in &events[..2] {
        assert_eq!(
            names_in(&snapshot(&event.before), "roles"),
            set(["member", "support"])
        );
        assert_eq!(names_in(&snapshot(&event.after), "roles"), set(["member"]));
    }
    assert_eq!(events[2].subject_id.as_deref(), Some(role.role_id.as_str()));
    assert_eq!(snapshot(&events[2].before)["name"], "support");
    assert!(events[2].after.is_none());
    for holder in [first, second] {
        assert_eq!(
            role_names_of(&server, &tenant, holder).await,
            set(["member"])
        );
        let (answer, cursor) = check(&mut client, &tenant.id, holder, "logs.read").await;
        assert_eq!(answer, NOT_GRANTED);
        assert!(cursor >= deleted.cursor);
        assert_eq!(
            check(&mut client, &tenant.id, holder, "products.use")
                .await
                .0,
            GRANTED
        );
    }
    assert_refused(
        client
            .get_role(as_system(pb::GetRoleRequest {
                tenant_id: tenant.id.clone(),
                role: "support".into(),
            }))
            .await,
        Code::NotFound,
        "ROLE_NOT_FOUND",
    );
    assert!(
        all_bindings(&mut client, &tenant, Some(first), "", 10)
            .await
            .iter()
            .all(|b| b.role == "member")
    );
    // The name is free again.
    api.acting(owner)
        .create_role(&tenant, "support", &["products.use"])
        .await
        .expect("a deleted role's name can be reused");
}

/// A pending invitation to a custom role keeps it from being deleted, as a binding does: once
/// the role is gone, the invitation could not be accepted. With `unbind_everywhere` the
/// invitation is revoked (its seat freed) before the role is deleted.
#[tokio::test]
async fn a_custom_role_named_by_a_pending_invitation_is_deleted_only_with_the_invitation() {
    use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
    let SupportRole { server, tenant, .. } = support_role(false).await;
    let mut client = roles(&server).await;
    let mut invitations = InvitationServiceClient::new(server.channel().await);
    let invited = invitations
        .create_invitation(as_user(
            pb::CreateInvitationRequest {
                tenant_id: tenant.id.clone(),
                email: "support-hire@example.com".into(),
                role: "support".into(),
                ttl: None,
                request_id: String::new(),
            },
            tenant.owner,
        ))
        .await
        .expect("inviting with the support role")
        .into_inner();
    let invitation = invited.invitation.expect("an invitation");
    let seats_before = seat_usage(&server, &tenant).await;
    let head = server.head().await;

    let status = assert_refused(
        delete_support(&mut client, &tenant, false).await,
        Code::FailedPrecondition,
        "ROLE_IN_USE",
    );
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.metadata.get("bindings"), Some(&"0".to_string()));
    assert_eq!(info.metadata.get("invitations"), Some(&"1".to_string()));
    assert_eq!(server.head().await, head, "the refusal writes nothing");

    let deleted = delete_support(&mut client, &tenant, true)
        .await
        .expect("deleting with unbind_everywhere");
    assert_eq!(deleted.unbound_count, 0);
    let events = server.events_after(head).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["invitation.revoked", "role.deleted"]
    );
    assert_eq!(
        events[0].subject_id.as_deref(),
        Some(invitation.invitation_id.as_str())
    );
    assert_eq!(snapshot(&events[0].after)["state"], "revoked");
    assert_eq!(deleted.cursor, events[1].position);
    let seats_after = seat_usage(&server, &tenant).await;
    assert_eq!(seats_after.used, seats_before.used - 1);

    // The token now meets a revoked invitation, not a missing role.
    assert_refused(
        invitations
            .accept_invitation(as_system(pb::AcceptInvitationRequest {
                token: invited.token,
                user_id: user().to_string(),
                email: "support-hire@example.com".into(),
                display_name: "Support Hire".into(),
            }))
            .await,
        Code::FailedPrecondition,
        "INVITATION_NOT_PENDING",
    );
}

// ---------------------------------------------------------------------------------------------
// 5. "Change role" replaces the non-owner bindings; binding twice changes nothing.

#[tokio::test]
async fn set_member_role_replaces_bindings_and_rebinding_writes_nothing() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let owner = Some(tenant.owner);
    let member = add_member(&server, &tenant, "member").await;
    let mut client = roles(&server).await;
    let api = server.api().await;
    api.acting(owner)
        .create_role(&tenant, "support", &["logs.read"])
        .await
        .unwrap();

    // Bind a second role: one event.
    let head = server.head().await;
    let bound = api
        .acting(owner)
        .bind_role(&tenant, member, "support")
        .await
        .unwrap();
    assert_eq!(
        set(bound.membership.unwrap().roles),
        set(["member", "support"])
    );
    let events = server.events_after(head).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "role_binding.created");
    assert_eq!(events[0].subject_id, Some(member.to_string()));
    assert_eq!(
        names_in(&snapshot(&events[0].before), "roles"),
        set(["member"])
    );
    assert_eq!(
        names_in(&snapshot(&events[0].after), "roles"),
        set(["member", "support"])
    );

    // Binding it again changes nothing and writes no event.
    let head = server.head().await;
    let again = api
        .acting(owner)
        .bind_role(&tenant, member, "support")
        .await
        .expect("binding a held role succeeds");
    assert_eq!(
        set(again.membership.unwrap().roles),
        set(["member", "support"])
    );
    assert_eq!(
        server.head().await,
        head,
        "no event for a binding already held"
    );
    assert!(server.event_types_after(head).await.is_empty());

    // Change role: two roles become one.
    let changed = api
        .acting(owner)
        .set_member_role(&tenant, member, "admin")
        .await
        .unwrap();
    assert_eq!(set(changed.membership.unwrap().roles), set(["admin"]));
    assert_eq!(
        role_names_of(&server, &tenant, member).await,
        set(["admin"])
    );
    let events = server.events_after(head).await;
    let mut types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    types.sort();
    assert_eq!(
        types,
        vec![
            "role_binding.created",
            "role_binding.deleted",
            "role_binding.deleted"
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.subject_id == Some(member.to_string()))
    );
    assert_eq!(changed.cursor, events.last().unwrap().position);
    assert_eq!(
        names_in(&snapshot(&events.last().unwrap().after), "roles"),
        set(["admin"])
    );
    assert_eq!(
        check(&mut client, &tenant.id, member, "logs.read").await.0,
        GRANTED,
        "admin holds logs.read"
    );
    assert_eq!(
        check(&mut client, &tenant.id, member, "members.manage")
            .await
            .0,
        GRANTED
    );
    // Changing to the role already held alone writes nothing.
    let head = server.head().await;
    api.acting(owner)
        .set_member_role(&tenant, member, "admin")
        .await
        .unwrap();
    assert_eq!(server.head().await, head);

    // The owner keeps the owner role next to the new one.
    let head = server.head().await;
    let owner_changed = api
        .as_system()
        .set_member_role(&tenant, tenant.owner, "support")
        .await
        .unwrap();
    assert_eq!(
        set(owner_changed.membership.unwrap().roles),
        set(["owner", "support"])
    );
    assert_eq!(
        server.event_types_after(head).await,
        vec!["role_binding.created"]
    );
    let head = server.head().await;
    api.acting(owner)
        .set_member_role(&tenant, tenant.owner, "member")
        .await
        .unwrap();
    assert_eq!(
        role_names_of(&server, &tenant, tenant.owner).await,
        set(["owner", "member"])
    );
    let mut types = server.event_types_after(head).await;
    types.sort();
    assert_eq!(types, vec!["role_binding.created", "role_binding.deleted"]);
    assert_eq!(
        check(&mut client, &tenant.id, tenant.owner, "tenant.delete")
            .await
            .0,
        GRANTED,
        "the owner keeps every permission"
    );

    // Unbinding a role not held writes nothing; unbinding a held one writes one event.
    let head = server.head().await;
    api.acting(owner)
        .unbind_role(&tenant, member, "support")
        .await
        .expect("unbinding a role not held succeeds");
    assert_eq!(server.head().await, head);
    let unbound = api
        .acting(owner)
        .unbind_role(&tenant, tenant.owner, "member")
        .await
        .unwrap();
    assert_eq!(set(unbound.membership.unwrap().roles), set(["owner"]));
    assert_eq!(
        server.event_types_after(head).await,
        vec!["role_binding.deleted"]
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Two replicas over one database.

#[tokio::test]
async fn a_second_replica_reflects_changes_through_the_feed_and_min_cursor() {
    let a = TestServer::start().await;
    let b = TestServer::start_shared(a.database.clone(), test_options()).await;
    let tenant = organization(&a, None).await;
    let polled = add_member(&a, &tenant, "member").await;
    let demanded = add_member(&a, &tenant, "member").await;
    let api_a = a.api().await;
    let mut on_a = roles(&a).await;
    let mut on_b = roles(&b).await;
    let mut members_a = a.members().await;

    // Warm replica B's cache.
    for user_id in [polled, demanded] {
        assert_eq!(
            check(&mut on_b, &tenant.id, user_id, "products.use")
                .await
                .0,
            GRANTED
        );
    }
    let suspend = |user_id: Uuid| pb::SuspendMembershipRequest {
        tenant_id: tenant.id.clone(),
        user_id: user_id.to_string(),
        etag: String::new(),
    };

    // Without a cursor, B reflects a suspension made through A once the feed delivers it.
    let first = members_a
        .suspend_membership(as_user(suspend(polled), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        check(&mut on_a, &tenant.id, polled, "products.use").await.0,
        SUSPENDED,
        "A denies at once"
    );
    let deadline = Instant::now() + REPLICA_DEADLINE;
    loop {
        let (answer, cursor) = check(&mut on_b, &tenant.id, polled, "products.use").await;
        if answer == SUSPENDED {
            assert!(cursor >= first.cursor);
            break;
        }
        assert_eq!(answer, GRANTED, "B answers the old state until it learns");
        assert!(
            Instant::now() < deadline,
            "replica B still grants {REPLICA_DEADLINE:?} after the suspension"
        );
        // A pause between polls, not a synchronization: the loop ends on the answer.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // With the mutation's cursor, B answers at least that fresh right away.
    let second = members_a
        .suspend_membership(as_user(suspend(demanded), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let (answer, cursor) = check_at(
        &mut on_b,
        &tenant.id,
        demanded,
        "products.use",
        second.cursor,
    )
    .await;
    assert_eq!(answer, SUSPENDED);
    assert!(cursor >= second.cursor);
    let response = on_b
        .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
            checks: checks_of(&tenant.id, demanded, &["products.use", "members.read"]),
            min_cursor: second.cursor,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(response.cursor >= second.cursor);
    assert!(
        response
            .results
            .iter()
            .all(|r| outcome(r.allowed, r.reason) == SUSPENDED)
    );

    // Reactivation and a role change through A, demanded on B.
    let reactivated = api_a
        .as_user(tenant.owner)
        .reactivate_member(&tenant, demanded)
        .await
        .unwrap();
    assert_eq!(
        check_at(
            &mut on_b,
            &tenant.id,
            demanded,
            "products.use",
            reactivated.cursor
        )
        .await
        .0,
        GRANTED
    );
    assert_eq!(
        check(&mut on_b, &tenant.id, demanded, "members.manage")
            .await
            .0,
        NOT_GRANTED
    );
    let promoted = api_a
        .as_user(tenant.owner)
        .set_member_role(&tenant, demanded, "admin")
        .await
        .unwrap();
    assert_eq!(
        check_at(
            &mut on_b,
            &tenant.id,
            demanded,
            "members.manage",
            promoted.cursor
        )
        .await
        .0,
        GRANTED
    );

    // A cursor beyond the log is refused.
    let head = a.head().await;
    let status = assert_refused(
        on_b.check_permission(as_system(check_request(
            &tenant.id,
            demanded,
            "products.use",
            head + 1_000_000,
        )))
        .await,
        Code::OutOfRange,
        "CURSOR_AHEAD",
    );
    let reported: i64 = status
        .get_details_error_info()
        .unwrap()
        .metadata
        .get("head")
        .expect("the head is reported")
        .parse()
        .unwrap();
    assert!(reported >= head && reported < head + 1_000_000);
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Who may check, and batch limits.

#[tokio::test]
async fn a_member_checks_themselves_and_others_only_with_members_read() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let other_tenant = organization(&server, None).await;
    let plain = add_member(&server, &tenant, "member").await;
    let colleague = add_member(&server, &tenant, "member").await;
    let mut client = roles(&server).await;
    let api = server.api().await;

    let ask = |actor: Uuid, user_id: Uuid, permission: &str| {
        as_user(check_request(&tenant.id, user_id, permission, 0), actor)
    };
    // Themselves, and (holding members.read) a colleague.
    let own = client
        .check_permission(ask(plain, plain, "products.use"))
        .await
        .expect("a member checks themselves")
        .into_inner();
    assert_eq!(outcome(own.allowed, own.reason), GRANTED);
    let theirs = client
        .check_permission(ask(plain, colleague, "billing.manage"))
        .await
        .expect("members.read allows checking others")
        .into_inner();
    assert_eq!(outcome(theirs.allowed, theirs.reason), NOT_GRANTED);

    // Without members.read: only themselves.
    api.as_user(tenant.owner)
        .create_role(&tenant, "product_user", &["products.use"])
        .await
        .unwrap();
    api.as_user(tenant.owner)
        .set_member_role(&tenant, plain, "product_user")
        .await
        .unwrap();
    let own = client
        .check_permission(ask(plain, plain, "members.read"))
        .await
        .expect("anyone checks themselves")
        .into_inner();
    assert_eq!(outcome(own.allowed, own.reason), NOT_GRANTED);
    denied_for(
        client
            .check_permission(ask(plain, colleague, "products.use"))
            .await,
        "members.read",
    );
    denied_for(
        client
            .check_permission(ask(plain, tenant.owner, "products.use"))
            .await,
        "members.read",
    );
    let mut mixed = checks_of(&tenant.id, plain, &["products.use"]);
    mixed.extend(checks_of(&tenant.id, colleague, &["products.use"]));
    denied_for(
        client
            .batch_check_permissions(as_user(
                pb::BatchCheckPermissionsRequest {
                    checks: mixed,
                    min_cursor: 0,
                },
                plain,
            ))
            .await,
        "members.read",
    );
    // An actor of another tenant checks nobody of this one.
    denied_for(
        client
            .check_permission(ask(other_tenant.owner, colleague, "products.use"))
            .await,
        "members.read",
    );
    // A system caller and the owner check anyone.
    let by_owner = client
        .check_permission(ask(tenant.owner, plain, "members.read"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(by_owner.allowed, by_owner.reason), NOT_GRANTED);
}

#[tokio::test]
async fn batches_hold_one_to_a_hundred_checks_of_known_permissions() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let plain = add_member(&server, &tenant, "member").await;
    let colleague = add_member(&server, &tenant, "member").await;
    let mut client = roles(&server).await;

    // Batch size and argument checks.
    let hundred: Vec<pb::PermissionCheck> = (0..100)
        .map(|i| pb::PermissionCheck {
            tenant_id: tenant.id.clone(),
            user_id: colleague.to_string(),
            permission: CATALOG[i % CATALOG.len()].to_string(),
        })
        .collect();
    let (results, _) = batch(&mut client, hundred.clone()).await;
    for (i, result) in results.iter().enumerate() {
        let permission = CATALOG[i % CATALOG.len()];
        let want = if ["members.read", "products.use"].contains(&permission) {
            GRANTED
        } else {
            NOT_GRANTED
        };
        assert_eq!(*result, want, "check {i}: {permission}");
    }
    let mut too_many = hundred.clone();
    too_many.push(hundred[0].clone());
    let status = assert_refused(
        client
            .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
                checks: too_many,
                min_cursor: 0,
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["checks"]);
    let status = assert_refused(
        client
            .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
                checks: vec![],
                min_cursor: 0,
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["checks"]);
    let mut unknown = hundred[..4].to_vec();
    unknown[3].permission = "members.delete".into();
    let status = assert_refused(
        client
            .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
                checks: unknown,
                min_cursor: 0,
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["checks[3].permission"]);
    let status = assert_refused(
        client
            .check_permission(as_system(check_request(
                &tenant.id,
                plain,
                "members.delete",
                0,
            )))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["permission"]);
    let status = assert_refused(
        client
            .check_permission(as_system(check_request(
                &tenant.id,
                plain,
                "products.use",
                -1,
            )))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), vec!["min_cursor"]);
}

/// The cursor a batch answer names must hold for every answer in it: an answer taken from a
/// cache entry that has not yet seen another replica's change must not be reported as
/// reflecting a position after that change.
#[tokio::test]
async fn a_batch_cursor_covers_every_answer_in_it() {
    let a = TestServer::start().await;
    // B learns of A's commits only through its feed; on SQLite a slow poll keeps it behind.
    let defaults = test_options();
    let slow = ServeOptions {
        feed: FeedOptions {
            poll_interval: Duration::from_secs(120),
            ..defaults.feed
        },
        ..defaults
    };
    let b = TestServer::start_shared(a.database.clone(), slow).await;
    let tenant = organization(&a, None).await;
    let warm = add_member(&a, &tenant, "member").await;
    let cold = add_member(&a, &tenant, "member").await;
    let mut on_b = roles(&b).await;
    assert_eq!(
        check(&mut on_b, &tenant.id, warm, "products.use").await.0,
        GRANTED
    );

    let suspended = a
        .api()
        .await
        .as_user(tenant.owner)
        .suspend_member(&tenant, warm)
        .await
        .unwrap();

    // A single check: either B has not seen the suspension and says so by its cursor, or it
    // denies.
    let (answer, cursor) = check(&mut on_b, &tenant.id, warm, "products.use").await;
    assert!(
        answer == SUSPENDED || cursor < suspended.cursor,
        "single check: {answer:?} claimed to reflect {cursor} >= suspension at {}",
        suspended.cursor
    );
    // A batch mixing the cached member with one B must read from the database.
    let (results, cursor) = batch(
        &mut on_b,
        [
            checks_of(&tenant.id, warm, &["products.use"]),
            checks_of(&tenant.id, cold, &["products.use"]),
        ]
        .concat(),
    )
    .await;
    assert_eq!(results[1], GRANTED);
    assert!(
        results[0] == SUSPENDED || cursor < suspended.cursor,
        "batch: {:?} for the suspended member, yet the answer claims to reflect position {cursor} \
         >= the suspension at {}",
        results[0],
        suspended.cursor
    );
    b.stop().await;
}

/// Each replica keeps the roles it read, by the tenant's roles stamp: a role changed through
/// one replica governs the very next write on another, with no wait and no cursor, because the
/// writer finds the new stamp on the tenant row it locks.
#[tokio::test]
async fn a_role_changed_through_one_replica_governs_the_next_write_on_another() {
    let database = TestDatabase::create().await;
    let a = ServerProcess::spawn(&database.url, &[]).await;
    let b = ServerProcess::spawn(&database.url, &[]).await;
    let owner = user();
    let tenant = pb::tenant_service_client::TenantServiceClient::new(a.channel().await)
        .create_tenant(as_system(pb::CreateTenantRequest {
            name: "Two replicas".into(),
            kind: pb::TenantKind::Enterprise as i32,
            role_preset: pb::RolePreset::Organization as i32,
            owner_user_id: owner.to_string(),
            owner_email: "owner@replicas.example".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let tenant = Tenant {
        id: tenant.tenant_id,
        owner,
    };
    let api_a = a.api().await;
    let mut roles_b = RoleServiceClient::new(b.channel().await);
    let mut members_a =
        pb::membership_service_client::MembershipServiceClient::new(a.channel().await);
    let manager = ["members.manage", "members.read", "products.use"];
    api_a
        .as_system()
        .create_role(&tenant, "recruiter", &manager)
        .await
        .unwrap();
    let recruiter = user();
    members_a
        .create_membership(as_system(new_member(&tenant, recruiter, "recruiter")))
        .await
        .unwrap();
    let hire = |user_id: Uuid| as_user(new_member(&tenant, user_id, "member"), recruiter);
    // Replica A reads the recruiter's roles for this write, and keeps them.
    members_a.create_membership(hire(user())).await.unwrap();

    let set_permissions = |permissions: &[&str]| pb::UpdateRoleRequest {
        role: Some(pb::Role {
            tenant_id: tenant.id.clone(),
            name: "recruiter".into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["permissions".into()],
        }),
    };
    roles_b
        .update_role(as_system(set_permissions(&[
            "members.read",
            "products.use",
        ])))
        .await
        .unwrap();
    let refused = members_a.create_membership(hire(user())).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    roles_b
        .update_role(as_system(set_permissions(&manager)))
        .await
        .unwrap();
    members_a.create_membership(hire(user())).await.unwrap();

    // A role deleted through B is gone for A's next write too.
    roles_b
        .delete_role(as_system(pb::DeleteRoleRequest {
            tenant_id: tenant.id.clone(),
            role: "recruiter".into(),
            unbind_everywhere: true,
        }))
        .await
        .unwrap();
    let missing = members_a
        .create_membership(as_system(new_member(&tenant, user(), "recruiter")))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(a.terminate().await.success());
    assert!(b.terminate().await.success());
}
