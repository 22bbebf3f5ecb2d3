//! Wiring: the gRPC services, health and reflection on one server. `serve` is what `main` runs
//! and what the tests run, on a listener bound beforehand (port 0 in tests).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::Authenticator;
use crate::dns::{DnsOptions, TxtLookup};
use crate::edge::Edge;
use crate::edge::authenticate::Authenticate;
use crate::edge::limits::{LimitOptions, Limits, WatchTurns};
use crate::edge::telemetry::{self, Telemetry};
use crate::events::{EventFeed, FeedOptions};
use crate::grpc::groups::GroupApi;
use crate::grpc::invitations::InvitationApi;
use crate::grpc::memberships::MembershipApi;
use crate::grpc::pb::FILE_DESCRIPTOR_SET;
use crate::grpc::pb::group_service_server::GroupServiceServer;
use crate::grpc::pb::invitation_service_server::InvitationServiceServer;
use crate::grpc::pb::membership_service_server::MembershipServiceServer;
use crate::grpc::pb::role_service_server::RoleServiceServer;
use crate::grpc::pb::tenant_service_server::TenantServiceServer;
use crate::grpc::roles::RoleApi;
use crate::grpc::tenants::TenantApi;
use crate::mail::{MailOptions, Mailer};
use crate::service::Services;
use crate::service::authz::AuthzCache;
use crate::service::page_token::PageTokens;
use crate::store::Store;

/// The name a generated server is served under (`membership.v1.TenantService`), which is
/// also the name health reports it by.
fn service_name<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// How long a health probe waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ServeOptions {
    /// How often the database is probed for health.
    pub health_interval: Duration,
    pub feed: FeedOptions,
    pub mail: MailOptions,
    pub dns: DnsOptions,
    /// After shutdown begins, how long calls in flight may take before the server stops anyway.
    pub drain_timeout: Duration,
    pub limits: LimitOptions,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// Member rows kept in memory for GetMembership and for ListMemberships pages (0: none).
    pub read_cache_members: usize,
    /// How callers prove who they are.
    pub authenticator: Arc<Authenticator>,
    /// Serve TLS (and require client certificates, if it has a client CA) instead of plaintext.
    pub tls: Option<ServerTlsConfig>,
    /// Where Prometheus metrics are served (`GET /metrics`), if anywhere.
    pub metrics_listener: Option<TcpListener>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(5),
            feed: FeedOptions::default(),
            mail: MailOptions::default(),
            dns: DnsOptions::default(),
            drain_timeout: Duration::from_secs(10),
            limits: LimitOptions::default(),
            max_message_bytes: 4 * 1024 * 1024,
            max_streams_per_connection: 256,
            read_cache_members: 100_000,
            authenticator: Arc::new(Authenticator::None),
            tls: None,
            metrics_listener: None,
        }
    }
}

/// Serves every service on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mailer = Mailer::new(options.mail)?;
    let dns = TxtLookup::new(&options.dns)?;
    let feed = EventFeed::start(store.clone(), options.feed)
        .await
        .map_err(|e| format!("starting the event feed: {e}"))?;
    let authz = AuthzCache::start(store.clone(), feed.clone(), options.read_cache_members)
        .await
        .map_err(|e| format!("starting the permission cache: {e}"))?;
    let page_tokens = PageTokens::load(&store)
        .await
        .map_err(|e| format!("loading the page token secret: {e}"))?;
    let services = Services::new(store.clone(), feed.clone(), mailer, dns, authz, page_tokens);
    // Metrics stay up while calls drain, and stop with the server.
    let metrics_stop = CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    if let Some(listener) = options.metrics_listener {
        telemetry::recorder();
        tracing::info!(endpoint = %listener.local_addr()?, "serving metrics at /metrics");
        tokio::spawn(telemetry::serve_metrics(
            listener,
            store.clone(),
            metrics_stop,
        ));
    }
    // Each API service behind the authentication interceptor; health and reflection are not,
    // so they need no credentials.
    let max_message = options.max_message_bytes;
    let authenticate = Authenticate::new(options.authenticator.clone());
    let tenant_api = InterceptedService::new(
        TenantServiceServer::new(TenantApi {
            services: services.clone(),
        })
        .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    let role_api = InterceptedService::new(
        RoleServiceServer::new(RoleApi {
            services: services.clone(),
        })
        .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    let invitation_api = InterceptedService::new(
        InvitationServiceServer::new(InvitationApi {
            services: services.clone(),
        })
        .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    let group_api = InterceptedService::new(
        GroupServiceServer::new(GroupApi {
            services: services.clone(),
        })
        .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    let membership_api = InterceptedService::new(
        MembershipServiceServer::new(MembershipApi { services })
            .max_decoding_message_size(max_message),
        authenticate,
    );
    // Health reports every API service by name (besides the server as a whole), taken from the
    // servers added below, so a service cannot be served without its health or the reverse.
    let api_names: Arc<[&'static str]> = Arc::new([
        service_name(&tenant_api),
        service_name(&role_api),
        service_name(&invitation_api),
        service_name(&membership_api),
        service_name(&group_api),
    ]);

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let database_up = store.ping().await;
    set_health(&reporter, &api_names, database_up).await;
    let stopping = CancellationToken::new();
    // Health has two writers, the prober and shutdown; whoever writes holds this, so the
    // prober can never turn a stopping server back to SERVING.
    let health_writer = Arc::new(tokio::sync::Mutex::new(()));
    tokio::spawn(store.clone().keep_statistics(stopping.clone()));
    // Numbering outlives `stopping`: calls still draining wait for their events' positions.
    let numbering = CancellationToken::new();
    tokio::spawn(store.clone().keep_numbering(numbering.clone()));
    let prober = tokio::spawn(probe_database(
        store,
        database_up,
        reporter.clone(),
        api_names.clone(),
        options.health_interval,
        stopping.clone(),
        health_writer.clone(),
    ));
    // When shutdown begins: health turns NOT_SERVING (load balancers stop sending), open watch
    // streams end with UNAVAILABLE (they would otherwise keep the server from finishing), and
    // tonic stops accepting while calls in flight finish.
    let begin_shutdown = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            {
                let _writing = health_writer.lock().await;
                stopping.cancel();
                set_serving(&reporter, &api_names, ServingStatus::NotServing).await;
            }
            feed.shutdown();
        }
    };

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let served = crate::grpc::served_methods(&[
        FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])?;
    let mut builder = Server::builder();
    let tls = options.tls.is_some();
    if let Some(tls) = options.tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| format!("TLS settings: {e}"))?;
    }
    if matches!(*options.authenticator, Authenticator::None) {
        tracing::warn!(
            "authentication is off (--auth none): every caller is trusted as a system caller"
        );
    }
    // Logged once everything is set up: a bad setting fails before anything claims to serve.
    tracing::info!(address = %listener.local_addr()?, tls, "serving gRPC");
    let server = builder
        .max_concurrent_streams(options.max_streams_per_connection)
        // Outermost: a watch waiting for its turn to open has no span or call state yet.
        .layer(Edge(WatchTurns::new(&options.limits)))
        .layer(Edge(Telemetry::new(&served)))
        .layer(Edge(Limits::new(&options.limits, stopping.clone())))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(tenant_api)
        .add_service(role_api)
        .add_service(invitation_api)
        .add_service(membership_api)
        .add_service(group_api)
        // Without TCP_NODELAY small responses can wait ~40 ms for Nagle's algorithm.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            begin_shutdown,
        );
    let drain_timeout = options.drain_timeout;
    let result = tokio::select! {
        result = server => result.map_err(Into::into),
        _ = async {
            stopping.cancelled().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(?drain_timeout, "calls still in flight after the drain timeout; stopping");
            Ok(())
        }
    };
    prober.abort();
    numbering.cancel();
    result
}

async fn set_health(reporter: &HealthReporter, api_names: &[&'static str], database_up: bool) {
    let status = if database_up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    set_serving(reporter, api_names, status).await;
}

/// The server as a whole and every API service turn together: they share one database.
async fn set_serving(reporter: &HealthReporter, api_names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in api_names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Health follows the database: NOT_SERVING while it does not answer. Statuses are set when
/// they change only: a Health/Watch stream hears of each change once, as the health protocol
/// says, not of every probe.
async fn probe_database(
    store: Store,
    mut was_up: bool,
    reporter: HealthReporter,
    api_names: Arc<[&'static str]>,
    interval: Duration,
    stopping: CancellationToken,
    health_writer: Arc<tokio::sync::Mutex<()>>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stopping.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // A database that does not answer in time counts as down, however long the pool
        // would wait for a connection.
        let up = tokio::time::timeout(PING_TIMEOUT, store.ping())
            .await
            .unwrap_or(false);
        if up == was_up {
            continue;
        }
        if up {
            tracing::info!("database reachable again; health SERVING");
        } else {
            tracing::warn!("database unreachable; health NOT_SERVING");
        }
        let _writing = health_writer.lock().await;
        if stopping.is_cancelled() {
            return;
        }
        set_health(&reporter, &api_names, up).await;
        was_up = up;
    }
}
