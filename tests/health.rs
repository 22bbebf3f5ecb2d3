//! Health follows the database: NOT_SERVING while it is unreachable, SERVING once it is back.
//! Only a networked database can become unreachable, so this runs on the PostgreSQL run of the
//! suite; the server reaches PostgreSQL through a TCP relay the test can cut and restore.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

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
    let relay_addr = listener.local_addr().unwrap();
    let mut relay_task = relay(listener, upstream);
    let mut relayed = database;
    relayed.url = format!(
        "{}{}{}",
        &url[..authority_start],
        relay_addr,
        &url[authority_end..]
    );
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

    // Bring it back on the same address: health recovers without a restart.
    let listener = TcpListener::bind(relay_addr).await.unwrap();
    let _relay_task = relay(listener, upstream);
    assert_eq!(
        next(updates.message().await.unwrap()),
        ServingStatus::Serving as i32
    );
}
