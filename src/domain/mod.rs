//! Rules and types of the membership domain. Nothing here knows about gRPC or SQL: the service
//! layer loads state, asks these types what is allowed, and writes the result.

pub mod email;
pub mod email_domain;
pub mod error;
pub mod events;
pub mod group;
pub mod invitation;
pub mod membership;
pub mod permissions;
pub mod role;
pub mod tenant;
pub mod validate;
pub mod watcher;

pub use error::DomainError;

/// Microseconds since the Unix epoch: the one time representation stored and compared.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// A stored resource that changes in versions: its etag is its version.
pub trait Versioned {
    fn version_mut(&mut self) -> &mut i64;
    fn updated_at_mut(&mut self) -> &mut Micros;

    /// Makes this the next version, changed at `now`.
    fn revise(&mut self, now: Micros) {
        *self.version_mut() += 1;
        *self.updated_at_mut() = now;
    }
}

/// Implements [`Versioned`] for types with `version` and `updated_at` fields.
macro_rules! versioned {
    ($($resource:ty),*) => {$(
        impl Versioned for $resource {
            fn version_mut(&mut self) -> &mut i64 {
                &mut self.version
            }
            fn updated_at_mut(&mut self) -> &mut Micros {
                &mut self.updated_at
            }
        }
    )*};
}

versioned!(
    tenant::Tenant,
    membership::Membership,
    invitation::Invitation,
    email_domain::TenantDomain,
    role::Role,
    group::Group
);

/// Declares a closed set of values with a stable lower-case storage name each.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use stored_enum;

/// Who is making a call: a user acting in a tenant, or a trusted system caller (provisioning,
/// migration, support tooling) acting without a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    System,
    User(uuid::Uuid),
}

impl Caller {
    pub fn user_id(self) -> Option<uuid::Uuid> {
        match self {
            Caller::System => None,
            Caller::User(id) => Some(id),
        }
    }

    /// Calls about one user (accepting their invitation, signing them up) may come from that
    /// user or from a system caller acting for them, nobody else.
    pub fn ensure_acting_for(self, user_id: uuid::Uuid) -> Result<(), DomainError> {
        match self {
            Caller::User(actor) if actor != user_id => Err(DomainError::ActorMismatch),
            _ => Ok(()),
        }
    }
}
