//! The real binary: its subcommands (taking their flags before or after the subcommand's
//! name), the `healthcheck` subcommand, and SIGTERM ending watch streams with
//! UNAVAILABLE, turning health NOT_SERVING, letting calls in flight finish (for up to the drain
//! timeout) while refusing new ones, and exiting 0.
//!
//! A call is kept in flight by CreateInvitation: it sends the invitation email before it
//! answers, to an SMTP server that is slow to accept it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::smtp::SmtpSink;
use crate::common::*;
use membership_service::grpc::pb;
use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

/// Runs `membership-service healthcheck --listen ADDR` and returns whether it exited 0.
/// Reads the watch until it ends, which must be with UNAVAILABLE SHUTTING_DOWN.
async fn assert_ends_shutting_down(
    stream: &mut tonic::Streaming<pb::WatchMembershipEventsResponse>,
) {
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
}

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

    assert_ends_shutting_down(&mut stream).await;
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

/// An enterprise tenant and its owner, created through `channel`.
async fn tenant(channel: Channel) -> (String, Uuid) {
    let owner = user();
    let response = TenantServiceClient::new(channel)
        .create_tenant(as_system(new_tenant(owner)))
        .await
        .expect("creating a tenant")
        .into_inner();
    (response.tenant.unwrap().tenant_id, owner)
}

/// Starts CreateInvitation for `email` on a connection of its own. It answers only once the
/// SMTP server has acknowledged the email.
fn invite_in_background(
    channel: Channel,
    tenant_id: &str,
    owner: Uuid,
    email: &str,
) -> tokio::task::JoinHandle<Result<pb::CreateInvitationResponse, Status>> {
    let request = pb::CreateInvitationRequest {
        tenant_id: tenant_id.to_string(),
        email: email.into(),
        role: "member".into(),
        ttl: None,
        request_id: String::new(),
    };
    tokio::spawn(async move {
        InvitationServiceClient::new(channel)
            .create_invitation(as_user(request, owner))
            .await
            .map(tonic::Response::into_inner)
    })
}

/// Sends SIGTERM; the returned task completes with the exit status.
fn sigterm(server: ServerProcess) -> tokio::task::JoinHandle<std::process::ExitStatus> {
    tokio::spawn(server.terminate())
}

/// Waits until connecting to `addr` is refused: the server has stopped accepting.
async fn until_connections_are_refused(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(error) => panic!("connecting to {addr}: {error}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "{addr} still accepts connections after shutdown began"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn sigterm_lets_a_call_in_flight_finish_ends_watches_and_refuses_new_calls() {
    const DRAIN: Duration = Duration::from_secs(20);
    // Long enough for the steps below to run while the call is held, on a loaded machine too;
    // below the mailer's own 10 s timeout.
    const SMTP_DELAY: Duration = Duration::from_secs(8);
    let database = TestDatabase::create().await;
    let mut smtp = SmtpSink::slow(SMTP_DELAY).await;
    let server = ServerProcess::spawn(
        &database.url,
        &["--shutdown-timeout", "20s", "--smtp-url", &smtp.url()],
    )
    .await;
    let addr = server.addr;
    let (tenant_id, owner) = tenant(server.channel().await).await;

    let open = server.channel().await;
    let mut stream = MembershipServiceClient::new(open.clone())
        .watch_membership_events(as_system(pb::WatchMembershipEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let invitation = invite_in_background(
        server.channel().await,
        &tenant_id,
        owner,
        "slow@acme.example",
    );
    // The email has arrived and its acknowledgement is held back: the call is in flight.
    let mail = smtp.next(WAIT).await;
    assert_eq!(mail.to, ["slow@acme.example"]);
    let signalled = Instant::now();
    let exit = sigterm(server);

    assert_ends_shutting_down(&mut stream).await;

    // While the call drains, nothing new gets in: not a new connection, and not a new call on
    // a connection that was open before.
    until_connections_are_refused(addr).await;
    let refused = TenantServiceClient::new(open)
        .get_seat_usage(as_system(pb::GetSeatUsageRequest {
            tenant_id: tenant_id.clone(),
        }))
        .await;
    // Refused either way the connection tells it: a stream the draining server turns away is
    // UNAVAILABLE; one that races the close of the connection (its only stream, the watch, has
    // ended) is reset, which the client reports as CANCELLED. Either way it was not served.
    let code = refused.map(|_| ()).map_err(|s| s.code());
    assert!(
        matches!(code, Err(Code::Unavailable | Code::Cancelled)),
        "a call made after shutdown began: {code:?}"
    );
    assert!(
        !invitation.is_finished(),
        "the call should still be in flight here (the SMTP server holds it for {SMTP_DELAY:?})"
    );

    let created = invitation
        .await
        .unwrap()
        .expect("the call in flight when shutdown began succeeds");
    assert_eq!(
        created.delivery.map(|d| d.status),
        Some(pb::DeliveryStatus::Sent as i32)
    );
    assert_eq!(created.invitation.unwrap().email, "slow@acme.example");
    let exit = exit.await.unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        signalled.elapsed() < DRAIN,
        "the server exited {:?} after SIGTERM, not as soon as its last call finished",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn a_call_still_running_at_the_drain_timeout_does_not_keep_the_server_up() {
    const DRAIN: Duration = Duration::from_secs(1);
    let database = TestDatabase::create().await;
    // Longer than the drain timeout, and than the mailer's own 10 s timeout.
    let mut smtp = SmtpSink::slow(Duration::from_secs(60)).await;
    let server = ServerProcess::spawn(
        &database.url,
        &["--shutdown-timeout", "1s", "--smtp-url", &smtp.url()],
    )
    .await;
    let (tenant_id, owner) = tenant(server.channel().await).await;
    let invitation = invite_in_background(
        server.channel().await,
        &tenant_id,
        owner,
        "stuck@acme.example",
    );
    smtp.next(WAIT).await;

    let signalled = Instant::now();
    let exit = sigterm(server).await.unwrap();
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took >= DRAIN && took < DRAIN + Duration::from_secs(4),
        "the server exited {took:?} after SIGTERM; the drain timeout is {DRAIN:?}"
    );
    let cut_off = tokio::time::timeout(WAIT, invitation)
        .await
        .expect("the call ends with the server")
        .unwrap();
    assert!(
        cut_off.is_err(),
        "a call cut off by the drain timeout cannot have succeeded: {cut_off:?}"
    );
}

/// Runs the binary with `args` and returns whether it exited 0; its output is kept for failures.
async fn run_binary(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("running the binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Whether the database at `url` has the schema (its `tenants` table answers).
async fn migrated(url: &str) -> bool {
    use sea_orm::{ConnectionTrait, Statement};
    let store = membership_service::store::Store::connect(url, 1)
        .await
        .expect("connecting");
    let db = store.connection();
    let answered = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM tenants",
        ))
        .await
        .is_ok();
    db.clone().close().await.ok();
    answered
}

/// A subcommand takes the settings it uses after its name as well as before it: `migrate` its
/// database, `healthcheck` the address to ask, `serve` any server setting.
#[tokio::test]
async fn subcommands_take_their_flags_before_or_after_their_name() {
    for flags_first in [true, false] {
        let database = TestDatabase::create().await;
        assert!(!migrated(&database.url).await, "a fresh database is empty");
        let flags = ["--database-url", database.url.as_str()];
        let args: Vec<&str> = if flags_first {
            flags.iter().copied().chain(["migrate"]).collect()
        } else {
            ["migrate"].into_iter().chain(flags).collect()
        };
        let (ok, output) = run_binary(&args).await;
        assert!(ok, "{args:?}: {output}");
        assert!(
            migrated(&database.url).await,
            "{args:?} migrated the database"
        );
    }

    let server = TestServer::start().await;
    let listen = server.addr.to_string();
    // A port nothing listens on: the flag is read, not ignored.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    for (args, healthy) in [
        (["--listen", listen.as_str(), "healthcheck"], true),
        (["healthcheck", "--listen", listen.as_str()], true),
        (["healthcheck", "--listen", closed_addr.as_str()], false),
    ] {
        let (ok, output) = run_binary(&args).await;
        assert_eq!(ok, healthy, "{args:?}: {output}");
        assert!(
            !output.contains("unexpected argument"),
            "{args:?}: {output}"
        );
    }
    server.stop().await;

    // `serve` with a setting after it: JSON logs.
    let database = TestDatabase::create().await;
    let process = ServerProcess::spawn(&database.url, &["serve", "--log-format", "json"]).await;
    let first_line = process.logs.lock().unwrap()[0].clone();
    assert!(
        serde_json::from_str::<serde_json::Value>(&first_line).is_ok(),
        "not a JSON log line: {first_line}"
    );
    assert!(process.terminate().await.success());
}
