use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use membership_service::app::{self, ServeOptions};
use membership_service::auth::Authenticator;
use membership_service::config::{Command, Config, HealthcheckArgs, LogFormat};
use membership_service::dns::DnsOptions;
use membership_service::edge::limits::LimitOptions;
use membership_service::events::FeedOptions;
use membership_service::mail::MailOptions;
use membership_service::store::{Store, StoreOptions};
use tonic::transport::ServerTlsConfig;
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's malloc: after 10,000 watch streams closed, glibc kept their
/// memory in its per-thread arenas (RSS stayed at 8x idle); mimalloc, tried too, stayed at 4x.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts. A background thread returns pages unused for about
/// a second to the system (`dirty_decay_ms`; by default 10 s, and only when some thread
/// allocates), at once and for good (`muzzy_decay_ms:0`: no lazily freed pages that still count
/// as resident), so memory comes back even when the server goes idle after the streams close.
/// Thread caches stay small (objects up to 1 KiB, 8 to 20 of each size; larger ones 2): freed
/// objects cached by threads that then went idle were most of what stayed resident (after
/// close: 1.51x idle with jemalloc's default caches, 1.32x with these), at no throughput cost
/// we could measure on CheckPermission.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: Option<&'static std::ffi::c_char> = Some(unsafe {
    &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:1024,\
        tcache_nslots_small_min:8,tcache_nslots_small_max:20,tcache_nslots_large:2"
        .as_ptr()
});

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::load();
    if let Err(message) = config.validate() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    // Commands that do not serve need none of the server's keys or certificates.
    match &config.command {
        Some(Command::Healthcheck(args)) => return healthcheck(config.listen, args).await,
        Some(Command::NewApiKey { name, grant }) => return new_api_key(name, grant),
        _ => {}
    }
    // Every file a setting names is read before anything starts.
    let checked = config
        .authenticator()
        .and_then(|authenticator| Ok((authenticator, config.tls()?)));
    let (authenticator, tls) = match checked {
        Ok(checked) => checked,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm_migration=warn"));
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    match run(config, authenticator, tls).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Config,
    authenticator: Arc<Authenticator>,
    tls: Option<ServerTlsConfig>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = Store::connect_with(
        &config.database_url,
        StoreOptions {
            max_connections: config.db_max_connections,
            timeout: config.database_timeout,
        },
    )
    .await?;
    store.migrate().await?;
    if config.command == Some(Command::Migrate) {
        tracing::info!("migrations applied");
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let metrics_listener = match config.metrics_listen.0 {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let options = ServeOptions {
        health_interval: config.health_interval,
        feed: FeedOptions {
            buffer: config.event_buffer as usize,
            poll_interval: config.event_poll_interval,
            progress_interval: config.watch_progress_interval,
            retention: config.event_retention,
            prune_interval: config.event_prune_interval,
        },
        mail: MailOptions {
            accept_url: config.invitation_accept_url.clone(),
            smtp_url: config.smtp_url.clone(),
            from: config.smtp_from.clone(),
        },
        dns: DnsOptions {
            nameserver: config.dns_nameserver,
            timeout: config.dns_timeout,
        },
        drain_timeout: config.shutdown_timeout,
        limits: LimitOptions {
            request_timeout: config.request_timeout,
            max_concurrent_calls: config.max_concurrent_calls as usize,
            max_watchers: config.max_watchers as usize,
        },
        max_message_bytes: config.max_message_bytes as usize,
        max_streams_per_connection: config.max_streams_per_connection,
        read_cache_members: config.read_cache_members as usize,
        authenticator,
        tls,
        metrics_listener,
    };
    let shutdown = shutdown_signal();
    app::serve(listener, store, options, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Listens for SIGINT and SIGTERM from now on, and returns a future that completes on either.
/// Listening starts before the server announces itself, so a signal sent as soon as it is up
/// stops it gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                None
            }
        }
    };
    async move {
        #[cfg(unix)]
        match signals {
            Some((mut interrupt, mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// Prints a new API key and the `--api-key` entry that accepts it.
fn new_api_key(name: &str, grant: &str) -> ExitCode {
    let key = membership_service::auth::new_key();
    let entry = format!(
        "{name}:{grant}:{}",
        membership_service::auth::hash_key(&key)
    );
    if let Err(error) = entry.parse::<membership_service::auth::ApiKey>() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    println!("key (give it to the caller; it is not stored): {key}");
    println!("entry (for --api-key / MEMBERSHIP_API_KEYS): {entry}");
    ExitCode::SUCCESS
}

/// Exit 0 when the server at `listen` reports SERVING, 1 otherwise (or unreachable).
async fn healthcheck(listen: std::net::SocketAddr, args: &HealthcheckArgs) -> ExitCode {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    // A server listening on every interface answers on loopback.
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let check = async {
        let channel = match &args.ca {
            None => {
                tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
                    .connect()
                    .await?
            }
            Some(ca) => {
                use tonic::transport::{Certificate, ClientTlsConfig, Identity};
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
                    .domain_name(&args.server_name);
                if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
                    tls = tls.identity(Identity::from_pem(
                        std::fs::read(cert)?,
                        std::fs::read(key)?,
                    ));
                }
                tonic::transport::Endpoint::from_shared(format!("https://{address}"))?
                    .tls_config(tls)?
                    .connect()
                    .await?
            }
        };
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(response.into_inner().status)
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(status)) if status == ServingStatus::Serving as i32 => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("not serving (status {status})");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("health check failed: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("health check timed out");
            ExitCode::FAILURE
        }
    }
}
