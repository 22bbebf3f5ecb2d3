//! DNS TXT lookups for domain verification, through the system resolver or a configured
//! nameserver.
//!
//! A lookup is bounded as a whole by [`DnsOptions::timeout`]. The resolver's own settings only
//! bound each attempt at one name server (it retries, asks several system name servers in turn,
//! and may fall back to TCP), so their product is not the caller's wait; a timer around the
//! whole lookup is.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;

use crate::domain::DomainError;

/// Attempts a lookup makes before it gives up, each given an equal share of the timeout.
pub const ATTEMPTS: u32 = 2;

#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// Query this nameserver (UDP, and TCP for a truncated answer) instead of the system's
    /// resolvers.
    pub nameserver: Option<SocketAddr>,
    /// The longest a whole lookup may take, all attempts included.
    pub timeout: Duration,
}

impl Default for DnsOptions {
    fn default() -> Self {
        Self {
            nameserver: None,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct TxtLookup {
    resolver: TokioResolver,
    timeout: Duration,
}

impl TxtLookup {
    pub fn new(options: &DnsOptions) -> Result<TxtLookup, String> {
        if options.timeout.is_zero() {
            return Err("the DNS timeout must be greater than zero".to_string());
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = options.timeout / ATTEMPTS;
        // hickory counts the retries after the first try.
        opts.attempts = ATTEMPTS as usize - 1;
        // Verification must see the record as published now, not as cached.
        opts.cache_size = 0;
        let builder = match options.nameserver {
            Some(address) => {
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(address, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(address, Protocol::Tcp));
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system DNS configuration: {e}"))?,
        };
        Ok(TxtLookup {
            resolver: builder.with_options(opts).build(),
            timeout: options.timeout,
        })
    }

    /// The TXT strings at `name`; an empty list when the name or record does not exist.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DomainError> {
        let lookup = self.resolver.txt_lookup(format!("{name}."));
        let Ok(answer) = tokio::time::timeout(self.timeout, lookup).await else {
            return Err(DomainError::DnsUnavailable(format!(
                "no answer within {:?}",
                self.timeout
            )));
        };
        match answer {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|txt| {
                    txt.txt_data()
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>()
                })
                .collect()),
            Err(error) if error.is_no_records_found() || error.is_nx_domain() => Ok(Vec::new()),
            Err(error) => Err(DomainError::DnsUnavailable(error.to_string())),
        }
    }
}
