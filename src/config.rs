//! Typed configuration from command-line flags and environment variables, validated at start-up.

use std::net::SocketAddr;

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
        Ok(())
    }
}
