//! Limits: an oversized message, an exceeded deadline and too many concurrent calls each get
//! their status, and the server keeps serving others.

mod common;

use std::time::Duration;

use common::*;
use membership_service::app::ServeOptions;
use membership_service::dns::DnsOptions;
use membership_service::grpc::pb;
use membership_service::limits::LimitOptions;
use tokio::net::{TcpListener, UdpSocket};
use tonic::Code;

/// A nameserver that receives queries and never answers: calls that verify a domain hang
/// until the resolver gives up, which makes them slow on purpose.
struct BlackHole {
    udp: UdpSocket,
    _tcp: TcpListener,
}

impl BlackHole {
    async fn start() -> BlackHole {
        let (udp, tcp) = udp_and_tcp_on_one_port().await;
        BlackHole { udp, _tcp: tcp }
    }

    /// Completes once a query has arrived: the slow call is in flight.
    async fn query_arrived(&self) {
        let mut buffer = [0u8; 512];
        tokio::time::timeout(WAIT, self.udp.recv_from(&mut buffer))
            .await
            .expect("no DNS query arrived")
            .unwrap();
    }
}

async fn start(
    black_hole: &BlackHole,
    limits: LimitOptions,
    max_message_bytes: usize,
) -> TestServer {
    let options = ServeOptions {
        dns: DnsOptions {
            nameserver: Some(black_hole.udp.local_addr().unwrap()),
            timeout: Duration::from_secs(3),
        },
        limits,
        max_message_bytes,
        ..test_options()
    };
    TestServer::start_with(TestDatabase::create().await, options).await
}

/// A domain whose verification will hang on the black hole.
async fn pending_domain(server: &TestServer, tenant: &Tenant) -> pb::VerifyDomainRequest {
    let domain = server
        .tenants()
        .await
        .add_domain(as_system(pb::AddDomainRequest {
            tenant_id: tenant.id.clone(),
            domain: "slow.example".into(),
            auto_join: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .domain
        .unwrap();
    pb::VerifyDomainRequest {
        tenant_id: tenant.id.clone(),
        domain_id: domain.domain_id,
    }
}

async fn get_tenant(
    server: &TestServer,
    tenant: &Tenant,
) -> Result<pb::GetTenantResponse, tonic::Status> {
    server
        .tenants()
        .await
        .get_tenant(as_system(pb::GetTenantRequest {
            tenant_id: tenant.id.clone(),
        }))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn an_oversized_message_gets_resource_exhausted() {
    let black_hole = BlackHole::start().await;
    let server = start(&black_hole, LimitOptions::default(), 64 * 1024).await;
    let tenant = enterprise(&server, None).await;
    let mut request = new_member(&tenant, user(), "member");
    request.display_name = "x".repeat(100 * 1024);
    let refused = server
        .members()
        .await
        .create_membership(as_system(request))
        .await;
    assert_refused(refused, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");
    assert!(
        get_tenant(&server, &tenant).await.is_ok(),
        "others are still served"
    );
}

#[tokio::test]
async fn a_call_past_its_deadline_gets_deadline_exceeded() {
    let black_hole = BlackHole::start().await;
    let limits = LimitOptions {
        request_timeout: Duration::from_secs(30),
        ..LimitOptions::default()
    };
    let server = start(&black_hole, limits, 4 * 1024 * 1024).await;
    let tenant = enterprise(&server, None).await;
    let verify = pending_domain(&server, &tenant).await;

    // The caller's deadline.
    let mut request = as_system(verify.clone());
    request.set_timeout(Duration::from_millis(300));
    let refused = server.tenants().await.verify_domain(request).await;
    assert_refused(refused, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
    assert!(
        get_tenant(&server, &tenant).await.is_ok(),
        "others are still served"
    );
}

#[tokio::test]
async fn the_server_deadline_applies_without_one_from_the_caller() {
    let black_hole = BlackHole::start().await;
    let limits = LimitOptions {
        request_timeout: Duration::from_millis(300),
        ..LimitOptions::default()
    };
    let server = start(&black_hole, limits, 4 * 1024 * 1024).await;
    let tenant = enterprise(&server, None).await;
    let verify = pending_domain(&server, &tenant).await;
    let refused = server
        .tenants()
        .await
        .verify_domain(as_system(verify))
        .await;
    assert_refused(refused, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
    assert!(get_tenant(&server, &tenant).await.is_ok());
}

/// A watch streams for as long as its caller wants: the deadline covers only its start.
#[tokio::test]
async fn a_watch_outlives_the_server_deadline() {
    let black_hole = BlackHole::start().await;
    let limits = LimitOptions {
        request_timeout: Duration::from_millis(300),
        ..LimitOptions::default()
    };
    let server = start(&black_hole, limits, 4 * 1024 * 1024).await;
    let mut stream = watch(&server, pb::WatchMembershipEventsRequest::default()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tenant = enterprise(&server, None).await;
    let event = next_event(&mut stream).await;
    assert_eq!(event.tenant_id, tenant.id);
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_refused_not_queued() {
    let black_hole = BlackHole::start().await;
    let limits = LimitOptions {
        request_timeout: Duration::from_secs(30),
        max_concurrent_calls: 1,
    };
    let server = start(&black_hole, limits, 4 * 1024 * 1024).await;
    let tenant = enterprise(&server, None).await;
    let verify = pending_domain(&server, &tenant).await;

    let mut tenants = server.tenants().await;
    let slow = tokio::spawn(async move { tenants.verify_domain(as_system(verify)).await });
    black_hole.query_arrived().await;

    let refused = get_tenant(&server, &tenant).await;
    assert_refused(refused, Code::ResourceExhausted, "OVERLOADED");
    // Health checks are exempt, so the load balancer still hears from the server.
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The slow call ends (the resolver gives up) and the server serves again.
    let slow = slow.await.unwrap();
    assert_refused(slow, Code::Unavailable, "DNS_UNAVAILABLE");
    assert!(get_tenant(&server, &tenant).await.is_ok());
}
