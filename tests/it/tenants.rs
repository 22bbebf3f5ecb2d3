//! TenantService over a real server: rules 1-4, validation, idempotency, health, reflection.

use crate::common::*;
use membership_service::grpc::pb;
use tonic::Code;

fn create_request(owner: uuid::Uuid) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        name: "Globex".into(),
        kind: pb::TenantKind::Enterprise as i32,
        role_preset: pb::RolePreset::Enterprise as i32,
        seat_limit: Some(10),
        owner_user_id: owner.to_string(),
        owner_email: "  Hank@Globex.EXAMPLE ".into(),
        owner_display_name: "Hank Scorpio".into(),
        request_id: String::new(),
    }
}

#[tokio::test]
async fn create_tenant_makes_the_first_owner_an_active_member_with_the_owner_role() {
    let server = TestServer::start().await;
    let owner = user();
    let head = server.head().await;
    let response = server
        .tenants()
        .await
        .create_tenant(as_user(create_request(owner), owner))
        .await
        .unwrap()
        .into_inner();
    let tenant = response.tenant.unwrap();
    assert_eq!(tenant.name, "Globex");
    assert_eq!(tenant.state, pb::TenantState::Active as i32);
    assert_eq!(tenant.seat_limit, Some(10));
    let member = response.owner.unwrap();
    assert_eq!(member.user_id, owner.to_string());
    assert_eq!(member.email, "hank@globex.example");
    assert_eq!(member.status, pb::MembershipStatus::Active as i32);
    assert_eq!(member.r#type, pb::MembershipType::Owner as i32);
    assert_eq!(member.roles, vec!["super_admin".to_string()]);
    assert!(member.join_time.is_some());

    // The creation's events committed with it, and the response names the last one.
    let events = server.events_after(head).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["tenant.created", "membership.created"]);
    assert_eq!(response.cursor, events.last().unwrap().position);
    assert_eq!(
        events[1].subject_id.as_deref(),
        Some(owner.to_string().as_str())
    );
    assert_eq!(events[0].actor_id, Some(owner));

    let usage = server
        .tenants()
        .await
        .get_seat_usage(as_user(
            pb::GetSeatUsageRequest {
                tenant_id: tenant.tenant_id.clone(),
            },
            owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (usage.used, usage.limit, usage.available),
        (1, Some(10), Some(9))
    );
    assert_eq!(usage.display, "1/10");
}

#[tokio::test]
async fn create_tenant_rejects_every_invalid_field_at_once_and_writes_nothing() {
    let server = TestServer::start().await;
    let before = server.event_count().await;
    let status = server
        .tenants()
        .await
        .create_tenant(as_system(pb::CreateTenantRequest {
            name: "x".repeat(201),
            kind: 0,
            role_preset: 99,
            seat_limit: Some(0),
            owner_user_id: "not-a-uuid".into(),
            owner_email: "nobody".into(),
            owner_display_name: String::new(),
            request_id: "also-not-a-uuid".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "kind",
            "name",
            "owner_email",
            "owner_user_id",
            "request_id",
            "role_preset",
            "seat_limit"
        ]
    );
    assert_refused::<()>(Err(status), Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(server.event_count().await, before);
    assert_eq!(server.scalar("SELECT COUNT(*) AS n FROM tenants").await, 0);
}

#[tokio::test]
async fn create_tenant_is_idempotent_on_request_id() {
    let server = TestServer::start().await;
    let owner = user();
    let mut request = create_request(owner);
    request.request_id = uuid::Uuid::new_v4().to_string();
    let mut client = server.tenants().await;
    let first = client
        .create_tenant(as_system(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let events = server.event_count().await;
    let second = client
        .create_tenant(as_system(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.tenant.unwrap().tenant_id,
        second.tenant.unwrap().tenant_id
    );
    assert_eq!(second.owner.unwrap().user_id, owner.to_string());
    assert_eq!(server.scalar("SELECT COUNT(*) AS n FROM tenants").await, 1);
    assert_eq!(
        server.event_count().await,
        events,
        "a retry writes no events"
    );
}

/// The RPCs idempotent on `request_id` (each creates one of these), for the table below.
#[derive(Clone, Copy, Debug)]
enum Idempotent {
    Tenant,
    Membership,
    Invitation,
    Group,
}

impl Idempotent {
    const ALL: [Idempotent; 4] = [
        Idempotent::Tenant,
        Idempotent::Membership,
        Idempotent::Invitation,
        Idempotent::Group,
    ];

    fn method(self) -> &'static str {
        match self {
            Idempotent::Tenant => "/membership.v1.TenantService/CreateTenant",
            Idempotent::Membership => "/membership.v1.MembershipService/CreateMembership",
            Idempotent::Invitation => "/membership.v1.InvitationService/CreateInvitation",
            Idempotent::Group => "/membership.v1.GroupService/CreateGroup",
        }
    }

    /// Calls the RPC with `request_id`: the first request when `variant` is 0, a request that
    /// differs from it in one field otherwise. Answers the id of the resource made.
    async fn call(
        self,
        server: &TestServer,
        tenant: &Tenant,
        request_id: &str,
        variant: u8,
    ) -> Result<String, tonic::Status> {
        let request_id = request_id.to_string();
        match self {
            Idempotent::Tenant => {
                let mut request = create_request(tenant.owner);
                request.request_id = request_id;
                if variant != 0 {
                    request.name = "Initech".into();
                }
                let response = server
                    .tenants()
                    .await
                    .create_tenant(as_system(request))
                    .await?;
                Ok(response.into_inner().tenant.unwrap().tenant_id)
            }
            Idempotent::Membership => {
                let user_id = uuid::Uuid::from_u128(
                    0x0190_0000_0000_7000_8000_0000_0000_0001 + u128::from(variant),
                );
                let request = pb::CreateMembershipRequest {
                    request_id,
                    ..new_member(tenant, user_id, "member")
                };
                let response = server
                    .members()
                    .await
                    .create_membership(as_system(request))
                    .await?;
                Ok(response.into_inner().membership.unwrap().user_id)
            }
            Idempotent::Invitation => {
                let request = pb::CreateInvitationRequest {
                    tenant_id: tenant.id.clone(),
                    email: format!("invitee-{variant}@acme.example"),
                    role: "member".into(),
                    ttl: None,
                    request_id,
                };
                let response = pb::invitation_service_client::InvitationServiceClient::new(
                    server.channel().await,
                )
                .create_invitation(as_user(request, tenant.owner))
                .await?;
                Ok(response.into_inner().invitation.unwrap().invitation_id)
            }
            Idempotent::Group => {
                let request = pb::CreateGroupRequest {
                    tenant_id: tenant.id.clone(),
                    name: format!("Engineering {variant}"),
                    request_id,
                    ..Default::default()
                };
                let response =
                    pb::group_service_client::GroupServiceClient::new(server.channel().await)
                        .create_group(as_user(request, tenant.owner))
                        .await?;
                Ok(response.into_inner().group.unwrap().group_id)
            }
        }
    }
}

/// Every method whose request message has a `request_id` field, from the served descriptors.
fn methods_taking_a_request_id() -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let with_request_id: Vec<String> = set
        .file
        .iter()
        .flat_map(|file| {
            file.message_type
                .iter()
                .filter(|m| m.field.iter().any(|f| f.name() == "request_id"))
                .map(move |m| format!(".{}.{}", file.package(), m.name()))
        })
        .collect();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if with_request_id.iter().any(|m| m == method.input_type()) {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods.sort();
    methods
}

#[tokio::test]
async fn every_request_id_repeats_its_answer_and_refuses_a_different_request() {
    let mut covered: Vec<String> = Idempotent::ALL
        .iter()
        .map(|rpc| rpc.method().to_string())
        .collect();
    covered.sort();
    assert_eq!(
        covered,
        methods_taking_a_request_id(),
        "the table covers every RPC that takes a request_id"
    );

    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    for rpc in Idempotent::ALL {
        let request_id = uuid::Uuid::new_v4().to_string();
        let first = rpc
            .call(&server, &tenant, &request_id, 0)
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", rpc.method()));
        let head = server.head().await;
        let again = rpc
            .call(&server, &tenant, &request_id, 0)
            .await
            .unwrap_or_else(|s| panic!("{} retried: {s:?}", rpc.method()));
        assert_eq!(
            again,
            first,
            "{}: a retry gets the same answer",
            rpc.method()
        );
        let reused = rpc.call(&server, &tenant, &request_id, 1).await;
        let status = assert_refused(reused, Code::InvalidArgument, "REQUEST_ID_REUSED");
        assert!(
            status.message().contains("request_id"),
            "{}: {status:?}",
            rpc.method()
        );
        assert_eq!(
            server.head().await,
            head,
            "{}: neither call wrote",
            rpc.method()
        );
    }
}

#[tokio::test]
async fn an_actor_cannot_create_a_tenant_owned_by_someone_else() {
    let server = TestServer::start().await;
    let result = server
        .tenants()
        .await
        .create_tenant(as_user(create_request(user()), user()))
        .await;
    assert_refused(result, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn get_tenant_is_for_members_only() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let other = enterprise(&server, None).await;
    let mut client = server.tenants().await;
    let get = |id: &str| pb::GetTenantRequest {
        tenant_id: id.into(),
    };
    let found = client
        .get_tenant(as_user(get(&tenant.id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.tenant.unwrap().tenant_id, tenant.id);
    // Rule 14: an actor of another tenant gets no data.
    let refused = client
        .get_tenant(as_user(get(&tenant.id), other.owner))
        .await;
    assert_refused(refused, Code::PermissionDenied, "NOT_A_MEMBER");
    let missing = client
        .get_tenant(as_system(get(&uuid::Uuid::now_v7().to_string())))
        .await;
    assert_refused(missing, Code::NotFound, "TENANT_NOT_FOUND");
    let invalid = client.get_tenant(as_system(get(""))).await;
    let status = assert_refused(invalid, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["tenant_id"]);
    let bad_actor = {
        let mut request = tonic::Request::new(get(&tenant.id));
        request
            .metadata_mut()
            .insert("x-actor-id", "bob".parse().unwrap());
        client.get_tenant(request).await
    };
    assert_refused(bad_actor, Code::Unauthenticated, "INVALID_ACTOR");
}

#[tokio::test]
async fn update_tenant_uses_the_mask_and_the_etag() {
    let server = TestServer::start().await;
    let tenant = organization(&server, Some(5)).await;
    let mut client = server.tenants().await;
    let current = client
        .get_tenant(as_system(pb::GetTenantRequest {
            tenant_id: tenant.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let head = server.head().await;
    let changed = client
        .update_tenant(as_user(
            update_tenant(
                pb::Tenant {
                    name: "Acme Corp".into(),
                    seat_limit: Some(50),
                    kind: pb::TenantKind::Personal as i32, // not in the mask: ignored
                    ..current.clone()
                },
                &["name", "seat_limit"],
            ),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let updated = changed.tenant.unwrap();
    assert_eq!(updated.name, "Acme Corp");
    assert_eq!(updated.seat_limit, Some(50));
    assert_eq!(updated.kind, pb::TenantKind::Enterprise as i32);
    assert_ne!(updated.etag, current.etag);
    assert_eq!(server.event_types_after(head).await, ["tenant.updated"]);

    // The old etag is stale now.
    let stale = client
        .update_tenant(as_user(
            update_tenant(current.clone(), &["name"]),
            tenant.owner,
        ))
        .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");

    // Clearing the limit: the path in the mask with the field unset.
    let unlimited = client
        .update_tenant(as_system(update_tenant(
            pb::Tenant {
                seat_limit: None,
                etag: String::new(),
                ..updated.clone()
            },
            &["seat_limit"],
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlimited.tenant.unwrap().seat_limit, None);

    // Downgrades, empty masks, unknown paths and non-owners are refused.
    let downgrade = client
        .update_tenant(as_system(update_tenant(
            pb::Tenant {
                kind: pb::TenantKind::Personal as i32,
                etag: String::new(),
                ..updated.clone()
            },
            &["kind"],
        )))
        .await;
    assert_refused(downgrade, Code::FailedPrecondition, "TENANT_DOWNGRADE");
    let no_mask = client
        .update_tenant(as_system(update_tenant(updated.clone(), &[])))
        .await;
    assert_eq!(
        violated_fields(&assert_refused(
            no_mask,
            Code::InvalidArgument,
            "INVALID_ARGUMENT"
        )),
        ["update_mask"]
    );
    let bad_path = client
        .update_tenant(as_system(update_tenant(updated.clone(), &["state"])))
        .await;
    assert_refused(bad_path, Code::InvalidArgument, "INVALID_ARGUMENT");
    let admin = add_member(&server, &tenant, "admin").await;
    let not_allowed = client
        .update_tenant(as_user(update_tenant(updated.clone(), &["name"]), admin))
        .await;
    let status = assert_refused(not_allowed, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(
        status.message().contains("tenant.manage"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn member_management_needs_an_enterprise_tenant_and_works_after_the_upgrade() {
    let server = TestServer::start().await;
    let tenant = create_tenant(
        &server,
        pb::TenantKind::Personal,
        pb::RolePreset::Enterprise,
        None,
    )
    .await;
    let mut members = server.members().await;
    let head = server.head().await;
    let refused = members
        .create_membership(as_user(new_member(&tenant, user(), "member"), tenant.owner))
        .await;
    let status = assert_refused(refused, Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE");
    assert_eq!(
        status.message(),
        "member management is only available for enterprise tenants"
    );
    let list = members
        .list_memberships(as_user(
            pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                ..Default::default()
            },
            tenant.owner,
        ))
        .await;
    assert_refused(list, Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE");
    assert_eq!(server.head().await, head, "a refused call writes no events");

    let current = server
        .tenants()
        .await
        .get_tenant(as_system(pb::GetTenantRequest {
            tenant_id: tenant.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    server
        .tenants()
        .await
        .update_tenant(as_user(
            update_tenant(
                pb::Tenant {
                    kind: pb::TenantKind::Enterprise as i32,
                    ..current
                },
                &["kind"],
            ),
            tenant.owner,
        ))
        .await
        .unwrap();
    members
        .create_membership(as_user(new_member(&tenant, user(), "member"), tenant.owner))
        .await
        .expect("member management after the upgrade");
}

#[tokio::test]
async fn dissolving_ends_every_membership_and_freezes_the_tenant() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let admin = add_member(&server, &tenant, "admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let mut tenants = server.tenants().await;
    let dissolve = |validate_only| pb::DissolveTenantRequest {
        tenant_id: tenant.id.clone(),
        etag: String::new(),
        validate_only,
    };
    // Only the owner may dissolve.
    let refused = tenants
        .dissolve_tenant(as_user(dissolve(false), admin))
        .await;
    assert_refused(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    // validate_only checks and changes nothing.
    let head = server.head().await;
    tenants
        .dissolve_tenant(as_user(dissolve(true), tenant.owner))
        .await
        .unwrap();
    assert_eq!(server.head().await, head);
    assert_eq!(
        get_member(&server, &tenant, member).await.unwrap().status,
        pb::MembershipStatus::Active as i32
    );

    let dissolved = tenants
        .dissolve_tenant(as_user(dissolve(false), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let t = dissolved.tenant.unwrap();
    assert_eq!(t.state, pb::TenantState::Dissolved as i32);
    assert!(t.dissolve_time.is_some());
    let mut types = server.event_types_after(head).await;
    assert_eq!(types.pop().as_deref(), Some("tenant.dissolved"));
    assert_eq!(types, ["membership.left"; 3]);
    for user_id in [tenant.owner, admin, member] {
        let m = get_member(&server, &tenant, user_id).await.unwrap();
        assert_eq!(m.status, pb::MembershipStatus::Left as i32);
        assert!(m.roles.is_empty());
    }
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM role_bindings")
            .await,
        0
    );

    // Later mutations are refused.
    let later = server
        .members()
        .await
        .create_membership(as_system(new_member(&tenant, user(), "member")))
        .await;
    assert_refused(later, Code::FailedPrecondition, "TENANT_DISSOLVED");
    let again = tenants.dissolve_tenant(as_system(dissolve(false))).await;
    assert_refused(again, Code::FailedPrecondition, "TENANT_DISSOLVED");
}

#[tokio::test]
async fn health_reports_serving_and_reflection_v1_and_v1alpha_describe_the_api() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "membership.v1.TenantService",
        "membership.v1.MembershipService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1;
    use tonic_reflection::pb::v1alpha;
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let requests = tokio_stream::iter(vec![
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "membership.v1.Membership".into(),
                ),
            ),
        },
    ]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let listed = responses.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("unexpected {listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "membership.v1.TenantService",
        "membership.v1.MembershipService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let described = responses.message().await.unwrap().unwrap();
    assert!(matches!(
        described.message_response,
        Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
    ));

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter(vec![v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "membership.v1.TenantService".into(),
                ),
            ),
        }]))
        .await
        .unwrap()
        .into_inner();
    let described = responses.message().await.unwrap().unwrap();
    assert!(matches!(
        described.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
    ));
}

/// A request for `message` that passes validation, aimed at `tenant_id`, naming `actor`
/// wherever it names a user; `None` when it does not name a tenant at all.
fn request_in_tenant(
    message: &prost_types::DescriptorProto,
    messages: &std::collections::HashMap<String, prost_types::DescriptorProto>,
    tenant_id: &str,
    actor: uuid::Uuid,
) -> Option<Vec<u8>> {
    let mut encoded = Vec::new();
    let mut names_tenant = false;
    for field in &message.field {
        let name = field.name();
        let value = match name {
            "tenant_id" => {
                names_tenant = true;
                tenant_id.to_string()
            }
            n if n.ends_with("user_id") || n == "actor_id" || n == "subject_id" => {
                actor.to_string()
            }
            "email" | "emails" => "someone@acme.example".into(),
            "role" | "previous_owner_role" => "member".into(),
            "name" if message.name().contains("Role") => "auditor".into(),
            "name" | "display_name" | "description" => "Someone".into(),
            "permission" | "permissions" => "members.read".into(),
            "domain" => "acme-corp.example".into(),
            "invitation_id" | "domain_id" => uuid::Uuid::now_v7().to_string(),
            // A group names its subject instead of a user in the binding calls.
            "group_id"
                if !matches!(
                    message.name(),
                    "BindRoleRequest" | "UnbindRoleRequest" | "ListRoleBindingsRequest"
                ) =>
            {
                uuid::Uuid::now_v7().to_string()
            }
            "user_ids" => actor.to_string(),
            "source" if message.name() == "CreateMembershipRequest" => {
                // MEMBERSHIP_SOURCE_SCIM: a direct source.
                encoded.extend_from_slice(&[(field.number() as u8) << 3, 3]);
                continue;
            }
            "update_mask" => {
                // A field every Update* request may change.
                let path = match message.name() {
                    "UpdateTenantRequest" => "name",
                    "UpdateRoleRequest" => "description",
                    "UpdateDomainRequest" => "auto_join",
                    "UpdateGroupRequest" => "name",
                    _ => "display_name",
                };
                let mut mask = Vec::new();
                put_bytes(&mut mask, 1, path.as_bytes());
                put_bytes(&mut encoded, field.number(), &mask);
                continue;
            }
            _ => match messages.get(field.type_name()) {
                Some(nested) if field.type_name().starts_with(".membership.v1.") => {
                    if let Some(inner) = request_in_tenant(nested, messages, tenant_id, actor) {
                        names_tenant = true;
                        put_bytes(&mut encoded, field.number(), &inner);
                    }
                    continue;
                }
                _ => continue,
            },
        };
        put_bytes(&mut encoded, field.number(), value.as_bytes());
    }
    names_tenant.then_some(encoded)
}

/// AIP-211: a user who is not a member of a tenant learns nothing of whether it exists. Every
/// RPC that names a tenant answers such a caller the same for an existing tenant and for an id
/// no tenant has; only a system caller hears NOT_FOUND.
#[tokio::test]
async fn a_non_member_cannot_tell_an_existing_tenant_from_a_missing_one() {
    let server = TestServer::start().await;
    let existing = organization(&server, None).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let outsider = user();
    let channel = server.channel().await;
    let (rpcs, messages) = every_rpc();
    let mut checked = 0;
    for (path, request) in &rpcs {
        let Some(to_existing) = request_in_tenant(request, &messages, &existing.id, outsider)
        else {
            continue;
        };
        let to_missing = request_in_tenant(request, &messages, &missing, outsider).unwrap();
        let actor = [("x-actor-id", outsider.to_string())];
        let existing_answer = raw_call(&channel, path, frame(0, &to_existing), &actor).await;
        let missing_answer = raw_call(&channel, path, frame(0, &to_missing), &actor).await;
        let (seen, unseen) = (existing_answer.status(), missing_answer.status());
        let reason = |status: &tonic::Status| {
            tonic_types::StatusExt::get_details_error_info(status).map(|info| info.reason)
        };
        if seen.code() == Code::Ok {
            // A user checking their own permissions: the same answer, a denial.
            assert_eq!(unseen.code(), Code::Ok, "{path}: {}", unseen.message());
            assert_eq!(
                existing_answer.message, missing_answer.message,
                "{path}: the answers differ"
            );
        } else {
            assert_eq!(
                (seen.code(), reason(&seen)),
                (Code::PermissionDenied, Some("NOT_A_MEMBER".to_string())),
                "{path}, existing tenant: {}",
                seen.message()
            );
            assert_eq!(
                (unseen.code(), reason(&unseen)),
                (seen.code(), reason(&seen)),
                "{path}, missing tenant: {}",
                unseen.message()
            );
        }
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} tenant-scoped RPCs checked");

    // The self-check answers that the caller is not a member, in both cases.
    let mut roles = pb::role_service_client::RoleServiceClient::new(server.channel().await);
    for tenant_id in [existing.id.clone(), missing.clone()] {
        let answer = roles
            .check_permission(as_user(
                pb::CheckPermissionRequest {
                    tenant_id,
                    user_id: outsider.to_string(),
                    permission: "members.read".into(),
                    min_cursor: 0,
                },
                outsider,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.allowed);
        assert_eq!(answer.reason, pb::CheckReason::NotAMember as i32);
    }
    // A system caller is told the truth.
    let absent = server
        .tenants()
        .await
        .get_tenant(as_system(pb::GetTenantRequest { tenant_id: missing }))
        .await;
    assert_refused(absent, Code::NotFound, "TENANT_NOT_FOUND");
}
