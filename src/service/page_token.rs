//! Opaque keyset page tokens (AIP-158). A token carries the last row's sort value and user id,
//! plus a fingerprint of the request's filters and order so it cannot be replayed against a
//! different query, and a checksum so an edited token is refused instead of misread.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::DomainError;
use crate::store::memberships::{After, SortValue};

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Fingerprint of the query the token belongs to.
    f: String,
    /// Sort value of the last row: an integer or a string.
    i: Option<i64>,
    t: Option<String>,
    /// User id of the last row.
    u: Uuid,
}

const CHECKSUM_BYTES: usize = 8;

/// A stable fingerprint of everything that shapes a query's order and rows.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize()[..12])
}

pub fn encode(fingerprint: &str, after: &After) -> String {
    let (i, t) = match &after.value {
        SortValue::Int(v) => (Some(*v), None),
        SortValue::Text(v) => (None, Some(v.clone())),
    };
    let payload = serde_json::to_vec(&Payload {
        f: fingerprint.to_string(),
        i,
        t,
        u: after.user_id,
    })
    .unwrap_or_default();
    let mut bytes = checksum(&payload).to_vec();
    bytes.extend_from_slice(&payload);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads a token issued for `fingerprint`; anything else is INVALID_ARGUMENT.
pub fn decode(token: &str, fingerprint: &str) -> Result<After, DomainError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| DomainError::InvalidPageToken)?;
    if bytes.len() <= CHECKSUM_BYTES {
        return Err(DomainError::InvalidPageToken);
    }
    let (sum, payload) = bytes.split_at(CHECKSUM_BYTES);
    if sum != checksum(payload) {
        return Err(DomainError::InvalidPageToken);
    }
    let payload: Payload =
        serde_json::from_slice(payload).map_err(|_| DomainError::InvalidPageToken)?;
    if payload.f != fingerprint {
        return Err(DomainError::InvalidPageToken);
    }
    let value = match (payload.i, payload.t) {
        (Some(v), None) => SortValue::Int(v),
        (None, Some(v)) => SortValue::Text(v),
        _ => return Err(DomainError::InvalidPageToken),
    };
    Ok(After {
        value,
        user_id: payload.u,
    })
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::new()
        .chain_update(b"membership.v1 page token")
        .chain_update(payload)
        .finalize();
    let mut sum = [0u8; CHECKSUM_BYTES];
    sum.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    sum
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let after = After {
            value: SortValue::Text("ann@example.com".into()),
            user_id: Uuid::now_v7(),
        };
        let f = fingerprint(&["tenant", "email"]);
        let token = encode(&f, &after);
        assert_eq!(decode(&token, &f).unwrap(), after);
        assert!(decode(&token, &fingerprint(&["tenant", "create_time"])).is_err());
        let mut edited = token.clone().into_bytes();
        let last = edited.len() - 1;
        edited[last] = if edited[last] == b'A' { b'B' } else { b'A' };
        assert!(decode(std::str::from_utf8(&edited).unwrap(), &f).is_err());
        assert!(decode("not a token!", &f).is_err());
    }
}
