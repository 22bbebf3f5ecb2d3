//! A real server on 127.0.0.1:0 over a fresh database, and typed clients for it.
//!
//! The backend is SQLite (a temporary file) unless `MEMBERSHIP_TEST_DATABASE_URL` names a
//! PostgreSQL database; then each test gets its own schema, so runs never collide.
//!
//! `api` is the typed fixture (who calls, and what they do); `TestServer::expect_events` checks
//! what a mutation wrote to the outbox; `dns` and `smtp` are the servers the domain and mail
//! tests talk to, on loopback in this process.

pub mod api;
pub mod dns;
pub mod smtp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use membership_service::app::{self, ServeOptions};
use membership_service::events::FeedOptions;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use membership_service::store::Store;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

pub const TEST_DATABASE_ENV: &str = "MEMBERSHIP_TEST_DATABASE_URL";

/// A database for one test: a temporary SQLite file, or a fresh PostgreSQL schema.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// On PostgreSQL: the base URL and the schema to drop when the test ends.
    schema: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((base, schema)) = self.schema.take() else {
            return;
        };
        // Dropping runs outside any async context the test may still be in, on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Store::connect(&base, 1).await.ok()?;
                let _ = admin
                    .connection()
                    .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
                admin.connection().clone().close().await.ok()
            })
        })
        .join();
    }
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        match std::env::var(TEST_DATABASE_ENV) {
            Ok(base) if !base.is_empty() => {
                let schema = format!("test_{}", Uuid::new_v4().simple());
                let admin = Store::connect(&base, 1)
                    .await
                    .expect("connecting to PostgreSQL");
                admin
                    .connection()
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .expect("creating the test schema");
                admin.connection().clone().close().await.ok();
                let separator = if base.contains('?') { '&' } else { '?' };
                TestDatabase {
                    url: format!("{base}{separator}options=-c%20search_path%3D{schema}"),
                    _dir: None,
                    schema: Some((base, schema)),
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let path = dir.path().join("membership.db");
                TestDatabase {
                    url: format!("sqlite://{}", path.display()),
                    _dir: Some(dir),
                    schema: None,
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// Short intervals, so tests about progress messages and health do not wait long.
pub fn test_options() -> ServeOptions {
    ServeOptions {
        health_interval: Duration::from_millis(200),
        feed: FeedOptions {
            poll_interval: Duration::from_millis(500),
            progress_interval: Duration::from_millis(300),
            ..FeedOptions::default()
        },
        ..ServeOptions::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub database: Arc<TestDatabase>,
    /// A separate connection for checking rows directly.
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_on(TestDatabase::create().await).await
    }

    pub async fn start_on(database: TestDatabase) -> TestServer {
        Self::start_with(database, test_options()).await
    }

    pub async fn start_with(database: TestDatabase, options: ServeOptions) -> TestServer {
        Self::start_shared(Arc::new(database), options).await
    }

    /// Another server over the same database: a replica, or the same server after a restart.
    pub async fn start_shared(database: Arc<TestDatabase>, options: ServeOptions) -> TestServer {
        let store = Store::connect(&database.url, 16).await.expect("connecting");
        Self::start_with_store(database, store, options).await
    }

    /// A server over `store`, connected to `database` with settings of the test's choosing.
    pub async fn start_with_store(
        database: Arc<TestDatabase>,
        store: Store,
        options: ServeOptions,
    ) -> TestServer {
        store.migrate().await.expect("migrating");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let server_store = store.clone();
        let handle = tokio::spawn(async move {
            app::serve(listener, server_store, options, async {
                let _ = rx.await;
            })
            .await
            .expect("server failed");
        });
        TestServer {
            addr,
            database,
            store,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connecting to the test server")
    }

    pub async fn tenants(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channel().await)
    }

    pub async fn members(&self) -> MembershipServiceClient<Channel> {
        MembershipServiceClient::new(self.channel().await)
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.store.connection()
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// Number of rows in the events table.
    pub async fn event_count(&self) -> i64 {
        self.scalar("SELECT COUNT(*) AS n FROM events").await
    }

    /// The event types after `position`, in position order.
    pub async fn event_types_after(&self, position: i64) -> Vec<String> {
        self.events_after(position)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    pub async fn events_after(&self, position: i64) -> Vec<StoredEvent> {
        let rows = self
            .db()
            .query_all_raw(Statement::from_string(
                self.db().get_database_backend(),
                format!(
                    "SELECT position, event_type, subject_id, actor_id, request_id, before, after FROM events WHERE position > {position} ORDER BY position"
                ),
            ))
            .await
            .expect("reading events");
        rows.into_iter()
            .map(|row| StoredEvent {
                position: row.try_get("", "position").unwrap(),
                event_type: row.try_get("", "event_type").unwrap(),
                subject_id: row.try_get("", "subject_id").unwrap(),
                actor_id: row.try_get("", "actor_id").unwrap(),
                request_id: row.try_get("", "request_id").unwrap(),
                before: row.try_get("", "before").unwrap(),
                after: row.try_get("", "after").unwrap(),
            })
            .collect()
    }

    /// Asserts what one mutation wrote after `since`: exactly `types`, in order, at the positions
    /// right after `since` without a gap, the last one at the response's `cursor`, each by
    /// `actor` (`None`: a system caller). Returns the events for closer checks.
    pub async fn expect_events(
        &self,
        since: i64,
        types: &[&str],
        cursor: i64,
        actor: Option<Uuid>,
    ) -> Vec<StoredEvent> {
        let events = self.events_after(since).await;
        let written: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(written, types, "the events after position {since}");
        let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
        let expected: Vec<i64> = (since + 1..=since + types.len() as i64).collect();
        assert_eq!(
            positions, expected,
            "positions follow the head without a gap"
        );
        assert_eq!(
            cursor,
            since + types.len() as i64,
            "the response names the last event"
        );
        for event in &events {
            assert_eq!(event.actor_id, actor, "{}", event.event_type);
        }
        events
    }

    /// The current head of the event log.
    pub async fn head(&self) -> i64 {
        self.scalar("SELECT position AS n FROM log_head WHERE id = 1")
            .await
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db()
            .query_one_raw(Statement::from_string(
                self.db().get_database_backend(),
                sql.to_string(),
            ))
            .await
            .expect("query")
            .expect("one row");
        row.try_get::<i64>("", "n").unwrap()
    }

    /// `id` as an SQL literal: a string PostgreSQL casts to its uuid type, the 16 bytes SQLite
    /// stores.
    pub fn uuid_literal(&self, id: &str) -> String {
        let id: Uuid = id.parse().expect("a uuid");
        if self.database.is_postgres() {
            format!("'{id}'")
        } else {
            format!("x'{}'", id.simple())
        }
    }

    /// Ages the invitations matching `condition` (SQL over `invitations`) past their expiry,
    /// standing in for the hour the shortest ttl would take to pass. Time passes through the
    /// instant the tenant's seat counters were last brought up to date, so each expiry moves
    /// back to just after that instant (never later than it was), under the tenant lock as
    /// every writer does; then a moment passes.
    pub async fn expire_invitations(&self, condition: &str) -> u64 {
        use sea_orm::TransactionTrait;
        let txn = self.db().begin().await.expect("a transaction");
        if self.database.is_postgres() {
            txn.execute_unprepared(&format!(
                "SELECT id FROM tenants WHERE id IN (SELECT tenant_id FROM invitations \
                 WHERE {condition}) FOR UPDATE"
            ))
            .await
            .expect("locking the tenant");
        }
        let aged = txn
            .execute_unprepared(&format!(
                "UPDATE invitations SET expires_at = (SELECT CASE WHEN seats_counted_until + 1 \
                 < invitations.expires_at THEN seats_counted_until + 1 ELSE \
                 invitations.expires_at END FROM tenants \
                 WHERE tenants.id = invitations.tenant_id) WHERE {condition}"
            ))
            .await
            .expect("ageing the invitation")
            .rows_affected();
        txn.commit().await.expect("committing");
        // Written around the service: what the server remembers of these rows is stale.
        self.store.note_outside_write();
        tokio::time::sleep(Duration::from_millis(2)).await;
        aged
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: i64,
    pub event_type: String,
    pub subject_id: Option<String>,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A request acting as `actor`, or as a system caller when `None`.
pub fn req<T>(message: T, actor: Option<Uuid>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(actor) = actor {
        request
            .metadata_mut()
            .insert("x-actor-id", actor.to_string().parse().unwrap());
    }
    request
}

pub fn as_user<T>(message: T, actor: Uuid) -> Request<T> {
    req(message, Some(actor))
}

pub fn as_system<T>(message: T) -> Request<T> {
    req(message, None)
}

/// Asserts a refusal with `code` and ErrorInfo `reason`, and returns the status.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = match result {
        Ok(value) => panic!("expected {code:?} {reason}, got success: {value:?}"),
        Err(status) => status,
    };
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} {reason}, got {:?}: {}",
        status.code(),
        status.message()
    );
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "message: {}", status.message());
    assert_eq!(info.domain, "membership.v1");
    status
}

/// Asserts a PERMISSION_DENIED refusal that names the `permission` the caller lacks.
#[track_caller]
pub fn denied_for<T: std::fmt::Debug>(result: Result<T, Status>, permission: &str) {
    let status = assert_refused(result, Code::PermissionDenied, "PERMISSION_DENIED");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("permission").map(String::as_str),
        Some(permission),
        "{}",
        status.message()
    );
}

/// An event's before or after snapshot, as JSON.
pub fn snapshot(text: &Option<String>) -> serde_json::Value {
    serde_json::from_str(text.as_deref().expect("a snapshot")).expect("snapshot JSON")
}

/// The fields named by the BadRequest details of an INVALID_ARGUMENT status.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub fn user() -> Uuid {
    Uuid::now_v7()
}

/// A tenant and its owner, created through the API.
#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    pub owner: Uuid,
}

/// A request for an ENTERPRISE tenant with the ORGANIZATION preset, owned by `owner`.
pub fn new_tenant(owner: Uuid) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        name: "Acme".into(),
        kind: pb::TenantKind::Enterprise as i32,
        role_preset: pb::RolePreset::Organization as i32,
        seat_limit: None,
        owner_user_id: owner.to_string(),
        owner_email: format!("owner-{}@acme.example", owner.simple()),
        owner_display_name: "Olivia Owner".into(),
        request_id: String::new(),
    }
}

pub async fn create_tenant(
    server: &TestServer,
    kind: pb::TenantKind,
    preset: pb::RolePreset,
    seat_limit: Option<i32>,
) -> Tenant {
    let owner = user();
    let response = server
        .tenants()
        .await
        .create_tenant(as_system(pb::CreateTenantRequest {
            kind: kind as i32,
            role_preset: preset as i32,
            seat_limit,
            ..new_tenant(owner)
        }))
        .await
        .expect("creating a tenant")
        .into_inner();
    Tenant {
        id: response.tenant.unwrap().tenant_id,
        owner,
    }
}

pub async fn enterprise(server: &TestServer, seat_limit: Option<i32>) -> Tenant {
    create_tenant(
        server,
        pb::TenantKind::Enterprise,
        pb::RolePreset::Enterprise,
        seat_limit,
    )
    .await
}

pub async fn organization(server: &TestServer, seat_limit: Option<i32>) -> Tenant {
    create_tenant(
        server,
        pb::TenantKind::Enterprise,
        pb::RolePreset::Organization,
        seat_limit,
    )
    .await
}

pub fn new_member(tenant: &Tenant, user_id: Uuid, role: &str) -> pb::CreateMembershipRequest {
    pb::CreateMembershipRequest {
        tenant_id: tenant.id.clone(),
        user_id: user_id.to_string(),
        email: format!("user-{}@acme.example", user_id.simple()),
        display_name: format!("User {}", &user_id.simple().to_string()[24..]),
        r#type: pb::MembershipType::Member as i32,
        source: pb::MembershipSource::Scim as i32,
        external_id: String::new(),
        role: role.into(),
        status: 0,
        request_id: String::new(),
    }
}

/// Adds a member with `role` as a system caller and returns their user id.
pub async fn add_member(server: &TestServer, tenant: &Tenant, role: &str) -> Uuid {
    let id = user();
    server
        .members()
        .await
        .create_membership(as_system(new_member(tenant, id, role)))
        .await
        .unwrap_or_else(|s| panic!("adding a {role}: {s:?}"));
    id
}

pub async fn get_member(
    server: &TestServer,
    tenant: &Tenant,
    user_id: Uuid,
) -> Result<pb::Membership, Status> {
    server
        .members()
        .await
        .get_membership(as_system(pb::GetMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().membership.unwrap())
}

/// The tenant's seat usage, read as a system caller.
pub async fn seat_usage(server: &TestServer, tenant: &Tenant) -> pb::GetSeatUsageResponse {
    server
        .tenants()
        .await
        .get_seat_usage(as_system(pb::GetSeatUsageRequest {
            tenant_id: tenant.id.clone(),
        }))
        .await
        .expect("reading seat usage")
        .into_inner()
}

/// A field mask naming `paths`.
pub fn field_mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// An UpdateMembership of `paths` to the values in `membership` (its etag included).
pub fn update_membership(
    membership: pb::Membership,
    paths: &[&str],
) -> pb::UpdateMembershipRequest {
    pb::UpdateMembershipRequest {
        membership: Some(membership),
        update_mask: field_mask(paths),
    }
}

/// An UpdateTenant of `paths` to the values in `tenant` (its etag included).
pub fn update_tenant(tenant: pb::Tenant, paths: &[&str]) -> pb::UpdateTenantRequest {
    pb::UpdateTenantRequest {
        tenant: Some(tenant),
        update_mask: field_mask(paths),
    }
}

/// A watch stream's next event, skipping progress messages; panics after `WAIT`.
pub async fn next_event(
    stream: &mut tonic::Streaming<pb::WatchMembershipEventsResponse>,
) -> pb::MembershipEvent {
    loop {
        match next_item(stream).await {
            pb::watch_membership_events_response::Kind::Event(event) => return event,
            pb::watch_membership_events_response::Kind::Progress(_) => continue,
        }
    }
}

/// A watch stream's next message; panics after `WAIT` or if the stream ends.
pub async fn next_item(
    stream: &mut tonic::Streaming<pb::WatchMembershipEventsResponse>,
) -> pb::watch_membership_events_response::Kind {
    let message = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no message within the wait")
        .expect("stream failed")
        .expect("stream ended");
    message.kind.expect("empty message")
}

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(30);

pub async fn watch(
    server: &TestServer,
    request: pb::WatchMembershipEventsRequest,
) -> tonic::Streaming<pb::WatchMembershipEventsResponse> {
    server
        .members()
        .await
        .watch_membership_events(as_system(request))
        .await
        .expect("watching")
        .into_inner()
}

pub fn watch_after(cursor: i64) -> pb::WatchMembershipEventsRequest {
    pb::WatchMembershipEventsRequest {
        after_cursor: Some(cursor),
        ..Default::default()
    }
}

/// The real binary, as a separate process, over `database_url`.
pub struct ServerProcess {
    pub addr: SocketAddr,
    /// The metrics endpoint, unless the arguments turned it off.
    pub metrics: Option<SocketAddr>,
    pub child: tokio::process::Child,
    /// Every line the server has logged so far.
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the binary on 127.0.0.1:0 (its metrics too) with `extra` arguments, and waits
    /// until it serves.
    pub async fn spawn(database_url: &str, extra: &[&str]) -> ServerProcess {
        Self::spawn_with_env(database_url, extra, &[]).await
    }

    pub async fn spawn_with_env(
        database_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
            .args(["--listen", "127.0.0.1:0", "--database-url", database_url])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the server binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        // A field of a text log line (` name=value`) or a JSON one (`"name":"value"`).
        let field = |line: &str, name: &str| -> Option<SocketAddr> {
            if let Some(rest) = line.split(&format!(" {name}=")).nth(1) {
                return rest.split_whitespace().next()?.parse().ok();
            }
            let rest = line.split(&format!("\"{name}\":\"")).nth(1)?;
            rest.split('"').next()?.parse().ok()
        };
        let (addr, metrics) = tokio::time::timeout(WAIT, async {
            let mut metrics = None;
            while let Some(line) = lines.next_line().await.expect("reading the log") {
                logs.lock().unwrap().push(line.clone());
                metrics = metrics.or_else(|| field(&line, "endpoint"));
                if let Some(addr) = field(&line, "address") {
                    return (addr, metrics);
                }
            }
            panic!(
                "the server exited before serving; its log:\n{}",
                logs.lock().unwrap().join("\n")
            );
        })
        .await
        .expect("the server did not start");
        // Keep draining the log so the process never blocks on a full pipe.
        let kept = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            addr,
            metrics,
            child,
            logs,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connecting to the server process")
    }

    /// The first log line containing `needle`, waiting up to `WAIT` for it to be written.
    pub async fn logged(&self, needle: &str) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let found = self
                    .logs
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|line| line.contains(needle))
                    .cloned();
                if let Some(line) = found {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line contains {needle:?}: {:?}", self.logs))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("sending SIGTERM");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the server did not exit")
            .expect("waiting for the server")
    }
}

/// A UDP socket and a TCP listener on one loopback port, as a DNS server needs. The port the
/// system picks for UDP may be taken for TCP: pick again until both are free.
pub async fn udp_and_tcp_on_one_port() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding UDP");
        let addr = udp.local_addr().expect("UDP address");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// `Message.field` for every field of a `…Request` message of the API whose type is
/// `type_name` (e.g. `.google.protobuf.Duration`), sorted: what a test of that type's validation
/// must cover.
pub fn request_fields_of_type(type_name: &str) -> Vec<String> {
    request_fields_where(|field| field.type_name() == type_name)
}

/// `Message.field` for every field of a `…Request` message of the API that `wanted` picks,
/// sorted.
pub fn request_fields_where(
    wanted: impl Fn(&prost_types::FieldDescriptorProto) -> bool,
) -> Vec<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut fields: Vec<String> = set
        .file
        .iter()
        .filter(|file| file.package() == "membership.v1")
        .flat_map(|file| &file.message_type)
        .filter(|message| message.name().ends_with("Request"))
        .flat_map(|message| {
            message
                .field
                .iter()
                .filter(|field| wanted(field))
                .map(|field| format!("{}.{}", message.name(), field.name()))
                .collect::<Vec<_>>()
        })
        .collect();
    fields.sort();
    fields
}

/// Every RPC of the API, as `/package.Service/Method`, with its request message, and every
/// message of the API by its fully-qualified name (`.membership.v1.Tenant`).
pub fn every_rpc() -> (
    Vec<(String, prost_types::DescriptorProto)>,
    std::collections::HashMap<String, prost_types::DescriptorProto>,
) {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let messages: std::collections::HashMap<String, prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|file| {
            file.message_type.iter().map(move |message| {
                (
                    format!(".{}.{}", file.package(), message.name()),
                    message.clone(),
                )
            })
        })
        .collect();
    let mut rpcs = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                rpcs.push((
                    format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    messages[method.input_type()].clone(),
                ));
            }
        }
    }
    assert!(rpcs.len() >= 40, "only {} RPCs found", rpcs.len());
    (rpcs, messages)
}

/// What a call sent as raw bytes got back: the headers or trailers carrying its status, and
/// the first response message (empty when refused).
pub struct RawAnswer {
    pub status_headers: http::HeaderMap,
    pub message: Vec<u8>,
}

impl RawAnswer {
    pub fn status(&self) -> Status {
        Status::from_header_map(&self.status_headers).expect("a status")
    }
}

/// Sends `frames` as the body of a gRPC call to `path` with `metadata` (no codec involved: the
/// bytes as given).
pub async fn raw_call(
    channel: &Channel,
    path: &str,
    frames: Vec<u8>,
    metadata: &[(&str, String)],
) -> RawAnswer {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in metadata {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(frames),
        )))
        .unwrap();
    let response = channel.clone().oneshot(request).await.expect("a response");
    if response.headers().contains_key("grpc-status") {
        return RawAnswer {
            status_headers: response.headers().clone(),
            message: Vec::new(),
        };
    }
    let mut body = response.into_body();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("a body frame");
        match frame.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
        // A stream that was accepted runs on: its first message is enough.
        if trailers.is_none() && data.len() >= 5 {
            let length = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
            if data.len() >= 5 + length {
                return RawAnswer {
                    status_headers: http::HeaderMap::from_iter([(
                        http::header::HeaderName::from_static("grpc-status"),
                        http::HeaderValue::from_static("0"),
                    )]),
                    message: data[5..5 + length].to_vec(),
                };
            }
        }
    }
    let message = if data.len() >= 5 {
        data[5..].to_vec()
    } else {
        Vec::new()
    };
    RawAnswer {
        status_headers: trailers.expect("trailers"),
        message,
    }
}

/// One gRPC frame: the compressed flag, the length, the message.
pub fn frame(compressed: u8, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![compressed];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// Appends `value` as length-delimited field `number` (protobuf wire format).
pub fn put_bytes(message: &mut Vec<u8>, number: i32, value: &[u8]) {
    put_varint(message, ((number as u64) << 3) | 2);
    put_varint(message, value.len() as u64);
    message.extend_from_slice(value);
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}
