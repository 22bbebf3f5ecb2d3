//! Load generator and latency probe for a running membership service.
//!
//! `feed-latency` measures commit-to-delivery latency of the event feed: it opens N watch
//! streams on one server, makes mutations through another (or the same) server, and for every
//! event every subscriber receives, records the time from the event's commit (its
//! `occur_time`, stamped just before commit) to its arrival. Run it on the same machine as the
//! servers so both read one clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(about = "Load generator and latency probe for membership-service")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commit-to-delivery latency of WatchMembershipEvents.
    FeedLatency {
        /// Server the subscribers watch.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        watch: String,
        /// Server the mutations go through (another replica, or the same server).
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        write: String,
        /// Number of concurrent subscribers.
        #[arg(long, default_value_t = 1)]
        subscribers: usize,
        /// Number of mutations (one event each).
        #[arg(long, default_value_t = 1000)]
        events: usize,
        /// Pause between mutations, so latency is measured below saturation.
        #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// CheckPermission throughput and latency at several concurrencies, beside an empty RPC
    /// (grpc.health.v1.Health/Check on the same server) as the ceiling.
    Checks {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// Concurrent callers, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// How long each run lasts.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// GetMembership and ListMemberships (one page) throughput in a tenant of `--members`,
    /// each beside an empty RPC (grpc.health.v1.Health/Check on the same server) measured in
    /// the same round: the three interleaved, `--repetitions` rounds, median and spread.
    Reads {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// Members in the benchmark tenant (created through the API).
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Calls in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        /// How long each run lasts.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        #[command(flatten)]
        credentials: Credentials,
    },
}

/// How the benchmark authenticates, for a server not in `--auth none`: an API key with the
/// `system` grant, or a system JWT it signs itself (HS256 with a secret, or RS256 with a
/// private key), with the server's issuer and audience.
#[derive(clap::Args, Clone, Default)]
struct Credentials {
    #[arg(long)]
    api_key: Option<String>,
    #[arg(long)]
    jwt_hs256_secret: Option<String>,
    /// PEM file with the RSA private key.
    #[arg(long)]
    jwt_rs256_private_key: Option<std::path::PathBuf>,
    #[arg(long, default_value = "https://login.example")]
    jwt_issuer: String,
    #[arg(long, default_value = "membership")]
    jwt_audience: String,
    #[arg(long, default_value = "membership.system")]
    jwt_system_scope: String,
}

impl Credentials {
    /// The `authorization` header value, if any.
    fn header(&self) -> Result<Option<String>, Box<dyn std::error::Error>> {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        if let Some(key) = &self.api_key {
            return Ok(Some(format!("Bearer {key}")));
        }
        let (algorithm, key) = match (&self.jwt_hs256_secret, &self.jwt_rs256_private_key) {
            (Some(secret), _) => (
                Algorithm::HS256,
                EncodingKey::from_secret(secret.as_bytes()),
            ),
            (None, Some(path)) => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&std::fs::read(path)?)?,
            ),
            (None, None) => return Ok(None),
        };
        let now = now_micros() / 1_000_000;
        let claims = serde_json::json!({
            "iss": self.jwt_issuer,
            "aud": self.jwt_audience,
            "sub": "membership-bench",
            "scope": self.jwt_system_scope,
            "iat": now,
            "exp": now + 3600,
        });
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)?;
        Ok(Some(format!("Bearer {token}")))
    }
}

/// `message` as a request carrying `authorization`, if given.
fn authed<T>(message: T, authorization: &Option<String>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization
        && let Ok(value) = value.parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Args::parse().command {
        Command::FeedLatency {
            watch,
            write,
            subscribers,
            events,
            interval,
        } => feed_latency(&watch, &write, subscribers, events, interval).await,
        Command::Checks {
            server,
            concurrency,
            duration,
            credentials,
        } => checks(&server, &concurrency, duration, credentials.header()?).await,
        Command::Reads {
            server,
            members,
            concurrency,
            page_size,
            duration,
            repetitions,
            credentials,
        } => {
            reads(
                &server,
                ReadsPlan {
                    members,
                    concurrency,
                    page_size,
                    duration,
                    repetitions,
                },
                credentials.header()?,
            )
            .await
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

async fn connect(address: &str) -> Result<Channel, Box<dyn std::error::Error>> {
    Ok(Endpoint::from_shared(address.to_string())?
        .connect()
        .await?)
}

async fn feed_latency(
    watch: &str,
    write: &str,
    subscribers: usize,
    events: usize,
    interval: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let write_channel = connect(write).await?;
    let owner = uuid::Uuid::now_v7();
    let tenant = TenantServiceClient::new(write_channel.clone())
        .create_tenant(pb::CreateTenantRequest {
            name: "bench".into(),
            kind: pb::TenantKind::Enterprise as i32,
            role_preset: pb::RolePreset::Enterprise as i32,
            owner_user_id: owner.to_string(),
            owner_email: format!("{}@bench.example", owner.simple()),
            ..Default::default()
        })
        .await?
        .into_inner();
    let tenant_id = tenant.tenant.map(|t| t.tenant_id).unwrap_or_default();

    // Subscribers share a few HTTP/2 connections, as a real client pool would.
    let (samples_tx, mut samples_rx) = mpsc::unbounded_channel::<i64>();
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(100).max(1) {
        channels.push(connect(watch).await?);
    }
    let mut ready = Vec::new();
    for i in 0..subscribers {
        let mut client = MembershipServiceClient::new(channels[i % channels.len()].clone());
        let mut stream = client
            .watch_membership_events(pb::WatchMembershipEventsRequest {
                tenant_id: tenant_id.clone(),
                after_cursor: Some(tenant.cursor),
                ..Default::default()
            })
            .await?
            .into_inner();
        let samples = samples_tx.clone();
        ready.push(tokio::spawn(async move {
            let mut received = 0;
            while received < events {
                let Ok(Some(message)) = stream.message().await else {
                    break;
                };
                if let Some(pb::watch_membership_events_response::Kind::Event(event)) = message.kind
                {
                    let committed = event
                        .occur_time
                        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
                        .unwrap_or_default();
                    let _ = samples.send(now_micros() - committed);
                    received += 1;
                }
            }
            received
        }));
    }
    drop(samples_tx);

    let mut members = MembershipServiceClient::new(write_channel);
    let started = std::time::Instant::now();
    for _ in 0..events {
        let user = uuid::Uuid::now_v7();
        members
            .create_membership(pb::CreateMembershipRequest {
                tenant_id: tenant_id.clone(),
                user_id: user.to_string(),
                email: format!("{}@bench.example", user.simple()),
                source: pb::MembershipSource::Api as i32,
                ..Default::default()
            })
            .await?;
        tokio::time::sleep(interval).await;
    }
    let writing = started.elapsed();

    let mut delivered = 0;
    for task in ready {
        delivered += task.await?;
    }
    let mut samples = Vec::with_capacity(subscribers * events);
    while let Some(sample) = samples_rx.recv().await {
        samples.push(sample);
    }
    samples.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[index] as f64 / 1000.0
    };
    println!(
        "subscribers={subscribers} events={events} delivered={delivered}/{} write_rate={:.0}/s \
         latency_ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        subscribers * events,
        events as f64 / writing.as_secs_f64(),
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0),
    );
    Ok(())
}

/// Latencies of one run, in microseconds, and its wall time.
struct Run {
    latencies: Vec<u64>,
    elapsed: Duration,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index] as f64 / 1000.0
    }
}

/// Runs `call` from `concurrency` tasks for `duration`, over a few shared connections.
async fn drive<F, Fut>(
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
    call: F,
) -> Result<Run, Box<dyn std::error::Error>>
where
    F: Fn(Channel) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let started = std::time::Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let channel = channels[i % channels.len()].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while std::time::Instant::now() < deadline {
                let t = std::time::Instant::now();
                call(channel.clone()).await?;
                latencies.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run {
        latencies,
        elapsed: started.elapsed(),
    })
}

/// The ceiling: `grpc.health.v1.Health/Check`, an RPC that does nothing, on the same server.
async fn empty_rpc(channel: Channel) -> Result<(), tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

/// A new ORGANIZATION tenant owned by `owner`; its id.
async fn bench_tenant(
    channel: &Channel,
    owner: uuid::Uuid,
    authorization: &Option<String>,
) -> Result<String, tonic::Status> {
    Ok(TenantServiceClient::new(channel.clone())
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "bench".into(),
                kind: pb::TenantKind::Enterprise as i32,
                role_preset: pb::RolePreset::Organization as i32,
                owner_user_id: owner.to_string(),
                owner_email: format!("{}@bench.example", owner.simple()),
                ..Default::default()
            },
            authorization,
        ))
        .await?
        .into_inner()
        .tenant
        .map(|t| t.tenant_id)
        .unwrap_or_default())
}

async fn checks(
    server: &str,
    concurrencies: &[usize],
    duration: Duration,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use membership_service::grpc::pb::role_service_client::RoleServiceClient;
    let setup = connect(server).await?;
    let owner = uuid::Uuid::now_v7();
    let tenant = bench_tenant(&setup, owner, &authorization).await?;
    let member = uuid::Uuid::now_v7();
    MembershipServiceClient::new(setup.clone())
        .create_membership(authed(
            pb::CreateMembershipRequest {
                tenant_id: tenant.clone(),
                user_id: member.to_string(),
                email: format!("{}@bench.example", member.simple()),
                source: pb::MembershipSource::Api as i32,
                role: "admin".into(),
                ..Default::default()
            },
            &authorization,
        ))
        .await?;
    let check = pb::CheckPermissionRequest {
        tenant_id: tenant,
        user_id: member.to_string(),
        permission: "members.manage".into(),
        min_cursor: 0,
    };
    let allowed = RoleServiceClient::new(setup.clone())
        .check_permission(authed(check.clone(), &authorization))
        .await?
        .into_inner()
        .allowed;
    assert!(allowed, "the benchmark member should hold members.manage");

    println!(
        "concurrency | CheckPermission req/s p50 ms p99 ms | Health/Check req/s p50 ms p99 ms | ratio"
    );
    for &concurrency in concurrencies {
        let mut channels = Vec::new();
        for _ in 0..concurrency.div_ceil(16).max(1) {
            channels.push(connect(server).await?);
        }
        let request = check.clone();
        let authorization = authorization.clone();
        let mut checked = drive(&channels, concurrency, duration, move |channel| {
            let request = authed(request.clone(), &authorization);
            async move {
                RoleServiceClient::new(channel)
                    .check_permission(request)
                    .await
                    .map(|_| ())
            }
        })
        .await?;
        let mut empty = drive(&channels, concurrency, duration, empty_rpc).await?;
        println!(
            "{concurrency:>11} | {:>8.0} {:>6.3} {:>6.3} | {:>8.0} {:>6.3} {:>6.3} | {:.2}",
            checked.throughput(),
            checked.percentile(0.5),
            checked.percentile(0.99),
            empty.throughput(),
            empty.percentile(0.5),
            empty.percentile(0.99),
            checked.throughput() / empty.throughput(),
        );
    }
    Ok(())
}

struct ReadsPlan {
    members: usize,
    concurrency: usize,
    page_size: i32,
    duration: Duration,
    repetitions: usize,
}

/// The median of `values` and their spread (min..max).
fn median_and_spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

async fn reads(
    server: &str,
    plan: ReadsPlan,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let setup = connect(server).await?;
    let owner = uuid::Uuid::now_v7();
    let tenant = bench_tenant(&setup, owner, &authorization).await?;
    // The owner is one member; 16 workers add the rest.
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(
        plan.members.saturating_sub(1),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (channel, tenant, authorization) =
            (setup.clone(), tenant.clone(), authorization.clone());
        let remaining = remaining.clone();
        workers.spawn(async move {
            let mut members = MembershipServiceClient::new(channel);
            while remaining
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                let member = uuid::Uuid::now_v7();
                members
                    .create_membership(authed(
                        pb::CreateMembershipRequest {
                            tenant_id: tenant.clone(),
                            user_id: member.to_string(),
                            email: format!("{}@bench.example", member.simple()),
                            display_name: format!("Member {}", member.simple()),
                            source: pb::MembershipSource::Api as i32,
                            role: "member".into(),
                            ..Default::default()
                        },
                        &authorization,
                    ))
                    .await?;
            }
            Ok::<(), tonic::Status>(())
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    println!(
        "tenant of {} members, {} in flight, {:?} per run, {} rounds (empty RPC, GetMembership, ListMemberships({}))",
        plan.members, plan.concurrency, plan.duration, plan.repetitions, plan.page_size
    );
    let mut channels = Vec::new();
    for _ in 0..plan.concurrency.div_ceil(16).max(1) {
        channels.push(connect(server).await?);
    }
    let get = pb::GetMembershipRequest {
        tenant_id: tenant.clone(),
        user_id: owner.to_string(),
    };
    let list = pb::ListMembershipsRequest {
        tenant_id: tenant,
        page_size: plan.page_size,
        ..Default::default()
    };
    let (mut get_ratios, mut list_ratios) = (Vec::new(), Vec::new());
    println!(
        "round | empty req/s p50 p99 ms | Get req/s p50 p99 ms ratio | List req/s p50 p99 ms ratio"
    );
    for round in 1..=plan.repetitions {
        let mut empty = drive(&channels, plan.concurrency, plan.duration, empty_rpc).await?;
        let (request, authorization_get) = (get.clone(), authorization.clone());
        let mut got = drive(&channels, plan.concurrency, plan.duration, move |channel| {
            let request = authed(request.clone(), &authorization_get);
            async move {
                MembershipServiceClient::new(channel)
                    .get_membership(request)
                    .await
                    .map(|_| ())
            }
        })
        .await?;
        let (request, authorization_list) = (list.clone(), authorization.clone());
        let mut listed = drive(&channels, plan.concurrency, plan.duration, move |channel| {
            let request = authed(request.clone(), &authorization_list);
            async move {
                MembershipServiceClient::new(channel)
                    .list_memberships(request)
                    .await
                    .map(|_| ())
            }
        })
        .await?;
        let get_ratio = got.throughput() / empty.throughput();
        let list_ratio = listed.throughput() / empty.throughput();
        get_ratios.push(get_ratio);
        list_ratios.push(list_ratio);
        println!(
            "{round:>5} | {:>7.0} {:>6.3} {:>6.3} | {:>7.0} {:>6.3} {:>6.3} {:.3} | {:>7.0} {:>6.3} {:>6.3} {:.3}",
            empty.throughput(),
            empty.percentile(0.5),
            empty.percentile(0.99),
            got.throughput(),
            got.percentile(0.5),
            got.percentile(0.99),
            get_ratio,
            listed.throughput(),
            listed.percentile(0.5),
            listed.percentile(0.99),
            list_ratio,
        );
    }
    let (get_median, get_min, get_max) = median_and_spread(&mut get_ratios);
    let (list_median, list_min, list_max) = median_and_spread(&mut list_ratios);
    println!(
        "GetMembership / empty RPC: median {get_median:.3} (spread {get_min:.3}..{get_max:.3})"
    );
    println!(
        "ListMemberships({}) / empty RPC: median {list_median:.3} (spread {list_min:.3}..{list_max:.3})",
        plan.page_size
    );
    Ok(())
}
