//! The metrics endpoint and per-call request ids, on the real binary (a process per test, so
//! the numbers are that test's alone).

use std::net::SocketAddr;

use crate::common::*;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// `GET path` over HTTP/1.1: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
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

/// The body of `GET /metrics`, which must answer 200.
async fn scrape(metrics: SocketAddr) -> String {
    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Scrapes `metrics` until `ready` holds of what it serves, for up to `WAIT` (`what`: the
/// change awaited, for a failure); returns that scrape.
async fn scrape_until(metrics: SocketAddr, what: &str, ready: impl Fn(&str) -> bool) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, body) = get(metrics, "/metrics").await;
            if ready(&body) {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within the wait"))
}

/// The server binary over a fresh database (kept while the server runs), and the address of
/// its metrics endpoint.
async fn spawn_with_metrics() -> (TestDatabase, ServerProcess, SocketAddr) {
    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &[]).await;
    let metrics = server.metrics.expect("the metrics endpoint's address");
    (database, server, metrics)
}

/// Opens a watch of every tenant, creates three tenants, and returns the watch once it has
/// received the first of what they wrote.
async fn watch_three_new_tenants(
    server: &ServerProcess,
) -> tonic::Streaming<pb::WatchMembershipEventsResponse> {
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
    stream
}

const OPEN_WATCH_STREAMS: &str = r#"grpc_server_open_streams{grpc_service="membership.v1.MembershipService",grpc_method="WatchMembershipEvents"}"#;
const CANCELLED_WATCHES: &str = r#"grpc_server_handled_total{grpc_service="membership.v1.MembershipService",grpc_method="WatchMembershipEvents",grpc_type="server_stream",grpc_code="CANCELLED"}"#;

/// Each unary call is counted when it starts and when it is handled (by its code) and timed,
/// in series of its own service and method.
#[tokio::test]
async fn unary_calls_are_counted_and_timed_by_method_and_code() {
    let (_database, server, metrics) = spawn_with_metrics().await;
    let channel = server.channel().await;
    let mut tenants = TenantServiceClient::new(channel.clone());
    let mut members = MembershipServiceClient::new(channel);
    for _ in 0..3 {
        tenants
            .create_tenant(as_system(new_tenant(user())))
            .await
            .unwrap();
    }
    let missing = members
        .get_membership(as_system(pb::GetMembershipRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            user_id: user().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let body = scrape(metrics).await;
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
    assert!(server.terminate().await.success());
}

/// Paths the server does not serve are counted together, never as series of their own.
#[tokio::test]
async fn calls_to_paths_the_server_does_not_serve_are_counted_together_as_unknown() {
    let (_database, server, metrics) = spawn_with_metrics().await;
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

    let body = scrape(metrics).await;
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
    assert!(server.terminate().await.success());
}

/// A watch is an open stream and an event subscriber while it runs; closed, it is neither, and
/// its stream is counted as handled with CANCELLED.
#[tokio::test]
async fn a_watch_is_an_open_stream_and_a_subscriber_until_it_is_closed() {
    let (_database, server, metrics) = spawn_with_metrics().await;
    let stream = watch_three_new_tenants(&server).await;

    let body = scrape(metrics).await;
    assert_eq!(sample(&body, OPEN_WATCH_STREAMS), Some(1.0), "{body}");
    assert_eq!(
        sample(&body, "membership_event_subscribers"),
        Some(1.0),
        "{body}"
    );

    // Closing the watch closes its stream and its subscription. The two are recorded by
    // different tasks, so wait for both rather than read them in one scrape.
    drop(stream);
    let closed = scrape_until(metrics, "the subscription closed", |body| {
        sample(body, "membership_event_subscribers") == Some(0.0)
            && sample(body, CANCELLED_WATCHES).is_some()
    })
    .await;
    assert_eq!(sample(&closed, OPEN_WATCH_STREAMS), Some(0.0));
    assert_eq!(sample(&closed, CANCELLED_WATCHES), Some(1.0), "{closed}");
    assert!(server.terminate().await.success());
}

/// The event feed reports the newest position it has loaded, and how long events took from
/// commit to a watcher.
#[tokio::test]
async fn the_event_feed_reports_its_position_and_its_delivery_lag() {
    let (_database, server, metrics) = spawn_with_metrics().await;
    let stream = watch_three_new_tenants(&server).await;

    // The feed loads what was committed a moment after the writers return: the position gets
    // to the three tenants' six events once it has.
    let body = scrape_until(metrics, "the feed loaded the six events", |body| {
        sample(body, "membership_event_feed_position").is_some_and(|p| p >= 6.0)
    })
    .await;
    assert_eq!(
        sample(&body, "membership_event_feed_position"),
        Some(6.0),
        "{body}"
    );
    assert!(
        sample(&body, "membership_event_delivery_lag_seconds_count").is_some_and(|n| n >= 1.0),
        "{body}"
    );
    drop(stream);
    assert!(server.terminate().await.success());
}

/// The database pool reports its size and its idle and busy connections.
#[tokio::test]
async fn the_database_pool_reports_its_size_and_its_connections() {
    let (_database, server, metrics) = spawn_with_metrics().await;
    let body = scrape(metrics).await;
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
    assert!(server.terminate().await.success());
}

/// The metrics endpoint serves `/metrics` and nothing else.
#[tokio::test]
async fn the_metrics_endpoint_answers_not_found_off_its_path() {
    let (_database, server, metrics) = spawn_with_metrics().await;
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

/// A transaction that holds up the server's writes until it ends: SQLite's write lock, or on
/// PostgreSQL the lock `postgres_lock` takes.
async fn hold_writes(database: &TestDatabase, postgres_lock: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::{ConnectionTrait, TransactionTrait};
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
        blocker.execute_unprepared(postgres_lock).await.unwrap();
    }
    blocker
}

/// A unary call the caller abandons while it runs (here: waiting for the database's write lock,
/// held by this test) is counted and logged as CANCELLED, not left out or counted as UNKNOWN.
#[tokio::test]
async fn a_call_the_caller_abandons_is_counted_and_logged_as_cancelled() {
    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &[]).await;
    let metrics = server.metrics.expect("the metrics endpoint's address");
    let mut tenants = TenantServiceClient::new(server.channel().await);
    // Migrated by the server; the test holds the write lock every tenant creation needs.
    let blocker = hold_writes(&database, "LOCK TABLE log_head IN EXCLUSIVE MODE").await;

    let mut request = as_system(new_tenant(user()));
    request
        .metadata_mut()
        .insert("x-request-id", "abandoned-call-1".parse().unwrap());
    let call = tokio::spawn(async move { tenants.create_tenant(request).await });
    // Abandoned only once the server has it (a call reset before the server reads it is never
    // started, so it is not counted at all): however long that takes on a busy machine.
    let started = r#"grpc_server_started_total{grpc_service="membership.v1.TenantService",grpc_method="CreateTenant",grpc_type="unary"}"#;
    scrape_until(metrics, "the server started the call", |body| {
        sample(body, started).is_some()
    })
    .await;
    assert!(
        !call.is_finished(),
        "the call finished while the lock was held"
    );
    call.abort();
    assert!(call.await.is_err_and(|e| e.is_cancelled()));
    blocker.rollback().await.unwrap();

    let cancelled = r#"grpc_server_handled_total{grpc_service="membership.v1.TenantService",grpc_method="CreateTenant",grpc_type="unary",grpc_code="CANCELLED"}"#;
    let body = scrape_until(metrics, "the abandoned call was counted", |body| {
        sample(body, cancelled).is_some()
    })
    .await;
    assert_eq!(sample(&body, cancelled), Some(1.0), "{body}");
    assert!(!body.contains(r#"grpc_code="UNKNOWN""#), "{body}");
    let logged = server.logged("request_id=abandoned-call-1").await;
    assert!(logged.contains("CANCELLED"), "{logged}");
    assert!(server.terminate().await.success());
}

/// Writes into one tenant that queued while it was busy commit in one transaction, and
/// `membership_writes_per_commit` says so: here the tenant is held busy from outside (its row
/// locked on PostgreSQL, the database's write lock on SQLite) until every call has arrived.
#[tokio::test]
async fn writes_queued_for_one_tenant_are_counted_as_one_commit() {
    const CALLS: usize = 16;

    let (database, server, metrics) = spawn_with_metrics().await;
    let channel = server.channel().await;
    let tenant = TenantServiceClient::new(channel.clone())
        .create_tenant(as_system(new_tenant(user())))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .tenant_id;
    let lock = format!("SELECT 1 FROM tenants WHERE id = '{tenant}' FOR UPDATE");
    let blocker = hold_writes(&database, &lock).await;

    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let mut members = MembershipServiceClient::new(channel.clone());
            let owner = uuid::Uuid::nil();
            let request = new_member(
                &Tenant {
                    id: tenant.clone(),
                    owner,
                },
                user(),
                "member",
            );
            tokio::spawn(async move { members.create_membership(as_system(request)).await })
        })
        .collect();
    let started = r#"grpc_server_started_total{grpc_service="membership.v1.MembershipService",grpc_method="CreateMembership",grpc_type="unary"}"#;
    scrape_until(metrics, "every call reached the server", |body| {
        sample(body, started) == Some(CALLS as f64)
    })
    .await;
    // Started is counted at the edge; a moment more for each call to reach its queue.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    blocker.rollback().await.unwrap();
    for call in futures::future::join_all(calls).await {
        call.unwrap().expect("a queued write");
    }

    let body = scrape(metrics).await;
    // The first call's transaction waited for the lock; the others queued behind it and ran
    // in that transaction too.
    assert_eq!(
        sample(&body, "membership_writes_per_commit_count"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "membership_writes_per_commit_sum"),
        Some(CALLS as f64),
        "{body}"
    );
    assert!(server.terminate().await.success());
}
