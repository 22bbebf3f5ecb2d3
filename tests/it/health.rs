//! Health knows every API service the server serves, by name, and they all follow the
//! database: NOT_SERVING while it is unreachable (and while the server stops), SERVING once it
//! is back. Only a networked database can become unreachable, so that part runs on the
//! PostgreSQL run of the suite; the server reaches PostgreSQL through a TCP relay the test can
//! cut and restore.

use std::net::SocketAddr;

use crate::common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1 as reflection;

/// The API services the server describes through reflection (all but health and reflection).
async fn api_services(server: &TestServer) -> Vec<String> {
    let mut client =
        reflection::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            reflection::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let answer = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("a reflection answer");
    let Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected {answer:?}");
    };
    let names: Vec<String> = list
        .service
        .into_iter()
        .map(|s| s.name)
        .filter(|name| !name.starts_with("grpc."))
        .collect();
    assert_eq!(names.len(), 5, "the five API services: {names:?}");
    names
}

async fn status_of(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("health of {service:?}: {s:?}"))
        .into_inner()
        .status
}

/// Waits until health reports `status` for `service`.
async fn wait_for(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    status: ServingStatus,
) {
    let mut updates = health
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(WAIT, async {
        while let Some(update) = updates.message().await.unwrap() {
            if update.status == status as i32 {
                return;
            }
        }
        panic!("the health watch of {service:?} ended");
    })
    .await
    .unwrap_or_else(|_| panic!("{service:?} did not turn {status:?}"));
}

#[tokio::test]
async fn every_api_service_reports_health_and_all_turn_not_serving_together() {
    let server = TestServer::start().await;
    let services = api_services(&server).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in &services {
        assert_eq!(
            status_of(&mut health, service).await,
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
    // A name the server does not serve is unknown to health, not SERVING.
    let unknown = health
        .check(HealthCheckRequest {
            service: "membership.v1.NoSuchService".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);

    // Watch the server as a whole and each service, then stop the server: every one turns
    // NOT_SERVING.
    let mut watches = Vec::new();
    for service in std::iter::once(String::new()).chain(services.iter().cloned()) {
        let mut updates = health
            .watch(HealthCheckRequest {
                service: service.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = updates.message().await.unwrap().expect("a first status");
        assert_eq!(first.status, ServingStatus::Serving as i32, "{service:?}");
        watches.push((service, updates));
    }
    let stopped = tokio::spawn(server.stop());
    for (service, updates) in &mut watches {
        let next = tokio::time::timeout(WAIT, updates.message())
            .await
            .unwrap_or_else(|_| panic!("no update for {service:?}"))
            .unwrap()
            .expect("an update");
        assert_eq!(next.status, ServingStatus::NotServing as i32, "{service:?}");
    }
    drop(watches);
    stopped.await.unwrap();
}

/// `database` (PostgreSQL) reached through a relay instead: the database with its URL pointed at
/// a loopback listener, the real address to relay to, and that listener.
async fn behind_a_relay(mut database: TestDatabase) -> (TestDatabase, SocketAddr, TcpListener) {
    // postgres://user@HOST:PORT/db?… → point HOST:PORT at the relay.
    let url = database.url.clone();
    let authority_start = url.find('@').expect("a user in the test URL") + 1;
    let authority_end = authority_start
        + url[authority_start..]
            .find('/')
            .expect("a database in the URL");
    let upstream: SocketAddr = tokio::net::lookup_host(&url[authority_start..authority_end])
        .await
        .unwrap()
        .next()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    database.url = format!(
        "{}{}{}",
        &url[..authority_start],
        listener.local_addr().unwrap(),
        &url[authority_end..]
    );
    (database, upstream, listener)
}

/// Relays connections from `listener` to `upstream` until aborted.
fn relay(listener: TcpListener, upstream: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test]
async fn health_is_not_serving_while_the_database_is_unreachable() {
    let database = TestDatabase::create().await;
    if !database.is_postgres() {
        eprintln!(
            "SQLite is an embedded file and cannot become unreachable; covered by the PostgreSQL run"
        );
        return;
    }
    let (relayed, upstream, listener) = behind_a_relay(database).await;
    let relay_addr = listener.local_addr().unwrap();
    let mut relay_task = relay(listener, upstream);
    let server = TestServer::start_on(relayed).await;

    let mut health = HealthClient::new(server.channel().await);
    let mut updates = health
        .watch(HealthCheckRequest {
            service: "membership.v1.MembershipService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let next = |status: Option<tonic_health::pb::HealthCheckResponse>| status.unwrap().status;
    assert_eq!(
        next(updates.message().await.unwrap()),
        ServingStatus::Serving as i32
    );

    // Cut the database off: the relay stops accepting and drops every open connection.
    relay_task.abort();
    let _ = (&mut relay_task).await;
    assert_eq!(
        next(updates.message().await.unwrap()),
        ServingStatus::NotServing as i32
    );
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, ServingStatus::NotServing as i32);
    let services = api_services(&server).await;
    for service in &services {
        wait_for(&mut health, service, ServingStatus::NotServing).await;
    }

    // Bring it back on the same address: health recovers without a restart.
    let listener = TcpListener::bind(relay_addr).await.unwrap();
    let _relay_task = relay(listener, upstream);
    assert_eq!(
        next(updates.message().await.unwrap()),
        ServingStatus::Serving as i32
    );
    for service in &services {
        wait_for(&mut health, service, ServingStatus::Serving).await;
    }
}

/// Relays connections from `listener` to `upstream`, until `swallow` is set: from then on it
/// keeps every connection open and reads what the server sends, but forwards nothing either
/// way and never answers: a database that stops answering without closing anything.
fn blackhole_relay(
    listener: TcpListener,
    upstream: SocketAddr,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> JoinHandle<()> {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if swallow.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((inbound, _)) = listener.accept().await {
            let swallow = swallow.clone();
            connections.spawn(async move {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::join!(
                    pump(in_read, out_write, swallow.clone()),
                    pump(out_read, in_write, swallow)
                );
            });
        }
    })
}

/// A database that stops answering (no reset, no close) fails calls fast with UNAVAILABLE
/// DATABASE_UNAVAILABLE, within the configured database timeout rather than the caller's
/// deadline, and the server serves again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_fails_calls_fast() {
    use membership_service::grpc::pb;
    use membership_service::store::{Store, StoreOptions};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const TIMEOUT: Duration = Duration::from_secs(1);
    let database = TestDatabase::create().await;
    if !database.is_postgres() {
        eprintln!(
            "SQLite is an embedded file and cannot stop answering; covered by the PostgreSQL run"
        );
        return;
    }
    let (relayed, upstream, listener) = behind_a_relay(database).await;
    let swallow = Arc::new(AtomicBool::new(false));
    let _relay = blackhole_relay(listener, upstream, swallow.clone());
    let store = Store::connect_with(
        &relayed.url,
        StoreOptions {
            max_connections: 8,
            timeout: TIMEOUT,
        },
    )
    .await
    .unwrap();
    let server = TestServer::start_with_store(Arc::new(relayed), store, test_options()).await;
    let tenant = organization(&server, None).await;
    let mut members = server.members().await;
    let mut tenants = server.tenants().await;

    swallow.store(true, Ordering::SeqCst);
    for round in 0..3 {
        let started = Instant::now();
        let write = members
            .create_membership(as_system(new_member(&tenant, user(), "member")))
            .await;
        assert_refused(write, tonic::Code::Unavailable, "DATABASE_UNAVAILABLE");
        let read = tenants
            .get_tenant(as_system(pb::GetTenantRequest {
                tenant_id: tenant.id.clone(),
            }))
            .await;
        assert_refused(read, tonic::Code::Unavailable, "DATABASE_UNAVAILABLE");
        let list = members
            .list_memberships(as_system(pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                ..Default::default()
            }))
            .await;
        assert_refused(list, tonic::Code::Unavailable, "DATABASE_UNAVAILABLE");
        // Each call waits at most the timeout for a connection and the timeout per statement
        // (a write: twice for its commit); three calls well within the 30 s request timeout.
        let took = started.elapsed();
        assert!(
            took < TIMEOUT * 12,
            "round {round}: three calls took {took:?} with a {TIMEOUT:?} database timeout"
        );
    }
    let mut health = HealthClient::new(server.channel().await);
    wait_for(&mut health, "", ServingStatus::NotServing).await;

    // Answering again: the stuck connections were discarded, new ones serve.
    swallow.store(false, Ordering::SeqCst);
    wait_for(&mut health, "", ServingStatus::Serving).await;
    let mut last = None;
    let added = tokio::time::timeout(WAIT, async {
        loop {
            match members
                .create_membership(as_system(new_member(&tenant, user(), "member")))
                .await
            {
                Ok(created) => return created.into_inner(),
                Err(status) => {
                    last = Some(status);
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server serves again once the database answers: {last:?}"));
    assert!(added.membership.is_some());
}
