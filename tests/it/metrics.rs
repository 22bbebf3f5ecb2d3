//! The metrics endpoint and per-call request ids, on the real binary (one process, so the
//! numbers are this test's alone).

use crate::common::*;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// `GET path` over HTTP/1.1: the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The value of the sample whose line starts with `series` (name and labels as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_count_calls_streams_subscribers_and_the_pool() {
    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &[]).await;
    let metrics = server.metrics.expect("the metrics endpoint's address");
    let channel = server.channel().await;
    let mut tenants = TenantServiceClient::new(channel.clone());
    let mut members = MembershipServiceClient::new(channel);

    let mut stream = members
        .watch_membership_events(as_system(pb::WatchMembershipEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        tenants
            .create_tenant(as_system(new_tenant(user())))
            .await
            .unwrap();
    }
    // The watcher has received what was written: delivery lag has samples.
    next_event(&mut stream).await;
    let missing = members
        .get_membership(as_system(pb::GetMembershipRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            user_id: user().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Paths the server does not serve are counted together, never as series of their own.
    for path in [
        "/membership.v1.TenantService/NoSuchMethod",
        "/made.up.Service/Anything",
    ] {
        let mut grpc = tonic::client::Grpc::new(server.channel().await);
        grpc.ready().await.unwrap();
        let refused = grpc
            .unary::<_, pb::GetTenantResponse, _>(
                tonic::Request::new(pb::GetTenantRequest::default()),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unimplemented);
    }

    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &body,
            r#"grpc_server_handled_total{grpc_service="unknown",grpc_method="unknown",grpc_type="unary",grpc_code="UNIMPLEMENTED"}"#
        ),
        Some(2.0),
        "{body}"
    );
    assert!(
        !body.contains("NoSuchMethod") && !body.contains("made.up"),
        "{body}"
    );
    let tenant = r#"grpc_service="membership.v1.TenantService",grpc_method="CreateTenant""#;
    assert_eq!(
        sample(
            &body,
            &format!("grpc_server_started_total{{{tenant},grpc_type=\"unary\"}}")
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("grpc_server_handled_total{{{tenant},grpc_type=\"unary\",grpc_code=\"OK\"}}")
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!("grpc_server_handling_seconds_count{{{tenant},grpc_type=\"unary\"}}")
        ),
        Some(3.0),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "grpc_server_handling_seconds_bucket{{{tenant},grpc_type=\"unary\",le=\"0.005\"}}"
        )),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"grpc_server_handled_total{grpc_service="membership.v1.MembershipService",grpc_method="GetMembership",grpc_type="unary",grpc_code="NOT_FOUND"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"grpc_server_open_streams{grpc_service="membership.v1.MembershipService",grpc_method="WatchMembershipEvents"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "membership_event_subscribers"),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(&body, "membership_event_feed_position").is_some_and(|p| p >= 6.0),
        "{body}"
    );
    assert!(
        sample(&body, "membership_event_delivery_lag_seconds_count").is_some_and(|n| n >= 1.0),
        "{body}"
    );
    assert!(
        sample(&body, "membership_db_pool_max_connections").is_some_and(|n| n >= 1.0),
        "{body}"
    );
    assert!(
        sample(&body, r#"membership_db_pool_connections{state="idle"}"#).is_some(),
        "{body}"
    );
    assert!(
        sample(&body, r#"membership_db_pool_connections{state="in_use"}"#).is_some(),
        "{body}"
    );

    // Closing the watch closes its stream and its subscription. The two are recorded by
    // different tasks, so wait for both rather than read them in one scrape.
    drop(stream);
    let watch_cancelled = r#"grpc_server_handled_total{grpc_service="membership.v1.MembershipService",grpc_method="WatchMembershipEvents",grpc_type="server_stream",grpc_code="CANCELLED"}"#;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = get(metrics, "/metrics").await;
            if sample(&body, "membership_event_subscribers") == Some(0.0)
                && sample(&body, watch_cancelled).is_some()
            {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the subscription closed");
    assert_eq!(
        sample(
            &closed,
            r#"grpc_server_open_streams{grpc_service="membership.v1.MembershipService",grpc_method="WatchMembershipEvents"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &closed,
            r#"grpc_server_handled_total{grpc_service="membership.v1.MembershipService",grpc_method="WatchMembershipEvents",grpc_type="server_stream",grpc_code="CANCELLED"}"#
        ),
        Some(1.0),
        "{closed}"
    );

    assert_eq!(get(metrics, "/other").await.0, 404);
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn every_call_has_a_request_id_in_its_response_and_its_logs() {
    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &["--metrics-listen", "off"]).await;
    assert_eq!(server.metrics, None);
    let mut members = MembershipServiceClient::new(server.channel().await);
    let lookup = || pb::GetMembershipRequest {
        tenant_id: uuid::Uuid::now_v7().to_string(),
        user_id: user().to_string(),
        ..Default::default()
    };

    // The caller's id is kept and echoed; the refusal is logged under it.
    let mut request = as_system(lookup());
    request
        .metadata_mut()
        .insert("x-request-id", "checkout-7f3a".parse().unwrap());
    let refused = members.get_membership(request).await.unwrap_err();
    assert_eq!(
        refused.metadata().get("x-request-id").unwrap(),
        "checkout-7f3a"
    );
    let logged = server.logged("request_id=checkout-7f3a").await;
    assert!(logged.contains("NOT_FOUND"), "{logged}");
    assert!(logged.contains("method=GetMembership"), "{logged}");

    // Without one (or with one that is not a sane token), the server makes one up.
    let mut ids = Vec::new();
    for supplied in [None, Some("bad id with spaces")] {
        let mut request = as_system(lookup());
        if let Some(id) = supplied {
            request
                .metadata_mut()
                .insert("x-request-id", id.parse().unwrap());
        }
        let refused = members.get_membership(request).await.unwrap_err();
        let id = refused
            .metadata()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{id}");
        ids.push(id.to_string());
    }
    assert_ne!(ids[0], ids[1]);
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn json_logs_carry_the_request_id_of_each_call() {
    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &["--log-format", "json"]).await;
    let mut members = MembershipServiceClient::new(server.channel().await);
    let mut request = as_system(pb::GetMembershipRequest {
        tenant_id: uuid::Uuid::now_v7().to_string(),
        user_id: user().to_string(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "json-req-1".parse().unwrap());
    members.get_membership(request).await.unwrap_err();

    let refusal = server.logged("json-req-1").await;
    let line: serde_json::Value = serde_json::from_str(&refusal).expect("a JSON log line");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["code"], "NOT_FOUND", "{line}");
    assert_eq!(line["span"]["name"], "rpc", "{line}");
    assert_eq!(line["span"]["request_id"], "json-req-1", "{line}");
    assert_eq!(line["span"]["method"], "GetMembership", "{line}");
    assert_eq!(line["span"]["principal"], "anonymous", "{line}");
    // Every line the server wrote is JSON.
    for line in server.logs.lock().unwrap().iter() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(server.terminate().await.success());
}

/// A unary call the caller abandons while it runs (here: waiting for the database's write lock,
/// held by this test) is counted and logged as CANCELLED, not left out or counted as UNKNOWN.
#[tokio::test]
async fn a_call_the_caller_abandons_is_counted_and_logged_as_cancelled() {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &[]).await;
    let metrics = server.metrics.expect("the metrics endpoint's address");
    let mut tenants = TenantServiceClient::new(server.channel().await);
    // Migrated by the server; the test holds the write lock every tenant creation needs.
    let store = membership_service::store::Store::connect(&database.url, 1)
        .await
        .unwrap();
    let blocker = store
        .connection()
        .begin_with_options(sea_orm::TransactionOptions {
            isolation_level: None,
            access_mode: None,
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        })
        .await
        .unwrap();
    if database.is_postgres() {
        blocker
            .execute_unprepared("LOCK TABLE log_head IN EXCLUSIVE MODE")
            .await
            .unwrap();
    }

    let mut request = as_system(new_tenant(user()));
    request
        .metadata_mut()
        .insert("x-request-id", "abandoned-call-1".parse().unwrap());
    let call = tokio::spawn(async move { tenants.create_tenant(request).await });
    // Abandoned only once the server has it (a call reset before the server reads it is never
    // started, so it is not counted at all): however long that takes on a busy machine.
    let started = r#"grpc_server_started_total{grpc_service="membership.v1.TenantService",grpc_method="CreateTenant",grpc_type="unary"}"#;
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = get(metrics, "/metrics").await;
            if sample(&body, started).is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server started the call");
    assert!(
        !call.is_finished(),
        "the call finished while the lock was held"
    );
    call.abort();
    assert!(call.await.is_err_and(|e| e.is_cancelled()));
    blocker.rollback().await.unwrap();

    let cancelled = r#"grpc_server_handled_total{grpc_service="membership.v1.TenantService",grpc_method="CreateTenant",grpc_type="unary",grpc_code="CANCELLED"}"#;
    let body = tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = get(metrics, "/metrics").await;
            if sample(&body, cancelled).is_some() {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the abandoned call was counted");
    assert_eq!(sample(&body, cancelled), Some(1.0), "{body}");
    assert!(!body.contains(r#"grpc_code="UNKNOWN""#), "{body}");
    let logged = server.logged("request_id=abandoned-call-1").await;
    assert!(logged.contains("CANCELLED"), "{logged}");
    assert!(server.terminate().await.success());
}
