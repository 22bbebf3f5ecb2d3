//! Invitations: tokens, expiry, and the state a reader sees.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{DomainError, Micros, stored_enum};

stored_enum! {
    /// The stored state. EXPIRED is not stored: a pending invitation past its expiry reads as
    /// expired, so expiry needs no background job to be correct.
    InvitationState {
        Pending => "pending",
        Accepted => "accepted",
        Revoked => "revoked",
        Expired => "expired",
    }
}

pub const HOUR_MICROS: Micros = 3_600_000_000;
pub const DEFAULT_TTL: Micros = 7 * 24 * HOUR_MICROS;
pub const MIN_TTL: Micros = HOUR_MICROS;
pub const MAX_TTL: Micros = 30 * 24 * HOUR_MICROS;
/// Most emails one bulk invitation takes.
pub const MAX_BULK: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role_id: Uuid,
    /// The role's name, for readers (resolved when loaded).
    pub role: String,
    pub inviter_id: Option<Uuid>,
    pub state: InvitationState,
    pub expires_at: Micros,
    pub send_count: i32,
    pub last_sent_at: Micros,
    pub accepted_by: Option<Uuid>,
    pub accepted_at: Option<Micros>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub version: i64,
}

impl Invitation {
    /// A PENDING invitation of `email` to `role`, made by `caller` at `now`, for `ttl`.
    pub fn new(
        tenant_id: Uuid,
        email: String,
        role: &super::role::Role,
        caller: super::Caller,
        ttl: Micros,
        now: Micros,
    ) -> Invitation {
        Invitation {
            id: Uuid::now_v7(),
            tenant_id,
            email,
            role_id: role.id,
            role: role.name.clone(),
            inviter_id: caller.user_id(),
            state: InvitationState::Pending,
            expires_at: now + ttl,
            send_count: 1,
            last_sent_at: now,
            accepted_by: None,
            accepted_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    pub fn etag(&self) -> String {
        super::tenant::etag(self.version)
    }

    /// The state as of `now`: pending invitations past their expiry are expired.
    pub fn state_at(&self, now: Micros) -> InvitationState {
        match self.state {
            InvitationState::Pending if self.expires_at <= now => InvitationState::Expired,
            state => state,
        }
    }

    /// Whether the invitation holds a seat at `now`.
    pub fn holds_seat(&self, now: Micros) -> bool {
        self.state_at(now) == InvitationState::Pending
    }

    /// Refuses anything but a pending, unexpired invitation.
    pub fn ensure_acceptable(&self, now: Micros) -> Result<(), DomainError> {
        match self.state_at(now) {
            InvitationState::Pending => Ok(()),
            InvitationState::Expired => Err(DomainError::InvitationExpired),
            state => Err(DomainError::InvitationNotPending(state.as_str())),
        }
    }
}

/// A fresh invitation token: 256 bits from the operating system's CSPRNG, URL-safe base64.
pub fn new_token() -> Result<String, DomainError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| DomainError::Internal(format!("no randomness for a token: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored and looked up instead of the token: SHA-256, hex. Tokens carry 256 random
/// bits, so an unsalted fast hash is enough; nobody can guess a preimage.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a requested time to live (1 hour to 30 days); `None` means the default 7 days.
pub fn ttl(requested: Option<Micros>) -> Result<Micros, String> {
    match requested {
        None => Ok(DEFAULT_TTL),
        Some(ttl) if (MIN_TTL..=MAX_TTL).contains(&ttl) => Ok(ttl),
        Some(_) => Err("must be between 1 hour and 30 days".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(ttl(None), Ok(DEFAULT_TTL));
        assert!(ttl(Some(MIN_TTL - 1)).is_err());
        assert!(ttl(Some(MAX_TTL + 1)).is_err());
        assert_eq!(ttl(Some(MIN_TTL)), Ok(MIN_TTL));
    }
}

/// Filters of ListInvitations.
#[derive(Clone, Debug, Default)]
pub struct InvitationFilter {
    pub state: Option<InvitationState>,
    /// Substring of the canonical email, folded as `email::search_form` folds.
    pub query: Option<String>,
}
