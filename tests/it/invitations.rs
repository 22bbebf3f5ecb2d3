//! InvitationService over a real server (DESIGN rules 4 and 13-19): invite, bulk invite, accept,
//! resend, revoke, list; tokens stored only as hashes; seats held by pending invitations under
//! concurrent requests; and the invitation email, delivered to an SMTP server in the test.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use crate::common::smtp::SmtpSink;
use crate::common::*;
use futures::future::join_all;
use membership_service::app::ServeOptions;
use membership_service::grpc::pb;
use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
use membership_service::mail::MailOptions;
use prost_types::Timestamp;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

const HOUR: i64 = 3_600;
const DAY: i64 = 24 * HOUR;

async fn invitations(server: &TestServer) -> InvitationServiceClient<Channel> {
    InvitationServiceClient::new(server.channel().await)
}

fn invite(tenant: &Tenant, email: &str, role: &str) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        tenant_id: tenant.id.clone(),
        email: email.into(),
        role: role.into(),
        ttl: None,
        request_id: String::new(),
    }
}

/// Invites `email` with `role` as the tenant's owner.
async fn invited(
    server: &TestServer,
    tenant: &Tenant,
    email: &str,
    role: &str,
) -> pb::CreateInvitationResponse {
    invitations(server)
        .await
        .create_invitation(as_user(invite(tenant, email, role), tenant.owner))
        .await
        .unwrap_or_else(|s| panic!("inviting {email}: {s:?}"))
        .into_inner()
}

fn accept(token: &str, user_id: Uuid, email: &str) -> pb::AcceptInvitationRequest {
    pb::AcceptInvitationRequest {
        token: token.into(),
        user_id: user_id.to_string(),
        email: email.into(),
        display_name: "Ann Accepter".into(),
    }
}

/// Accepts as the accepting user themselves.
async fn accept_as(
    server: &TestServer,
    token: &str,
    user_id: Uuid,
    email: &str,
) -> Result<pb::AcceptInvitationResponse, Status> {
    invitations(server)
        .await
        .accept_invitation(as_user(accept(token, user_id, email), user_id))
        .await
        .map(|r| r.into_inner())
}

fn resend(tenant: &Tenant, invitation_id: &str) -> pb::ResendInvitationRequest {
    pb::ResendInvitationRequest {
        tenant_id: tenant.id.clone(),
        invitation_id: invitation_id.into(),
        ttl: None,
    }
}

fn revoke(tenant: &Tenant, invitation_id: &str) -> pb::RevokeInvitationRequest {
    pb::RevokeInvitationRequest {
        tenant_id: tenant.id.clone(),
        invitation_id: invitation_id.into(),
    }
}

fn bulk(tenant: &Tenant, emails: &[&str], role: &str) -> pb::BulkCreateInvitationsRequest {
    pb::BulkCreateInvitationsRequest {
        tenant_id: tenant.id.clone(),
        emails: emails.iter().map(|e| e.to_string()).collect(),
        role: role.into(),
        ttl: None,
    }
}

fn ttl(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

async fn get_invitation(
    server: &TestServer,
    tenant: &Tenant,
    invitation_id: &str,
) -> pb::Invitation {
    invitations(server)
        .await
        .get_invitation(as_system(pb::GetInvitationRequest {
            tenant_id: tenant.id.clone(),
            invitation_id: invitation_id.into(),
        }))
        .await
        .unwrap_or_else(|s| panic!("getting invitation {invitation_id}: {s:?}"))
        .into_inner()
        .invitation
        .unwrap()
}

/// The tenant's member list filtered by `status` (UNSPECIFIED: everything), every page.
async fn member_list(
    server: &TestServer,
    tenant: &Tenant,
    status: pb::MembershipStatus,
) -> Vec<pb::Membership> {
    let mut client = server.members().await;
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_memberships(as_system(pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                status: status as i32,
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        all.extend(page.memberships);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Every invitation of the tenant in `state` (UNSPECIFIED: any) matching `query`, walking pages
/// of `page_size`; also returns how many pages it took.
async fn list_invitations(
    server: &TestServer,
    tenant: &Tenant,
    state: pb::InvitationState,
    query: &str,
    page_size: i32,
) -> (Vec<pb::Invitation>, usize) {
    let mut client = invitations(server).await;
    let mut all = Vec::new();
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_invitations(as_user(
                pb::ListInvitationsRequest {
                    tenant_id: tenant.id.clone(),
                    page_size,
                    page_token: page_token.clone(),
                    state: state as i32,
                    query: query.into(),
                },
                tenant.owner,
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.invitations.len() <= page_size as usize);
        all.extend(page.invitations);
        if page.next_page_token.is_empty() {
            return (all, pages);
        }
        page_token = page.next_page_token;
    }
}

fn emails(invitations: &[pb::Invitation]) -> BTreeSet<String> {
    invitations.iter().map(|i| i.email.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn at(t: &Option<Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("a timestamp");
    (t.seconds, t.nanos)
}

/// Asserts `later - earlier` is `seconds`, give or take the second two clock reads may straddle.
#[track_caller]
fn assert_span(earlier: &Option<Timestamp>, later: &Option<Timestamp>, seconds: i64) {
    let span = at(later).0 - at(earlier).0;
    assert!(
        (span - seconds).abs() <= 1,
        "expected {seconds}s between {earlier:?} and {later:?}, got {span}s"
    );
}

/// Tokens are at least 128 random bits, URL-safe.
#[track_caller]
fn assert_token(token: &str) {
    assert!(token.len() >= 22, "token too short for 128 bits: {token:?}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "token is not URL-safe: {token:?}"
    );
}

fn delivery(delivery: &Option<pb::Delivery>) -> pb::DeliveryStatus {
    pb::DeliveryStatus::try_from(delivery.as_ref().expect("a delivery").status).unwrap()
}

/// SHA-256 of the token, lower-case hex: how the server stores it.
fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// Moves the invitation holding `token` past its expiry.
async fn expire(server: &TestServer, token: &str) {
    let aged = server
        .expire_invitations(&format!("token_hash = '{}'", token_hash(token)))
        .await;
    assert_eq!(aged, 1, "the invitation is found by its token's hash");
}

async fn rows_with_token_hash(server: &TestServer, token: &str) -> i64 {
    server
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM invitations WHERE token_hash = '{}'",
            token_hash(token)
        ))
        .await
}

/// Every `table.column` of the database whose text holds `needle`: each column of each table,
/// cast to text (JSON snapshots, request ids and blobs included).
async fn where_stored(server: &TestServer, needle: &str) -> Vec<String> {
    let db = server.db();
    let backend = db.get_database_backend();
    let (columns_sql, contains) = match backend {
        DbBackend::Sqlite => (
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
            "instr",
        ),
        _ => (
            "SELECT CAST(table_name AS TEXT) AS t, CAST(column_name AS TEXT) AS c \
             FROM information_schema.columns WHERE table_schema = current_schema()",
            "strpos",
        ),
    };
    let columns = db
        .query_all_raw(Statement::from_string(backend, columns_sql.to_string()))
        .await
        .expect("listing columns");
    assert!(columns.len() > 20, "the schema was found");
    let mut tables = HashSet::new();
    let mut found = Vec::new();
    for row in columns {
        let table: String = row.try_get("", "t").unwrap();
        let column: String = row.try_get("", "c").unwrap();
        tables.insert(table.clone());
        let hits = server
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM \"{table}\" \
                 WHERE {contains}(CAST(\"{column}\" AS TEXT), '{}') > 0",
                needle.replace('\'', "''")
            ))
            .await;
        if hits > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    for table in ["invitations", "events", "request_ids", "memberships"] {
        assert!(tables.contains(table), "table {table} scanned");
    }
    found
}

#[track_caller]
fn seats_missing(status: &Status) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get("seats_missing").cloned())
        .unwrap_or_else(|| panic!("no seats_missing in {status:?}"))
}

fn member_email(user_id: Uuid) -> String {
    format!("user-{}@acme.example", user_id.simple())
}

/// Links `user_id` with `email` directly, as a system caller (SCIM, say) would; the types of
/// the events the call wrote.
async fn link_directly(
    server: &TestServer,
    tenant: &Tenant,
    user_id: Uuid,
    email: &str,
) -> Vec<String> {
    let head = server.head().await;
    let mut request = new_member(tenant, user_id, "member");
    request.email = email.into();
    server
        .members()
        .await
        .create_membership(as_system(request))
        .await
        .unwrap();
    server.event_types_after(head).await
}

#[tokio::test]
async fn accepting_makes_an_active_member_with_the_invited_role() {
    let server = TestServer::start().await;
    // The owner and the invitation fill both seats: accepting needs no further seat.
    let tenant = enterprise(&server, Some(2)).await;
    let mut client = invitations(&server).await;
    let head = server.head().await;

    let created = client
        .create_invitation(as_user(
            invite(&tenant, "  Dana.Dev@Acme.EXAMPLE ", "dev_admin"),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let invitation = created.invitation.clone().unwrap();
    assert!(Uuid::parse_str(&invitation.invitation_id).is_ok());
    assert_eq!(invitation.tenant_id, tenant.id);
    assert_eq!(invitation.email, "dana.dev@acme.example");
    assert_eq!(invitation.role, "dev_admin");
    assert_eq!(invitation.inviter_id, tenant.owner.to_string());
    assert_eq!(invitation.state, pb::InvitationState::Pending as i32);
    assert_eq!(invitation.send_count, 1);
    assert!(invitation.last_send_time.is_some());
    assert!(invitation.accept_time.is_none());
    assert!(invitation.accepted_user_id.is_empty());
    assert!(!invitation.etag.is_empty());
    // Seven days by default.
    assert_span(&invitation.create_time, &invitation.expire_time, 7 * DAY);
    assert_token(&created.token);
    // No mail server and no accept URL configured: the caller delivers the token itself.
    assert_eq!(
        delivery(&created.delivery),
        pb::DeliveryStatus::NotConfigured
    );
    assert!(created.accept_url.is_empty());

    server
        .expect_events(
            head,
            &["invitation.created"],
            created.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(
        get_invitation(&server, &tenant, &invitation.invitation_id).await,
        invitation
    );

    // The pending invitation is listed as an INVITED member and holds a seat.
    let invited_entries = member_list(&server, &tenant, pb::MembershipStatus::Invited).await;
    assert_eq!(invited_entries.len(), 1, "{invited_entries:?}");
    let entry = &invited_entries[0];
    assert_eq!(entry.status, pb::MembershipStatus::Invited as i32);
    assert_eq!(entry.tenant_id, tenant.id);
    assert!(entry.user_id.is_empty());
    assert_eq!(entry.invitation_id, invitation.invitation_id);
    assert_eq!(entry.email, "dana.dev@acme.example");
    assert_eq!(entry.source, pb::MembershipSource::Invite as i32);
    assert_eq!(entry.roles, ["dev_admin"]);
    assert_eq!(
        member_list(&server, &tenant, pb::MembershipStatus::Unspecified)
            .await
            .len(),
        2,
        "the owner and the invited entry"
    );
    assert!(
        member_list(&server, &tenant, pb::MembershipStatus::Active)
            .await
            .iter()
            .all(|m| m.invitation_id.is_empty() && !m.user_id.is_empty())
    );
    let usage = seat_usage(&server, &tenant).await;
    assert_eq!((usage.used, usage.available), (2, Some(0)));

    // Accepting, with the verified email in another case.
    let user_id = user();
    let head = server.head().await;
    let accepted = accept_as(&server, &created.token, user_id, "DANA.dev@acme.example")
        .await
        .unwrap();
    let membership = accepted.membership.clone().unwrap();
    assert_eq!(membership.tenant_id, tenant.id);
    assert_eq!(membership.user_id, user_id.to_string());
    assert_eq!(membership.status, pb::MembershipStatus::Active as i32);
    assert_eq!(membership.roles, ["dev_admin"]);
    assert_eq!(membership.source, pb::MembershipSource::Invite as i32);
    assert_eq!(membership.invited_by, tenant.owner.to_string());
    assert_eq!(membership.email, "dana.dev@acme.example");
    assert_eq!(membership.display_name, "Ann Accepter");
    assert!(membership.join_time.is_some());
    let done = accepted.invitation.clone().unwrap();
    assert_eq!(done.invitation_id, invitation.invitation_id);
    assert_eq!(done.state, pb::InvitationState::Accepted as i32);
    assert_eq!(done.accepted_user_id, user_id.to_string());
    assert!(done.accept_time.is_some());
    assert_eq!(
        get_invitation(&server, &tenant, &invitation.invitation_id).await,
        done
    );

    let mut types = server.event_types_after(head).await;
    types.sort();
    assert_eq!(types, ["invitation.accepted", "membership.created"]);
    assert_eq!(accepted.cursor, head + 2);

    let stored = get_member(&server, &tenant, user_id).await.unwrap();
    assert_eq!(stored.status, pb::MembershipStatus::Active as i32);
    assert_eq!(stored.roles, ["dev_admin"]);
    assert_eq!(stored.source, pb::MembershipSource::Invite as i32);
    assert_eq!(stored.invited_by, tenant.owner.to_string());
    // The seat moved from the invitation to the member; the INVITED entry is gone.
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);
    assert!(
        member_list(&server, &tenant, pb::MembershipStatus::Invited)
            .await
            .is_empty()
    );

    // Single use: the token does nothing more, for anyone.
    let head = server.head().await;
    let again = accept_as(&server, &created.token, user(), "dana.dev@acme.example").await;
    assert_refused(again, Code::FailedPrecondition, "INVITATION_NOT_PENDING");
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn accepting_with_another_email_is_refused_and_the_invitation_stays_usable() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let created = invited(&server, &tenant, "erin@acme.example", "member").await;
    let invitation_id = created.invitation.unwrap().invitation_id;
    let user_id = user();
    let head = server.head().await;

    let mismatch = accept_as(&server, &created.token, user_id, "mallory@acme.example").await;
    assert_refused(mismatch, Code::PermissionDenied, "EMAIL_MISMATCH");
    assert_eq!(server.head().await, head, "a refusal writes nothing");
    assert_refused(
        get_member(&server, &tenant, user_id).await,
        Code::NotFound,
        "MEMBERSHIP_NOT_FOUND",
    );
    assert_eq!(
        get_invitation(&server, &tenant, &invitation_id).await.state,
        pb::InvitationState::Pending as i32
    );

    let accepted = accept_as(&server, &created.token, user_id, "erin@acme.example")
        .await
        .expect("the invited address still accepts");
    assert_eq!(
        accepted.membership.unwrap().status,
        pb::MembershipStatus::Active as i32
    );
}

#[tokio::test]
async fn accept_refusals_unknown_token_another_caller_and_existing_member() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let created = invited(&server, &tenant, "finn@acme.example", "member").await;
    let mut client = invitations(&server).await;

    for token in ["no-such-token-0000000000000000", "AAAAAAAAAAAAAAAAAAAAAA"] {
        let unknown = accept_as(&server, token, user(), "finn@acme.example").await;
        assert_refused(unknown, Code::NotFound, "INVITATION_NOT_FOUND");
    }
    // Another user cannot accept on someone's behalf.
    let intruder = user();
    let on_behalf = client
        .accept_invitation(as_user(
            accept(&created.token, user(), "finn@acme.example"),
            intruder,
        ))
        .await;
    let status = on_behalf.expect_err("accepting for another user");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // A user who already is a member cannot accept into the same tenant again.
    let member = add_member(&server, &tenant, "member").await;
    let head_before_member = server.head().await;
    let already = accept_as(&server, &created.token, member, "finn@acme.example").await;
    assert_refused(already, Code::AlreadyExists, "MEMBER_EXISTS");
    assert_eq!(server.head().await, head_before_member);
    let invitation = created.invitation.unwrap();
    assert_eq!(
        get_invitation(&server, &tenant, &invitation.invitation_id)
            .await
            .state,
        pb::InvitationState::Pending as i32
    );

    // A system caller may accept for the user.
    let user_id = user();
    let accepted = client
        .accept_invitation(as_system(accept(
            &created.token,
            user_id,
            "finn@acme.example",
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.membership.unwrap().user_id, user_id.to_string());
}

#[tokio::test]
async fn the_database_never_holds_a_plaintext_token_and_resend_retires_the_old_one() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut client = invitations(&server).await;
    let created = client
        .create_invitation(as_user(
            pb::CreateInvitationRequest {
                request_id: Uuid::new_v4().to_string(),
                ..invite(&tenant, "gus@acme.example", "member")
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = created.token.clone();
    assert_token(&first);
    assert_eq!(where_stored(&server, &first).await, Vec::<String>::new());
    assert_eq!(rows_with_token_hash(&server, &first).await, 1);
    // The scan finds what is there: the hash, in the invitations table.
    let hash_found = where_stored(&server, &token_hash(&first)).await;
    assert!(
        hash_found.contains(&"invitations.token_hash".to_string()),
        "{hash_found:?}"
    );

    let invitation_id = created.invitation.unwrap().invitation_id;
    let resent = client
        .resend_invitation(as_user(resend(&tenant, &invitation_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let second = resent.token.clone();
    assert_token(&second);
    assert_ne!(second, first);
    assert_eq!(where_stored(&server, &first).await, Vec::<String>::new());
    assert_eq!(where_stored(&server, &second).await, Vec::<String>::new());
    assert_eq!(rows_with_token_hash(&server, &first).await, 0);
    assert_eq!(rows_with_token_hash(&server, &second).await, 1);

    // The old token stopped working; the new one works.
    let user_id = user();
    let old = accept_as(&server, &first, user_id, "gus@acme.example").await;
    assert_refused(old, Code::NotFound, "INVITATION_NOT_FOUND");
    accept_as(&server, &second, user_id, "gus@acme.example")
        .await
        .expect("the new token accepts");
    assert_eq!(where_stored(&server, &second).await, Vec::<String>::new());
}

#[tokio::test]
async fn resend_rotates_the_token_resets_the_expiry_and_counts_sends() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let member = add_member(&server, &tenant, "member").await;
    let created = invited(&server, &tenant, "hana@acme.example", "member").await;
    let before = created.invitation.unwrap();
    let mut client = invitations(&server).await;

    let head = server.head().await;
    let resent = client
        .resend_invitation(as_user(
            pb::ResendInvitationRequest {
                ttl: ttl(2 * HOUR),
                ..resend(&tenant, &before.invitation_id)
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let after = resent.invitation.clone().unwrap();
    assert_eq!(after.invitation_id, before.invitation_id);
    assert_eq!(after.state, pb::InvitationState::Pending as i32);
    assert_eq!(after.send_count, 2);
    assert_ne!(after.last_send_time, before.last_send_time);
    assert!(at(&after.last_send_time) >= at(&before.last_send_time));
    assert_ne!(after.expire_time, before.expire_time);
    assert_span(&after.last_send_time, &after.expire_time, 2 * HOUR);
    assert_eq!(after.create_time, before.create_time);
    assert_ne!(after.etag, before.etag);
    assert_ne!(resent.token, created.token);
    assert_eq!(
        delivery(&resent.delivery),
        pb::DeliveryStatus::NotConfigured
    );
    server
        .expect_events(
            head,
            &["invitation.resent"],
            resent.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(
        get_invitation(&server, &tenant, &before.invitation_id).await,
        after
    );

    // Without a ttl the expiry is seven days from the new send.
    let third = client
        .resend_invitation(as_user(
            resend(&tenant, &before.invitation_id),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(third.send_count, 3);
    assert_span(&third.last_send_time, &third.expire_time, 7 * DAY);

    // Resending needs members.manage; an unknown invitation is not found.
    let head = server.head().await;
    denied_for(
        client
            .resend_invitation(as_user(resend(&tenant, &before.invitation_id), member))
            .await,
        "members.manage",
    );
    let unknown = client
        .resend_invitation(as_user(
            resend(&tenant, &Uuid::now_v7().to_string()),
            tenant.owner,
        ))
        .await;
    assert_refused(unknown, Code::NotFound, "INVITATION_NOT_FOUND");
    let bad_ttl = client
        .resend_invitation(as_user(
            pb::ResendInvitationRequest {
                ttl: ttl(31 * DAY),
                ..resend(&tenant, &before.invitation_id)
            },
            tenant.owner,
        ))
        .await;
    let status = assert_refused(bad_ttl, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["ttl"]);
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn an_expired_invitation_is_refused_frees_its_seat_and_reopens_on_resend_when_a_seat_is_free()
{
    let server = TestServer::start().await;
    // The owner holds one seat; one is free.
    let tenant = enterprise(&server, Some(2)).await;
    let mut client = invitations(&server).await;
    let ann = invited(&server, &tenant, "ann@acme.example", "member").await;
    let ann_id = ann.invitation.clone().unwrap().invitation_id;
    let full = client
        .create_invitation(as_user(
            invite(&tenant, "bob@acme.example", "member"),
            tenant.owner,
        ))
        .await;
    let status = assert_refused(full, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");
    assert_eq!(seats_missing(&status), "1");

    expire(&server, &ann.token).await;

    let head = server.head().await;
    let late = accept_as(&server, &ann.token, user(), "ann@acme.example").await;
    assert_refused(late, Code::FailedPrecondition, "INVITATION_EXPIRED");
    assert_eq!(server.head().await, head);
    // The expired invitation holds no seat and is not an INVITED member.
    let usage = seat_usage(&server, &tenant).await;
    assert_eq!((usage.used, usage.available), (1, Some(1)));
    assert_eq!(usage.display, "1/2");
    assert!(
        member_list(&server, &tenant, pb::MembershipStatus::Invited)
            .await
            .is_empty()
    );
    assert_eq!(
        member_list(&server, &tenant, pb::MembershipStatus::Unspecified)
            .await
            .len(),
        1
    );
    assert_eq!(
        get_invitation(&server, &tenant, &ann_id).await.state,
        pb::InvitationState::Expired as i32
    );

    // Its seat is free for someone else…
    let bob = invited(&server, &tenant, "bob@acme.example", "member").await;
    // …so resending the expired one finds no seat, and changes nothing.
    let head = server.head().await;
    let no_seat = client
        .resend_invitation(as_user(resend(&tenant, &ann_id), tenant.owner))
        .await;
    let status = assert_refused(no_seat, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");
    assert_eq!(seats_missing(&status), "1");
    assert_eq!(server.head().await, head);
    assert_eq!(
        get_invitation(&server, &tenant, &ann_id).await.state,
        pb::InvitationState::Expired as i32
    );

    // Once a seat is free again, resending re-opens it with a new token.
    client
        .revoke_invitation(as_user(
            revoke(&tenant, &bob.invitation.unwrap().invitation_id),
            tenant.owner,
        ))
        .await
        .unwrap();
    let reopened = client
        .resend_invitation(as_user(resend(&tenant, &ann_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let invitation = reopened.invitation.unwrap();
    assert_eq!(invitation.state, pb::InvitationState::Pending as i32);
    assert_eq!(invitation.send_count, 2);
    assert!(at(&invitation.expire_time) > at(&invitation.last_send_time));
    let usage = seat_usage(&server, &tenant).await;
    assert_eq!((usage.used, usage.available), (2, Some(0)));
    let listed = member_list(&server, &tenant, pb::MembershipStatus::Invited).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].invitation_id, ann_id);

    let user_id = user();
    accept_as(&server, &reopened.token, user_id, "ann@acme.example")
        .await
        .expect("the re-opened invitation accepts");
    assert_eq!(
        get_member(&server, &tenant, user_id).await.unwrap().status,
        pb::MembershipStatus::Active as i32
    );
}

#[tokio::test]
async fn revoking_frees_the_seat_at_once_and_only_pending_invitations_can_be_revoked() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(2)).await;
    let mut client = invitations(&server).await;
    let ann = invited(&server, &tenant, "ann@acme.example", "member").await;
    let ann_id = ann.invitation.clone().unwrap().invitation_id;
    let full = client
        .create_invitation(as_user(
            invite(&tenant, "bob@acme.example", "member"),
            tenant.owner,
        ))
        .await;
    assert_refused(full, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");

    let head = server.head().await;
    let revoked = client
        .revoke_invitation(as_user(revoke(&tenant, &ann_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let invitation = revoked.invitation.unwrap();
    assert_eq!(invitation.state, pb::InvitationState::Revoked as i32);
    server
        .expect_events(
            head,
            &["invitation.revoked"],
            revoked.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(seat_usage(&server, &tenant).await.used, 1);
    assert!(
        member_list(&server, &tenant, pb::MembershipStatus::Invited)
            .await
            .is_empty()
    );

    // A revoked invitation can be neither accepted, resent nor revoked again.
    let head = server.head().await;
    let accepted = accept_as(&server, &ann.token, user(), "ann@acme.example").await;
    assert_refused(accepted, Code::FailedPrecondition, "INVITATION_NOT_PENDING");
    let resent = client
        .resend_invitation(as_user(resend(&tenant, &ann_id), tenant.owner))
        .await;
    assert_refused(resent, Code::FailedPrecondition, "INVITATION_NOT_PENDING");
    let again = client
        .revoke_invitation(as_user(revoke(&tenant, &ann_id), tenant.owner))
        .await;
    assert_refused(again, Code::FailedPrecondition, "INVITATION_NOT_PENDING");
    assert_eq!(server.head().await, head);

    // The freed seat is usable at once; an accepted invitation cannot be revoked or resent.
    let bob = invited(&server, &tenant, "bob@acme.example", "member").await;
    let bob_id = bob.invitation.unwrap().invitation_id;
    accept_as(&server, &bob.token, user(), "bob@acme.example")
        .await
        .unwrap();
    let head = server.head().await;
    let revoke_accepted = client
        .revoke_invitation(as_user(revoke(&tenant, &bob_id), tenant.owner))
        .await;
    assert_refused(
        revoke_accepted,
        Code::FailedPrecondition,
        "INVITATION_NOT_PENDING",
    );
    let resend_accepted = client
        .resend_invitation(as_user(resend(&tenant, &bob_id), tenant.owner))
        .await;
    assert_refused(
        resend_accepted,
        Code::FailedPrecondition,
        "INVITATION_NOT_PENDING",
    );
    assert_eq!(server.head().await, head);
    assert_eq!(
        get_invitation(&server, &tenant, &bob_id).await.state,
        pb::InvitationState::Accepted as i32
    );
}

#[tokio::test]
async fn create_refuses_members_pending_invitations_and_bad_input() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let member = add_member(&server, &tenant, "member").await;
    invited(&server, &tenant, "pat@acme.example", "member").await;
    let mut client = invitations(&server).await;
    let head = server.head().await;
    let create = |request: pb::CreateInvitationRequest| as_user(request, tenant.owner);

    let existing = client
        .create_invitation(create(invite(
            &tenant,
            &member_email(member).to_uppercase(),
            "member",
        )))
        .await;
    assert_refused(existing, Code::AlreadyExists, "MEMBER_EXISTS");
    let pending = client
        .create_invitation(create(invite(&tenant, " PAT@acme.example", "member")))
        .await;
    assert_refused(pending, Code::AlreadyExists, "INVITATION_PENDING");

    for (request, field) in [
        (invite(&tenant, "not an email", "member"), "email"),
        (invite(&tenant, "", "member"), "email"),
        (
            pb::CreateInvitationRequest {
                ttl: ttl(HOUR - 60),
                ..invite(&tenant, "quinn@acme.example", "member")
            },
            "ttl",
        ),
        (
            pb::CreateInvitationRequest {
                ttl: ttl(30 * DAY + 1),
                ..invite(&tenant, "quinn@acme.example", "member")
            },
            "ttl",
        ),
    ] {
        let result = client.create_invitation(create(request.clone())).await;
        let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), [field], "{request:?}");
    }
    let unknown_role = client
        .create_invitation(create(invite(&tenant, "quinn@acme.example", "wizard")))
        .await;
    assert_refused(unknown_role, Code::NotFound, "ROLE_NOT_FOUND");
    let owner_role = client
        .create_invitation(create(invite(&tenant, "quinn@acme.example", "super_admin")))
        .await;
    assert_refused(owner_role, Code::FailedPrecondition, "OWNER_ROLE_RESERVED");
    let missing_tenant = client
        .create_invitation(as_system(invite(
            &Tenant {
                id: Uuid::now_v7().to_string(),
                owner: user(),
            },
            "quinn@acme.example",
            "member",
        )))
        .await;
    assert_refused(missing_tenant, Code::NotFound, "TENANT_NOT_FOUND");
    assert_eq!(server.head().await, head, "no refusal wrote anything");
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        1
    );

    // The bounds themselves are accepted; an empty role means `member`.
    let shortest = client
        .create_invitation(create(pb::CreateInvitationRequest {
            ttl: ttl(HOUR),
            ..invite(&tenant, "quinn@acme.example", "")
        }))
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_span(&shortest.create_time, &shortest.expire_time, HOUR);
    assert_eq!(shortest.role, "member");
    let longest = client
        .create_invitation(create(pb::CreateInvitationRequest {
            ttl: ttl(30 * DAY),
            ..invite(&tenant, "rae@acme.example", "member")
        }))
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_span(&longest.create_time, &longest.expire_time, 30 * DAY);
}

#[tokio::test]
async fn create_invitation_is_idempotent_on_request_id() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(5)).await;
    let mut client = invitations(&server).await;
    let request = pb::CreateInvitationRequest {
        request_id: Uuid::new_v4().to_string(),
        ..invite(&tenant, "ida@acme.example", "member")
    };
    let first = client
        .create_invitation(as_user(request.clone(), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_token(&first.token);
    let head = server.head().await;
    let retry = client
        .create_invitation(as_user(request.clone(), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.invitation, first.invitation);
    assert!(retry.token.is_empty(), "the token is returned only once");
    assert!(retry.delivery.is_none(), "nothing was sent on the retry");
    assert_eq!(server.head().await, head, "the retry wrote nothing");
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        1
    );
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    let reused = client
        .create_invitation(as_user(
            pb::CreateInvitationRequest {
                email: "someone.else@acme.example".into(),
                ..request.clone()
            },
            tenant.owner,
        ))
        .await;
    assert_refused(reused, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn rule_13_an_organization_admin_invites_members_but_not_admins() {
    let server = TestServer::start().await;
    let mut client = invitations(&server).await;

    // ORGANIZATION: an admin invites members but not admins; a member invites nobody.
    let org = organization(&server, None).await;
    let admin = add_member(&server, &org, "admin").await;
    let member = add_member(&server, &org, "member").await;
    let by_admin = client
        .create_invitation(as_user(invite(&org, "mia@acme.example", "member"), admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_admin.invitation.as_ref().unwrap().inviter_id,
        admin.to_string()
    );
    let head = server.head().await;
    denied_for(
        client
            .create_invitation(as_user(invite(&org, "max@acme.example", "admin"), admin))
            .await,
        "admins.manage",
    );
    denied_for(
        client
            .bulk_create_invitations(as_user(bulk(&org, &["max@acme.example"], "admin"), admin))
            .await,
        "admins.manage",
    );
    denied_for(
        client
            .create_invitation(as_user(invite(&org, "max@acme.example", "member"), member))
            .await,
        "members.manage",
    );
    denied_for(
        client
            .bulk_create_invitations(as_user(bulk(&org, &["max@acme.example"], "member"), member))
            .await,
        "members.manage",
    );
    assert_eq!(server.head().await, head);

    // The owner invites an admin; the admin may not revoke or resend that invitation.
    let admin_invite = client
        .create_invitation(as_user(
            invite(&org, "ada@acme.example", "admin"),
            org.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let admin_invite_id = admin_invite.invitation.unwrap().invitation_id;
    let head = server.head().await;
    denied_for(
        client
            .revoke_invitation(as_user(revoke(&org, &admin_invite_id), admin))
            .await,
        "admins.manage",
    );
    denied_for(
        client
            .resend_invitation(as_user(resend(&org, &admin_invite_id), admin))
            .await,
        "admins.manage",
    );
    // A member reads invitations but cannot revoke them.
    let listed = client
        .list_invitations(as_user(
            pb::ListInvitationsRequest {
                tenant_id: org.id.clone(),
                ..Default::default()
            },
            member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.invitations.len(), 2);
    denied_for(
        client
            .revoke_invitation(as_user(revoke(&org, &admin_invite_id), member))
            .await,
        "members.manage",
    );
    assert_eq!(server.head().await, head);

    // The admin's invitation, once accepted, names the admin as inviter.
    let joiner = user();
    let accepted = accept_as(&server, &by_admin.token, joiner, "mia@acme.example")
        .await
        .unwrap();
    let membership = accepted.membership.unwrap();
    assert_eq!(membership.invited_by, admin.to_string());
    assert_eq!(membership.roles, ["member"]);
}

/// Only the super_admin of an ENTERPRISE tenant invites; the owner of another tenant can
/// neither invite nor read an invitation there.
#[tokio::test]
async fn rule_13_enterprise_tenants_let_only_the_super_admin_invite_and_refuse_strangers() {
    let server = TestServer::start().await;
    let mut client = invitations(&server).await;

    let org = organization(&server, None).await;
    let admin_invite_id = invited(&server, &org, "ida@acme.example", "admin")
        .await
        .invitation
        .unwrap()
        .invitation_id;

    // ENTERPRISE: only the super_admin invites.
    let enterprise_tenant = enterprise(&server, None).await;
    let finance = add_member(&server, &enterprise_tenant, "finance_admin").await;
    let dev = add_member(&server, &enterprise_tenant, "dev_admin").await;
    let head = server.head().await;
    for actor in [finance, dev] {
        denied_for(
            client
                .create_invitation(as_user(
                    invite(&enterprise_tenant, "nia@acme.example", "member"),
                    actor,
                ))
                .await,
            "members.manage",
        );
    }
    // Someone from another tenant is not a member here.
    let intruder = client
        .create_invitation(as_user(
            invite(&org, "nia@acme.example", "member"),
            enterprise_tenant.owner,
        ))
        .await;
    assert_refused(intruder, Code::PermissionDenied, "NOT_A_MEMBER");
    let peek = client
        .get_invitation(as_user(
            pb::GetInvitationRequest {
                tenant_id: org.id.clone(),
                invitation_id: admin_invite_id.clone(),
            },
            enterprise_tenant.owner,
        ))
        .await;
    assert_refused(peek, Code::PermissionDenied, "NOT_A_MEMBER");
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn rule_13_personal_tenants_have_no_invitations() {
    let server = TestServer::start().await;
    let mut client = invitations(&server).await;

    // PERSONAL tenants have no member management.
    let personal = create_tenant(
        &server,
        pb::TenantKind::Personal,
        pb::RolePreset::Enterprise,
        None,
    )
    .await;
    let head = server.head().await;
    let refused = client
        .create_invitation(as_user(
            invite(&personal, "ola@acme.example", "member"),
            personal.owner,
        ))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE");
    let refused = client
        .bulk_create_invitations(as_user(
            bulk(&personal, &["ola@acme.example"], "member"),
            personal.owner,
        ))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE");
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn bulk_invite_reports_each_email_in_request_order() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(10)).await;
    let member = add_member(&server, &tenant, "member").await;
    invited(&server, &tenant, "pending@acme.example", "member").await;
    let member_address = member_email(member).to_uppercase();
    let given = [
        "ann@acme.example",
        "not an email",
        "  ANN@Acme.Example ",
        "bob@acme.example",
        member_address.as_str(),
        "Pending@acme.example",
        "bob@acme.example",
        "",
        "carl@acme.example\t",
    ];
    use pb::BulkInvitationOutcome as O;
    let expected = [
        O::Created,
        O::InvalidEmail,
        O::Duplicate,
        O::Created,
        O::AlreadyMember,
        O::AlreadyInvited,
        O::Duplicate,
        O::InvalidEmail,
        O::Created,
    ];
    let head = server.head().await;
    let response = invitations(&server)
        .await
        .bulk_create_invitations(as_user(bulk(&tenant, &given, "dev_admin"), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), given.len());
    let outcomes: Vec<O> = response
        .results
        .iter()
        .map(|r| O::try_from(r.outcome).unwrap())
        .collect();
    assert_eq!(outcomes, expected);
    assert_eq!(response.created_count, 3);
    let mut tokens = HashSet::new();
    for (result, email) in response.results.iter().zip(given) {
        assert_eq!(result.email, email, "the email as given");
        if result.outcome == O::Created as i32 {
            let invitation = result.invitation.as_ref().expect("the created invitation");
            assert_eq!(invitation.email, email.trim().to_lowercase());
            assert_eq!(invitation.role, "dev_admin");
            assert_eq!(invitation.state, pb::InvitationState::Pending as i32);
            assert_eq!(invitation.inviter_id, tenant.owner.to_string());
            assert_token(&result.token);
            assert!(tokens.insert(result.token.clone()), "tokens are distinct");
            assert_eq!(
                delivery(&result.delivery),
                pb::DeliveryStatus::NotConfigured
            );
        } else {
            assert!(result.invitation.is_none(), "{result:?}");
            assert!(result.token.is_empty(), "{result:?}");
            assert!(!result.detail.is_empty(), "a refusal says why: {result:?}");
        }
    }
    // One event per created invitation.
    server
        .expect_events(
            head,
            &["invitation.created"; 3],
            response.cursor,
            Some(tenant.owner),
        )
        .await;
    let (pending, _) =
        list_invitations(&server, &tenant, pb::InvitationState::Pending, "", 50).await;
    assert_eq!(
        emails(&pending),
        set(&[
            "ann@acme.example",
            "bob@acme.example",
            "carl@acme.example",
            "pending@acme.example"
        ])
    );
    // Owner, member and four pending invitations.
    assert_eq!(seat_usage(&server, &tenant).await.used, 6);
    // Each created token works.
    for result in response.results.iter().filter(|r| !r.token.is_empty()) {
        let email = &result.invitation.as_ref().unwrap().email;
        accept_as(&server, &result.token, user(), email)
            .await
            .unwrap_or_else(|s| panic!("accepting {email}: {s:?}"));
    }
}

#[tokio::test]
async fn a_bulk_invite_that_does_not_fit_creates_nothing_and_says_how_many_seats_are_missing() {
    let server = TestServer::start().await;
    // Owner and one member: 8 of 10 seats free.
    let tenant = enterprise(&server, Some(10)).await;
    add_member(&server, &tenant, "member").await;
    let mut client = invitations(&server).await;
    let head = server.head().await;

    // 13 new addresses (plus an invalid one and a duplicate, which need no seat): 5 missing.
    let mut given: Vec<String> = (0..13).map(|i| format!("new{i}@acme.example")).collect();
    given.push("invalid".into());
    given.push("NEW0@acme.example".into());
    let given: Vec<&str> = given.iter().map(String::as_str).collect();
    let result = client
        .bulk_create_invitations(as_user(bulk(&tenant, &given, "member"), tenant.owner))
        .await;
    let status = assert_refused(result, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");
    assert_eq!(seats_missing(&status), "5");
    assert!(
        status.message().contains('5'),
        "the message says how many seats are missing: {}",
        status.message()
    );
    assert_eq!(server.head().await, head, "nothing was written");
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        0
    );
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    // Eight new addresses fit exactly, however many duplicates and invalid ones come along.
    let mut given: Vec<String> = (0..8).map(|i| format!("new{i}@acme.example")).collect();
    given.push("NEW1@ACME.example".into());
    given.push("@acme.example".into());
    let given: Vec<&str> = given.iter().map(String::as_str).collect();
    let response = client
        .bulk_create_invitations(as_user(bulk(&tenant, &given, "member"), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.created_count, 8);
    let usage = seat_usage(&server, &tenant).await;
    assert_eq!((usage.used, usage.available), (10, Some(0)));

    // Now even one more does not fit.
    let head = server.head().await;
    let result = client
        .bulk_create_invitations(as_user(
            bulk(&tenant, &["late@acme.example"], "member"),
            tenant.owner,
        ))
        .await;
    let status = assert_refused(result, Code::ResourceExhausted, "SEAT_LIMIT_REACHED");
    assert_eq!(seats_missing(&status), "1");
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn bulk_invite_refuses_bad_requests() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut client = invitations(&server).await;
    let head = server.head().await;

    let many: Vec<String> = (0..1001).map(|i| format!("u{i}@acme.example")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let result = client
        .bulk_create_invitations(as_user(bulk(&tenant, &many, "member"), tenant.owner))
        .await;
    let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["emails"]);

    let result = client
        .bulk_create_invitations(as_user(
            pb::BulkCreateInvitationsRequest {
                ttl: ttl(30 * DAY + 1),
                ..bulk(&tenant, &["a@acme.example"], "member")
            },
            tenant.owner,
        ))
        .await;
    let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["ttl"]);

    let result = client
        .bulk_create_invitations(as_user(
            bulk(&tenant, &["a@acme.example"], "wizard"),
            tenant.owner,
        ))
        .await;
    assert_refused(result, Code::NotFound, "ROLE_NOT_FOUND");
    assert_eq!(server.head().await, head);
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        0
    );

    // Exactly 1000 is allowed.
    let response = client
        .bulk_create_invitations(as_user(
            bulk(&tenant, &many[..1000], "member"),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.created_count, 1000);
    assert_eq!(server.event_types_after(head).await.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invitations_take_exactly_the_free_seats() {
    const CALLERS: usize = 50;
    let server = TestServer::start().await;
    // The owner holds one of 11 seats: ten are free.
    let tenant = enterprise(&server, Some(11)).await;
    let head = server.head().await;
    let start = Arc::new(Barrier::new(CALLERS));
    let mut calls = Vec::new();
    for i in 0..CALLERS {
        let mut client = invitations(&server).await;
        let request = as_user(
            invite(&tenant, &format!("racer{i}@acme.example"), "member"),
            tenant.owner,
        );
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.create_invitation(request).await
        }));
    }
    let mut created = BTreeSet::new();
    let mut refused = 0;
    for call in join_all(calls).await {
        match call.expect("the call's task panicked") {
            Ok(response) => {
                let response = response.into_inner();
                assert_token(&response.token);
                created.insert(response.invitation.unwrap().email);
            }
            Err(status) => {
                let status = assert_refused::<()>(
                    Err(status),
                    Code::ResourceExhausted,
                    "SEAT_LIMIT_REACHED",
                );
                assert_eq!(seats_missing(&status), "1");
                refused += 1;
            }
        }
    }
    assert_eq!(created.len(), 10, "exactly the ten free seats are taken");
    assert_eq!(refused, CALLERS - 10);

    let usage = seat_usage(&server, &tenant).await;
    assert_eq!(
        (usage.used, usage.limit, usage.available),
        (11, Some(11), Some(0))
    );
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        10
    );
    assert_eq!(
        server.event_types_after(head).await,
        ["invitation.created"; 10]
    );
    let listed = member_list(&server, &tenant, pb::MembershipStatus::Invited).await;
    assert_eq!(
        listed
            .iter()
            .map(|m| m.email.clone())
            .collect::<BTreeSet<_>>(),
        created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_accepts_of_one_token_admit_exactly_one() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    for round in 0..4 {
        let email = format!("twice{round}@acme.example");
        let created = invited(&server, &tenant, &email, "member").await;
        let head = server.head().await;
        // The same user twice (a double click) and two other users, all at once.
        let same = user();
        let racers = [same, same, user(), user()];
        let start = Arc::new(Barrier::new(racers.len()));
        let mut calls = Vec::new();
        for racer in racers {
            let mut client = invitations(&server).await;
            let request = as_user(accept(&created.token, racer, &email), racer);
            let start = start.clone();
            calls.push(tokio::spawn(async move {
                start.wait().await;
                (racer, client.accept_invitation(request).await)
            }));
        }
        let mut winners = Vec::new();
        for call in join_all(calls).await {
            let (racer, result) = call.expect("the call's task panicked");
            match result {
                Ok(response) => {
                    let membership = response.into_inner().membership.unwrap();
                    assert_eq!(membership.user_id, racer.to_string());
                    winners.push(racer);
                }
                Err(status) => {
                    let reason = status
                        .get_details_error_info()
                        .map(|i| i.reason)
                        .unwrap_or_default();
                    assert!(
                        (status.code() == Code::FailedPrecondition
                            && reason == "INVITATION_NOT_PENDING")
                            || (status.code() == Code::AlreadyExists && reason == "MEMBER_EXISTS"),
                        "round {round}: unexpected refusal {:?} {reason}: {}",
                        status.code(),
                        status.message()
                    );
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one accept wins");
        for racer in racers {
            let membership = get_member(&server, &tenant, racer).await;
            assert_eq!(membership.is_ok(), racer == winners[0], "round {round}");
        }
        let mut types = server.event_types_after(head).await;
        types.sort();
        assert_eq!(
            types,
            ["invitation.accepted", "membership.created"],
            "round {round}"
        );
    }
    // Owner plus one member per round.
    assert_eq!(seat_usage(&server, &tenant).await.used, 5);
}

/// One tenant's invitations in every state, and one more to another tenant.
struct InvitationStates {
    server: TestServer,
    tenant: Tenant,
    other: Tenant,
    /// A plain member of `tenant`.
    member: Uuid,
    /// Each invitation of `tenant` by its email.
    ids: std::collections::BTreeMap<&'static str, String>,
}

/// alpha1, beta2 and alpha4 pending, beta1 accepted, alpha2 revoked, alpha3 expired.
async fn invitations_in_every_state() -> InvitationStates {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let other = enterprise(&server, None).await;
    let member = add_member(&server, &tenant, "member").await;
    let mut client = invitations(&server).await;
    let mut created = std::collections::BTreeMap::new();
    for email in [
        "alpha1@acme.example",
        "alpha2@acme.example",
        "alpha3@acme.example",
        "beta1@acme.example",
        "beta2@acme.example",
        "alpha4@acme.example",
    ] {
        created.insert(email, invited(&server, &tenant, email, "member").await);
    }
    invited(&server, &other, "alpha9@acme.example", "member").await;
    let id_of = |email: &str| {
        created[email]
            .invitation
            .as_ref()
            .unwrap()
            .invitation_id
            .clone()
    };
    client
        .revoke_invitation(as_user(
            revoke(&tenant, &id_of("alpha2@acme.example")),
            tenant.owner,
        ))
        .await
        .unwrap();
    accept_as(
        &server,
        &created["beta1@acme.example"].token,
        user(),
        "beta1@acme.example",
    )
    .await
    .unwrap();
    expire(&server, &created["alpha3@acme.example"].token).await;
    let ids = created.keys().map(|&email| (email, id_of(email))).collect();
    InvitationStates {
        server,
        tenant,
        other,
        member,
        ids,
    }
}

#[tokio::test]
async fn list_invitations_filters_by_state_and_by_email() {
    let InvitationStates { server, tenant, .. } = invitations_in_every_state().await;
    use pb::InvitationState as S;
    let (all, _) = list_invitations(&server, &tenant, S::Unspecified, "", 50).await;
    assert_eq!(all.len(), 6, "only this tenant's invitations");
    for (state, expected) in [
        (
            S::Pending,
            set(&[
                "alpha1@acme.example",
                "beta2@acme.example",
                "alpha4@acme.example",
            ]),
        ),
        (S::Accepted, set(&["beta1@acme.example"])),
        (S::Revoked, set(&["alpha2@acme.example"])),
        // Expired is computed from the time: the row is still pending.
        (S::Expired, set(&["alpha3@acme.example"])),
    ] {
        let (listed, _) = list_invitations(&server, &tenant, state, "", 50).await;
        assert_eq!(emails(&listed), expected, "{state:?}");
        assert!(listed.iter().all(|i| i.state == state as i32), "{state:?}");
        for invitation in &listed {
            let in_all = all
                .iter()
                .find(|i| i.invitation_id == invitation.invitation_id)
                .unwrap();
            assert_eq!(in_all, invitation, "the unfiltered list agrees");
        }
    }

    // The email query is a case-insensitive substring, combinable with the state.
    let (alphas, _) = list_invitations(&server, &tenant, S::Unspecified, "ALPHA", 50).await;
    assert_eq!(
        emails(&alphas),
        set(&[
            "alpha1@acme.example",
            "alpha2@acme.example",
            "alpha3@acme.example",
            "alpha4@acme.example",
        ])
    );
    let (pending_alphas, _) = list_invitations(&server, &tenant, S::Pending, "lpha", 50).await;
    assert_eq!(
        emails(&pending_alphas),
        set(&["alpha1@acme.example", "alpha4@acme.example"])
    );
    let (none, _) = list_invitations(&server, &tenant, S::Unspecified, "gamma", 50).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn list_invitations_pages_by_keyset_with_tokens_bound_to_their_query() {
    let InvitationStates { server, tenant, .. } = invitations_in_every_state().await;
    use pb::InvitationState as S;
    let (all, _) = list_invitations(&server, &tenant, S::Unspecified, "", 50).await;
    let mut client = invitations(&server).await;

    // Keyset pages of two: every invitation once, three pages, the last without a token.
    let (paged, pages) = list_invitations(&server, &tenant, S::Unspecified, "", 2).await;
    assert_eq!(pages, 3);
    let ids: Vec<String> = paged.iter().map(|i| i.invitation_id.clone()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        6,
        "no invitation twice: {ids:?}"
    );
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        all.iter()
            .map(|i| i.invitation_id.clone())
            .collect::<BTreeSet<_>>()
    );

    // A page token is bound to its query and cannot be edited.
    let first = client
        .list_invitations(as_user(
            pb::ListInvitationsRequest {
                tenant_id: tenant.id.clone(),
                page_size: 2,
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty());
    let mut edited: Vec<char> = token.chars().collect();
    let middle = edited.len() / 2;
    edited[middle] = if edited[middle] == 'A' { 'B' } else { 'A' };
    for (page_token, state) in [
        (edited.into_iter().collect::<String>(), S::Unspecified),
        ("garbage".to_string(), S::Unspecified),
        (token.clone(), S::Pending),
    ] {
        let result = client
            .list_invitations(as_user(
                pb::ListInvitationsRequest {
                    tenant_id: tenant.id.clone(),
                    page_size: 2,
                    page_token,
                    state: state as i32,
                    query: String::new(),
                },
                tenant.owner,
            ))
            .await;
        assert_refused(result, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    }
}

#[tokio::test]
async fn an_invitation_is_read_by_a_member_and_invisible_to_other_tenants() {
    let InvitationStates {
        server,
        tenant,
        other,
        member,
        ids,
    } = invitations_in_every_state().await;
    use pb::InvitationState as S;
    let (all, _) = list_invitations(&server, &tenant, S::Unspecified, "", 50).await;
    let mut client = invitations(&server).await;
    let id_of = |email: &str| ids[email].clone();

    // GetInvitation: a member reads it; another tenant's id is not found.
    let alpha1 = id_of("alpha1@acme.example");
    let got = client
        .get_invitation(as_user(
            pb::GetInvitationRequest {
                tenant_id: tenant.id.clone(),
                invitation_id: alpha1.clone(),
            },
            member,
        ))
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(
        &got,
        all.iter().find(|i| i.invitation_id == alpha1).unwrap()
    );
    for (tenant_id, invitation_id) in [
        (other.id.clone(), alpha1.clone()),
        (tenant.id.clone(), Uuid::now_v7().to_string()),
    ] {
        let missing = client
            .get_invitation(as_system(pb::GetInvitationRequest {
                tenant_id,
                invitation_id,
            }))
            .await;
        assert_refused(missing, Code::NotFound, "INVITATION_NOT_FOUND");
    }
    // Nor can another tenant revoke it through its own id.
    let across = client
        .revoke_invitation(as_user(revoke(&other, &alpha1), other.owner))
        .await;
    assert_refused(across, Code::NotFound, "INVITATION_NOT_FOUND");
    assert_eq!(
        get_invitation(&server, &tenant, &alpha1).await.state,
        S::Pending as i32
    );
}

#[tokio::test]
async fn dissolving_the_tenant_ends_its_pending_invitations() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let created = invited(&server, &tenant, "late@acme.example", "member").await;
    server
        .api()
        .await
        .as_user(tenant.owner)
        .dissolve_tenant(&tenant)
        .await
        .unwrap();
    let user_id = user();
    let result = accept_as(&server, &created.token, user_id, "late@acme.example").await;
    let status = result.expect_err("no one joins a dissolved tenant");
    let reason = status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        ["TENANT_DISSOLVED", "INVITATION_NOT_PENDING"].contains(&reason.as_str()),
        "{reason}: {}",
        status.message()
    );
    assert!(get_member(&server, &tenant, user_id).await.is_err());
    // The invitation ended with the tenant, and no new one can be made.
    let invitation_id = created.invitation.unwrap().invitation_id;
    assert_eq!(
        get_invitation(&server, &tenant, &invitation_id).await.state,
        pb::InvitationState::Revoked as i32
    );
    let refused = invitations(&server)
        .await
        .create_invitation(as_user(
            invite(&tenant, "later@acme.example", "member"),
            tenant.owner,
        ))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_DISSOLVED");
}

// ---------------------------------------------------------------------------------------------
// The invitation email.

fn mail_options(smtp_url: Option<String>, accept_url: Option<&str>) -> ServeOptions {
    ServeOptions {
        mail: MailOptions {
            smtp_url,
            accept_url: accept_url.map(str::to_string),
            from: "invites@acme.example".into(),
        },
        ..test_options()
    }
}

const ACCEPT_URL: &str = "https://app.example/accept";

#[tokio::test]
async fn the_invitation_email_carries_the_accept_link_and_resend_sends_a_new_one() {
    let mut sink = SmtpSink::start().await;
    let server = TestServer::start_with(
        TestDatabase::create().await,
        mail_options(Some(sink.url()), Some(ACCEPT_URL)),
    )
    .await;
    let tenant = enterprise(&server, None).await;
    let created = invited(&server, &tenant, "Gina@Acme.Example", "member").await;
    let link = format!("{ACCEPT_URL}?token={}", created.token);
    assert_eq!(created.accept_url, link);
    let sent = created.delivery.clone().unwrap();
    assert_eq!(sent.status, pb::DeliveryStatus::Sent as i32, "{sent:?}");
    assert!(sent.error.is_empty());

    let mail = sink.next(WAIT).await;
    assert_eq!(mail.from, "invites@acme.example");
    assert_eq!(mail.to, ["gina@acme.example"]);
    let to = mail.header("To").expect("a To header");
    assert!(to.contains("gina@acme.example"), "To: {to}");
    let from = mail.header("From").expect("a From header");
    assert!(from.contains("invites@acme.example"), "From: {from}");
    assert!(mail.header("Subject").is_some_and(|s| !s.is_empty()));
    let text = mail.text();
    assert!(text.contains(&link), "the link is in the email:\n{text}");
    assert!(sink.try_next().is_none(), "one message per invitation");

    // Resend: a second message, with the new token only.
    let invitation_id = created.invitation.unwrap().invitation_id;
    let resent = invitations(&server)
        .await
        .resend_invitation(as_user(resend(&tenant, &invitation_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivery(&resent.delivery), pb::DeliveryStatus::Sent);
    let new_link = format!("{ACCEPT_URL}?token={}", resent.token);
    assert_eq!(resent.accept_url, new_link);
    assert_eq!(resent.invitation.unwrap().send_count, 2);
    let mail = sink.next(WAIT).await;
    assert_eq!(mail.to, ["gina@acme.example"]);
    let text = mail.text();
    assert!(
        text.contains(&new_link),
        "the new link is in the email:\n{text}"
    );
    assert!(!text.contains(&created.token), "the old token is not");

    // The token from the email accepts.
    accept_as(&server, &resent.token, user(), "gina@acme.example")
        .await
        .expect("the mailed token accepts");

    // A bulk invitation mails each address its own link.
    let response = invitations(&server)
        .await
        .bulk_create_invitations(as_user(
            bulk(
                &tenant,
                &["hal@acme.example", "bad address", "ivy@acme.example"],
                "member",
            ),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.created_count, 2);
    let mut expected = std::collections::BTreeMap::new();
    for result in response.results.iter().filter(|r| !r.token.is_empty()) {
        assert_eq!(delivery(&result.delivery), pb::DeliveryStatus::Sent);
        let link = format!("{ACCEPT_URL}?token={}", result.token);
        assert_eq!(result.accept_url, link);
        expected.insert(result.invitation.as_ref().unwrap().email.clone(), link);
    }
    for _ in 0..2 {
        let mail = sink.next(WAIT).await;
        assert_eq!(mail.to.len(), 1);
        let link = expected
            .remove(&mail.to[0])
            .unwrap_or_else(|| panic!("unexpected or repeated recipient {:?}", mail.to));
        assert!(mail.text().contains(&link), "{}", mail.text());
    }
    assert!(sink.try_next().is_none());
}

#[tokio::test]
async fn a_mail_failure_keeps_the_invitation_and_says_so() {
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = TestServer::start_with(
        TestDatabase::create().await,
        mail_options(Some(format!("smtp://127.0.0.1:{closed}")), Some(ACCEPT_URL)),
    )
    .await;
    let tenant = enterprise(&server, None).await;
    let head = server.head().await;
    let created = invited(&server, &tenant, "jo@acme.example", "member").await;
    let failed = created.delivery.clone().unwrap();
    assert_eq!(
        failed.status,
        pb::DeliveryStatus::Failed as i32,
        "{failed:?}"
    );
    assert!(!failed.error.is_empty(), "the failure is explained");
    assert_token(&created.token);
    assert_eq!(
        created.accept_url,
        format!("{ACCEPT_URL}?token={}", created.token)
    );
    let invitation_id = created.invitation.unwrap().invitation_id;
    assert_eq!(
        get_invitation(&server, &tenant, &invitation_id).await.state,
        pb::InvitationState::Pending as i32
    );
    assert_eq!(server.event_types_after(head).await, ["invitation.created"]);
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    // It can be resent (failing again here) and the token works.
    let resent = invitations(&server)
        .await
        .resend_invitation(as_user(resend(&tenant, &invitation_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivery(&resent.delivery), pb::DeliveryStatus::Failed);
    accept_as(&server, &resent.token, user(), "jo@acme.example")
        .await
        .expect("the token works without the email");
}

#[tokio::test]
async fn without_a_mail_server_delivery_is_not_configured_and_the_link_extends_a_query() {
    let server = TestServer::start_with(
        TestDatabase::create().await,
        mail_options(None, Some("https://app.example/join?src=mail")),
    )
    .await;
    let tenant = enterprise(&server, None).await;
    let created = invited(&server, &tenant, "kim@acme.example", "member").await;
    assert_eq!(
        delivery(&created.delivery),
        pb::DeliveryStatus::NotConfigured
    );
    assert_eq!(
        created.accept_url,
        format!("https://app.example/join?src=mail&token={}", created.token)
    );
    let response = invitations(&server)
        .await
        .bulk_create_invitations(as_user(
            bulk(&tenant, &["lee@acme.example"], "member"),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let result = &response.results[0];
    assert_eq!(
        delivery(&result.delivery),
        pb::DeliveryStatus::NotConfigured
    );
    assert_eq!(
        result.accept_url,
        format!("https://app.example/join?src=mail&token={}", result.token)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invitations_of_one_address_create_one_invitation() {
    const CALLERS: usize = 12;
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(20)).await;
    let head = server.head().await;
    let start = Arc::new(Barrier::new(CALLERS));
    let mut calls = Vec::new();
    for i in 0..CALLERS {
        let mut client = invitations(&server).await;
        // The same address, written differently.
        let email = if i % 2 == 0 {
            "Same.Person@acme.example "
        } else {
            "same.person@ACME.example"
        };
        let request = as_user(invite(&tenant, email, "member"), tenant.owner);
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.create_invitation(request).await
        }));
    }
    let mut created = 0;
    for call in join_all(calls).await {
        match call.expect("the call's task panicked") {
            Ok(_) => created += 1,
            Err(status) => {
                assert_refused::<()>(Err(status), Code::AlreadyExists, "INVITATION_PENDING");
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        1
    );
    assert_eq!(server.event_types_after(head).await, ["invitation.created"]);
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bulk_invitations_are_all_or_nothing_each() {
    const BULKS: usize = 6;
    let server = TestServer::start().await;
    // Ten free seats: three bulks of three fit, whatever the order; the fourth misses two.
    let tenant = enterprise(&server, Some(11)).await;
    let head = server.head().await;
    let start = Arc::new(Barrier::new(BULKS));
    let mut calls = Vec::new();
    for b in 0..BULKS {
        let mut client = invitations(&server).await;
        let emails: Vec<String> = (0..3).map(|i| format!("b{b}-{i}@acme.example")).collect();
        let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
        let request = as_user(bulk(&tenant, &emails, "member"), tenant.owner);
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.bulk_create_invitations(request).await
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for call in join_all(calls).await {
        match call.expect("the call's task panicked") {
            Ok(response) => {
                assert_eq!(response.into_inner().created_count, 3);
                created += 1;
            }
            Err(status) => {
                let status = assert_refused::<()>(
                    Err(status),
                    Code::ResourceExhausted,
                    "SEAT_LIMIT_REACHED",
                );
                assert_eq!(seats_missing(&status), "2");
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (3, BULKS - 3));
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        9
    );
    assert_eq!(
        server.event_types_after(head).await,
        ["invitation.created"; 9]
    );
    let usage = seat_usage(&server, &tenant).await;
    assert_eq!((usage.used, usage.available), (10, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoke_racing_an_accept_leaves_one_consistent_outcome() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    for round in 0..6 {
        let email = format!("racer{round}@acme.example");
        let created = invited(&server, &tenant, &email, "member").await;
        let invitation_id = created.invitation.unwrap().invitation_id;
        let user_id = user();
        let start = Arc::new(Barrier::new(2));
        let (mut revoker, mut acceptor) = (invitations(&server).await, invitations(&server).await);
        let revoke_request = as_user(revoke(&tenant, &invitation_id), tenant.owner);
        let accept_request = as_user(accept(&created.token, user_id, &email), user_id);
        let (s1, s2) = (start.clone(), start.clone());
        let revoking = tokio::spawn(async move {
            s1.wait().await;
            revoker.revoke_invitation(revoke_request).await
        });
        let accepting = tokio::spawn(async move {
            s2.wait().await;
            acceptor.accept_invitation(accept_request).await
        });
        let revoked = revoking.await.unwrap();
        let accepted = accepting.await.unwrap();
        let state = get_invitation(&server, &tenant, &invitation_id).await.state;
        let membership = get_member(&server, &tenant, user_id).await;
        match (revoked, accepted) {
            (Ok(_), Err(status)) => {
                assert_refused::<()>(
                    Err(status),
                    Code::FailedPrecondition,
                    "INVITATION_NOT_PENDING",
                );
                assert_eq!(state, pb::InvitationState::Revoked as i32, "round {round}");
                assert!(membership.is_err(), "round {round}");
            }
            (Err(status), Ok(_)) => {
                assert_refused::<()>(
                    Err(status),
                    Code::FailedPrecondition,
                    "INVITATION_NOT_PENDING",
                );
                assert_eq!(state, pb::InvitationState::Accepted as i32, "round {round}");
                assert_eq!(
                    membership.unwrap().status,
                    pb::MembershipStatus::Active as i32
                );
            }
            (revoked, accepted) => {
                panic!("round {round}: exactly one must win: {revoked:?} / {accepted:?}")
            }
        }
    }
}

#[tokio::test]
async fn someone_who_left_or_was_removed_can_be_invited_again_but_not_a_suspended_member() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut members = server.members().await;
    let leaver = add_member(&server, &tenant, "member").await;
    let removed = add_member(&server, &tenant, "member").await;
    let suspended = add_member(&server, &tenant, "member").await;
    members
        .leave_tenant(as_user(
            pb::LeaveTenantRequest {
                tenant_id: tenant.id.clone(),
            },
            leaver,
        ))
        .await
        .unwrap();
    members
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: removed.to_string(),
            etag: String::new(),
            validate_only: false,
        }))
        .await
        .unwrap();
    members
        .suspend_membership(as_system(pb::SuspendMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: suspended.to_string(),
            etag: String::new(),
        }))
        .await
        .unwrap();

    let still_member = invitations(&server)
        .await
        .create_invitation(as_user(
            invite(&tenant, &member_email(suspended), "member"),
            tenant.owner,
        ))
        .await;
    assert_refused(still_member, Code::AlreadyExists, "MEMBER_EXISTS");

    for user_id in [leaver, removed] {
        let created = invited(&server, &tenant, &member_email(user_id), "dev_admin").await;
        let accepted = accept_as(&server, &created.token, user_id, &member_email(user_id))
            .await
            .unwrap_or_else(|s| panic!("coming back: {s:?}"));
        let membership = accepted.membership.unwrap();
        assert_eq!(membership.status, pb::MembershipStatus::Active as i32);
        assert_eq!(membership.roles, ["dev_admin"]);
        assert_eq!(membership.source, pb::MembershipSource::Invite as i32);
        let stored = get_member(&server, &tenant, user_id).await.unwrap();
        assert_eq!(stored.status, pb::MembershipStatus::Active as i32);
        assert_eq!(stored.roles, ["dev_admin"]);
    }
    // Owner, suspended, and the two who came back.
    assert_eq!(seat_usage(&server, &tenant).await.used, 4);
}

#[tokio::test]
async fn member_lists_page_through_members_and_invited_entries_together() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    for role in ["member", "dev_admin", "member"] {
        add_member(&server, &tenant, role).await;
    }
    for (email, role) in [
        ("invitee-c@acme.example", "member"),
        ("invitee-a@acme.example", "dev_admin"),
        ("invitee-b@acme.example", "member"),
    ] {
        invited(&server, &tenant, email, role).await;
    }
    // One more, expired: it is listed nowhere.
    let gone = invited(&server, &tenant, "invitee-z@acme.example", "member").await;
    expire(&server, &gone.token).await;

    let client = server.members().await;
    let walk = |filter: pb::ListMembershipsRequest| {
        let mut client = client.clone();
        let tenant_id = tenant.id.clone();
        async move {
            let mut entries = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_memberships(as_system(pb::ListMembershipsRequest {
                        tenant_id: tenant_id.clone(),
                        page_size: 2,
                        page_token: page_token.clone(),
                        ..filter.clone()
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(page.memberships.len() <= 2);
                entries.extend(page.memberships);
                if page.next_page_token.is_empty() {
                    return entries;
                }
                page_token = page.next_page_token;
            }
        }
    };
    let key = |m: &pb::Membership| {
        if m.user_id.is_empty() {
            m.invitation_id.clone()
        } else {
            m.user_id.clone()
        }
    };

    for order_by in ["email", "email desc", "create_time", "create_time desc", ""] {
        let entries = walk(pb::ListMembershipsRequest {
            order_by: order_by.into(),
            ..Default::default()
        })
        .await;
        assert_eq!(
            entries.len(),
            7,
            "{order_by}: owner, three members, three invited"
        );
        let keys: HashSet<String> = entries.iter().map(key).collect();
        assert_eq!(keys.len(), 7, "{order_by}: nobody twice");
        assert_eq!(
            entries
                .iter()
                .filter(|m| m.status == pb::MembershipStatus::Invited as i32)
                .count(),
            3,
            "{order_by}"
        );
        if order_by.starts_with("email") {
            let listed: Vec<&str> = entries.iter().map(|m| m.email.as_str()).collect();
            let mut sorted = listed.clone();
            sorted.sort();
            if order_by.ends_with("desc") {
                sorted.reverse();
            }
            assert_eq!(listed, sorted, "{order_by}");
        }
    }

    // Filters apply to invited entries like to members.
    let dev_admins = walk(pb::ListMembershipsRequest {
        role: "dev_admin".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(dev_admins.len(), 2, "{dev_admins:?}");
    assert!(dev_admins.iter().all(|m| m.roles == ["dev_admin"]));
    let by_invite = walk(pb::ListMembershipsRequest {
        source: pb::MembershipSource::Invite as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(by_invite.len(), 3);
    let found = walk(pb::ListMembershipsRequest {
        query: "INVITEE".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        found
            .iter()
            .map(|m| m.email.as_str())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "invitee-a@acme.example",
            "invitee-b@acme.example",
            "invitee-c@acme.example"
        ])
    );
    let invited_only = walk(pb::ListMembershipsRequest {
        status: pb::MembershipStatus::Invited as i32,
        order_by: "email".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        invited_only
            .iter()
            .map(|m| m.email.as_str())
            .collect::<Vec<_>>(),
        [
            "invitee-a@acme.example",
            "invitee-b@acme.example",
            "invitee-c@acme.example"
        ]
    );
    let active_only = walk(pb::ListMembershipsRequest {
        status: pb::MembershipStatus::Active as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(active_only.len(), 4);
    assert!(active_only.iter().all(|m| m.invitation_id.is_empty()));
}

#[tokio::test]
async fn invitation_events_reach_watchers_and_the_audit_log_with_their_state() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut stream = watch(&server, watch_after(server.head().await)).await;
    let mut client = invitations(&server).await;

    let created = invited(&server, &tenant, "wendy@acme.example", "member").await;
    let invitation_id = created.invitation.clone().unwrap().invitation_id;
    let resent = client
        .resend_invitation(as_user(resend(&tenant, &invitation_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    let user_id = user();
    accept_as(&server, &resent.token, user_id, "wendy@acme.example")
        .await
        .unwrap();
    let other = invited(&server, &tenant, "xavi@acme.example", "member").await;
    let other_id = other.invitation.unwrap().invitation_id;
    client
        .revoke_invitation(as_user(revoke(&tenant, &other_id), tenant.owner))
        .await
        .unwrap();

    let invitation_of =
        |state: &Option<pb::EventState>| match state.as_ref().and_then(|s| s.state.clone()) {
            Some(pb::event_state::State::Invitation(i)) => Some(i),
            _ => None,
        };
    let mut seen = Vec::new();
    for _ in 0..6 {
        let event = next_event(&mut stream).await;
        assert_eq!(event.tenant_id, tenant.id);
        seen.push(event);
    }
    let types: Vec<&str> = seen.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(&types[..2], ["invitation.created", "invitation.resent"]);
    let mut accept_pair = types[2..4].to_vec();
    accept_pair.sort();
    assert_eq!(accept_pair, ["invitation.accepted", "membership.created"]);
    assert_eq!(&types[4..], ["invitation.created", "invitation.revoked"]);

    let after_create = invitation_of(&seen[0].after).expect("the created invitation");
    assert_eq!(after_create.invitation_id, invitation_id);
    assert_eq!(after_create.email, "wendy@acme.example");
    assert_eq!(after_create.state, pb::InvitationState::Pending as i32);
    assert!(invitation_of(&seen[0].before).is_none());
    assert_eq!(seen[0].actor_id, tenant.owner.to_string());
    let after_resend = invitation_of(&seen[1].after).unwrap();
    assert_eq!(after_resend.send_count, 2);
    assert_eq!(invitation_of(&seen[1].before).unwrap().send_count, 1);
    let accepted = seen[2..4]
        .iter()
        .find(|e| e.r#type == "invitation.accepted")
        .unwrap();
    let after_accept = invitation_of(&accepted.after).unwrap();
    assert_eq!(after_accept.state, pb::InvitationState::Accepted as i32);
    assert_eq!(after_accept.accepted_user_id, user_id.to_string());
    let revoked = &seen[5];
    assert_eq!(
        invitation_of(&revoked.before).unwrap().state,
        pb::InvitationState::Pending as i32
    );
    assert_eq!(
        invitation_of(&revoked.after).unwrap().state,
        pb::InvitationState::Revoked as i32
    );

    // The audit log pages the same events, filterable by type.
    let log = server
        .members()
        .await
        .list_membership_events(as_user(
            pb::ListMembershipEventsRequest {
                tenant_id: tenant.id.clone(),
                types: vec!["invitation.created".into(), "invitation.revoked".into()],
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        log.events
            .iter()
            .map(|e| e.r#type.as_str())
            .collect::<Vec<_>>(),
        [
            "invitation.created",
            "invitation.created",
            "invitation.revoked"
        ]
    );
    assert_eq!(log.events[0], seen[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_create_invitation_create_it_once() {
    const CALLERS: usize = 10;
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let request = pb::CreateInvitationRequest {
        request_id: Uuid::new_v4().to_string(),
        ..invite(&tenant, "retry@acme.example", "member")
    };
    let head = server.head().await;
    let start = Arc::new(Barrier::new(CALLERS));
    let mut calls = Vec::new();
    for _ in 0..CALLERS {
        let mut client = invitations(&server).await;
        let request = as_user(request.clone(), tenant.owner);
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.create_invitation(request).await
        }));
    }
    let mut ids = BTreeSet::new();
    let mut tokens = 0;
    for call in join_all(calls).await {
        let response = call
            .expect("the call's task panicked")
            .unwrap_or_else(|s| panic!("a retry of CreateInvitation failed: {s:?}"))
            .into_inner();
        ids.insert(response.invitation.unwrap().invitation_id);
        if !response.token.is_empty() {
            tokens += 1;
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(tokens, 1, "the token is returned once");
    assert_eq!(server.event_types_after(head).await, ["invitation.created"]);
    assert_eq!(
        server.scalar("SELECT COUNT(*) AS n FROM invitations").await,
        1
    );
}

#[tokio::test]
async fn linking_an_invited_email_directly_closes_its_pending_invitation() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(3)).await;
    let user_id = user();
    let email = member_email(user_id);
    let pending = invited(&server, &tenant, &email, "member").await;
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    // The person arrives another way (SCIM): one membership, one seat, no INVITED duplicate.
    assert_eq!(
        link_directly(&server, &tenant, user_id, &email).await,
        ["membership.created", "invitation.revoked"]
    );
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);
    assert!(
        member_list(&server, &tenant, pb::MembershipStatus::Invited)
            .await
            .is_empty()
    );
    let invitation = get_invitation(
        &server,
        &tenant,
        &pending.invitation.as_ref().unwrap().invitation_id,
    )
    .await;
    assert_eq!(invitation.state, pb::InvitationState::Revoked as i32);
    let late = invitations(&server)
        .await
        .accept_invitation(as_system(accept(&pending.token, user_id, &email)))
        .await;
    assert_refused(late, Code::FailedPrecondition, "INVITATION_NOT_PENDING");
}

#[tokio::test]
async fn a_new_member_closes_its_emails_expired_invitation_too() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, Some(3)).await;
    let user_id = user();
    let email = member_email(user_id);
    let stale = invited(&server, &tenant, &email, "member").await;
    expire(&server, &stale.token).await;
    // Expired but still stored as pending: the tenant's pending count says there is one to close.
    assert_eq!(
        link_directly(&server, &tenant, user_id, &email).await,
        ["membership.created", "invitation.revoked"]
    );
    let invitation = get_invitation(
        &server,
        &tenant,
        &stale.invitation.as_ref().unwrap().invitation_id,
    )
    .await;
    assert_eq!(invitation.state, pb::InvitationState::Revoked as i32);

    // With nothing pending, a new member closes nothing.
    let head = server.head().await;
    let other = user();
    server
        .members()
        .await
        .create_membership(as_system(new_member(&tenant, other, "member")))
        .await
        .unwrap();
    assert_eq!(server.event_types_after(head).await, ["membership.created"]);
    assert_eq!(seat_usage(&server, &tenant).await.used, 3);
}

/// A database written before the tenants' count of pending invitations existed gets it from the
/// migration, expired invitations still pending included and revoked ones not: a new member then
/// closes its email's stale invitation.
#[tokio::test]
async fn the_migration_counts_the_pending_invitations_a_database_already_has() {
    use migration::{Migrator, MigratorTrait};
    let database = Arc::new(TestDatabase::create().await);
    let server = TestServer::start_shared(database.clone(), test_options()).await;
    let tenant = enterprise(&server, Some(5)).await;
    let user_id = user();
    let email = member_email(user_id);
    let stale = invited(&server, &tenant, &email, "member").await;
    expire(&server, &stale.token).await;
    invited(&server, &tenant, "pending@acme.example", "member").await;
    let gone = invited(&server, &tenant, "revoked@acme.example", "member").await;
    let gone_id = gone.invitation.unwrap().invitation_id;
    invitations(&server)
        .await
        .revoke_invitation(as_user(revoke(&tenant, &gone_id), tenant.owner))
        .await
        .unwrap();
    server.stop().await;

    // Back to the version before the counter, then forward again.
    let store = membership_service::store::Store::connect(&database.url, 1)
        .await
        .unwrap();
    let migrations = Migrator::migrations();
    let counter = migrations
        .iter()
        .position(|m| m.name() == "m20261208_000001_pending_invitations")
        .expect("the pending-invitations migration");
    let undone = (migrations.len() - counter) as u32;
    Migrator::down(store.connection(), Some(undone))
        .await
        .unwrap();
    Migrator::up(store.connection(), None).await.unwrap();
    drop(store);

    let server = TestServer::start_shared(database, test_options()).await;
    let id = server.uuid_literal(&tenant.id);
    let counted = server
        .scalar(&format!(
            "SELECT pending_invitations AS n FROM tenants WHERE id = {id}"
        ))
        .await;
    assert_eq!(counted, 2, "the expired and the pending invitation");
    assert_eq!(
        link_directly(&server, &tenant, user_id, &email).await,
        ["membership.created", "invitation.revoked"]
    );
}

// Emails are compared in one canonical form (docs/invitations-and-domains.md, "One canonical form
// per address"): the domain through IDNA to ASCII, lower-case; in the local part only ASCII
// letters lower-cased. Characters that only look alike, or that full Unicode case folding would
// merge, stay distinct addresses.

/// KELVIN SIGN, which Unicode lower-cases to the ASCII `k`.
const KELVIN: char = '\u{212A}';

/// The emails of the tenant's member list entries matching the text `query`.
async fn member_emails_matching(server: &TestServer, tenant: &Tenant, query: &str) -> Vec<String> {
    let mut found: Vec<String> = server
        .members()
        .await
        .list_memberships(as_system(pb::ListMembershipsRequest {
            tenant_id: tenant.id.clone(),
            query: query.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .memberships
        .into_iter()
        .map(|m| m.email)
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_kelvin_sign_address_is_not_the_ascii_one() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let kelvin = format!("{KELVIN}arl@acme.example");
    let karl = invited(&server, &tenant, "karl@acme.example", "member").await;

    // Whoever verified the Kelvin-sign address cannot take karl's invitation.
    let head = server.head().await;
    let taken = accept_as(&server, &karl.token, user(), &kelvin).await;
    assert_refused(taken, Code::PermissionDenied, "EMAIL_MISMATCH");
    assert_eq!(server.head().await, head, "a refusal writes nothing");

    // It is an address of its own: a second invitation, stored exactly as given.
    let other = invited(&server, &tenant, &kelvin, "member").await;
    let other_invitation = other.invitation.unwrap();
    assert_eq!(other_invitation.email, kelvin);
    assert_ne!(
        other_invitation.invitation_id,
        karl.invitation.as_ref().unwrap().invitation_id
    );
    let (pending, _) =
        list_invitations(&server, &tenant, pb::InvitationState::Pending, "", 50).await;
    assert_eq!(
        emails(&pending),
        set(&["karl@acme.example", kelvin.as_str()])
    );
    // Inviting the Kelvin-sign address again is the pending one; karl's accepts as karl only.
    let again = invitations(&server)
        .await
        .create_invitation(as_user(invite(&tenant, &kelvin, "member"), tenant.owner))
        .await;
    assert_refused(again, Code::AlreadyExists, "INVITATION_PENDING");
    let kelvin_user = user();
    let accepted = accept_as(&server, &other.token, kelvin_user, &kelvin)
        .await
        .expect("the Kelvin-sign address accepts its own invitation");
    assert_eq!(accepted.membership.unwrap().email, kelvin);
    let karl_user = user();
    accept_as(&server, &karl.token, karl_user, "Karl@acme.example")
        .await
        .expect("karl accepts his");
    assert_eq!(
        get_member(&server, &tenant, karl_user).await.unwrap().email,
        "karl@acme.example"
    );

    // The member-list text search folds as addresses do: `KARL` finds karl (ASCII case), the
    // Kelvin-sign query finds only its own address.
    assert_eq!(
        member_emails_matching(&server, &tenant, "KARL@").await,
        ["karl@acme.example"]
    );
    assert_eq!(
        member_emails_matching(&server, &tenant, &format!("{KELVIN}arl@")).await,
        [kelvin.as_str()]
    );
    let (found, _) = list_invitations(
        &server,
        &tenant,
        pb::InvitationState::Unspecified,
        &format!("{KELVIN}arl"),
        50,
    )
    .await;
    assert_eq!(emails(&found), set(&[kelvin.as_str()]));
}

#[tokio::test]
async fn look_alike_and_full_width_letters_are_distinct_addresses() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    // Cyrillic а (U+0430) for the Latin a; full-width Ａ (U+FF21) and ａ (U+FF41) for A and a.
    let cyrillic = "\u{430}dmin@acme.example";
    let full_width_upper = "\u{FF21}nn@acme.example";
    let full_width_lower = "\u{FF41}nn@acme.example";
    let admin = invited(&server, &tenant, "admin@acme.example", "member").await;
    let taken = accept_as(&server, &admin.token, user(), cyrillic).await;
    assert_refused(taken, Code::PermissionDenied, "EMAIL_MISMATCH");
    for email in [
        cyrillic,
        full_width_upper,
        full_width_lower,
        "ann@acme.example",
    ] {
        let created = invited(&server, &tenant, email, "member").await;
        assert_eq!(created.invitation.unwrap().email, email, "kept exactly");
    }
    let (pending, _) =
        list_invitations(&server, &tenant, pb::InvitationState::Pending, "", 50).await;
    assert_eq!(
        emails(&pending),
        set(&[
            "admin@acme.example",
            cyrillic,
            full_width_upper,
            full_width_lower,
            "ann@acme.example"
        ])
    );
    // A full-width letter is not lower-cased: the upper-case one's invitation is not the
    // lower-case one's.
    let full_width = invited(&server, &tenant, "\u{FF22}ob@acme.example", "member").await;
    let folded = accept_as(
        &server,
        &full_width.token,
        user(),
        "\u{FF42}ob@acme.example",
    )
    .await;
    assert_refused(folded, Code::PermissionDenied, "EMAIL_MISMATCH");

    // Bulk invitations use the same form: look-alikes are new addresses, ASCII case is not.
    let kelvin = format!("{KELVIN}arl@acme.example");
    let given = [
        "karl@acme.example",
        kelvin.as_str(),
        "KARL@ACME.example",
        "\u{430}DMIN@acme.example",
        "ADMIN@acme.example",
        "\u{430}nn@acme.example",
    ];
    let response = invitations(&server)
        .await
        .bulk_create_invitations(as_user(bulk(&tenant, &given, "member"), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    use pb::BulkInvitationOutcome as O;
    let outcomes: Vec<O> = response
        .results
        .iter()
        .map(|r| O::try_from(r.outcome).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            O::Created,
            O::Created,
            O::Duplicate,
            O::AlreadyInvited,
            O::AlreadyInvited,
            O::Created
        ]
    );
    assert_eq!(
        response.results[1].invitation.as_ref().unwrap().email,
        kelvin
    );
    assert_eq!(
        response.results[5].invitation.as_ref().unwrap().email,
        "\u{430}nn@acme.example"
    );
}

#[tokio::test]
async fn a_unicode_domain_and_its_punycode_are_one_address() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut client = invitations(&server).await;

    let ann = invited(&server, &tenant, "Ann@Bücher.Example", "member").await;
    assert_eq!(
        ann.invitation.as_ref().unwrap().email,
        "ann@xn--bcher-kva.example"
    );
    let again = client
        .create_invitation(as_user(
            invite(&tenant, "ann@XN--BCHER-KVA.example", "member"),
            tenant.owner,
        ))
        .await;
    assert_refused(again, Code::AlreadyExists, "INVITATION_PENDING");
    let bob = invited(&server, &tenant, "bob@xn--bcher-kva.example", "member").await;
    let again = client
        .create_invitation(as_user(
            invite(&tenant, "bob@bücher.example", "member"),
            tenant.owner,
        ))
        .await;
    assert_refused(again, Code::AlreadyExists, "INVITATION_PENDING");

    // Either form accepts.
    let ann_user = user();
    let accepted = accept_as(&server, &ann.token, ann_user, "ann@xn--bcher-kva.example")
        .await
        .expect("the punycode form accepts");
    assert_eq!(
        accepted.membership.unwrap().email,
        "ann@xn--bcher-kva.example"
    );
    accept_as(&server, &bob.token, user(), "BOB@BÜCHER.example")
        .await
        .expect("the Unicode form accepts");
    let member = client
        .create_invitation(as_user(
            invite(&tenant, "ann@bücher.example", "member"),
            tenant.owner,
        ))
        .await;
    assert_refused(member, Code::AlreadyExists, "MEMBER_EXISTS");

    // A domain IDNA refuses is invalid input, field by field.
    for bad in [
        "ann@xn--zz.example",
        "ann@bü_cher.example",
        "ann@-bücher.example",
    ] {
        let refused = client
            .create_invitation(as_user(invite(&tenant, bad, "member"), tenant.owner))
            .await;
        let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), ["email"], "{bad}");
        let refused = client
            .accept_invitation(as_system(accept(&ann.token, user(), bad)))
            .await;
        let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), ["email"], "{bad}");
    }
    let response = client
        .bulk_create_invitations(as_user(
            bulk(
                &tenant,
                &["cy@xn--zz.example", "cy@bücher.example"],
                "member",
            ),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.results[0].outcome,
        pb::BulkInvitationOutcome::InvalidEmail as i32
    );
    assert_eq!(
        response.results[1].invitation.as_ref().unwrap().email,
        "cy@xn--bcher-kva.example"
    );
}

/// A resend racing an accept with the old token: exactly one wins. Either the accept commits
/// first (and the resend finds the invitation no longer pending), or the resend rotates the
/// token first (and the old token no longer opens anything). Never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_racing_an_accept_with_the_old_token_lets_exactly_one_win() {
    const ROUNDS: usize = 60;
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let mut accepted = 0;
    let mut resent = 0;
    for round in 0..ROUNDS {
        let email = format!("race-{round}@acme.example");
        let invitation = invited(&server, &tenant, &email, "member").await;
        let id = invitation.invitation.unwrap().invitation_id;
        let accepter = user();
        let mut accepting = invitations(&server).await;
        let mut resending = invitations(&server).await;
        let start = Arc::new(Barrier::new(2));
        let accept_call = {
            let start = start.clone();
            let request = as_user(accept(&invitation.token, accepter, &email), accepter);
            tokio::spawn(async move {
                start.wait().await;
                accepting.accept_invitation(request).await
            })
        };
        let resend_call = {
            let request = as_user(resend(&tenant, &id), tenant.owner);
            tokio::spawn(async move {
                start.wait().await;
                resending.resend_invitation(request).await
            })
        };
        let (accept_result, resend_result) =
            (accept_call.await.unwrap(), resend_call.await.unwrap());
        match (accept_result, resend_result) {
            (Ok(_), Err(refused)) => {
                assert_refused::<()>(
                    Err(refused),
                    Code::FailedPrecondition,
                    "INVITATION_NOT_PENDING",
                );
                accepted += 1;
            }
            (Err(refused), Ok(resent_now)) => {
                assert_refused::<()>(Err(refused), Code::NotFound, "INVITATION_NOT_FOUND");
                // The rotated token is the one that works now.
                let new_token = resent_now.into_inner().token;
                accept_as(&server, &new_token, accepter, &email)
                    .await
                    .expect("accepting with the new token");
                resent += 1;
            }
            (Ok(_), Ok(_)) => panic!("round {round}: both the accept and the resend succeeded"),
            (Err(a), Err(r)) => panic!("round {round}: both failed: {a:?} / {r:?}"),
        }
    }
    assert_eq!(accepted + resent, ROUNDS);
}

/// Durations the protobuf spec rules out, each with what makes it malformed.
const MALFORMED_DURATIONS: &[(i64, i32, &str)] = &[
    (2 * HOUR, -5, "negative nanos with positive seconds"),
    (-2 * HOUR, 5, "positive nanos with negative seconds"),
    (2 * HOUR, 1_000_000_000, "nanos of a whole second"),
    (0, -1_000_000_000, "nanos below -999,999,999"),
    (315_576_000_001, 0, "seconds beyond ±315,576,000,000"),
    (i64::MIN, 0, "seconds far out of range"),
];

/// Every request Duration (the `ttl`s) is checked as the protobuf spec defines it: a malformed
/// one is INVALID_ARGUMENT naming the field, reported with the request's other bad fields, and
/// writes nothing; a well-formed one with nanos is accepted.
#[tokio::test]
async fn malformed_durations_are_refused_by_every_rpc_that_takes_a_ttl() {
    assert_eq!(
        request_fields_of_type(".google.protobuf.Duration"),
        [
            "BulkCreateInvitationsRequest.ttl",
            "CreateInvitationRequest.ttl",
            "ResendInvitationRequest.ttl",
        ],
        "every Duration in a request is covered here"
    );
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let mut client = invitations(&server).await;
    let pending = invited(&server, &tenant, "pending@acme.example", "member").await;
    let invitation_id = pending.invitation.unwrap().invitation_id;
    let duration = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
    let create = |ttl| pb::CreateInvitationRequest {
        ttl,
        ..invite(&tenant, "new@acme.example", "member")
    };
    let bulk = |ttl| pb::BulkCreateInvitationsRequest {
        tenant_id: tenant.id.clone(),
        emails: vec!["bulk@acme.example".into()],
        role: "member".into(),
        ttl,
    };
    let resend_with = |ttl| pb::ResendInvitationRequest {
        ttl,
        ..resend(&tenant, &invitation_id)
    };

    let head = server.head().await;
    for &(seconds, nanos, what) in MALFORMED_DURATIONS {
        let ttl = duration(seconds, nanos);
        let refusals = [
            (
                "CreateInvitation",
                client
                    .create_invitation(as_user(create(ttl), tenant.owner))
                    .await
                    .map(drop),
            ),
            (
                "BulkCreateInvitations",
                client
                    .bulk_create_invitations(as_user(bulk(ttl), tenant.owner))
                    .await
                    .map(drop),
            ),
            (
                "ResendInvitation",
                client
                    .resend_invitation(as_user(resend_with(ttl), tenant.owner))
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, result) in refusals {
            let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(violated_fields(&status), ["ttl"], "{rpc}, {what}");
        }
    }
    // With another bad field, both are reported at once.
    let status = assert_refused(
        client
            .create_invitation(as_user(
                pb::CreateInvitationRequest {
                    email: "not-an-email".into(),
                    ..create(duration(2 * HOUR, -5))
                },
                tenant.owner,
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["email", "ttl"]);
    assert_eq!(server.head().await, head, "no refused call wrote anything");

    // Well-formed, with nanos of either sign matching the seconds', is accepted.
    client
        .create_invitation(as_user(create(duration(2 * HOUR, 5)), tenant.owner))
        .await
        .expect("a ttl with positive nanos");
    client
        .bulk_create_invitations(as_user(bulk(duration(2 * HOUR, 999_999_999)), tenant.owner))
        .await
        .expect("a ttl with the largest nanos");
    let resent = client
        .resend_invitation(as_user(resend_with(duration(DAY, 0)), tenant.owner))
        .await
        .expect("a whole-second ttl")
        .into_inner();
    let invitation = resent.invitation.unwrap();
    let expiry =
        invitation.expire_time.unwrap().seconds - invitation.last_send_time.unwrap().seconds;
    assert!((DAY - 1..=DAY).contains(&expiry), "{expiry}");
}
