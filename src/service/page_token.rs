//! Opaque keyset page tokens (AIP-158). A token carries the last row's sort value and user id,
//! plus a fingerprint of the request's filters and order so it cannot be replayed against a
//! different query, authenticated with HMAC-SHA256 so an edited or invented token is refused
//! instead of misread. A plain hash would not do: its recipe is in the source, so anyone could
//! edit a cursor and recompute it. The key is the deployment's page token secret, generated once
//! by a migration and kept in the database, so every replica accepts the tokens of the others
//! and tokens outlive restarts, with nothing to configure.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::DomainError;
use crate::store::memberships::{After, SortValue};
use crate::store::{self, Store};

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

/// A stable fingerprint of everything that shapes a query's order and rows.
fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize()[..12])
}

/// Bytes of the HMAC-SHA256 tag in front of the payload: all of it.
const TAG_BYTES: usize = 32;

/// The shortest secret accepted: 256 bits, what the migration generates.
const MIN_SECRET_BYTES: usize = 32;

/// One page of a keyset-paginated list: where the request's token says the page starts, and the
/// token of the page after it. Every list reads one row more than a page, to know whether
/// another page follows.
pub struct Pager<'a> {
    tokens: &'a PageTokens,
    fingerprint: String,
    size: u64,
}

impl Pager<'_> {
    /// The fingerprint of the query, which its tokens carry.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Where the page starts: after the row `token` names, or at the start without one.
    pub fn after(&self, token: &str) -> Result<Option<After>, DomainError> {
        match token {
            "" => Ok(None),
            token => self.tokens.decode(token, &self.fingerprint).map(Some),
        }
    }

    /// How many rows to read: one more than a page.
    pub fn limit(&self) -> u64 {
        self.size + 1
    }

    /// Cuts `rows` (read with [`Pager::limit`]) to the page, and returns the token of the next
    /// page, named by the last row's key, or an empty one when this page is the last.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl FnOnce(&T) -> After) -> String {
        let more = rows.len() as u64 > self.size;
        rows.truncate(self.size as usize);
        self.next(rows.last().filter(|_| more).map(key))
    }

    /// The token of the page after the row `last`, if there is one.
    pub fn next(&self, last: Option<After>) -> String {
        match last {
            Some(after) => self.tokens.encode(&self.fingerprint, &after),
            None => String::new(),
        }
    }
}

/// Issues and reads page tokens under the deployment's secret.
#[derive(Clone)]
pub struct PageTokens {
    /// Keyed once; cloned for each token.
    mac: Hmac<Sha256>,
}

impl PageTokens {
    pub fn new(secret: &[u8]) -> Result<Self, DomainError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(DomainError::Internal(format!(
                "the page token secret has {} bytes, fewer than {MIN_SECRET_BYTES}",
                secret.len()
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| DomainError::Internal("unusable page token secret".into()))?;
        Ok(Self { mac })
    }

    /// Reads the secret from the (migrated) database, once at start-up.
    pub async fn load(store: &Store) -> Result<Self, DomainError> {
        Self::new(&store::page_token_secret::load(store.connection()).await?)
    }

    /// The pages of `size` rows of the query `shape` (everything that decides its rows and order).
    pub fn pager(&self, shape: &[&str], size: u64) -> Pager<'_> {
        Pager {
            tokens: self,
            fingerprint: fingerprint(shape),
            size,
        }
    }

    fn encode(&self, fingerprint: &str, after: &After) -> String {
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
        let mut bytes = self.tag(&payload).to_vec();
        bytes.extend_from_slice(&payload);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a token issued for `fingerprint`; anything else is INVALID_ARGUMENT.
    fn decode(&self, token: &str, fingerprint: &str) -> Result<After, DomainError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| DomainError::InvalidPageToken)?;
        if bytes.len() <= TAG_BYTES {
            return Err(DomainError::InvalidPageToken);
        }
        let (tag, payload) = bytes.split_at(TAG_BYTES);
        // Compared in constant time: how much of a guess matched must not show in the timing.
        self.keyed(payload)
            .verify_slice(tag)
            .map_err(|_| DomainError::InvalidPageToken)?;
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

    fn keyed(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"membership.v1 page token\0");
        mac.update(payload);
        mac
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_BYTES] {
        self.keyed(payload).finalize().into_bytes().into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after() -> After {
        After {
            value: SortValue::Text("ann@example.com".into()),
            user_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let tokens = PageTokens::new(&[7; 32]).unwrap();
        let after = after();
        let f = fingerprint(&["tenant", "email"]);
        let token = tokens.encode(&f, &after);
        assert_eq!(tokens.decode(&token, &f).unwrap(), after);
        assert!(
            tokens
                .decode(&token, &fingerprint(&["tenant", "create_time"]))
                .is_err()
        );
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for position in 0..bytes.len() {
            let mut edited = bytes.clone();
            edited[position] ^= 1;
            assert!(
                tokens.decode(&URL_SAFE_NO_PAD.encode(edited), &f).is_err(),
                "byte {position} edited"
            );
        }
        assert!(tokens.decode("not a token!", &f).is_err());
    }

    #[test]
    fn another_secret_refuses_the_token() {
        let f = fingerprint(&["tenant", "email"]);
        let token = PageTokens::new(&[7; 32]).unwrap().encode(&f, &after());
        let other = PageTokens::new(&[8; 32]).unwrap();
        assert!(other.decode(&token, &f).is_err());
        assert!(PageTokens::new(&[7; 16]).is_err(), "a short secret");
    }
}
