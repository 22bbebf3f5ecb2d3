//! Verified domains and auto-join (DESIGN rule 20) over a real server, with domain verification
//! answered by a real DNS server on loopback that serves the TXT records each test publishes.

use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::*;
use hickory_proto::rr::RecordType;
use membership_service::app::ServeOptions;
use membership_service::dns::DnsOptions;
use membership_service::grpc::pb;
use tonic::{Code, Status};
use uuid::Uuid;

fn dns_options(nameserver: std::net::SocketAddr, timeout: Duration) -> ServeOptions {
    ServeOptions {
        dns: DnsOptions {
            nameserver: Some(nameserver),
            timeout,
        },
        ..test_options()
    }
}

/// A server whose domain verification asks `dns`.
async fn start(dns: &DnsServer) -> TestServer {
    TestServer::start_with(
        TestDatabase::create().await,
        dns_options(dns.addr, Duration::from_secs(2)),
    )
    .await
}

fn add(tenant: &Tenant, domain: &str, auto_join: bool) -> pb::AddDomainRequest {
    pb::AddDomainRequest {
        tenant_id: tenant.id.clone(),
        domain: domain.into(),
        auto_join,
    }
}

/// Adds `domain` as the tenant's owner.
async fn added(server: &TestServer, tenant: &Tenant, domain: &str, auto_join: bool) -> pb::Domain {
    server
        .tenants()
        .await
        .add_domain(as_user(add(tenant, domain, auto_join), tenant.owner))
        .await
        .unwrap_or_else(|s| panic!("adding {domain}: {s:?}"))
        .into_inner()
        .domain
        .unwrap()
}

fn target(tenant: &Tenant, domain_id: &str) -> pb::VerifyDomainRequest {
    pb::VerifyDomainRequest {
        tenant_id: tenant.id.clone(),
        domain_id: domain_id.into(),
    }
}

async fn verify(
    server: &TestServer,
    tenant: &Tenant,
    domain_id: &str,
) -> Result<pb::VerifyDomainResponse, Status> {
    server
        .tenants()
        .await
        .verify_domain(as_user(target(tenant, domain_id), tenant.owner))
        .await
        .map(|r| r.into_inner())
}

/// Publishes the record AddDomain asked for.
fn publish(dns: &DnsServer, domain: &pb::Domain) {
    dns.set_txt(
        &domain.verification_record_name,
        &[domain.verification_record_value.as_str()],
    );
}

/// Adds, publishes and verifies `domain` for the tenant.
async fn verified(
    server: &TestServer,
    dns: &DnsServer,
    tenant: &Tenant,
    domain: &str,
    auto_join: bool,
) -> pb::Domain {
    let domain = added(server, tenant, domain, auto_join).await;
    publish(dns, &domain);
    let verified = verify(server, tenant, &domain.domain_id)
        .await
        .unwrap_or_else(|s| panic!("verifying {}: {s:?}", domain.domain))
        .domain
        .unwrap();
    assert_eq!(verified.state, pb::DomainState::Verified as i32);
    verified
}

async fn list_domains(server: &TestServer, tenant: &Tenant) -> Vec<pb::Domain> {
    server
        .tenants()
        .await
        .list_domains(as_user(
            pb::ListDomainsRequest {
                tenant_id: tenant.id.clone(),
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .domains
}

fn update(domain: pb::Domain, paths: &[&str]) -> pb::UpdateDomainRequest {
    pb::UpdateDomainRequest {
        domain: Some(domain),
        update_mask: field_mask(paths),
    }
}

fn remove(tenant: &Tenant, domain_id: &str) -> pb::RemoveDomainRequest {
    pb::RemoveDomainRequest {
        tenant_id: tenant.id.clone(),
        domain_id: domain_id.into(),
    }
}

/// Sets auto-join as the tenant's owner.
async fn set_auto_join(server: &TestServer, tenant: &Tenant, domain: &pb::Domain, on: bool) {
    server
        .tenants()
        .await
        .update_domain(as_user(
            update(
                pb::Domain {
                    auto_join: on,
                    etag: String::new(),
                    ..domain.clone()
                },
                &["auto_join"],
            ),
            tenant.owner,
        ))
        .await
        .unwrap();
}

fn sign_up(user_id: Uuid, email: &str) -> pb::AutoJoinRequest {
    pb::AutoJoinRequest {
        user_id: user_id.to_string(),
        email: email.into(),
        display_name: "Sam Signup".into(),
    }
}

/// AutoJoin as the signing-up user themselves.
async fn auto_join(server: &TestServer, user_id: Uuid, email: &str) -> pb::AutoJoinResponse {
    server
        .members()
        .await
        .auto_join(as_user(sign_up(user_id, email), user_id))
        .await
        .unwrap_or_else(|s| panic!("auto-joining {email}: {s:?}"))
        .into_inner()
}

fn mentions(message: &str, words: &[&str]) -> bool {
    let message = message.to_lowercase();
    words.iter().any(|w| message.contains(w))
}

#[tokio::test]
async fn an_added_domain_is_pending_with_the_txt_record_to_publish() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    let mut tenants = server.tenants().await;

    let head = server.head().await;
    let response = tenants
        .add_domain(as_user(
            add(&tenant, "Acme-Corp.Example", true),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let domain = response.domain.unwrap();
    assert!(Uuid::parse_str(&domain.domain_id).is_ok());
    assert_eq!(domain.tenant_id, tenant.id);
    assert_eq!(domain.domain, "acme-corp.example");
    assert_eq!(domain.state, pb::DomainState::Pending as i32);
    assert!(domain.auto_join);
    assert_eq!(
        domain.verification_record_name,
        "_membership-verification.acme-corp.example"
    );
    let token = domain
        .verification_record_value
        .strip_prefix("membership-verification=")
        .expect("the record value's form");
    assert!(token.len() >= 16, "an unguessable token: {token:?}");
    assert!(domain.create_time.is_some());
    assert!(domain.verify_time.is_none());
    assert!(!domain.etag.is_empty());
    server
        .expect_events(head, &["domain.added"], response.cursor, Some(tenant.owner))
        .await;
    assert_eq!(
        list_domains(&server, &tenant).await,
        std::slice::from_ref(&domain)
    );
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM verified_domains")
            .await,
        0
    );
}

/// A missing record and a record with another value are told apart and write nothing; the
/// expected value among the name's other TXT records verifies.
#[tokio::test]
async fn a_domain_is_verified_by_its_txt_record_only() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    let domain = added(&server, &tenant, "Acme-Corp.Example", true).await;
    assert_eq!(domain.state, pb::DomainState::Pending as i32);

    // No record yet.
    let head = server.head().await;
    let missing = verify(&server, &tenant, &domain.domain_id).await;
    let missing = assert_refused(
        missing,
        Code::FailedPrecondition,
        "DOMAIN_VERIFICATION_FAILED",
    );
    assert!(
        dns.asked().iter().any(|(name, kind)| {
            name == &domain.verification_record_name && *kind == RecordType::TXT
        }),
        "the configured nameserver was asked for the TXT record: {:?}",
        dns.asked()
    );
    assert!(
        mentions(
            missing.message(),
            &[
                "missing",
                "not found",
                "no txt",
                "no record",
                "no such",
                "does not exist",
                "absent",
                "nxdomain"
            ]
        ),
        "the message says the record is missing: {}",
        missing.message()
    );

    // A record with another value.
    dns.set_txt(
        &domain.verification_record_name,
        &["membership-verification=somebody-elses-token"],
    );
    let other = verify(&server, &tenant, &domain.domain_id).await;
    let other = assert_refused(
        other,
        Code::FailedPrecondition,
        "DOMAIN_VERIFICATION_FAILED",
    );
    assert_ne!(other.message(), missing.message());
    assert!(
        mentions(
            other.message(),
            &[
                "different",
                "does not match",
                "doesn't match",
                "mismatch",
                "another value",
                "other value",
                "unexpected",
                "instead",
                "somebody-elses-token",
                "expected"
            ]
        ),
        "the message says the record has another value: {}",
        other.message()
    );
    assert_eq!(
        server.head().await,
        head,
        "failed verifications write nothing"
    );
    assert_eq!(
        list_domains(&server, &tenant).await[0].state,
        pb::DomainState::Pending as i32
    );

    // The expected value, among the name's other TXT records.
    dns.set_txt(
        &domain.verification_record_name,
        &["v=spf1 -all", domain.verification_record_value.as_str()],
    );
    let response = verify(&server, &tenant, &domain.domain_id).await.unwrap();
    let verified = response.domain.unwrap();
    assert_eq!(verified.state, pb::DomainState::Verified as i32);
    assert!(verified.verify_time.is_some());
    assert_eq!(verified.domain, "acme-corp.example");
    assert_ne!(verified.etag, domain.etag);
    server
        .expect_events(
            head,
            &["domain.verified"],
            response.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(
        list_domains(&server, &tenant).await,
        std::slice::from_ref(&verified)
    );
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM verified_domains")
            .await,
        1
    );
}

#[tokio::test]
async fn a_verified_domain_is_updated_under_its_field_mask_and_etag() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    let mut tenants = server.tenants().await;
    let verified = verified(&server, &dns, &tenant, "Acme-Corp.Example", true).await;

    // Auto-join off, under the field mask and the etag.
    let head = server.head().await;
    let response = tenants
        .update_domain(as_user(
            update(
                pb::Domain {
                    auto_join: false,
                    domain: "ignored.example".into(), // not in the mask
                    ..verified.clone()
                },
                &["auto_join"],
            ),
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    let updated = response.domain.unwrap();
    assert!(!updated.auto_join);
    assert_eq!(updated.domain, "acme-corp.example");
    assert_eq!(updated.state, pb::DomainState::Verified as i32);
    assert_ne!(updated.etag, verified.etag);
    server
        .expect_events(
            head,
            &["domain.updated"],
            response.cursor,
            Some(tenant.owner),
        )
        .await;
    assert_eq!(
        list_domains(&server, &tenant).await,
        std::slice::from_ref(&updated)
    );

    let head = server.head().await;
    let stale = tenants
        .update_domain(as_user(
            update(verified.clone(), &["auto_join"]),
            tenant.owner,
        ))
        .await;
    assert_refused(stale, Code::Aborted, "ETAG_MISMATCH");
    let empty_mask = tenants
        .update_domain(as_user(update(updated.clone(), &[]), tenant.owner))
        .await;
    let status = assert_refused(empty_mask, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["update_mask"]);
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn a_removed_domain_is_gone_and_no_longer_verified() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    let mut tenants = server.tenants().await;
    let domain = verified(&server, &dns, &tenant, "Acme-Corp.Example", true).await;
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM verified_domains")
            .await,
        1
    );

    let head = server.head().await;
    let response = tenants
        .remove_domain(as_user(remove(&tenant, &domain.domain_id), tenant.owner))
        .await
        .unwrap()
        .into_inner();
    server
        .expect_events(
            head,
            &["domain.removed"],
            response.cursor,
            Some(tenant.owner),
        )
        .await;
    assert!(list_domains(&server, &tenant).await.is_empty());
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM verified_domains")
            .await,
        0
    );
    let head = server.head().await;
    let again = tenants
        .remove_domain(as_user(remove(&tenant, &domain.domain_id), tenant.owner))
        .await;
    assert_refused(again, Code::NotFound, "DOMAIN_NOT_FOUND");
    let gone = verify(&server, &tenant, &domain.domain_id).await;
    assert_refused(gone, Code::NotFound, "DOMAIN_NOT_FOUND");
    let unknown = verify(&server, &tenant, &Uuid::now_v7().to_string()).await;
    assert_refused(unknown, Code::NotFound, "DOMAIN_NOT_FOUND");
    assert_eq!(server.head().await, head);
}

#[tokio::test]
async fn consumer_and_malformed_domains_are_refused() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    let mut tenants = server.tenants().await;
    let head = server.head().await;
    for consumer in ["gmail.com", "outlook.com", "yahoo.com", "GMail.com "] {
        let result = tenants
            .add_domain(as_user(add(&tenant, consumer, true), tenant.owner))
            .await;
        let status = assert_refused(result, Code::InvalidArgument, "CONSUMER_DOMAIN");
        assert_eq!(violated_fields(&status), ["domain"], "{consumer}");
    }
    for malformed in ["", "not a domain", "acme..example", "user@acme.example"] {
        let result = tenants
            .add_domain(as_user(add(&tenant, malformed, true), tenant.owner))
            .await;
        let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), ["domain"], "{malformed:?}");
    }
    assert_eq!(server.head().await, head);
    assert!(list_domains(&server, &tenant).await.is_empty());
}

#[tokio::test]
async fn a_domain_is_added_once_per_tenant_and_verified_by_one_tenant_only() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let a = enterprise(&server, None).await;
    let b = enterprise(&server, None).await;
    let c = enterprise(&server, None).await;
    let mut tenants = server.tenants().await;

    let of_a = added(&server, &a, "shared.example", true).await;
    let twice = tenants
        .add_domain(as_user(add(&a, "SHARED.example", false), a.owner))
        .await;
    assert_refused(twice, Code::AlreadyExists, "DOMAIN_EXISTS");
    // Nobody has proven control yet, so another tenant may claim it too, with its own token.
    let of_b = added(&server, &b, "shared.example", true).await;
    assert_eq!(of_a.verification_record_name, of_b.verification_record_name);
    assert_ne!(
        of_a.verification_record_value,
        of_b.verification_record_value
    );

    // Both records are published; A verifies first, so B cannot.
    dns.set_txt(
        &of_a.verification_record_name,
        &[
            of_a.verification_record_value.as_str(),
            of_b.verification_record_value.as_str(),
        ],
    );
    verify(&server, &a, &of_a.domain_id).await.unwrap();
    let head = server.head().await;
    let taken = verify(&server, &b, &of_b.domain_id).await;
    assert_refused(taken, Code::AlreadyExists, "DOMAIN_TAKEN");
    assert_eq!(
        list_domains(&server, &b).await[0].state,
        pb::DomainState::Pending as i32
    );
    // A third tenant cannot even add it; A adding it again is still DOMAIN_EXISTS.
    let third = tenants
        .add_domain(as_user(add(&c, "shared.example", true), c.owner))
        .await;
    assert_refused(third, Code::AlreadyExists, "DOMAIN_TAKEN");
    let again = tenants
        .add_domain(as_user(add(&a, "shared.example", true), a.owner))
        .await;
    assert_refused(again, Code::AlreadyExists, "DOMAIN_EXISTS");
    assert_eq!(server.head().await, head);
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM verified_domains")
            .await,
        1
    );

    // Once A lets go of it, another tenant can prove control.
    tenants
        .remove_domain(as_user(remove(&a, &of_a.domain_id), a.owner))
        .await
        .unwrap();
    let of_c = added(&server, &c, "shared.example", true).await;
    publish(&dns, &of_c);
    let verified = verify(&server, &c, &of_c.domain_id).await.unwrap();
    assert_eq!(
        verified.domain.unwrap().state,
        pb::DomainState::Verified as i32
    );
}

#[tokio::test]
async fn domains_are_managed_with_tenant_manage_and_read_with_members_read() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let org = organization(&server, None).await;
    let admin = add_member(&server, &org, "admin").await;
    let member = add_member(&server, &org, "member").await;
    let outsider = enterprise(&server, None).await;
    let finance = add_member(&server, &outsider, "finance_admin").await;
    let mut tenants = server.tenants().await;
    let head = server.head().await;

    for actor in [admin, member] {
        denied_for(
            tenants
                .add_domain(as_user(add(&org, "org.example", true), actor))
                .await,
            "tenant.manage",
        );
    }
    denied_for(
        tenants
            .add_domain(as_user(add(&outsider, "org.example", true), finance))
            .await,
        "tenant.manage",
    );
    assert_eq!(server.head().await, head);

    let domain = added(&server, &org, "org.example", true).await;
    publish(&dns, &domain);
    let head = server.head().await;
    denied_for(
        tenants
            .verify_domain(as_user(target(&org, &domain.domain_id), admin))
            .await,
        "tenant.manage",
    );
    denied_for(
        tenants
            .update_domain(as_user(update(domain.clone(), &["auto_join"]), admin))
            .await,
        "tenant.manage",
    );
    denied_for(
        tenants
            .remove_domain(as_user(remove(&org, &domain.domain_id), admin))
            .await,
        "tenant.manage",
    );
    // Everyone in the tenant reads the list.
    for actor in [admin, member] {
        let listed = tenants
            .list_domains(as_user(
                pb::ListDomainsRequest {
                    tenant_id: org.id.clone(),
                },
                actor,
            ))
            .await
            .unwrap()
            .into_inner()
            .domains;
        assert_eq!(listed, std::slice::from_ref(&domain));
    }
    // Nobody outside it does anything.
    let peek = tenants
        .list_domains(as_user(
            pb::ListDomainsRequest {
                tenant_id: org.id.clone(),
            },
            outsider.owner,
        ))
        .await;
    assert_refused(peek, Code::PermissionDenied, "NOT_A_MEMBER");
    let grab = tenants
        .verify_domain(as_user(target(&org, &domain.domain_id), outsider.owner))
        .await;
    assert_refused(grab, Code::PermissionDenied, "NOT_A_MEMBER");
    // Through its own tenant, the outsider does not find another tenant's domain.
    let across = tenants
        .remove_domain(as_user(
            remove(&outsider, &domain.domain_id),
            outsider.owner,
        ))
        .await;
    assert_refused(across, Code::NotFound, "DOMAIN_NOT_FOUND");
    assert_eq!(server.head().await, head);
    assert_eq!(
        list_domains(&server, &org).await[0].state,
        pb::DomainState::Pending as i32
    );
}

#[tokio::test]
async fn an_unreachable_nameserver_is_reported_as_unavailable_not_as_a_missing_record() {
    // A UDP socket that never answers (and no TCP listener behind it).
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = TestServer::start_with(
        TestDatabase::create().await,
        dns_options(silent.local_addr().unwrap(), Duration::from_millis(500)),
    )
    .await;
    let tenant = enterprise(&server, None).await;
    let domain = added(&server, &tenant, "quiet.example", true).await;
    let head = server.head().await;
    let result = verify(&server, &tenant, &domain.domain_id).await;
    assert_refused(result, Code::Unavailable, "DNS_UNAVAILABLE");
    assert_eq!(server.head().await, head);
    assert_eq!(
        list_domains(&server, &tenant).await[0].state,
        pb::DomainState::Pending as i32
    );
    drop(silent);
}

/// The whole lookup is bounded by the configured timeout, however the resolver retries or
/// falls back: a nameserver that reads every query (UDP and TCP) and never answers gives
/// UNAVAILABLE DNS_UNAVAILABLE once the timeout has passed, not a multiple of it.
#[tokio::test]
async fn a_nameserver_that_never_answers_fails_within_the_configured_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    // For the call around the lookup on a busy machine; a lookup that retried past its
    // timeout would take at least twice the timeout.
    const SLACK: Duration = Duration::from_secs(1);
    let (udp, tcp) = udp_and_tcp_on_one_port().await;
    let nameserver = udp.local_addr().unwrap();
    let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = queries.clone();
    let silent_udp = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while udp.recv_from(&mut buffer).await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let silent_tcp = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = tcp.accept().await {
            held.push(stream);
        }
    });
    let server = TestServer::start_with(
        TestDatabase::create().await,
        dns_options(nameserver, TIMEOUT),
    )
    .await;
    let tenant = enterprise(&server, None).await;
    let domain = added(&server, &tenant, "silent.example", true).await;

    let started = std::time::Instant::now();
    let result = verify(&server, &tenant, &domain.domain_id).await;
    let elapsed = started.elapsed();
    let status = assert_refused(result, Code::Unavailable, "DNS_UNAVAILABLE");
    assert!(
        elapsed <= TIMEOUT + SLACK,
        "the lookup took {elapsed:?}, beyond the {TIMEOUT:?} configured: {status:?}"
    );
    assert!(
        queries.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the nameserver was asked"
    );
    assert_eq!(
        list_domains(&server, &tenant).await[0].state,
        pb::DomainState::Pending as i32
    );
    silent_udp.abort();
    silent_tcp.abort();
}

#[tokio::test]
async fn auto_join_makes_a_signup_a_member_of_the_tenant_that_verified_the_domain() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, Some(3)).await;
    verified(&server, &dns, &tenant, "acme-a.example", true).await;

    let head = server.head().await;
    let una = user();
    let response = auto_join(&server, una, "Una@ACME-A.example").await;
    assert_eq!(response.results.len(), 1, "{response:?}");
    let result = &response.results[0];
    assert_eq!(result.tenant_id, tenant.id);
    assert_eq!(result.outcome, pb::AutoJoinOutcome::Joined as i32);
    let membership = result.membership.clone().unwrap();
    assert_eq!(membership.tenant_id, tenant.id);
    assert_eq!(membership.user_id, una.to_string());
    assert_eq!(membership.status, pb::MembershipStatus::Active as i32);
    assert_eq!(membership.roles, ["member"]);
    assert_eq!(membership.source, pb::MembershipSource::Signup as i32);
    assert_eq!(membership.email, "una@acme-a.example");
    assert_eq!(membership.display_name, "Sam Signup");
    assert!(membership.join_time.is_some());
    let events = server.events_after(head).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["membership.created"]
    );
    assert_eq!(
        events[0].subject_id.as_deref(),
        Some(una.to_string().as_str())
    );
    assert_eq!(response.cursor, head + 1);
    let stored = get_member(&server, &tenant, una).await.unwrap();
    assert_eq!(stored.status, pb::MembershipStatus::Active as i32);
    assert_eq!(stored.source, pb::MembershipSource::Signup as i32);
    assert_eq!(stored.roles, ["member"]);
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    // Again: reported, not changed.
    let head = server.head().await;
    let again = auto_join(&server, una, "una@acme-a.example").await;
    assert_eq!(again.results.len(), 1);
    assert_eq!(
        again.results[0].outcome,
        pb::AutoJoinOutcome::AlreadyMember as i32
    );
    assert_eq!(
        again.results[0].membership.as_ref().unwrap().user_id,
        una.to_string()
    );
    assert_eq!(server.head().await, head, "no new event");
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    // A system caller may sign someone up too; a user may not sign up someone else.
    let vic = user();
    let by_system = server
        .members()
        .await
        .auto_join(as_system(sign_up(vic, "vic@acme-a.example")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_system.results[0].outcome,
        pb::AutoJoinOutcome::Joined as i32
    );
    let head = server.head().await;
    let for_another = server
        .members()
        .await
        .auto_join(as_user(sign_up(user(), "wes@acme-a.example"), una))
        .await;
    let status = for_another.expect_err("signing up someone else");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(server.head().await, head);

    // Bad input.
    let bad = server
        .members()
        .await
        .auto_join(as_system(pb::AutoJoinRequest {
            user_id: "123".into(),
            email: "not an email".into(),
            display_name: String::new(),
        }))
        .await;
    let status = assert_refused(bad, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["email", "user_id"]);

    // Someone who left is reported, not brought back.
    server
        .api()
        .await
        .as_user(una)
        .leave(&tenant)
        .await
        .unwrap();
    let head = server.head().await;
    let after_leaving = auto_join(&server, una, "una@acme-a.example").await;
    assert_eq!(
        after_leaving.results[0].outcome,
        pb::AutoJoinOutcome::AlreadyMember as i32
    );
    assert_eq!(server.head().await, head);
    assert_eq!(
        get_member(&server, &tenant, una).await.unwrap().status,
        pb::MembershipStatus::Left as i32
    );
}

#[tokio::test]
async fn auto_join_skips_tenants_without_auto_join_a_free_seat_or_a_verified_domain() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let off = enterprise(&server, None).await;
    let off_domain = verified(&server, &dns, &off, "off.example", false).await;
    // The owner holds the only seat.
    let full = enterprise(&server, Some(1)).await;
    verified(&server, &dns, &full, "full.example", true).await;
    let pending = enterprise(&server, None).await;
    added(&server, &pending, "pending.example", true).await;

    let head = server.head().await;
    assert!(
        auto_join(&server, user(), "ann@off.example")
            .await
            .results
            .is_empty(),
        "auto-join is off"
    );

    let bo = user();
    let response = auto_join(&server, bo, "bo@full.example").await;
    assert_eq!(response.results.len(), 1, "{response:?}");
    assert_eq!(response.results[0].tenant_id, full.id);
    assert_eq!(
        response.results[0].outcome,
        pb::AutoJoinOutcome::NoSeat as i32
    );
    assert!(response.results[0].membership.is_none());
    assert_eq!(seat_usage(&server, &full).await.used, 1);
    assert_refused(
        get_member(&server, &full, bo).await,
        Code::NotFound,
        "MEMBERSHIP_NOT_FOUND",
    );

    for email in ["cy@pending.example", "dee@gmail.com", "eve@unknown.example"] {
        let response = auto_join(&server, user(), email).await;
        assert!(response.results.is_empty(), "{email}: {response:?}");
    }
    assert_eq!(server.head().await, head, "nothing joined, nothing written");

    // Turning auto-join on lets the next sign-up in; removing the domain stops it again.
    set_auto_join(&server, &off, &off_domain, true).await;
    let gus = user();
    let response = auto_join(&server, gus, "gus@off.example").await;
    assert_eq!(response.results.len(), 1);
    assert_eq!(
        response.results[0].outcome,
        pb::AutoJoinOutcome::Joined as i32
    );
    assert_eq!(
        get_member(&server, &off, gus).await.unwrap().source,
        pb::MembershipSource::Signup as i32
    );
    // Only the verified domain itself, not its subdomains.
    assert!(
        auto_join(&server, user(), "ivy@sub.off.example")
            .await
            .results
            .is_empty()
    );
    server
        .tenants()
        .await
        .remove_domain(as_user(remove(&off, &off_domain.domain_id), off.owner))
        .await
        .unwrap();
    assert!(
        auto_join(&server, user(), "hal@off.example")
            .await
            .results
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_verifying_one_domain_at_once_end_with_one_owner() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let a = enterprise(&server, None).await;
    let b = enterprise(&server, None).await;
    for round in 0..5 {
        let name = format!("race{round}.example");
        let of_a = added(&server, &a, &name, true).await;
        let of_b = added(&server, &b, &name, true).await;
        dns.set_txt(
            &of_a.verification_record_name,
            &[
                of_a.verification_record_value.as_str(),
                of_b.verification_record_value.as_str(),
            ],
        );
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let mut calls = Vec::new();
        for (tenant, domain) in [(&a, &of_a), (&b, &of_b)] {
            let mut client = server.tenants().await;
            let request = as_user(target(tenant, &domain.domain_id), tenant.owner);
            let start = start.clone();
            calls.push(tokio::spawn(async move {
                start.wait().await;
                client.verify_domain(request).await
            }));
        }
        let mut winners = 0;
        for call in futures::future::join_all(calls).await {
            match call.unwrap() {
                Ok(response) => {
                    assert_eq!(
                        response.into_inner().domain.unwrap().state,
                        pb::DomainState::Verified as i32
                    );
                    winners += 1;
                }
                Err(status) => {
                    assert_refused::<()>(Err(status), Code::AlreadyExists, "DOMAIN_TAKEN");
                }
            }
        }
        assert_eq!(winners, 1, "round {round}");
        let verified_by = |domains: Vec<pb::Domain>| {
            domains
                .iter()
                .any(|d| d.domain == name && d.state == pb::DomainState::Verified as i32)
        };
        assert_ne!(
            verified_by(list_domains(&server, &a).await),
            verified_by(list_domains(&server, &b).await),
            "round {round}: exactly one tenant holds it"
        );
    }
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM verified_domains")
            .await,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sign_ups_take_exactly_the_free_seats_and_a_repeated_one_joins_once() {
    const SIGNUPS: usize = 10;
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    // The owner holds one of four seats.
    let small = enterprise(&server, Some(4)).await;
    verified(&server, &dns, &small, "small.example", true).await;
    let head = server.head().await;

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(SIGNUPS));
    let mut calls = Vec::new();
    for i in 0..SIGNUPS {
        let mut client = server.members().await;
        let user_id = user();
        let request = as_user(sign_up(user_id, &format!("u{i}@small.example")), user_id);
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.auto_join(request).await
        }));
    }
    let mut outcomes = Vec::new();
    for call in futures::future::join_all(calls).await {
        let response = call
            .unwrap()
            .expect("a sign-up never fails for lack of seats");
        let results = response.into_inner().results;
        assert_eq!(results.len(), 1);
        outcomes.push(results[0].outcome);
    }
    let joined = outcomes
        .iter()
        .filter(|o| **o == pb::AutoJoinOutcome::Joined as i32)
        .count();
    let no_seat = outcomes
        .iter()
        .filter(|o| **o == pb::AutoJoinOutcome::NoSeat as i32)
        .count();
    assert_eq!((joined, no_seat), (3, SIGNUPS - 3), "{outcomes:?}");
    assert_eq!(seat_usage(&server, &small).await.used, 4);
    assert_eq!(
        server.event_types_after(head).await,
        ["membership.created"; 3]
    );

    // One user's sign-up, repeated at once (retries), joins once.
    let big = enterprise(&server, None).await;
    verified(&server, &dns, &big, "big.example", true).await;
    let head = server.head().await;
    let repeated = user();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(5));
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut client = server.members().await;
        let request = as_user(sign_up(repeated, "rep@big.example"), repeated);
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.auto_join(request).await
        }));
    }
    let mut joined = 0;
    for call in futures::future::join_all(calls).await {
        let results = call
            .unwrap()
            .expect("a repeated sign-up")
            .into_inner()
            .results;
        assert_eq!(results.len(), 1);
        match pb::AutoJoinOutcome::try_from(results[0].outcome).unwrap() {
            pb::AutoJoinOutcome::Joined => joined += 1,
            pb::AutoJoinOutcome::AlreadyMember => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(joined, 1);
    assert_eq!(server.event_types_after(head).await, ["membership.created"]);
}

#[tokio::test]
async fn dissolved_and_personal_tenants_take_no_one_in() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    verified(&server, &dns, &tenant, "gone.example", true).await;
    server
        .api()
        .await
        .as_user(tenant.owner)
        .dissolve_tenant(&tenant)
        .await
        .unwrap();
    let head = server.head().await;
    let user_id = user();
    let response = auto_join(&server, user_id, "late@gone.example").await;
    assert!(
        response
            .results
            .iter()
            .all(|r| r.outcome != pb::AutoJoinOutcome::Joined as i32),
        "{response:?}"
    );
    assert_eq!(server.head().await, head);
    assert!(get_member(&server, &tenant, user_id).await.is_err());

    let personal = create_tenant(
        &server,
        pb::TenantKind::Personal,
        pb::RolePreset::Enterprise,
        None,
    )
    .await;
    let refused = server
        .tenants()
        .await
        .add_domain(as_user(
            add(&personal, "mine.example", true),
            personal.owner,
        ))
        .await;
    assert_refused(refused, Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE");
}

#[tokio::test]
async fn a_dissolved_tenant_lets_go_of_its_verified_domains() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let old = enterprise(&server, None).await;
    verified(&server, &dns, &old, "reused.example", true).await;
    server
        .api()
        .await
        .as_user(old.owner)
        .dissolve_tenant(&old)
        .await
        .unwrap();
    // The dissolved tenant can no longer remove the domain, so the claim must end with it:
    // otherwise nobody could ever verify the domain again.
    let successor = enterprise(&server, None).await;
    let domain = verified(&server, &dns, &successor, "reused.example", true).await;
    assert_eq!(domain.state, pb::DomainState::Verified as i32);
    let user_id = user();
    let response = auto_join(&server, user_id, "new@reused.example").await;
    assert_eq!(response.results.len(), 1, "{response:?}");
    assert_eq!(response.results[0].tenant_id, successor.id);
    assert_eq!(
        response.results[0].outcome,
        pb::AutoJoinOutcome::Joined as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_domain_added_by_several_callers_at_once_is_added_once() {
    const CALLERS: usize = 8;
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    let head = server.head().await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut calls = Vec::new();
    for _ in 0..CALLERS {
        let mut client = server.tenants().await;
        let request = as_user(add(&tenant, "once.example", true), tenant.owner);
        let start = start.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            client.add_domain(request).await
        }));
    }
    let mut added_count = 0;
    for call in futures::future::join_all(calls).await {
        match call.unwrap() {
            Ok(_) => added_count += 1,
            Err(status) => {
                assert_refused::<()>(Err(status), Code::AlreadyExists, "DOMAIN_EXISTS");
            }
        }
    }
    assert_eq!(added_count, 1);
    assert_eq!(server.event_types_after(head).await, ["domain.added"]);
    assert_eq!(list_domains(&server, &tenant).await.len(), 1);
}

#[tokio::test]
async fn a_domain_another_tenant_verified_is_taken_without_asking_dns() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let first = enterprise(&server, None).await;
    let second = enterprise(&server, None).await;
    // The second tenant adds the domain while it is still unclaimed…
    let late = added(&server, &second, "contested.example", true).await;
    verified(&server, &dns, &first, "contested.example", true).await;
    // …and, once the first tenant has verified it, is refused whatever DNS says.
    publish(&dns, &late);
    let asked = dns.asked().len();
    let refused = verify(&server, &second, &late.domain_id).await;
    assert_refused(refused, Code::AlreadyExists, "DOMAIN_TAKEN");
    assert_eq!(
        dns.asked().len(),
        asked,
        "the claim decided, not the record"
    );
}

#[tokio::test]
async fn auto_join_closes_the_pending_invitation_of_the_same_email() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, Some(5)).await;
    verified(&server, &dns, &tenant, "invited.example", true).await;
    let invitation =
        pb::invitation_service_client::InvitationServiceClient::new(server.channel().await)
            .create_invitation(as_user(
                pb::CreateInvitationRequest {
                    tenant_id: tenant.id.clone(),
                    email: "pat@invited.example".into(),
                    role: "member".into(),
                    ttl: None,
                    request_id: String::new(),
                },
                tenant.owner,
            ))
            .await
            .unwrap()
            .into_inner();
    assert!(!invitation.token.is_empty());
    assert_eq!(seat_usage(&server, &tenant).await.used, 2);

    let head = server.head().await;
    let user_id = user();
    let joined = auto_join(&server, user_id, "pat@invited.example").await;
    assert_eq!(
        joined.results[0].outcome,
        pb::AutoJoinOutcome::Joined as i32
    );
    assert_eq!(
        server.event_types_after(head).await,
        ["membership.created", "invitation.revoked"]
    );
    assert_eq!(
        seat_usage(&server, &tenant).await.used,
        2,
        "one person, one seat"
    );
}

#[tokio::test]
async fn a_domain_added_in_unicode_matches_signups_in_either_form() {
    let dns = DnsServer::start().await;
    let server = start(&dns).await;
    let tenant = enterprise(&server, None).await;
    // Stored, verified and matched in its IDNA ASCII form, as emails are.
    let domain = verified(&server, &dns, &tenant, "Bücher.Example", true).await;
    assert_eq!(domain.domain, "xn--bcher-kva.example");
    assert_eq!(
        domain.verification_record_name,
        "_membership-verification.xn--bcher-kva.example"
    );
    let again = server
        .tenants()
        .await
        .add_domain(as_user(
            add(&tenant, "xn--bcher-kva.example", true),
            tenant.owner,
        ))
        .await;
    assert_refused(again, Code::AlreadyExists, "DOMAIN_EXISTS");
    let other = enterprise(&server, None).await;
    let taken = server
        .tenants()
        .await
        .add_domain(as_user(add(&other, "bücher.example", true), other.owner))
        .await;
    assert_refused(taken, Code::AlreadyExists, "DOMAIN_TAKEN");

    for (email, stored) in [
        ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
        ("Bob@BÜCHER.example", "bob@xn--bcher-kva.example"),
    ] {
        let user_id = user();
        let response = auto_join(&server, user_id, email).await;
        assert_eq!(response.results.len(), 1, "{email}: {response:?}");
        assert_eq!(response.results[0].tenant_id, tenant.id);
        assert_eq!(
            response.results[0].outcome,
            pb::AutoJoinOutcome::Joined as i32
        );
        assert_eq!(
            get_member(&server, &tenant, user_id).await.unwrap().email,
            stored
        );
    }
    // A look-alike domain is another domain: no tenant verified it.
    let look_alike = auto_join(&server, user(), "cy@b\u{FC}cher.exampl\u{435}").await;
    assert!(look_alike.results.is_empty(), "{look_alike:?}");

    // A domain IDNA refuses is invalid input.
    for bad in ["xn--zz.example", "bü_cher.example"] {
        let refused = server
            .tenants()
            .await
            .add_domain(as_user(add(&tenant, bad, true), tenant.owner))
            .await;
        let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), ["domain"], "{bad}");
        let refused = server
            .members()
            .await
            .auto_join(as_system(sign_up(user(), &format!("dee@{bad}"))))
            .await;
        let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), ["email"], "{bad}");
    }
}
