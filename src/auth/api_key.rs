//! Static API keys: each a named service principal. The configuration holds only a key's
//! SHA-256, so a leaked configuration file leaks no key.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::{AuthError, Principal, PrincipalKind};

/// What a key's holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyGrant {
    /// A trusted system caller, which may also act for any user with `x-actor-id`.
    System,
    /// Acts only on behalf of users: each call names one in `x-actor-id`.
    Delegate,
}

/// One configured key: `NAME:GRANT:SHA256-HEX`, e.g. `billing:system:9f86d0…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub grant: ApiKeyGrant,
    pub sha256: [u8; 32],
}

impl FromStr for ApiKey {
    type Err = String;

    fn from_str(text: &str) -> Result<ApiKey, String> {
        let mut parts = text.trim().splitn(3, ':');
        let (Some(name), Some(grant), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "an API key is NAME:GRANT:SHA256 (GRANT is system or delegate), got {text:?}"
            ));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "an API key's name uses letters, digits, '-', '_' and '.', got {name:?}"
            ));
        }
        let grant = match grant {
            "system" => ApiKeyGrant::System,
            "delegate" => ApiKeyGrant::Delegate,
            other => {
                return Err(format!(
                    "API key {name:?}: the grant is system or delegate, got {other:?}"
                ));
            }
        };
        let sha256 = decode_hex(hash).ok_or_else(|| {
            format!("API key {name:?}: the hash must be 64 hex digits (the key's SHA-256)")
        })?;
        Ok(ApiKey {
            name: name.to_string(),
            grant,
            sha256,
        })
    }
}

impl fmt::Display for ApiKeyGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiKeyGrant::System => "system",
            ApiKeyGrant::Delegate => "delegate",
        })
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// The SHA-256 of a key, in lower-case hex, as the configuration holds it.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random key: 32 bytes from the operating system, URL-safe base64.
pub fn new_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The configured keys, by hash. Looking a presented key up by its SHA-256 compares digests,
/// never the secret itself.
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl ApiKeys {
    pub fn new(keys: Vec<ApiKey>) -> Result<ApiKeys, String> {
        if keys.is_empty() {
            return Err("auth mode api-key needs at least one --api-key".to_string());
        }
        let mut by_hash = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for key in keys {
            if !names.insert(key.name.clone()) {
                return Err(format!("two API keys are named {:?}", key.name));
            }
            let kind = match key.grant {
                ApiKeyGrant::System => PrincipalKind::System,
                ApiKeyGrant::Delegate => PrincipalKind::Delegate,
            };
            let principal = Principal {
                name: key.name.as_str().into(),
                kind,
                valid_until: None,
            };
            if by_hash.insert(key.sha256, principal).is_some() {
                return Err(format!(
                    "API key {:?} has the same hash as another key",
                    key.name
                ));
            }
        }
        Ok(ApiKeys { by_hash })
    }

    pub fn principal(&self, key: &str) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_hash
            .get(&digest)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown API key".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_keys() {
        let hash = hash_key("secret");
        assert_eq!(
            hash,
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        let key: ApiKey = format!("billing:system:{hash}").parse().unwrap();
        assert_eq!(key.name, "billing");
        assert_eq!(key.grant, ApiKeyGrant::System);
        assert!("billing:root:00".parse::<ApiKey>().is_err());
        assert!(format!("bil ling:system:{hash}").parse::<ApiKey>().is_err());
        assert!("billing:system:abc".parse::<ApiKey>().is_err());
        assert!("billing".parse::<ApiKey>().is_err());

        let keys = ApiKeys::new(vec![key]).unwrap();
        assert_eq!(&*keys.principal("secret").unwrap().name, "billing");
        assert!(keys.principal("Secret").is_err());
        assert_ne!(new_key(), new_key());
    }
}
