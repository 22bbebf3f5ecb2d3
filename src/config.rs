//! Typed configuration from command-line flags and environment variables, validated at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "membership-service",
    version,
    about = "Who belongs to which tenant, with which roles, as a gRPC service with an ordered event feed"
)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long = "listen",
        env = "MEMBERSHIP_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://FILE` (created and migrated if missing) or `postgres://…`.
    #[arg(
        long = "database-url",
        env = "MEMBERSHIP_DATABASE_URL",
        default_value = "sqlite://membership.db"
    )]
    pub database_url: String,

    /// Maximum connections in the database pool.
    #[arg(long = "db-max-connections", env = "MEMBERSHIP_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Seconds between database health probes (health turns NOT_SERVING while it is unreachable).
    #[arg(long = "health-interval-secs", env = "MEMBERSHIP_HEALTH_INTERVAL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub health_interval_secs: u64,

    /// How long events are kept for watching and the audit log (e.g. `30d`, `12h`).
    #[arg(long = "event-retention", env = "MEMBERSHIP_EVENT_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub event_retention: Duration,

    /// How often events past retention are deleted.
    #[arg(long = "event-prune-interval", env = "MEMBERSHIP_EVENT_PRUNE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub event_prune_interval: Duration,

    /// Recent events kept in memory for subscribers near the head (others read the database).
    #[arg(long = "event-buffer", env = "MEMBERSHIP_EVENT_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub event_buffer: u32,

    /// How often the feed checks the database for events when no notification arrived.
    #[arg(long = "event-poll-interval", env = "MEMBERSHIP_EVENT_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub event_poll_interval: Duration,

    /// How long a watch stream may stay silent before it gets a progress message.
    #[arg(long = "watch-progress-interval", env = "MEMBERSHIP_WATCH_PROGRESS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub watch_progress_interval: Duration,

    /// SMTP server for invitation emails: `smtp://host:port` (plain; add `?tls=required` or
    /// `?tls=opportunistic` for STARTTLS) or `smtps://host:port` (TLS), with optional
    /// `user:password@`. Unset: no email is sent and callers deliver the token themselves.
    #[arg(long = "smtp-url", env = "MEMBERSHIP_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender of invitation emails.
    #[arg(
        long = "smtp-from",
        env = "MEMBERSHIP_SMTP_FROM",
        default_value = "no-reply@localhost"
    )]
    pub smtp_from: String,

    /// Base URL of the accept page; the token is appended as `token=…`.
    #[arg(
        long = "invitation-accept-url",
        env = "MEMBERSHIP_INVITATION_ACCEPT_URL"
    )]
    pub invitation_accept_url: Option<String>,

    /// Nameserver (`ip:port`) for domain verification lookups. Unset: the system's resolvers.
    #[arg(long = "dns-nameserver", env = "MEMBERSHIP_DNS_NAMESERVER")]
    pub dns_nameserver: Option<SocketAddr>,

    /// On SIGTERM/SIGINT, how long calls in flight may take before the server stops anyway.
    #[arg(long = "shutdown-timeout", env = "MEMBERSHIP_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest a call may run; a caller's shorter `grpc-timeout` wins. Exceeded: DEADLINE_EXCEEDED.
    #[arg(long = "request-timeout", env = "MEMBERSHIP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Calls executing at once across all connections; more are refused with RESOURCE_EXHAUSTED
    /// (health checks are exempt).
    #[arg(long = "max-concurrent-calls", env = "MEMBERSHIP_MAX_CONCURRENT_CALLS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_calls: u32,

    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long = "max-message-bytes", env = "MEMBERSHIP_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=268_435_456))]
    pub max_message_bytes: u32,

    /// Concurrent HTTP/2 streams (calls and watches) per client connection.
    #[arg(long = "max-streams-per-connection", env = "MEMBERSHIP_MAX_STREAMS_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_connection: u32,

    /// Log output format. The level comes from RUST_LOG (default `info`).
    #[arg(long = "log-format", env = "MEMBERSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ask the server at --listen whether it is SERVING (grpc.health.v1); exit 0 if so, 1 if
    /// not. For container health checks.
    Healthcheck,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Checks what clap cannot: the database URL's scheme.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "--database-url must start with sqlite:, postgres:// or postgresql://, got {url:?}"
            ));
        }
        for (name, value) in [
            ("--event-retention", self.event_retention),
            ("--event-prune-interval", self.event_prune_interval),
            ("--event-poll-interval", self.event_poll_interval),
            ("--watch-progress-interval", self.watch_progress_interval),
            ("--request-timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }
}
