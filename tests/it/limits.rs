//! Limits: an oversized message, an exceeded deadline, too many concurrent calls and too many
//! watches each get their status, and the server keeps serving others.

use std::time::Duration;

use crate::common::*;
use membership_service::app::ServeOptions;
use membership_service::dns::DnsOptions;
use membership_service::edge::limits::LimitOptions;
use membership_service::grpc::error::WATCHER_RETRY_DELAY;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use tokio::net::{TcpListener, UdpSocket};
use tonic::Code;
use tonic_types::StatusExt;

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
        ..LimitOptions::default()
    };
    let server = start(&black_hole, limits, 4 * 1024 * 1024).await;
    let tenant = enterprise(&server, None).await;
    let verify = pending_domain(&server, &tenant).await;

    let mut tenants = server.tenants().await;
    let slow = tokio::spawn(async move { tenants.verify_domain(as_system(verify)).await });
    black_hole.query_arrived().await;

    let refused = get_tenant(&server, &tenant).await;
    let retry = refused
        .as_ref()
        .err()
        .and_then(|status| status.get_details_retry_info())
        .and_then(|info| info.retry_delay);
    assert_eq!(retry, Some(Duration::from_millis(100)), "{refused:?}");
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

/// Watches are bounded by `max_watchers`, not by the calls executing at once: a burst of them,
/// as when a replica restarts and its watchers all come back, opens in full on a server whose
/// concurrency limit is a hundredth of it. Past the watcher bound a watch is refused with
/// RESOURCE_EXHAUSTED TOO_MANY_WATCHERS and a retry delay, calls are still served, and a watch
/// that ends frees its place.
#[tokio::test]
async fn a_burst_of_watches_opens_past_the_call_limit_up_to_the_watcher_bound() {
    const WATCHERS: usize = 200;
    let limits = LimitOptions {
        max_concurrent_calls: 2,
        max_watchers: WATCHERS,
        ..LimitOptions::default()
    };
    let options = ServeOptions {
        limits,
        ..test_options()
    };
    let server = TestServer::start_with(TestDatabase::create().await, options).await;
    let tenant = enterprise(&server, None).await;
    let request = pb::WatchMembershipEventsRequest {
        tenant_id: tenant.id.clone(),
        ..Default::default()
    };
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(server.channel().await);
    }

    // All at once, over four connections.
    let opens = (0..WATCHERS).map(|i| {
        let mut client = MembershipServiceClient::new(channels[i % channels.len()].clone());
        let request = request.clone();
        async move { client.watch_membership_events(as_system(request)).await }
    });
    let mut streams: Vec<_> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|opened| {
            opened
                .expect("every watch within the bound opens")
                .into_inner()
        })
        .collect();

    // One more is refused, with the bound and a delay to retry after.
    let refused = server
        .members()
        .await
        .watch_membership_events(as_system(request.clone()))
        .await;
    let status = assert_refused(
        refused.map(|_| ()),
        Code::ResourceExhausted,
        "TOO_MANY_WATCHERS",
    );
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("max_watchers"),
        Some(&WATCHERS.to_string())
    );
    let retry = status.get_details_retry_info().expect("a RetryInfo");
    assert_eq!(retry.retry_delay, Some(WATCHER_RETRY_DELAY));

    // The watches take no share of the call limit: calls are served, and every watch delivers.
    let id = add_member(&server, &tenant, "member").await;
    for stream in &mut streams {
        let event = next_event(stream).await;
        assert_eq!(event.subject_id, id.to_string());
    }

    // A watch that ends frees its place (once the server has seen the stream go).
    drop(streams.pop());
    let reopened = tokio::time::timeout(WAIT, async {
        loop {
            match server
                .members()
                .await
                .watch_membership_events(as_system(request.clone()))
                .await
            {
                Ok(stream) => return stream.into_inner(),
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!("{status:?}"),
            }
        }
    })
    .await
    .expect("the place of the closed watch was freed");
    drop(reopened);
}

#[tokio::test]
async fn undecodable_requests_are_invalid_arguments_on_every_rpc() {
    use prost_types::field_descriptor_proto::Type;
    let server = TestServer::start().await;
    let channel = server.channel().await;
    for (path, request) in every_rpc().0 {
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            // Field 1 with wire type 7, which does not exist.
            ("random bytes", frame(0, &[0x0f, 0xff, 0xff, 0x01])),
            // Field 1, length-delimited, 10 bytes announced, 2 sent.
            ("a truncated message", frame(0, &[0x0a, 0x0a, b'a', b'b'])),
            (
                "a frame flagged compressed without grpc-encoding",
                frame(1, &[]),
            ),
            ("a frame cut short", vec![0, 0, 0]),
            ("no message at all", vec![]),
        ];
        if let Some(field) = request.field.first() {
            let length_delimited =
                matches!(field.r#type(), Type::String | Type::Bytes | Type::Message)
                    || field.label() == prost_types::field_descriptor_proto::Label::Repeated;
            let tag = field.number() as u8;
            // A varint where a string, message or packed list belongs, and the other way round.
            let wrong = if length_delimited {
                vec![tag << 3, 0x01]
            } else {
                vec![(tag << 3) | 2, 0x01, 0x00]
            };
            cases.push(("a field with the wrong wire type", frame(0, &wrong)));
        }
        if let Some(field) = request.field.iter().find(|f| f.r#type() == Type::String) {
            let tag = field.number() as u8;
            cases.push((
                "invalid UTF-8 in a string field",
                frame(0, &[(tag << 3) | 2, 0x02, 0xff, 0xfe]),
            ));
        }
        for (case, frames) in cases {
            let status = raw_call(&channel, &path, frames, &[]).await.status();
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path}, {case}: {:?} {}",
                status.code(),
                status.message()
            );
            let reason =
                tonic_types::StatusExt::get_details_error_info(&status).map(|info| info.reason);
            assert_eq!(
                reason.as_deref(),
                Some("MALFORMED_REQUEST"),
                "{path}, {case}: {}",
                status.message()
            );
        }
    }
    // The server still serves well-formed calls.
    organization(&server, None).await;
}

/// However large the request, a refusal's message and details fit the 8 KiB of metadata every
/// gRPC client accepts: each echoed value is cut and only the first violations are listed.
#[tokio::test]
async fn refusals_of_huge_requests_stay_small_on_every_rpc() {
    use prost_types::field_descriptor_proto::{Label, Type};
    const LIMIT: usize = 4 * 1024 * 1024;
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let mut checked = 0;
    for (path, request) in every_rpc().0 {
        let strings: Vec<&prost_types::FieldDescriptorProto> = request
            .field
            .iter()
            .filter(|f| f.r#type() == Type::String)
            .collect();
        if strings.is_empty() {
            continue;
        }
        // Non-ASCII text, which grows threefold when a message echoing it is percent-encoded.
        let long = "é\"%_".repeat(1000);
        let mut message = Vec::new();
        for field in &strings {
            if field.label() == Label::Repeated {
                while message.len() < LIMIT - 64 * 1024 {
                    put_bytes(&mut message, field.number(), long.as_bytes());
                }
            } else {
                put_bytes(&mut message, field.number(), long.as_bytes());
            }
        }
        let answer = raw_call(&channel, &path, frame(0, &message), &[]).await;
        let status = answer.status();
        let headers = &answer.status_headers;
        assert_ne!(status.code(), Code::Ok, "{path} accepted a huge request");
        assert_ne!(
            status.code(),
            Code::Internal,
            "{path}: {}",
            status.message()
        );
        let size: usize = ["grpc-message", "grpc-status-details-bin"]
            .iter()
            .filter_map(|name| headers.get(*name))
            .map(|value| value.len())
            .sum();
        assert!(
            size < 8 * 1024,
            "{path}: {} bytes of message and details ({} bytes sent)",
            size,
            message.len()
        );
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} RPCs checked");
}
