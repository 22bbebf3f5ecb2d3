//! The real binary: the `healthcheck` subcommand, and SIGTERM ending watch streams with
//! UNAVAILABLE, turning health NOT_SERVING and exiting 0.

mod common;

use common::*;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use tonic::Code;
use tonic_types::StatusExt;

/// Runs `membership-service healthcheck --listen ADDR` and returns whether it exited 0.
async fn healthcheck(server: &ServerProcess) -> bool {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
        .args(["--listen", &server.addr.to_string(), "healthcheck"])
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("running the healthcheck")
        .success()
}

#[tokio::test]
async fn sigterm_ends_watch_streams_with_unavailable_and_exits_cleanly() {
    let database = TestDatabase::create().await;
    let server = ServerProcess::spawn(&database.url, &["--shutdown-timeout", "5s"]).await;
    assert!(healthcheck(&server).await, "a running server is healthy");

    let mut members = MembershipServiceClient::new(server.channel().await);
    let mut stream = members
        .watch_membership_events(as_system(pb::WatchMembershipEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let addr = server.addr;
    let exit = tokio::spawn(server.terminate());

    let status = tokio::time::timeout(WAIT, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ended");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason).as_deref(),
        Some("SHUTTING_DOWN")
    );
    let exit = exit.await.unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    // Nothing answers any more: the health check says so.
    let stopped = tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
        .args(["--listen", &addr.to_string(), "healthcheck"])
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(!stopped.success());
}
