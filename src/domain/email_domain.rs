//! Email domains a tenant can verify, and the DNS record that proves control.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// Lower-cases and checks a domain name: dotted labels of letters, digits and hyphens.
pub fn normalize(domain: &str) -> Result<String, String> {
    let domain = domain.trim().trim_end_matches('.').to_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
    if valid {
        Ok(domain)
    } else {
        Err("must be a domain name such as acme.com".into())
    }
}

/// The domain part of a normalized email address.
pub fn of_email(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, domain)| domain)
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
        assert_eq!(of_email("ann@acme.com"), Some("acme.com"));
    }
}
