//! DNS TXT lookups for domain verification, through the system resolver or a configured
//! nameserver.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;

use crate::domain::DomainError;

#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// Query this nameserver (UDP, then TCP) instead of the system's resolvers.
    pub nameserver: Option<SocketAddr>,
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
}

impl TxtLookup {
    pub fn new(options: &DnsOptions) -> Result<TxtLookup, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = options.timeout;
        opts.attempts = 2;
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
        })
    }

    /// The TXT strings at `name`; an empty list when the name or record does not exist.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DomainError> {
        match self.resolver.txt_lookup(format!("{name}.")).await {
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
