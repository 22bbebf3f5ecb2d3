//! Load generator and latency probe for a running membership service.
//!
//! `feed-latency` measures commit-to-delivery latency of the event feed: it opens N watch
//! streams on one server, makes mutations through another (or the same) server, and for every
//! event every subscriber receives, records the time from the event's commit (its
//! `occur_time`, stamped just before commit) to its arrival. Run it on the same machine as the
//! servers so both read one clock.
//!
//! `watchers` opens many idle watch streams in one burst and reads the server's memory with
//! them open and after they close.
//!
//! `seed` bulk-loads a big tenant straight into the database; `lists` and `writes` measure calls
//! in it and in a small tenant, `reads` in a tenant it makes, each call beside a ceiling
//! measured in the same round: the empty RPC for reads, a raw single-row insert transaction for
//! writes.

use membership_service::domain::role::BindingKind;
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
        /// Instead: CheckPermission of a permission held through a group (of
        /// `--group-members`, the member in `--member-groups` groups) beside the same check
        /// through a direct binding and the empty RPC, interleaved, `--repetitions` rounds.
        #[arg(long)]
        through_group: bool,
        #[arg(long, default_value_t = 10_000)]
        group_members: usize,
        #[arg(long, default_value_t = 100)]
        member_groups: usize,
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
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
        /// The server's database (its `--database-url`): adds a database ceiling to each round,
        /// a one-row primary-key read through the same driver and pool settings, from this
        /// process, with no gRPC at all.
        #[arg(long)]
        database_url: Option<String>,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// Loads `--members` members into a tenant straight through the database, fast: multi-row
    /// INSERTs in one transaction, rows converted by the store's own code. Creates the tenant
    /// through the server (ORGANIZATION preset, seat-limited) unless `--tenant` names one.
    ///
    /// Every member is bound to `member`, a small share to `admin` too; statuses are mostly
    /// ACTIVE, some SUSPENDED or LEFT, with mixed types and sources, non-ASCII display names,
    /// and creation times that repeat (bulk imports). Adds `--invitations` pending invitations.
    /// Seat counters are recounted in the same transaction. No events are written: the event
    /// log, watchers and the audit log never see the seeded rows. A running server sees them at
    /// once in a tenant the seed creates (it has read nothing of it yet); after loading into a
    /// `--tenant` it has already listed, restart it (its pages from memory miss the rows).
    Seed {
        /// The server, for creating the tenant and reading its seat usage.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// The server's database: the same URL as its `--database-url`.
        #[arg(long, env = "MEMBERSHIP_DATABASE_URL")]
        database_url: String,
        /// Members to load.
        #[arg(long)]
        members: usize,
        /// An existing tenant to load into, instead of a new one.
        #[arg(long)]
        tenant: Option<String>,
        /// Seat limit of the tenant (with `--tenant`, set through UpdateTenant first). Default
        /// for a new tenant: twice `--members` plus `--invitations`, so later writes fit.
        #[arg(long)]
        seat_limit: Option<i32>,
        /// Pending invitations to add (they hold seats and show in member lists as INVITED).
        #[arg(long, default_value_t = 2000)]
        invitations: usize,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// ListMemberships throughput in a big tenant (made by `seed`): every order ascending and
    /// descending, first page and a page deep in the list, every filter, text queries, and the
    /// first page of a small tenant made through the API. Each case runs right after an empty
    /// RPC (grpc.health.v1.Health/Check), `--repetitions` rounds; median and spread of each
    /// case's ratio to it, and of the rate ratios the goals are set on: deep / first page, big /
    /// small tenant, text query / unfiltered.
    Lists {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// The big tenant.
        #[arg(long)]
        tenant: String,
        /// Members of the small tenant (created through the API).
        #[arg(long, default_value_t = 1000)]
        small_members: usize,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        /// Calls in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// How long each run lasts.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Text queries that match many members (the seed's names make `mar` about a fifth,
        /// `müller` about one in forty). A query matching one member is added, taken from the
        /// deep page.
        #[arg(long, value_delimiter = ',', default_value = "mar,müller")]
        query: Vec<String>,
        /// Where the deep page is, as a fraction of the list: reached by walking pages of
        /// 1,000 (page tokens cannot be forged).
        #[arg(long, default_value_t = 0.5)]
        depth: f64,
        /// Only the cases whose name contains one of these (e.g. `create_time,role`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// CreateMembership throughput (new users, source API, role member) into a small
    /// seat-limited tenant, into the big tenant given by `--tenant`, and spread over
    /// `--tenants` new tenants when more than one; each right after its ceiling: a raw
    /// single-row insert transaction (BEGIN; INSERT; COMMIT) through the same driver and
    /// connection settings into a scratch table as wide as `memberships` (created, then
    /// dropped). `--repetitions` rounds, median and spread.
    Writes {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// The server's database, for the raw-insert ceiling: the same URL as its
        /// `--database-url`.
        #[arg(long, env = "MEMBERSHIP_DATABASE_URL")]
        database_url: String,
        /// The big (seeded, seat-limited) tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Calls in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// How long each run lasts.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// With more than one, also writes spread round-robin over this many new tenants.
        #[arg(long, default_value_t = 1)]
        tenants: usize,
        /// Connections of the ceiling's pool: the server's `--db-max-connections`.
        #[arg(long, default_value_t = 16)]
        db_max_connections: u32,
        #[command(flatten)]
        credentials: Credentials,
    },
    /// Idle WatchMembershipEvents streams at scale, as a replica sees them when its watchers
    /// reconnect after a restart: opens `--watchers` streams over `--connections` HTTP/2
    /// connections in one burst, each resuming after the cursor of a tenant the benchmark
    /// creates (filtered on it, so they stay idle but for progress messages), and retries every
    /// refusal after the delay its RetryInfo asks for (`--retry-backoff` when it names none).
    /// Reads the server's resident memory (VmRSS in /proc/PID/status, so run it on the
    /// server's machine) before the first round ("idle"), once every stream is open and they
    /// have idled for `--hold`, and `--settle` after all are closed. Prints, for each of
    /// `--repetitions` rounds, the refusals, the time until every stream was open, KiB per
    /// watcher ((RSS open - RSS before the round) / watchers), and RSS after close relative to
    /// idle; then median and spread.
    Watchers {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// The server's process id.
        #[arg(long)]
        pid: u32,
        /// Streams to open.
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        /// HTTP/2 connections they share (the server's `--max-streams-per-connection` bounds
        /// the streams of one connection).
        #[arg(long, default_value_t = 40)]
        connections: usize,
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// How long the streams idle, once all are open, before memory is read.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        hold: Duration,
        /// How long after the streams close before memory is read again.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        settle: Duration,
        /// Wait before retrying a refusal without a RetryInfo delay (jittered ±50 %).
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        retry_backoff: Duration,
        /// A stream still not open this long after the burst began is given up on.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        give_up: Duration,
        /// Watch every tenant's events (no tenant filter) instead of the benchmark's tenant.
        #[arg(long)]
        unfiltered: bool,
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
            through_group: true,
            group_members,
            member_groups,
            repetitions,
            credentials,
        } => {
            let plan = GroupChecksPlan {
                concurrency,
                duration,
                group_members,
                member_groups,
                repetitions,
            };
            checks_through_group(&server, plan, credentials.header()?).await
        }
        Command::Checks {
            server,
            concurrency,
            duration,
            credentials,
            ..
        } => checks(&server, &concurrency, duration, credentials.header()?).await,
        Command::Reads {
            server,
            members,
            concurrency,
            page_size,
            duration,
            repetitions,
            database_url,
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
                    database_url,
                },
                credentials.header()?,
            )
            .await
        }
        Command::Seed {
            server,
            database_url,
            members,
            tenant,
            seat_limit,
            invitations,
            credentials,
        } => {
            seed(
                &server,
                &database_url,
                SeedPlan {
                    members,
                    tenant,
                    seat_limit,
                    invitations,
                },
                credentials.header()?,
            )
            .await
        }
        Command::Lists {
            server,
            tenant,
            small_members,
            page_size,
            concurrency,
            duration,
            repetitions,
            query,
            depth,
            only,
            credentials,
        } => {
            lists(
                &server,
                ListsPlan {
                    tenant,
                    small_members,
                    page_size,
                    concurrency,
                    duration,
                    repetitions,
                    queries: query,
                    depth,
                    only,
                },
                credentials.header()?,
            )
            .await
        }
        Command::Writes {
            server,
            database_url,
            tenant,
            concurrency,
            duration,
            repetitions,
            tenants,
            db_max_connections,
            credentials,
        } => {
            writes(
                &server,
                &database_url,
                WritesPlan {
                    tenant,
                    concurrency,
                    duration,
                    repetitions,
                    tenants,
                    db_max_connections,
                },
                credentials.header()?,
            )
            .await
        }
        Command::Watchers {
            server,
            pid,
            watchers: count,
            connections,
            repetitions,
            hold,
            settle,
            retry_backoff,
            give_up,
            unfiltered,
            credentials,
        } => {
            watchers(
                &server,
                WatchersPlan {
                    pid,
                    watchers: count,
                    connections,
                    repetitions,
                    hold,
                    settle,
                    retry_backoff,
                    give_up,
                    unfiltered,
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

/// Latencies of one run's successful calls, in microseconds, the calls that failed, and the
/// run's wall time.
struct Run {
    latencies: Vec<u64>,
    failures: Vec<tonic::Status>,
    elapsed: Duration,
}

impl Run {
    /// Successful calls per second.
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The run, or its first failure as the error.
    fn without_failures(self) -> Result<Run, tonic::Status> {
        match self.failures.into_iter().next() {
            Some(failure) => Err(failure),
            None => Ok(Run {
                failures: Vec::new(),
                ..self
            }),
        }
    }

    /// How many calls failed, and the codes they failed with.
    fn failure_summary(&self) -> Option<String> {
        let mut codes: Vec<String> = self
            .failures
            .iter()
            .map(|f| format!("{:?}", f.code()))
            .collect();
        codes.sort();
        codes.dedup();
        (!self.failures.is_empty())
            .then(|| format!("{} failed ({})", self.failures.len(), codes.join(", ")))
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

/// Runs `call` from `concurrency` tasks for `duration`, over a few shared connections. A call
/// that fails is counted, not retried, and the run goes on.
/// Drives one RPC with the same request every time, through a client `client` makes of each
/// channel, and refuses a run with failures.
async fn drive_rpc<T, Client, F, Fut>(
    (channels, concurrency, duration): (&[Channel], usize, Duration),
    request: &T,
    authorization: &Option<String>,
    client: fn(Channel) -> Client,
    rpc: F,
) -> Result<Run, Box<dyn std::error::Error>>
where
    T: Clone + Send + Sync + 'static,
    Client: Send + 'static,
    F: Fn(Client, tonic::Request<T>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let (request, authorization) = (request.clone(), authorization.clone());
    Ok(drive(channels, concurrency, duration, move |channel| {
        rpc(client(channel), authed(request.clone(), &authorization))
    })
    .await?
    .without_failures()?)
}

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
            let (mut latencies, mut failures) = (Vec::new(), Vec::new());
            while std::time::Instant::now() < deadline {
                let t = std::time::Instant::now();
                match call(channel.clone()).await {
                    Ok(()) => latencies.push(t.elapsed().as_micros() as u64),
                    Err(failure) => failures.push(failure),
                }
            }
            (latencies, failures)
        }));
    }
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    for task in tasks {
        let (task_latencies, task_failures) = task.await?;
        latencies.extend(task_latencies);
        failures.extend(task_failures);
    }
    Ok(Run {
        latencies,
        failures,
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

/// A new ORGANIZATION tenant owned by `owner`, with `seat_limit` seats (`None`: unlimited);
/// its id.
async fn bench_tenant(
    channel: &Channel,
    owner: uuid::Uuid,
    seat_limit: Option<i32>,
    authorization: &Option<String>,
) -> Result<String, tonic::Status> {
    Ok(TenantServiceClient::new(channel.clone())
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "bench".into(),
                kind: pb::TenantKind::Enterprise as i32,
                role_preset: pb::RolePreset::Organization as i32,
                seat_limit,
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

/// Adds `count` members to `tenant` through the API, 16 calls at a time.
async fn add_members(
    channel: &Channel,
    tenant: &str,
    count: usize,
    authorization: &Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(count));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (channel, tenant, authorization) =
            (channel.clone(), tenant.to_string(), authorization.clone());
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
    Ok(())
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
    let tenant = bench_tenant(&setup, owner, None, &authorization).await?;
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
        let run = (&channels[..], concurrency, duration);
        let mut checked = drive_rpc(
            run,
            &check,
            &authorization,
            RoleServiceClient::new,
            |mut c, r| async move { c.check_permission(r).await.map(|_| ()) },
        )
        .await?;
        let mut empty = drive(&channels, concurrency, duration, empty_rpc)
            .await?
            .without_failures()?;
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

struct GroupChecksPlan {
    concurrency: Vec<usize>,
    duration: Duration,
    group_members: usize,
    member_groups: usize,
    repetitions: usize,
}

/// Creates a member with `role` bound directly; its user id.
async fn new_member(
    channel: &Channel,
    tenant: &str,
    role: &str,
    authorization: &Option<String>,
) -> Result<uuid::Uuid, tonic::Status> {
    let member = uuid::Uuid::now_v7();
    MembershipServiceClient::new(channel.clone())
        .create_membership(authed(
            pb::CreateMembershipRequest {
                tenant_id: tenant.to_string(),
                user_id: member.to_string(),
                email: format!("{}@bench.example", member.simple()),
                source: pb::MembershipSource::Api as i32,
                role: role.into(),
                ..Default::default()
            },
            authorization,
        ))
        .await?;
    Ok(member)
}

/// CheckPermission through a group against the same check through a direct binding: a
/// member holding `members.manage` only through the `admin` role bound to one group of
/// `group_members`, while in `member_groups` groups; another holding `admin` directly.
async fn checks_through_group(
    server: &str,
    plan: GroupChecksPlan,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use membership_service::grpc::pb::group_service_client::GroupServiceClient;
    use membership_service::grpc::pb::role_service_client::RoleServiceClient;
    let setup = connect(server).await?;
    let owner = uuid::Uuid::now_v7();
    let tenant = bench_tenant(&setup, owner, None, &authorization).await?;
    let direct = new_member(&setup, &tenant, "admin", &authorization).await?;
    let through = new_member(&setup, &tenant, "member", &authorization).await?;
    let mut groups = GroupServiceClient::new(setup.clone());
    let mut group_ids = Vec::new();
    for i in 0..plan.member_groups.max(1) {
        let group = groups
            .create_group(authed(
                pb::CreateGroupRequest {
                    tenant_id: tenant.clone(),
                    name: format!("group {i}"),
                    ..Default::default()
                },
                &authorization,
            ))
            .await?
            .into_inner()
            .group
            .map(|g| g.group_id)
            .unwrap_or_default();
        groups
            .add_group_members(authed(
                pb::AddGroupMembersRequest {
                    tenant_id: tenant.clone(),
                    group_id: group.clone(),
                    user_ids: vec![through.to_string()],
                },
                &authorization,
            ))
            .await?;
        group_ids.push(group);
    }
    // The granting group: the last the member joined, filled to `group_members`.
    let granting = group_ids.last().cloned().unwrap_or_default();
    println!(
        "seeding: {} members into one group, the checked member in {} groups",
        plan.group_members,
        group_ids.len()
    );
    let mut others = Vec::new();
    for _ in 1..plan.group_members {
        others.push(
            new_member(&setup, &tenant, "member", &authorization)
                .await?
                .to_string(),
        );
        if others.len() == 1_000 {
            groups
                .add_group_members(authed(
                    pb::AddGroupMembersRequest {
                        tenant_id: tenant.clone(),
                        group_id: granting.clone(),
                        user_ids: std::mem::take(&mut others),
                    },
                    &authorization,
                ))
                .await?;
        }
    }
    if !others.is_empty() {
        groups
            .add_group_members(authed(
                pb::AddGroupMembersRequest {
                    tenant_id: tenant.clone(),
                    group_id: granting.clone(),
                    user_ids: others,
                },
                &authorization,
            ))
            .await?;
    }
    RoleServiceClient::new(setup.clone())
        .bind_role(authed(
            pb::BindRoleRequest {
                tenant_id: tenant.clone(),
                group_id: granting.clone(),
                role: "admin".into(),
                ..Default::default()
            },
            &authorization,
        ))
        .await?;
    let check = |user: uuid::Uuid| pb::CheckPermissionRequest {
        tenant_id: tenant.clone(),
        user_id: user.to_string(),
        permission: "members.manage".into(),
        min_cursor: 0,
    };
    for (user, group) in [(direct, ""), (through, granting.as_str())] {
        let answer = RoleServiceClient::new(setup.clone())
            .check_permission(authed(check(user), &authorization))
            .await?
            .into_inner();
        let granted_by = answer.granted_by.unwrap_or_default();
        assert!(
            answer.allowed,
            "the benchmark member should hold members.manage"
        );
        assert_eq!(
            granted_by.group_id, group,
            "granted through the expected binding"
        );
    }

    println!(
        "concurrency | direct req/s | through a group req/s | Health/Check req/s | group / direct, median (spread) | group / empty"
    );
    for &concurrency in &plan.concurrency {
        let mut channels = Vec::new();
        for _ in 0..concurrency.div_ceil(16).max(1) {
            channels.push(connect(server).await?);
        }
        let (mut ratios, mut to_empty) = (Vec::new(), Vec::new());
        let (mut direct_rates, mut group_rates, mut empty_rates) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.repetitions.max(1) {
            let mut rates = Vec::new();
            for user in [direct, through] {
                let shape = (&channels[..], concurrency, plan.duration);
                let run = drive_rpc(
                    shape,
                    &check(user),
                    &authorization,
                    RoleServiceClient::new,
                    |mut c, r| async move { c.check_permission(r).await.map(|_| ()) },
                )
                .await?;
                rates.push(run.throughput());
            }
            let empty = drive(&channels, concurrency, plan.duration, empty_rpc)
                .await?
                .without_failures()?
                .throughput();
            ratios.push(rates[1] / rates[0]);
            to_empty.push(rates[1] / empty);
            direct_rates.push(rates[0]);
            group_rates.push(rates[1]);
            empty_rates.push(empty);
        }
        let (ratio, low, high) = median_and_spread(&mut ratios);
        let (empty_ratio, _, _) = median_and_spread(&mut to_empty);
        println!(
            "{concurrency:>11} | {:>12.0} | {:>21.0} | {:>18.0} | {ratio:.2} ({low:.2}–{high:.2}) | {empty_ratio:.2}",
            median_and_spread(&mut direct_rates).0,
            median_and_spread(&mut group_rates).0,
            median_and_spread(&mut empty_rates).0,
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
    database_url: Option<String>,
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
    let tenant = bench_tenant(&setup, owner, None, &authorization).await?;
    add_members(
        &setup,
        &tenant,
        plan.members.saturating_sub(1),
        &authorization,
    )
    .await?;
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
        ..Default::default()
    };
    let list = pb::ListMembershipsRequest {
        tenant_id: tenant,
        page_size: plan.page_size,
        ..Default::default()
    };
    // The database ceiling: what one pooled primary-key read costs, with the server's pool size.
    let raw_store = match &plan.database_url {
        Some(url) => Some(membership_service::store::Store::connect(url, 16).await?),
        None => None,
    };
    let (mut get_ratios, mut list_ratios, mut raw_ratios) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "round | empty req/s p50 p99 ms | Get req/s p50 p99 ms ratio | List req/s p50 p99 ms ratio{}",
        if raw_store.is_some() {
            " | raw read req/s p50 p99 ms ratio"
        } else {
            ""
        }
    );
    for round in 1..=plan.repetitions {
        let mut empty = drive(&channels, plan.concurrency, plan.duration, empty_rpc)
            .await?
            .without_failures()?;
        let mut got = drive_rpc(
            (&channels, plan.concurrency, plan.duration),
            &get,
            &authorization,
            MembershipServiceClient::new,
            |mut c, r| async move { c.get_membership(r).await.map(|_| ()) },
        )
        .await?;
        let mut listed = drive_rpc(
            (&channels, plan.concurrency, plan.duration),
            &list,
            &authorization,
            MembershipServiceClient::new,
            |mut c, r| async move { c.list_memberships(r).await.map(|_| ()) },
        )
        .await?;
        let raw = match &raw_store {
            Some(store) => {
                let store = store.clone();
                let mut run = drive(&channels, plan.concurrency, plan.duration, move |_| {
                    raw_read(store.clone())
                })
                .await?
                .without_failures()?;
                let ratio = run.throughput() / empty.throughput();
                raw_ratios.push(ratio);
                format!(
                    " | {:>7.0} {:>6.3} {:>6.3} {ratio:.3}",
                    run.throughput(),
                    run.percentile(0.5),
                    run.percentile(0.99)
                )
            }
            None => String::new(),
        };
        let get_ratio = got.throughput() / empty.throughput();
        let list_ratio = listed.throughput() / empty.throughput();
        get_ratios.push(get_ratio);
        list_ratios.push(list_ratio);
        println!(
            "{round:>5} | {:>7.0} {:>6.3} {:>6.3} | {:>7.0} {:>6.3} {:>6.3} {:.3} | {:>7.0} {:>6.3} {:>6.3} {:.3}{raw}",
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
    if !raw_ratios.is_empty() {
        let (median, min, max) = median_and_spread(&mut raw_ratios);
        println!("raw pooled read / empty RPC: median {median:.3} (spread {min:.3}..{max:.3})");
    }
    Ok(())
}

/// One pooled single-row read by primary key, the cheapest statement the database answers.
async fn raw_read(store: membership_service::store::Store) -> Result<(), tonic::Status> {
    use sea_orm::ConnectionTrait;
    let statement = sea_orm::Statement::from_string(
        store.backend(),
        "SELECT position FROM log_head WHERE id = 1",
    );
    store
        .connection()
        .query_one_raw(statement)
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .ok_or_else(|| tonic::Status::internal("no log head"))
        .map(|_| ())
}

struct SeedPlan {
    members: usize,
    tenant: Option<String>,
    seat_limit: Option<i32>,
    invitations: usize,
}

/// Members generated and inserted at a time: memory stays small at any `--members`.
const SEED_BATCH: usize = 20_000;

/// Seat usage of a tenant, through the API.
async fn seat_usage(
    channel: &Channel,
    tenant: &str,
    authorization: &Option<String>,
) -> Result<pb::GetSeatUsageResponse, tonic::Status> {
    Ok(TenantServiceClient::new(channel.clone())
        .get_seat_usage(authed(
            pb::GetSeatUsageRequest {
                tenant_id: tenant.to_string(),
            },
            authorization,
        ))
        .await?
        .into_inner())
}

async fn seed(
    server: &str,
    database_url: &str,
    plan: SeedPlan,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use membership_service::store::{self, Store, bulk};
    use sea_orm::{
        ConnectionTrait, DbBackend, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    };

    let channel = connect(server).await?;
    let tenant = match &plan.tenant {
        Some(tenant) => {
            if let Some(limit) = plan.seat_limit {
                TenantServiceClient::new(channel.clone())
                    .update_tenant(authed(
                        pb::UpdateTenantRequest {
                            tenant: Some(pb::Tenant {
                                tenant_id: tenant.clone(),
                                seat_limit: Some(limit),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["seat_limit".into()],
                            }),
                        },
                        &authorization,
                    ))
                    .await?;
            }
            tenant.clone()
        }
        None => {
            let default_limit = plan.members.saturating_mul(2) + plan.invitations;
            let limit = plan
                .seat_limit
                .unwrap_or(i32::try_from(default_limit).unwrap_or(i32::MAX));
            bench_tenant(&channel, uuid::Uuid::now_v7(), Some(limit), &authorization).await?
        }
    };
    let tenant_id = uuid::Uuid::try_parse(&tenant)?;
    let before = seat_usage(&channel, &tenant, &authorization).await?;
    let wanted = plan.members + plan.invitations;
    if let Some(available) = before.available
        && usize::try_from(available).unwrap_or(0) < wanted
    {
        return Err(format!(
            "tenant {tenant} has {available} free seats, fewer than --members plus \
             --invitations ({wanted}): raise --seat-limit"
        )
        .into());
    }

    let store = Store::connect(database_url, 2).await?;
    store.migrate().await?;
    let db = store.connection();
    let roles = store::roles::list(db, tenant_id).await?;
    let member_role = roles
        .by_name("member")
        .ok_or("the tenant has no `member` role")?
        .clone();
    // `admin` in the ORGANIZATION preset; in another preset, its first other non-owner role.
    let second_role = roles
        .by_name("admin")
        .or_else(|| {
            roles
                .0
                .iter()
                .find(|r| !r.is_owner && r.id != member_role.id)
        })
        .unwrap_or(&member_role)
        .clone();
    let owner_role = roles.owner_role().ok_or("the tenant has no owner role")?;
    let owner = store::bindings::holders_of(db, tenant_id, BindingKind::User, owner_role.id)
        .await?
        .first()
        .copied();
    // Numbers in the seeded emails continue after the tenant's rows, so seeding the same tenant
    // twice keeps emails unique.
    let existing = {
        use membership_service::store::entities::memberships;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(tenant_id))
            .count(db)
            .await?
    };
    println!(
        "seeding tenant {tenant}: {} members, {} invitations; seats before {}",
        plan.members, plan.invitations, before.display
    );

    let started = std::time::Instant::now();
    let txn = match db.get_database_backend() {
        // Take the write lock at BEGIN, as the service's writers do.
        DbBackend::Sqlite => {
            db.begin_with_options(TransactionOptions {
                isolation_level: None,
                access_mode: None,
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            })
            .await?
        }
        _ => db.begin().await?,
    };
    if db.get_database_backend() == DbBackend::Sqlite {
        // A page cache big enough for the indexes being filled (this connection only; the
        // default 2 MB spills to the file on every statement).
        txn.execute_unprepared("PRAGMA cache_size = -524288")
            .await?;
    }
    // Writers of this tenant on the server wait until the seed commits.
    store::tenants::lock(&txn, tenant_id).await?;
    let mut generator = MemberGenerator::new(
        tenant_id,
        owner,
        &member_role,
        &second_role,
        plan.members,
        existing,
    );
    let (mut members, mut bindings) = (0u64, 0u64);
    let mut reported = 0;
    while (members as usize) < plan.members {
        let batch = generator.batch(SEED_BATCH.min(plan.members - members as usize))?;
        members += bulk::insert_memberships(&txn, &batch.members).await?;
        bindings += bulk::insert_role_bindings(&txn, &batch.bindings).await?;
        if members as usize >= reported + 100_000 {
            reported = members as usize;
            eprintln!(
                "  {members} members, {bindings} bindings after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let invitations = generator.invitations(plan.invitations, &member_role)?;
    let invited = bulk::insert_invitations(&txn, &invitations).await?;
    // The rows went in without the service's per-row seat accounting: count them once.
    store::tenants::recount_seats(&txn, tenant_id).await?;
    txn.commit().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rows = members + bindings + invited;
    println!(
        "loaded {members} members ({} holding a seat), {bindings} role bindings, {invited} \
         invitations in {elapsed:.1} s: {:.0} rows/s, {:.0} members/s",
        generator.seated,
        rows as f64 / elapsed,
        members as f64 / elapsed,
    );
    if db.get_database_backend() == DbBackend::Postgres {
        // Autovacuum would get to it within a minute or so, in the middle of a benchmark; done
        // now, the planner has statistics and the visibility map is set from the start.
        let started = std::time::Instant::now();
        db.execute_unprepared("VACUUM (ANALYZE) memberships, role_bindings, invitations")
            .await?;
        println!(
            "VACUUM (ANALYZE) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        // What the server's hourly `PRAGMA optimize` would do after a load this size.
        let started = std::time::Instant::now();
        db.execute_unprepared("PRAGMA optimize = 0x10002").await?;
        println!(
            "PRAGMA optimize in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let after = seat_usage(&channel, &tenant, &authorization).await?;
    println!("seats now {} (GetSeatUsage)", after.display);
    // A permission the second role grants and `member` does not (any of its own otherwise).
    let granted_by_second = second_role
        .permissions
        .iter()
        .find(|p| !member_role.permissions.contains(*p))
        .or_else(|| second_role.permissions.iter().next())
        .map(|p| p.as_str());
    check_seeded(
        &channel,
        &tenant,
        &generator,
        granted_by_second,
        &authorization,
    )
    .await?;
    println!("tenant {tenant}");
    Ok(())
}

/// Checks that the server sees seeded rows as it would see its own: a seeded admin's membership
/// and a permission only its second role grants, and a seeded suspension.
async fn check_seeded(
    channel: &Channel,
    tenant: &str,
    generator: &MemberGenerator,
    granted_by_second: Option<&str>,
    authorization: &Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use membership_service::grpc::pb::role_service_client::RoleServiceClient;
    let check = |user: uuid::Uuid, permission: &str| {
        authed(
            pb::CheckPermissionRequest {
                tenant_id: tenant.to_string(),
                user_id: user.to_string(),
                permission: permission.into(),
                min_cursor: 0,
            },
            authorization,
        )
    };
    let mut roles = RoleServiceClient::new(channel.clone());
    if let Some(admin) = &generator.sample_admin {
        let seen = MembershipServiceClient::new(channel.clone())
            .get_membership(authed(
                pb::GetMembershipRequest {
                    tenant_id: tenant.to_string(),
                    user_id: admin.user_id.to_string(),
                    ..Default::default()
                },
                authorization,
            ))
            .await?
            .into_inner()
            .membership
            .unwrap_or_default();
        let mut expected_roles = admin.roles.clone();
        expected_roles.sort();
        if seen.email != admin.email || seen.roles != expected_roles {
            return Err(format!(
                "the server reads seeded member {} as {:?} with roles {:?}, not {:?} with {:?}",
                admin.user_id, seen.email, seen.roles, admin.email, expected_roles
            )
            .into());
        }
        if let Some(permission) = granted_by_second {
            let granted = roles
                .check_permission(check(admin.user_id, permission))
                .await?
                .into_inner();
            if !granted.allowed {
                return Err(format!(
                    "seeded member {} is refused {permission}: {:?}",
                    admin.user_id,
                    granted.reason()
                )
                .into());
            }
        }
    }
    if let Some(suspended) = generator.sample_suspended {
        let refused = roles
            .check_permission(check(suspended, "members.read"))
            .await?
            .into_inner();
        if refused.reason() != pb::CheckReason::MembershipSuspended {
            return Err(format!(
                "seeded suspended member {suspended} is answered {:?}",
                refused.reason()
            )
            .into());
        }
    }
    println!(
        "the server sees the seeded rows: GetMembership and CheckPermission of a seeded admin \
         and a seeded suspended member answer as for members it wrote itself"
    );
    Ok(())
}

/// A small, fast, seeded generator (SplitMix64): the seed wants varied rows, not secrets.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items`.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A random (version 4) UUID, as the identity service would issue.
    fn uuid(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// Given names: the display form and the form used in email addresses. A share is non-ASCII,
/// so case folding and collation matter for search and sorting by display name.
const GIVEN_NAMES: &[(&str, &str)] = &[
    ("Maria", "maria"),
    ("Mark", "mark"),
    ("Omar", "omar"),
    ("Marta", "marta"),
    ("James", "james"),
    ("Anna", "anna"),
    ("Wei", "wei"),
    ("Aisha", "aisha"),
    ("Lukas", "lukas"),
    ("Sofia", "sofia"),
    ("Noah", "noah"),
    ("Emma", "emma"),
    ("Hiroshi", "hiroshi"),
    ("Priya", "priya"),
    ("Carlos", "carlos"),
    ("Fatima", "fatima"),
    ("Olivia", "olivia"),
    ("Liam", "liam"),
    ("Chloé", "chloe"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Søren", "soren"),
    ("Łukasz", "lukasz"),
    ("Ömer", "omer"),
    ("Björn", "bjorn"),
    ("François", "francois"),
    ("Анастасия", "anastasia"),
    ("Γιώργος", "giorgos"),
    ("陽翔", "haruto"),
    ("Élodie", "elodie"),
    ("İlkay", "ilkay"),
    ("Ngozi", "ngozi"),
    ("Mateo", "mateo"),
    ("Kenji", "kenji"),
    ("Ava", "ava"),
    ("Ethan", "ethan"),
    ("Isabella", "isabella"),
    ("Mohammed", "mohammed"),
    ("Dmitri", "dmitri"),
    ("Ingrid", "ingrid"),
];

/// Family names, as [`GIVEN_NAMES`].
const FAMILY_NAMES: &[(&str, &str)] = &[
    ("Smith", "smith"),
    ("Müller", "mueller"),
    ("García", "garcia"),
    ("Martin", "martin"),
    ("Nguyễn", "nguyen"),
    ("Kowalski", "kowalski"),
    ("Johansson", "johansson"),
    ("Rossi", "rossi"),
    ("Tanaka", "tanaka"),
    ("Patel", "patel"),
    ("Dubois", "dubois"),
    ("Silva", "silva"),
    ("Öztürk", "ozturk"),
    ("Dvořák", "dvorak"),
    ("O'Brien", "obrien"),
    ("van der Berg", "vanderberg"),
    ("Kim", "kim"),
    ("Ivanova", "ivanova"),
    ("Schmidt", "schmidt"),
    ("Márquez", "marquez"),
    ("Brown", "brown"),
    ("Wilson", "wilson"),
    ("Nakamura", "nakamura"),
    ("Jensen", "jensen"),
    ("Åberg", "aberg"),
    ("Çelik", "celik"),
    ("Σαββίδης", "savvidis"),
    ("Смирнов", "smirnov"),
    ("山田", "yamada"),
    ("Żuraw", "zuraw"),
    ("Lefèvre", "lefevre"),
    ("Hernández", "hernandez"),
    ("Okafor", "okafor"),
    ("Ahmed", "ahmed"),
    ("Lopez", "lopez"),
    ("Chen", "chen"),
    ("Wang", "wang"),
    ("Singh", "singh"),
    ("Andersson", "andersson"),
    ("Fischer", "fischer"),
];

/// Employees' email domains; one internationalized (stored in its IDNA form).
const DOMAINS: &[&str] = &[
    "example.com",
    "example.com",
    "example.com",
    "corp.example",
    "eu.corp.example",
    "münchen.example",
];

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// One batch of generated rows.
struct SeedBatch {
    members: Vec<membership_service::domain::membership::Membership>,
    bindings: Vec<membership_service::store::entities::role_bindings::Model>,
}

/// Generates a tenant's members in creation order over the last three years: mostly ACTIVE,
/// some SUSPENDED or LEFT; mostly MEMBER type; sources mixed, with bulk imports (SCIM,
/// migration) whose members share one creation time.
struct MemberGenerator {
    rng: SplitMix64,
    tenant_id: uuid::Uuid,
    owner: Option<uuid::Uuid>,
    member_role: (uuid::Uuid, String),
    second_role: (uuid::Uuid, String),
    now: i64,
    clock: i64,
    average_gap: i64,
    /// Members left in the current bulk import, and its source.
    import: (
        u64,
        membership_service::domain::membership::MembershipSource,
    ),
    next_number: u64,
    /// Members generated in a seat-holding status.
    seated: u64,
    /// A generated ACTIVE member holding the second role, and a SUSPENDED one: what the seed
    /// checks the server sees.
    sample_admin: Option<membership_service::domain::membership::Membership>,
    sample_suspended: Option<uuid::Uuid>,
}

impl MemberGenerator {
    fn new(
        tenant_id: uuid::Uuid,
        owner: Option<uuid::Uuid>,
        member_role: &membership_service::domain::role::Role,
        second_role: &membership_service::domain::role::Role,
        members: usize,
        existing: u64,
    ) -> Self {
        let now = now_micros();
        let span = 3 * 365 * DAY_MICROS;
        Self {
            rng: SplitMix64(now as u64),
            tenant_id,
            owner,
            member_role: (member_role.id, member_role.name.clone()),
            second_role: (second_role.id, second_role.name.clone()),
            now,
            clock: now - span,
            average_gap: span / members.max(1) as i64,
            import: (
                0,
                membership_service::domain::membership::MembershipSource::Scim,
            ),
            next_number: existing,
            seated: 0,
            sample_admin: None,
            sample_suspended: None,
        }
    }

    fn batch(&mut self, count: usize) -> Result<SeedBatch, String> {
        use membership_service::domain::email::canonical_email;
        use membership_service::domain::membership::{
            Membership, MembershipSource as Source, MembershipStatus as Status,
            MembershipType as Type,
        };
        use membership_service::store::entities::role_bindings;

        let mut batch = SeedBatch {
            members: Vec::with_capacity(count),
            bindings: Vec::with_capacity(count + count / 50),
        };
        for _ in 0..count {
            let rng = &mut self.rng;
            // Creation time: most members one by one, about 10% in bulk imports that share one
            // timestamp.
            let source = if self.import.0 > 0 {
                self.import.0 -= 1;
                self.import.1
            } else {
                self.clock = (self.clock + rng.below(2 * self.average_gap as u64 + 1) as i64)
                    .min(self.now - DAY_MICROS);
                if rng.below(1000) < 2 {
                    let source = *rng.pick(&[Source::Scim, Source::Migration]);
                    self.import = (20 + rng.below(80), source);
                }
                match rng.below(100) {
                    0..30 => Source::Scim,
                    30..50 => Source::Invite,
                    50..60 => Source::Signup,
                    60..75 => Source::Api,
                    75..85 => Source::OidcJit,
                    85..95 => Source::SamlJit,
                    _ => Source::Migration,
                }
            };
            let created_at = self.clock;
            let status = match rng.below(100) {
                0..90 => Status::Active,
                90..97 => Status::Suspended,
                _ => Status::Left,
            };
            let admin = status != Status::Left && rng.below(1000) < 15;
            let member_type = if admin {
                Type::Admin
            } else {
                match rng.below(100) {
                    0..85 => Type::Member,
                    85..92 => Type::Contractor,
                    92..96 => Type::ServiceOperator,
                    _ => Type::ReadonlyAuditor,
                }
            };
            let (given, given_email) = *rng.pick(GIVEN_NAMES);
            let (family, family_email) = *rng.pick(FAMILY_NAMES);
            let domain = if member_type == Type::Contractor {
                "contractors.example"
            } else {
                rng.pick(DOMAINS)
            };
            let email = canonical_email(&format!(
                "{given_email}.{family_email}.{}@{domain}",
                base36(self.next_number)
            ))?;
            self.next_number += 1;
            let display_name = if rng.below(100) < 2 {
                String::new()
            } else {
                format!("{given} {family}")
            };
            let joined_at = match source {
                Source::Invite => created_at + rng.below(3 * DAY_MICROS as u64) as i64,
                _ => created_at,
            }
            .min(self.now);
            let (updated_at, version) = match status {
                Status::Active => (joined_at, 1),
                _ => (
                    joined_at + rng.below((self.now - joined_at).max(1) as u64) as i64,
                    2,
                ),
            };
            let user_id = rng.uuid();
            let external_id =
                matches!(source, Source::Scim | Source::SamlJit).then(|| rng.uuid().to_string());
            let mut roles = Vec::new();
            if status != Status::Left {
                self.seated += 1;
                roles.push(self.member_role.1.clone());
                batch.bindings.push(role_bindings::Model {
                    tenant_id: self.tenant_id,
                    user_id,
                    role_id: self.member_role.0,
                    created_at: joined_at,
                });
                if admin && self.second_role.0 != self.member_role.0 {
                    roles.push(self.second_role.1.clone());
                    batch.bindings.push(role_bindings::Model {
                        tenant_id: self.tenant_id,
                        user_id,
                        role_id: self.second_role.0,
                        created_at: joined_at,
                    });
                }
            }
            let membership = Membership {
                tenant_id: self.tenant_id,
                user_id,
                email,
                display_name,
                status,
                member_type,
                source,
                external_id,
                invited_by: (source == Source::Invite).then_some(self.owner).flatten(),
                joined_at: Some(joined_at),
                created_at,
                updated_at,
                version,
                roles,
                invitation_id: None,
            };
            if admin && status == Status::Active && self.sample_admin.is_none() {
                self.sample_admin = Some(membership.clone());
            }
            if status == Status::Suspended && self.sample_suspended.is_none() {
                self.sample_suspended = Some(user_id);
            }
            batch.members.push(membership);
        }
        Ok(batch)
    }

    /// Pending invitations sent by the owner over the last day, expiring in a week.
    fn invitations(
        &mut self,
        count: usize,
        role: &membership_service::domain::role::Role,
    ) -> Result<
        Vec<(membership_service::domain::invitation::Invitation, String)>,
        Box<dyn std::error::Error>,
    > {
        use membership_service::domain::email::canonical_email;
        use membership_service::domain::invitation::{
            DEFAULT_TTL, Invitation, InvitationState, new_token, token_hash,
        };
        let mut invitations = Vec::with_capacity(count);
        for _ in 0..count {
            let created_at = self.now - self.rng.below(DAY_MICROS as u64) as i64;
            let (_, given_email) = *self.rng.pick(GIVEN_NAMES);
            let domain = self.rng.pick(DOMAINS);
            let email = canonical_email(&format!(
                "{given_email}.invited.{}@{domain}",
                base36(self.next_number)
            ))?;
            self.next_number += 1;
            invitations.push((
                Invitation {
                    id: self.rng.uuid(),
                    tenant_id: self.tenant_id,
                    email,
                    role_id: role.id,
                    role: role.name.clone(),
                    inviter_id: self.owner,
                    state: InvitationState::Pending,
                    expires_at: created_at + DEFAULT_TTL,
                    send_count: 1,
                    last_sent_at: created_at,
                    accepted_by: None,
                    accepted_at: None,
                    created_at,
                    updated_at: created_at,
                    version: 1,
                },
                token_hash(&new_token()?),
            ));
        }
        Ok(invitations)
    }
}

/// `n` in base 36: short unique suffixes for generated email addresses.
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = Vec::new();
    loop {
        digits.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

struct ListsPlan {
    tenant: String,
    small_members: usize,
    page_size: i32,
    concurrency: usize,
    duration: Duration,
    repetitions: usize,
    queries: Vec<String>,
    depth: f64,
    only: Vec<String>,
}

/// A call for [`drive`], boxed so cases of every kind share one type.
type BoxedCall = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static>,
>;

/// One ListMemberships request, sent by every caller of a run.
fn list_call(
    request: pb::ListMembershipsRequest,
    authorization: Option<String>,
) -> impl Fn(Channel) -> BoxedCall + Clone + Send + 'static {
    move |channel| {
        let request = authed(request.clone(), &authorization);
        Box::pin(async move {
            MembershipServiceClient::new(channel)
                .list_memberships(request)
                .await
                .map(|_| ())
        })
    }
}

/// A measured case: its name and what one call sends.
struct ListCase {
    name: String,
    request: pb::ListMembershipsRequest,
}

/// One run of a case, beside its ceiling run just before it.
#[derive(Clone, Copy)]
struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
    /// The case's rate over its ceiling's.
    ratio: f64,
    /// Calls that failed (not counted in the rate).
    failures: usize,
}

/// Runs `call` right after `ceiling`, prints the round's line, and returns what it measured.
async fn measure_beside<C, CF, F, FF>(
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
    ceiling: C,
    call: F,
    label: &str,
) -> Result<Measured, Box<dyn std::error::Error>>
where
    C: Fn(Channel) -> CF + Clone + Send + 'static,
    CF: std::future::Future<Output = Result<(), tonic::Status>> + Send,
    F: Fn(Channel) -> FF + Clone + Send + 'static,
    FF: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    // The ceiling must not fail: its rate is what every ratio is taken against.
    let mut base = drive(channels, concurrency, duration, ceiling)
        .await?
        .without_failures()?;
    let mut run = drive(channels, concurrency, duration, call).await?;
    let measured = Measured {
        rate: run.throughput(),
        p50: run.percentile(0.5),
        p99: run.percentile(0.99),
        ratio: run.throughput() / base.throughput(),
        failures: run.failures.len(),
    };
    println!(
        "{label} | {:>7.0} {:>7.3} {:>7.3} | {:>7.0} {:>7.3} {:>7.3} {:.3}{}",
        base.throughput(),
        base.percentile(0.5),
        base.percentile(0.99),
        measured.rate,
        measured.p50,
        measured.p99,
        measured.ratio,
        run.failure_summary()
            .map(|failed| format!(" | {failed}"))
            .unwrap_or_default(),
    );
    Ok(measured)
}

/// Prints a case's medians over rounds and the median and spread of its ratio to the ceiling.
fn print_case_summary(name: &str, runs: &[Measured], ceiling: &str) {
    let median =
        |f: fn(&Measured) -> f64| median_and_spread(&mut runs.iter().map(f).collect::<Vec<_>>()).0;
    let (ratio, low, high) =
        median_and_spread(&mut runs.iter().map(|m| m.ratio).collect::<Vec<_>>());
    let failures: usize = runs.iter().map(|m| m.failures).sum();
    println!(
        "{name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms (medians); / {ceiling}: median {ratio:.3} \
         (spread {low:.3}..{high:.3}){}",
        median(|m| m.rate),
        median(|m| m.p50),
        median(|m| m.p99),
        if failures > 0 {
            format!("; {failures} calls failed")
        } else {
            String::new()
        },
    );
}

/// Prints a goal ratio: per round, `numerator`'s rate over `denominator`'s; median and spread,
/// and whether the median meets `goal`. The rates are compared directly, not through their
/// ceilings: both cases wait on the same database, while the ceiling, bound by the CPU alone,
/// swings more with whatever else the machine runs.
fn print_goal(label: &str, numerator: &[Measured], denominator: &[Measured], goal: f64) {
    let mut ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .map(|(n, d)| n.rate / d.rate)
        .collect();
    if ratios.is_empty() {
        return;
    }
    let (median, low, high) = median_and_spread(&mut ratios);
    println!(
        "{label}: median {median:.3} (spread {low:.3}..{high:.3}), goal >= {goal}: {}",
        if median >= goal { "met" } else { "missed" }
    );
}

/// Walks `pages` pages of the largest size in `request`'s order; the token of the page after
/// them (empty when the list ends first).
async fn walk_pages(
    channel: &Channel,
    request: &pb::ListMembershipsRequest,
    pages: usize,
    authorization: &Option<String>,
) -> Result<String, tonic::Status> {
    let mut request = pb::ListMembershipsRequest {
        page_size: 1000,
        page_token: String::new(),
        ..request.clone()
    };
    let mut client = MembershipServiceClient::new(channel.clone());
    let mut token = String::new();
    for _ in 0..pages {
        request.page_token = token.clone();
        let page = client
            .list_memberships(authed(request.clone(), authorization))
            .await?
            .into_inner();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(token)
}

async fn lists(
    server: &str,
    plan: ListsPlan,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let setup = connect(server).await?;
    let selected = |name: &str| plan.only.is_empty() || plan.only.iter().any(|o| name.contains(o));
    let listed = seat_usage(&setup, &plan.tenant, &authorization)
        .await?
        .used
        .max(0) as usize;
    let base = pb::ListMembershipsRequest {
        tenant_id: plan.tenant.clone(),
        page_size: plan.page_size,
        ..Default::default()
    };
    let mut cases = Vec::new();
    let orders = ["create_time", "email", "display_name"];
    let deep_pages = ((listed as f64 * plan.depth) / 1000.0).ceil().max(1.0) as usize;
    for order in orders {
        for order_by in [order.to_string(), format!("{order} desc")] {
            let first = pb::ListMembershipsRequest {
                order_by: order_by.clone(),
                ..base.clone()
            };
            let first_name = format!("first {order_by}");
            let deep_name = format!("deep {order_by}");
            if selected(&first_name) {
                cases.push(ListCase {
                    name: first_name,
                    request: first.clone(),
                });
            }
            if selected(&deep_name) {
                let started = std::time::Instant::now();
                let token = walk_pages(&setup, &first, deep_pages, &authorization).await?;
                println!(
                    "{deep_name}: walked {deep_pages} pages of 1000 in {:.1} s{}",
                    started.elapsed().as_secs_f64(),
                    if token.is_empty() {
                        " (the list ended first: measuring its first page)"
                    } else {
                        ""
                    }
                );
                cases.push(ListCase {
                    name: deep_name,
                    request: pb::ListMembershipsRequest {
                        page_token: token,
                        ..first
                    },
                });
            }
        }
    }
    let filters = [
        (
            "status=SUSPENDED",
            pb::ListMembershipsRequest {
                status: pb::MembershipStatus::Suspended as i32,
                ..base.clone()
            },
        ),
        (
            "type=CONTRACTOR",
            pb::ListMembershipsRequest {
                r#type: pb::MembershipType::Contractor as i32,
                ..base.clone()
            },
        ),
        (
            "role=member",
            pb::ListMembershipsRequest {
                role: "member".into(),
                ..base.clone()
            },
        ),
        (
            "role=admin",
            pb::ListMembershipsRequest {
                role: "admin".into(),
                ..base.clone()
            },
        ),
        (
            "source=SCIM",
            pb::ListMembershipsRequest {
                source: pb::MembershipSource::Scim as i32,
                ..base.clone()
            },
        ),
    ];
    for (name, request) in filters {
        if selected(name) {
            cases.push(ListCase {
                name: name.to_string(),
                request,
            });
        }
    }
    // A query matching one member: the local part of an email on the first page (every seeded
    // or API-made address is unique there).
    let first_page = MembershipServiceClient::new(setup.clone())
        .list_memberships(authed(base.clone(), &authorization))
        .await?
        .into_inner();
    let rare = first_page
        .memberships
        .last()
        .and_then(|m| m.email.split('@').next())
        .map(str::to_string);
    let queries = plan.queries.iter().map(|q| (q, format!("query={q}")));
    let rare = rare.iter().map(|q| (q, format!("query={q} (matches few)")));
    for (query, name) in queries.chain(rare) {
        if selected(&name) {
            cases.push(ListCase {
                name,
                request: pb::ListMembershipsRequest {
                    query: query.clone(),
                    ..base.clone()
                },
            });
        }
    }
    if selected("small first create_time") {
        let small = bench_tenant(&setup, uuid::Uuid::now_v7(), None, &authorization).await?;
        add_members(
            &setup,
            &small,
            plan.small_members.saturating_sub(1),
            &authorization,
        )
        .await?;
        cases.push(ListCase {
            name: "small first create_time".into(),
            request: pb::ListMembershipsRequest {
                tenant_id: small,
                ..base.clone()
            },
        });
    }

    println!(
        "tenant {} ({listed} seats used), {} in flight, {:?} per run, {} rounds, page size {}; \
         each case right after the empty RPC",
        plan.tenant, plan.concurrency, plan.duration, plan.repetitions, plan.page_size
    );
    let mut client = MembershipServiceClient::new(setup.clone());
    println!("case | members on its page | more pages");
    for case in &cases {
        let page = client
            .list_memberships(authed(case.request.clone(), &authorization))
            .await?
            .into_inner();
        println!(
            "{} | {} | {}",
            case.name,
            page.memberships.len(),
            if page.next_page_token.is_empty() {
                "no"
            } else {
                "yes"
            }
        );
    }
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let mut channels = Vec::new();
    for _ in 0..plan.concurrency.div_ceil(16).max(1) {
        channels.push(connect(server).await?);
    }
    let mut results: Vec<Vec<Measured>> = cases.iter().map(|_| Vec::new()).collect();
    println!(
        "round | {:<width$} | empty req/s p50 p99 ms | List req/s p50 p99 ms ratio",
        "case"
    );
    for round in 1..=plan.repetitions {
        for (case, runs) in cases.iter().zip(results.iter_mut()) {
            runs.push(
                measure_beside(
                    &channels,
                    plan.concurrency,
                    plan.duration,
                    empty_rpc,
                    list_call(case.request.clone(), authorization.clone()),
                    &format!("{round:>5} | {:<width$}", case.name),
                )
                .await?,
            );
        }
    }

    for (case, runs) in cases.iter().zip(&results) {
        print_case_summary(&case.name, runs, "empty RPC");
    }
    let runs_of = |name: &str| -> Option<&[Measured]> {
        cases
            .iter()
            .position(|c| c.name == name)
            .map(|i| results[i].as_slice())
    };
    for order in orders {
        for order_by in [order.to_string(), format!("{order} desc")] {
            if let (Some(deep), Some(first)) = (
                runs_of(&format!("deep {order_by}")),
                runs_of(&format!("first {order_by}")),
            ) {
                print_goal(&format!("deep / first page, {order_by}"), deep, first, 0.67);
            }
        }
    }
    if let Some(small) = runs_of("small first create_time") {
        for (case, runs) in cases.iter().zip(&results) {
            if case.name.starts_with("first ")
                || !(case.name.starts_with("deep ")
                    || case.name.starts_with("query=")
                    || case.name.starts_with("small "))
            {
                print_goal(
                    &format!("big / small first page, {}", case.name),
                    runs,
                    small,
                    0.5,
                );
            }
        }
    }
    if let Some(first) = runs_of("first create_time") {
        for (case, runs) in cases.iter().zip(&results) {
            if case.name.starts_with("query=") {
                print_goal(
                    &format!("text query / unfiltered first page, {}", case.name),
                    runs,
                    first,
                    0.2,
                );
            }
        }
    }
    Ok(())
}

struct WritesPlan {
    tenant: Option<String>,
    concurrency: usize,
    duration: Duration,
    repetitions: usize,
    tenants: usize,
    db_max_connections: u32,
}

/// The scratch table of the raw-insert ceiling.
const RAW_TABLE: &str = "bench_raw_inserts";

/// Seats of the tenants the write benchmark creates: a limit (so every write checks it) that
/// the benchmark never reaches.
const WRITES_SEAT_LIMIT: i32 = 10_000_000;

/// CreateMembership of a new user, round-robin over `tenants`.
fn create_call(
    tenants: Vec<String>,
    authorization: Option<String>,
) -> impl Fn(Channel) -> BoxedCall + Clone + Send + 'static {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    move |channel| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let user = uuid::Uuid::now_v7();
        let request = authed(
            pb::CreateMembershipRequest {
                tenant_id: tenants[i % tenants.len()].clone(),
                user_id: user.to_string(),
                email: format!("{}@bench.example", user.simple()),
                display_name: format!("Writer {}", user.simple()),
                source: pb::MembershipSource::Api as i32,
                role: "member".into(),
                ..Default::default()
            },
            &authorization,
        );
        Box::pin(async move {
            MembershipServiceClient::new(channel)
                .create_membership(request)
                .await
                .map(|_| ())
        })
    }
}

/// The write ceiling: one transaction inserting one row into the scratch table, as the service
/// writes on this backend (on SQLite, writers take turns in-process and BEGIN IMMEDIATE).
#[derive(Clone)]
struct RawInsert {
    store: membership_service::store::Store,
    gate: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl RawInsert {
    /// Creates the scratch table: `memberships`' columns and primary key, nothing else.
    async fn create(
        store: membership_service::store::Store,
    ) -> Result<RawInsert, Box<dyn std::error::Error>> {
        use membership_service::store::entities::memberships;
        use sea_orm::sea_query::{Alias, Table};
        use sea_orm::{ConnectionTrait, Schema};
        let db = store.connection();
        let backend = db.get_database_backend();
        db.execute(
            &Table::drop()
                .table(Alias::new(RAW_TABLE))
                .if_exists()
                .to_owned(),
        )
        .await?;
        let mut create = Schema::new(backend).create_table_from_entity(memberships::Entity);
        create.table(Alias::new(RAW_TABLE));
        db.execute(&create).await?;
        Ok(RawInsert {
            store,
            gate: Default::default(),
        })
    }

    async fn drop_table(&self) -> Result<(), sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        use sea_orm::sea_query::{Alias, Table};
        self.store
            .connection()
            .execute(&Table::drop().table(Alias::new(RAW_TABLE)).to_owned())
            .await
            .map(|_| ())
    }

    async fn insert_one(self) -> Result<(), tonic::Status> {
        use membership_service::store::entities::memberships;
        use sea_orm::sea_query::{Alias, Query};
        use sea_orm::{
            ActiveModelTrait, ConnectionTrait, DbBackend, Iterable, SqliteTransactionMode,
            TransactionOptions, TransactionTrait,
        };
        let failed = |e: sea_orm::DbErr| tonic::Status::internal(e.to_string());
        let now = now_micros();
        let user = uuid::Uuid::now_v7();
        let row: memberships::ActiveModel = memberships::Model {
            tenant_id: uuid::Uuid::nil(),
            user_id: user,
            email: format!("{}@bench.example", user.simple()),
            display_name: format!("Writer {}", user.simple()),
            search_name: format!("writer {}", user.simple()),
            status: "active".into(),
            member_type: "member".into(),
            source: "api".into(),
            external_id: None,
            invited_by: None,
            joined_at: Some(now),
            created_at: now,
            updated_at: now,
            version: 1,
        }
        .into();
        // Every column is set (the row came from a whole model), so columns and values pair up.
        let (columns, values): (Vec<_>, Vec<_>) = memberships::Column::iter()
            .filter_map(|column| Some((column, row.get(column).into_value()?)))
            .unzip();
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(RAW_TABLE))
            .columns(columns)
            .values_panic(values.into_iter().map(Into::into));
        let db = self.store.connection();
        let _turn;
        let txn = match db.get_database_backend() {
            DbBackend::Sqlite => {
                _turn = self.gate.lock().await;
                db.begin_with_options(TransactionOptions {
                    isolation_level: None,
                    access_mode: None,
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                })
                .await
                .map_err(failed)?
            }
            _ => db.begin().await.map_err(failed)?,
        };
        txn.execute(&insert).await.map_err(failed)?;
        txn.commit().await.map_err(failed)
    }
}

async fn writes(
    server: &str,
    database_url: &str,
    plan: WritesPlan,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let setup = connect(server).await?;
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let small = bench_tenant(
        &setup,
        uuid::Uuid::now_v7(),
        Some(WRITES_SEAT_LIMIT),
        &authorization,
    )
    .await?;
    cases.push(("small".into(), vec![small]));
    if let Some(big) = &plan.tenant {
        let usage = seat_usage(&setup, big, &authorization).await?;
        println!("big tenant {big}: seats {}", usage.display);
        if usage.limit.is_none() {
            println!("note: the big tenant has no seat limit, so its writes skip the seat check");
        }
        cases.push(("big".into(), vec![big.clone()]));
    }
    if plan.tenants > 1 {
        let mut spread = Vec::new();
        for _ in 0..plan.tenants {
            spread.push(
                bench_tenant(
                    &setup,
                    uuid::Uuid::now_v7(),
                    Some(WRITES_SEAT_LIMIT),
                    &authorization,
                )
                .await?,
            );
        }
        cases.push((format!("spread over {}", plan.tenants), spread));
    }
    let store =
        membership_service::store::Store::connect(database_url, plan.db_max_connections).await?;
    let raw = RawInsert::create(store).await?;
    let outcome = measure_writes(server, &plan, &cases, &raw, &authorization).await;
    raw.drop_table().await?;
    outcome
}

async fn measure_writes(
    server: &str,
    plan: &WritesPlan,
    cases: &[(String, Vec<String>)],
    raw: &RawInsert,
    authorization: &Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut channels = Vec::new();
    for _ in 0..plan.concurrency.div_ceil(16).max(1) {
        channels.push(connect(server).await?);
    }
    println!(
        "{} in flight, {:?} per run, {} rounds; each case right after the raw-insert ceiling \
         (BEGIN; INSERT one row; COMMIT into {RAW_TABLE})",
        plan.concurrency, plan.duration, plan.repetitions
    );
    let width = cases.iter().map(|c| c.0.len()).max().unwrap_or(4);
    println!(
        "round | {:<width$} | raw req/s p50 p99 ms | Create req/s p50 p99 ms ratio",
        "case"
    );
    let mut results: Vec<Vec<Measured>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 1..=plan.repetitions {
        for ((name, tenants), runs) in cases.iter().zip(results.iter_mut()) {
            let raw = raw.clone();
            runs.push(
                measure_beside(
                    &channels,
                    plan.concurrency,
                    plan.duration,
                    move |_channel| raw.clone().insert_one(),
                    create_call(tenants.clone(), authorization.clone()),
                    &format!("{round:>5} | {name:<width$}"),
                )
                .await?,
            );
        }
    }
    for ((name, _), runs) in cases.iter().zip(&results) {
        print_case_summary(&format!("CreateMembership, {name}"), runs, "raw insert");
    }
    if let (Some(small), Some(big)) = (results.first(), results.get(1))
        && plan.tenant.is_some()
    {
        print_goal("big / small tenant", big, small, 0.9);
    }
    Ok(())
}

struct WatchersPlan {
    pid: u32,
    watchers: usize,
    connections: usize,
    repetitions: usize,
    hold: Duration,
    settle: Duration,
    retry_backoff: Duration,
    give_up: Duration,
    unfiltered: bool,
}

/// A process's resident memory in KiB (VmRSS in /proc/PID/status).
fn resident_kib(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/PID/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS line")?
        .parse()?)
}

/// How one watcher's opening went.
struct Opened {
    /// Refusals (RESOURCE_EXHAUSTED) before it opened, each retried.
    refusals: u32,
    /// Refusals that carried a RetryInfo delay.
    with_delay: u32,
    /// When it opened, from the start of the burst; `None` if it never did.
    at: Option<Duration>,
    /// The status it failed with, if not a refusal.
    failure: Option<tonic::Status>,
}

/// One round: what the burst met and the server's memory with the streams open and after.
struct WatchersRound {
    refusals: u64,
    refused_watchers: usize,
    without_delay: u64,
    failed: usize,
    open_secs: f64,
    kib_per_watcher: f64,
    after_close_vs_idle: f64,
}

async fn watchers(
    server: &str,
    plan: WatchersPlan,
    authorization: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let idle = resident_kib(plan.pid)?;
    let setup = connect(server).await?;
    let owner = uuid::Uuid::now_v7();
    let tenant = TenantServiceClient::new(setup.clone())
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "watchers bench".into(),
                kind: pb::TenantKind::Enterprise as i32,
                role_preset: pb::RolePreset::Enterprise as i32,
                owner_user_id: owner.to_string(),
                owner_email: format!("{}@bench.example", owner.simple()),
                ..Default::default()
            },
            &authorization,
        ))
        .await?
        .into_inner();
    let request = pb::WatchMembershipEventsRequest {
        tenant_id: if plan.unfiltered {
            String::new()
        } else {
            tenant.tenant.map(|t| t.tenant_id).unwrap_or_default()
        },
        after_cursor: Some(tenant.cursor),
        ..Default::default()
    };
    drop(setup);
    println!(
        "watchers={} connections={} idle_rss={:.1}MiB",
        plan.watchers,
        plan.connections,
        idle as f64 / 1024.0
    );
    let mut rounds = Vec::new();
    for round in 1..=plan.repetitions {
        let before = resident_kib(plan.pid)?;
        let mut channels = Vec::new();
        for _ in 0..plan.connections.max(1) {
            channels.push(connect(server).await?);
        }
        let started = std::time::Instant::now();
        let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Opened>();
        let mut streams = tokio::task::JoinSet::new();
        for i in 0..plan.watchers {
            let mut client = MembershipServiceClient::new(channels[i % channels.len()].clone());
            let request = request.clone();
            let authorization = authorization.clone();
            let opened_tx = opened_tx.clone();
            let backoff = plan.retry_backoff;
            let give_up = plan.give_up;
            let mut jitter = SplitMix64(i as u64);
            streams.spawn(async move {
                let mut opened = Opened {
                    refusals: 0,
                    with_delay: 0,
                    at: None,
                    failure: None,
                };
                let mut stream = loop {
                    match client
                        .watch_membership_events(authed(request.clone(), &authorization))
                        .await
                    {
                        Ok(response) => {
                            opened.at = Some(started.elapsed());
                            break Some(response.into_inner());
                        }
                        Err(status)
                            if status.code() == tonic::Code::ResourceExhausted
                                && started.elapsed() < give_up =>
                        {
                            use tonic_types::StatusExt;
                            opened.refusals += 1;
                            let delay = match status
                                .get_details_retry_info()
                                .and_then(|info| info.retry_delay)
                            {
                                Some(delay) => {
                                    opened.with_delay += 1;
                                    delay
                                }
                                None => backoff.mul_f64(0.5 + jitter.below(1000) as f64 / 1000.0),
                            };
                            tokio::time::sleep(delay).await;
                        }
                        Err(status) => {
                            opened.failure = Some(status);
                            break None;
                        }
                    }
                };
                let _ = opened_tx.send(opened);
                drop(opened_tx);
                // Read whatever comes (progress messages) until the round closes the stream.
                if let Some(stream) = stream.as_mut() {
                    while let Ok(Some(_)) = stream.message().await {}
                }
            });
        }
        drop(opened_tx);
        let mut outcomes = Vec::with_capacity(plan.watchers);
        while let Some(outcome) = opened_rx.recv().await {
            outcomes.push(outcome);
        }
        let open_secs = outcomes
            .iter()
            .filter_map(|o| o.at)
            .max()
            .unwrap_or_default()
            .as_secs_f64();
        let failures: Vec<&tonic::Status> =
            outcomes.iter().filter_map(|o| o.failure.as_ref()).collect();
        let not_open = outcomes.iter().filter(|o| o.at.is_none()).count();
        tokio::time::sleep(plan.hold).await;
        let open = resident_kib(plan.pid)?;
        streams.abort_all();
        while streams.join_next().await.is_some() {}
        drop(channels);
        tokio::time::sleep(plan.settle).await;
        let after = resident_kib(plan.pid)?;
        let measured = WatchersRound {
            refusals: outcomes.iter().map(|o| u64::from(o.refusals)).sum(),
            refused_watchers: outcomes.iter().filter(|o| o.refusals > 0).count(),
            without_delay: outcomes
                .iter()
                .map(|o| u64::from(o.refusals - o.with_delay))
                .sum(),
            failed: not_open,
            open_secs,
            kib_per_watcher: open.saturating_sub(before) as f64 / plan.watchers.max(1) as f64,
            after_close_vs_idle: after as f64 / idle as f64,
        };
        println!(
            "round {round}: opened {}/{} in {:.2}s; refusals {} ({} watchers, {} without a retry \
             delay); rss before {:.1}MiB, open {:.1}MiB ({:.2} KiB/watcher), after close \
             {:.1}MiB ({:.2}x idle){}",
            plan.watchers - not_open,
            plan.watchers,
            measured.open_secs,
            measured.refusals,
            measured.refused_watchers,
            measured.without_delay,
            before as f64 / 1024.0,
            open as f64 / 1024.0,
            measured.kib_per_watcher,
            after as f64 / 1024.0,
            measured.after_close_vs_idle,
            match failures.first() {
                Some(status) => format!(
                    "; {} failed, first: {:?} {}",
                    failures.len(),
                    status.code(),
                    status.message()
                ),
                None => String::new(),
            }
        );
        rounds.push(measured);
    }
    let summary = |name: &str, unit: &str, values: Vec<f64>| {
        let mut values = values;
        let (median, low, high) = median_and_spread(&mut values);
        println!("{name}: median {median:.2}{unit} (spread {low:.2}..{high:.2})");
    };
    summary(
        "refusals",
        "",
        rounds.iter().map(|r| r.refusals as f64).collect(),
    );
    summary(
        "all open after",
        "s",
        rounds.iter().map(|r| r.open_secs).collect(),
    );
    summary(
        "server memory per watcher",
        " KiB",
        rounds.iter().map(|r| r.kib_per_watcher).collect(),
    );
    summary(
        "rss after close / idle",
        "x",
        rounds.iter().map(|r| r.after_close_vs_idle).collect(),
    );
    if rounds.iter().any(|r| r.failed > 0) {
        return Err("some watchers never opened".into());
    }
    Ok(())
}
