//! Typed configuration from command-line flags and environment variables, validated at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::{ApiKey, Authenticator, JwtOptions, JwtVerifier};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "membership-service",
    version,
    // A later flag wins, so wrappers and tests can append settings to a fixed command line.
    args_override_self = true,
    // Every setting is `global`: it may come before or after the subcommand that uses it
    // (`membership-service migrate --database-url …`).
    about = "Who belongs to which tenant, with which roles, as a gRPC service with an ordered event feed"
)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        help_heading = "Server",
        global = true,
        long = "listen",
        env = "MEMBERSHIP_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://FILE` (created and migrated if missing) or `postgres://…`.
    #[arg(
        help_heading = "Database",
        global = true,
        long = "database-url",
        env = "MEMBERSHIP_DATABASE_URL",
        default_value = "sqlite://membership.db"
    )]
    pub database_url: String,

    /// Maximum connections in the database pool.
    #[arg(help_heading = "Database", global = true, long = "db-max-connections", env = "MEMBERSHIP_DB_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Longest a call waits on the database (for a pooled connection, a new connection, or any
    /// one statement) before it fails with UNAVAILABLE DATABASE_UNAVAILABLE.
    #[arg(help_heading = "Database", global = true, long = "database-timeout", env = "MEMBERSHIP_DATABASE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_timeout: Duration,

    /// Time between database health probes, 1s to 1h (health turns NOT_SERVING while the
    /// database is unreachable).
    #[arg(
        help_heading = "Database",
        global = true,
        long = "health-interval",
        alias = "health-interval-secs",
        env = "MEMBERSHIP_HEALTH_INTERVAL",
        default_value = "5s",
        value_parser = parse_health_interval
    )]
    pub health_interval: Duration,

    /// How long events are kept for watching and the audit log (e.g. `30d`, `12h`).
    #[arg(help_heading = "Event feed", global = true, long = "event-retention", env = "MEMBERSHIP_EVENT_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub event_retention: Duration,

    /// How often events past retention are deleted.
    #[arg(help_heading = "Event feed", global = true, long = "event-prune-interval", env = "MEMBERSHIP_EVENT_PRUNE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub event_prune_interval: Duration,

    /// Recent events kept in memory for subscribers near the head (others read the database).
    #[arg(help_heading = "Event feed", global = true, long = "event-buffer", env = "MEMBERSHIP_EVENT_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub event_buffer: u32,

    /// How often the feed checks the database for events when no notification arrived.
    #[arg(help_heading = "Event feed", global = true, long = "event-poll-interval", env = "MEMBERSHIP_EVENT_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub event_poll_interval: Duration,

    /// How long a watch stream may stay silent before it gets a progress message.
    #[arg(help_heading = "Event feed", global = true, long = "watch-progress-interval", env = "MEMBERSHIP_WATCH_PROGRESS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub watch_progress_interval: Duration,

    /// Member rows kept in memory for GetMembership and, apart, for ListMemberships pages,
    /// invalidated by the event feed (0: read the database for every call).
    #[arg(help_heading = "Event feed", global = true, long = "read-cache-members", env = "MEMBERSHIP_READ_CACHE_MEMBERS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub read_cache_members: u32,

    /// SMTP server for invitation emails: `smtp://host:port` (plain; add `?tls=required` or
    /// `?tls=opportunistic` for STARTTLS) or `smtps://host:port` (TLS), with optional
    /// `user:password@`. Unset: no email is sent and callers deliver the token themselves.
    #[arg(
        help_heading = "Invitations and email",
        global = true,
        long = "smtp-url",
        env = "MEMBERSHIP_SMTP_URL"
    )]
    pub smtp_url: Option<String>,

    /// Sender of invitation emails.
    #[arg(
        help_heading = "Invitations and email",
        global = true,
        long = "smtp-from",
        env = "MEMBERSHIP_SMTP_FROM",
        default_value = "no-reply@localhost"
    )]
    pub smtp_from: String,

    /// Base URL of the accept page; the token is appended as `token=…`.
    #[arg(
        help_heading = "Invitations and email",
        global = true,
        long = "invitation-accept-url",
        env = "MEMBERSHIP_INVITATION_ACCEPT_URL"
    )]
    pub invitation_accept_url: Option<String>,

    /// Nameserver (`ip:port`) for domain verification lookups. Unset: the system's resolvers.
    #[arg(
        help_heading = "Invitations and email",
        global = true,
        long = "dns-nameserver",
        env = "MEMBERSHIP_DNS_NAMESERVER"
    )]
    pub dns_nameserver: Option<SocketAddr>,

    /// Longest a domain verification lookup may take, its 2 attempts included; then
    /// UNAVAILABLE DNS_UNAVAILABLE.
    #[arg(help_heading = "Invitations and email", global = true, long = "dns-timeout", env = "MEMBERSHIP_DNS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub dns_timeout: Duration,

    /// On SIGTERM/SIGINT, how long calls in flight may take before the server stops anyway.
    #[arg(help_heading = "Server", global = true, long = "shutdown-timeout", env = "MEMBERSHIP_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest a call may run; a caller's shorter `grpc-timeout` wins. Exceeded: DEADLINE_EXCEEDED.
    #[arg(help_heading = "Limits", global = true, long = "request-timeout", env = "MEMBERSHIP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Calls executing at once across all connections; more are refused with RESOURCE_EXHAUSTED
    /// (health checks are exempt; watch streams count against --max-watchers instead).
    #[arg(help_heading = "Limits", global = true, long = "max-concurrent-calls", env = "MEMBERSHIP_MAX_CONCURRENT_CALLS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_calls: u32,

    /// Watch streams open at once across all connections, those being opened included; more are
    /// refused with RESOURCE_EXHAUSTED TOO_MANY_WATCHERS and a retry delay.
    #[arg(help_heading = "Limits", global = true, long = "max-watchers", env = "MEMBERSHIP_MAX_WATCHERS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_watchers: u32,

    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(help_heading = "Limits", global = true, long = "max-message-bytes", env = "MEMBERSHIP_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=268_435_456))]
    pub max_message_bytes: u32,

    /// Concurrent HTTP/2 streams (calls and watches) per client connection.
    #[arg(help_heading = "Limits", global = true, long = "max-streams-per-connection", env = "MEMBERSHIP_MAX_STREAMS_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_connection: u32,

    /// How callers authenticate: `none` (development: loopback only, every caller trusted),
    /// `api-key` (static keys, see --api-key) or `jwt` (bearer tokens, see --jwt-*).
    #[arg(help_heading = "Authentication", global = true, long = "auth", env = "MEMBERSHIP_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,

    /// With --auth none, serve on an address other than loopback anyway.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "allow-unauthenticated-remote",
        env = "MEMBERSHIP_ALLOW_UNAUTHENTICATED_REMOTE"
    )]
    pub allow_unauthenticated_remote: bool,

    /// An API key, as `NAME:GRANT:SHA256-HEX`: GRANT `system` (a trusted system caller, which
    /// may also act for a user with x-actor-id) or `delegate` (acts only for the user in
    /// x-actor-id). Repeat the flag, or separate keys with commas in the variable.
    /// `membership-service new-api-key` makes one.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "api-key",
        env = "MEMBERSHIP_API_KEYS",
        value_delimiter = ','
    )]
    pub api_keys: Vec<ApiKey>,

    /// The `iss` every JWT must carry.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "jwt-issuer",
        env = "MEMBERSHIP_JWT_ISSUER"
    )]
    pub jwt_issuer: Option<String>,

    /// The `aud` every JWT must carry.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "jwt-audience",
        env = "MEMBERSHIP_JWT_AUDIENCE"
    )]
    pub jwt_audience: Option<String>,

    /// Shared secret for HS256 tokens (at least 32 bytes). Prefer the variable to the flag.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "jwt-hs256-secret",
        env = "MEMBERSHIP_JWT_HS256_SECRET",
        hide_env_values = true
    )]
    pub jwt_hs256_secret: Option<String>,

    /// PEM file with the RSA public key for RS256 tokens.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "jwt-rs256-public-key",
        env = "MEMBERSHIP_JWT_RS256_PUBLIC_KEY"
    )]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// A token listing this in `scope` or `scp` is a trusted system caller (its `sub` names the
    /// service); other tokens' `sub` is the acting user's UUID.
    #[arg(
        help_heading = "Authentication",
        global = true,
        long = "jwt-system-scope",
        env = "MEMBERSHIP_JWT_SYSTEM_SCOPE",
        default_value = "membership.system"
    )]
    pub jwt_system_scope: String,

    /// Clock skew tolerated on a token's `exp` and `nbf`.
    #[arg(help_heading = "Authentication", global = true, long = "jwt-leeway", env = "MEMBERSHIP_JWT_LEEWAY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// PEM certificate chain: serve gRPC over TLS. Needs --tls-key.
    #[arg(
        help_heading = "TLS",
        global = true,
        long = "tls-cert",
        env = "MEMBERSHIP_TLS_CERT"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(
        help_heading = "TLS",
        global = true,
        long = "tls-key",
        env = "MEMBERSHIP_TLS_KEY"
    )]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): require every client to present a certificate they signed
    /// (mutual TLS). Needs --tls-cert.
    #[arg(
        help_heading = "TLS",
        global = true,
        long = "tls-client-ca",
        env = "MEMBERSHIP_TLS_CLIENT_CA"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Address of the Prometheus metrics endpoint (`GET /metrics`, plain HTTP), or `off`.
    #[arg(help_heading = "Observability", global = true, long = "metrics-listen", env = "MEMBERSHIP_METRICS_LISTEN", default_value = "127.0.0.1:9464", value_parser = parse_optional_addr)]
    pub metrics_listen: OptionalAddr,

    /// Log output format. The level comes from RUST_LOG (default `info`).
    #[arg(help_heading = "Observability", global = true, long = "log-format", env = "MEMBERSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
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
    Healthcheck(HealthcheckArgs),
    /// Print a new random API key and the --api-key entry that accepts it.
    NewApiKey {
        /// The key's name, as logs show the principal.
        #[arg(long)]
        name: String,
        /// `system` or `delegate` (see --api-key).
        #[arg(long, default_value = "delegate")]
        grant: String,
    },
}

/// How `healthcheck` reaches a server that serves TLS.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthcheckArgs {
    /// CA certificate (PEM) to trust for the server's certificate; set it when the server
    /// serves TLS.
    #[arg(long = "ca", env = "MEMBERSHIP_HEALTHCHECK_CA")]
    pub ca: Option<PathBuf>,
    /// Name the server's certificate is checked against.
    #[arg(
        long = "server-name",
        env = "MEMBERSHIP_HEALTHCHECK_SERVER_NAME",
        default_value = "localhost"
    )]
    pub server_name: String,
    /// Client certificate (PEM) for a server that requires mutual TLS.
    #[arg(long = "cert", env = "MEMBERSHIP_HEALTHCHECK_CERT")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert.
    #[arg(long = "key", env = "MEMBERSHIP_HEALTHCHECK_KEY")]
    pub key: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    ApiKey,
    Jwt,
}

/// Environment names of earlier releases, each still read when the name that replaced it is
/// unset: (earlier name, its replacement, the flag).
const EARLIER_ENV_NAMES: [(&str, &str, &str); 3] = [
    ("MEMBERSHIP_LISTEN_ADDR", "MEMBERSHIP_LISTEN", "--listen"),
    (
        "MEMBERSHIP_METRICS_ADDR",
        "MEMBERSHIP_METRICS_LISTEN",
        "--metrics-listen",
    ),
    (
        "MEMBERSHIP_HEALTH_INTERVAL_SECS",
        "MEMBERSHIP_HEALTH_INTERVAL",
        "--health-interval",
    ),
];

impl Config {
    /// The configuration of this process: its command line, then its environment (earlier
    /// environment names included), then the defaults.
    pub fn load() -> Config {
        Config::parse_from(with_earlier_env_names(std::env::args_os(), |name| {
            std::env::var_os(name)
        }))
    }
}

/// `args` with a flag for each earlier environment name set (and its replacement not), put
/// first: a flag given on the command line comes later and wins (`args_override_self`), as it
/// would over the environment.
fn with_earlier_env_names(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.into_iter().collect();
    let earlier = EARLIER_ENV_NAMES
        .iter()
        .filter(|(_, replacement, _)| env(replacement).is_none())
        .filter_map(|(name, _, flag)| Some([(*flag).into(), env(name)?]))
        .flatten();
    let at = args.len().min(1);
    args.splice(at..at, earlier.collect::<Vec<_>>());
    args
}

/// The health probe interval: a duration (`5s`), or a number of seconds as the earlier
/// `--health-interval-secs` took it.
fn parse_health_interval(text: &str) -> Result<Duration, String> {
    let interval = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string())?,
    };
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&interval) {
        return Err("must be from 1s to 1h".into());
    }
    Ok(interval)
}

/// A listen address that may be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(text: &str) -> Result<OptionalAddr, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    text.parse()
        .map(|addr| OptionalAddr(Some(addr)))
        .map_err(|e| format!("{e}: expected ip:port or `off`"))
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
            ("--dns-timeout", self.dns_timeout),
            ("--database-timeout", self.database_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        if self.auth == AuthMode::None
            && !self.listen.ip().is_loopback()
            && !self.allow_unauthenticated_remote
            && self.serves()
        {
            return Err(format!(
                "--auth none accepts every caller as trusted, so it serves only on loopback, not on \
                 {}: choose --auth api-key or --auth jwt, or pass --allow-unauthenticated-remote",
                self.listen
            ));
        }
        if self.auth != AuthMode::ApiKey && !self.api_keys.is_empty() {
            return Err("--api-key is set but --auth is not api-key".to_string());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("--tls-cert needs --tls-key".to_string()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".to_string()),
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".to_string());
        }
        if let (Some(metrics), true) = (self.metrics_listen.0, self.serves())
            && metrics == self.listen
            && metrics.port() != 0
        {
            return Err("--metrics-listen must differ from --listen".to_string());
        }
        Ok(())
    }

    /// Whether the command runs the server (and its listen address matters).
    fn serves(&self) -> bool {
        matches!(self.command, None | Some(Command::Serve))
    }

    /// The authenticator the settings describe, with its key files read.
    pub fn authenticator(&self) -> Result<Arc<Authenticator>, String> {
        let authenticator = match self.auth {
            AuthMode::None => Authenticator::None,
            AuthMode::ApiKey => Authenticator::api_keys(self.api_keys.clone())?,
            AuthMode::Jwt => Authenticator::Jwt(Box::new(JwtVerifier::new(JwtOptions {
                issuer: self.jwt_issuer.clone().unwrap_or_default(),
                audience: self.jwt_audience.clone().unwrap_or_default(),
                hs256_secret: self.jwt_hs256_secret.clone().map(String::into_bytes),
                rs256_public_key_pem: match &self.jwt_rs256_public_key {
                    Some(path) => Some(read("--jwt-rs256-public-key", path)?),
                    None => None,
                },
                system_scope: self.jwt_system_scope.clone(),
                leeway: self.jwt_leeway,
            })?)),
        };
        Ok(Arc::new(authenticator))
    }

    /// The TLS settings, with the certificate files read, or None to serve plaintext.
    pub fn tls(&self) -> Result<Option<ServerTlsConfig>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
        let mut tls = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
        }
        Ok(Some(tls))
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::ffi::OsString;

    /// An environment holding only `set`.
    fn environment<'a>(set: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            set.iter()
                .find(|(set, _)| *set == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> Config {
        let args = args.iter().map(OsString::from);
        Config::try_parse_from(with_earlier_env_names(args, environment(env))).unwrap()
    }

    #[test]
    fn every_environment_name_is_its_flag_s() {
        // A list flag's variable is named in the plural; a subcommand's carry its name.
        let plural = ["MEMBERSHIP_API_KEYS"];
        for arg in Config::command().get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            let expected = format!("MEMBERSHIP_{}", long.to_uppercase().replace('-', "_"));
            let env = env.to_str().unwrap();
            assert!(
                env == expected || plural.contains(&env),
                "--{long} reads {env}, not {expected}"
            );
        }
    }

    #[test]
    fn earlier_environment_names_still_work_and_yield_to_the_new_names_and_flags() {
        let earlier = [
            ("MEMBERSHIP_LISTEN_ADDR", "127.0.0.1:1111"),
            ("MEMBERSHIP_METRICS_ADDR", "off"),
            ("MEMBERSHIP_HEALTH_INTERVAL_SECS", "7"),
        ];
        let config = load(&["membership-service"], &earlier);
        assert_eq!(config.listen, "127.0.0.1:1111".parse().unwrap());
        assert_eq!(config.metrics_listen, OptionalAddr(None));
        assert_eq!(config.health_interval, Duration::from_secs(7));

        // With the new name set too, the earlier one is not read (clap reads the new one).
        let both = [earlier[0], ("MEMBERSHIP_LISTEN", "127.0.0.1:2222")];
        let args = ["membership-service", "migrate"].map(OsString::from);
        let args = with_earlier_env_names(args, environment(&both));
        assert_eq!(args, ["membership-service", "migrate"].map(OsString::from));

        let config = load(
            &["membership-service", "--listen", "127.0.0.1:3333"],
            &earlier,
        );
        assert_eq!(config.listen, "127.0.0.1:3333".parse().unwrap());
        assert_eq!(config.health_interval, Duration::from_secs(7));
    }

    #[test]
    fn the_health_interval_takes_a_duration_or_the_earlier_flag_s_seconds() {
        let config = load(&["membership-service", "--health-interval", "2m"], &[]);
        assert_eq!(config.health_interval, Duration::from_secs(120));
        let config = load(&["membership-service", "--health-interval-secs", "9"], &[]);
        assert_eq!(config.health_interval, Duration::from_secs(9));
        assert_eq!(
            load(&["membership-service"], &[]).health_interval,
            Duration::from_secs(5)
        );
        for refused in ["0s", "2h", "soon"] {
            let args = ["membership-service", "--health-interval", refused];
            assert!(Config::try_parse_from(args).is_err(), "{refused}");
        }
    }

    #[test]
    fn help_groups_the_settings_under_headings_in_every_subcommand() {
        let headings = [
            "Server:",
            "Database:",
            "Event feed:",
            "Invitations and email:",
            "Limits:",
            "Authentication:",
            "TLS:",
            "Observability:",
        ];
        let mut command = Config::command();
        let help = command.render_help().to_string();
        let mut at = 0;
        for heading in headings {
            let found = help[at..].find(heading).map(|i| at + i);
            at = found.unwrap_or_else(|| panic!("{heading} missing or out of order:\n{help}"));
        }
        let migrate = command.find_subcommand_mut("migrate").unwrap();
        let help = migrate.render_help().to_string();
        assert!(
            help.contains("Database:") && help.contains("--database-url"),
            "{help}"
        );
        assert!(
            !help.contains("--health-interval-secs"),
            "the earlier name is hidden"
        );
    }
}
