//! Tenants and seat arithmetic.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DomainError, Micros, stored_enum};

stored_enum! {
    TenantKind { Personal => "personal", Enterprise => "enterprise" }
}
stored_enum! {
    RolePreset { Enterprise => "enterprise", Organization => "organization" }
}
stored_enum! {
    TenantState { Active => "active", Dissolved => "dissolved" }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub kind: TenantKind,
    pub role_preset: RolePreset,
    pub seat_limit: Option<i32>,
    pub state: TenantState,
    pub version: i64,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub dissolved_at: Option<Micros>,
}

impl Tenant {
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// Any mutation of a dissolved tenant is refused.
    pub fn ensure_active(&self) -> Result<(), DomainError> {
        match self.state {
            TenantState::Active => Ok(()),
            TenantState::Dissolved => Err(DomainError::TenantDissolved),
        }
    }

    /// Member lists exist only for enterprise tenants (rule 1).
    pub fn ensure_enterprise(&self) -> Result<(), DomainError> {
        match self.kind {
            TenantKind::Enterprise => Ok(()),
            TenantKind::Personal => Err(DomainError::TenantNotEnterprise),
        }
    }

    /// Member management needs an active enterprise tenant (rules 1 and 3).
    pub fn ensure_member_management(&self) -> Result<(), DomainError> {
        self.ensure_active()?;
        self.ensure_enterprise()
    }
}

/// Seats in use against the limit. Used = ACTIVE + SUSPENDED members + pending invitations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeatUsage {
    pub used: i64,
    pub limit: Option<i64>,
}

impl SeatUsage {
    pub fn available(self) -> Option<i64> {
        self.limit.map(|limit| (limit - self.used).max(0))
    }

    /// Refuses when `wanted` more seats do not fit; existing members are never affected.
    pub fn ensure_room_for(self, wanted: i64) -> Result<(), DomainError> {
        match self.limit {
            Some(limit) if self.used + wanted > limit => Err(DomainError::SeatLimitReached {
                used: self.used,
                limit,
                missing: self.used + wanted - limit,
            }),
            _ => Ok(()),
        }
    }

    /// "45/100", or "3/unlimited".
    pub fn display(self) -> String {
        match self.limit {
            Some(limit) => format!("{}/{}", self.used, limit),
            None => format!("{}/unlimited", self.used),
        }
    }
}

/// Etags are the row's version number, opaque to callers.
pub fn etag(version: i64) -> String {
    version.to_string()
}

/// Refuses a stale etag; an empty etag means "unconditional".
pub fn check_etag(given: &str, version: i64) -> Result<(), DomainError> {
    if given.is_empty() || given == etag(version) {
        Ok(())
    } else {
        Err(DomainError::EtagMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_usage_reports_missing_seats() {
        let usage = SeatUsage {
            used: 8,
            limit: Some(10),
        };
        assert!(usage.ensure_room_for(2).is_ok());
        match usage.ensure_room_for(5) {
            Err(DomainError::SeatLimitReached { missing, .. }) => assert_eq!(missing, 3),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(usage.display(), "8/10");
        assert_eq!(usage.available(), Some(2));
    }

    #[test]
    fn etag_check() {
        assert!(check_etag("", 3).is_ok());
        assert!(check_etag("3", 3).is_ok());
        assert!(matches!(check_etag("2", 3), Err(DomainError::EtagMismatch)));
    }
}
