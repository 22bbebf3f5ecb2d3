//! Email domains a tenant can verify, and the DNS record that proves control.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::email::canonical_domain;
use super::{Micros, stored_enum};

stored_enum! {
    DomainState { Pending => "pending", Verified => "verified" }
}

/// The prefix of the TXT record name and value that prove control of a domain.
pub const RECORD_LABEL: &str = "_membership-verification";
pub const RECORD_VALUE_PREFIX: &str = "membership-verification=";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDomain {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub domain: String,
    pub state: DomainState,
    pub auto_join: bool,
    pub verification_token: String,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub verified_at: Option<Micros>,
    pub version: i64,
}

impl TenantDomain {
    pub fn etag(&self) -> String {
        super::tenant::etag(self.version)
    }

    pub fn record_name(&self) -> String {
        format!("{RECORD_LABEL}.{}", self.domain)
    }

    pub fn record_value(&self) -> String {
        format!("{RECORD_VALUE_PREFIX}{}", self.verification_token)
    }
}

/// Free mail providers: nobody proves control of these for a company.
const CONSUMER_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "zoho.com",
    "fastmail.com",
    "tutanota.com",
    "hey.com",
];

pub fn is_consumer(domain: &str) -> bool {
    CONSUMER_DOMAINS.contains(&domain)
        || domain.starts_with("yahoo.")
        || domain.starts_with("hotmail.")
        || domain.starts_with("outlook.")
}

/// A domain a tenant names, in the canonical form emails use (`email::canonical_domain`: IDNA
/// ASCII, lower-case), so a domain added as `bücher.example` matches addresses at
/// `xn--bcher-kva.example` and the other way round. A trailing root dot is dropped, and the
/// last label must hold a letter (an IP address is not a mail domain a tenant can own).
pub fn normalize(domain: &str) -> Result<String, String> {
    let domain = domain.trim();
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let domain = canonical_domain(domain)?;
    let tld_ok = domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
    if tld_ok {
        Ok(domain)
    } else {
        Err("must be a domain name such as acme.com".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(normalize(" Acme.COM. ").unwrap(), "acme.com");
        for bad in ["acme", "-acme.com", "ac me.com", "acme..com", "1.2.3.4"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(is_consumer("gmail.com"));
        assert!(is_consumer("yahoo.co.uk"));
        assert!(!is_consumer("acme.com"));
        assert_eq!(
            normalize("Bücher.Example.").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }
}
