//! Who is calling: the credentials a call carries checked, and the [`Caller`] they make it.
//! The transport edge (`edge::authenticate`) runs this once per call of an API service and hands
//! the caller to the handlers.
//!
//! A call first proves which *principal* makes it: nobody in particular (mode `none`, for
//! development), a service holding a static API key, or the bearer of a JWT. The principal then
//! decides the [`Caller`] the use cases authorize: a user (a JWT's `sub`), a trusted system
//! caller, or, for principals allowed to act on behalf of users, the user named by `x-actor-id`.
//! Missing, wrong or expired credentials answer UNAUTHENTICATED before any handler runs; a valid
//! principal asking for what it may not do answers PERMISSION_DENIED.
//!
//! Each identity header may appear once. With two values, which one counts would depend on
//! which a reader takes first, and a proxy that appends its own `x-actor-id` after forwarding
//! its caller's would let the caller choose; so a repeated one is refused outright.

mod api_key;
mod jwt;

use std::sync::Arc;

use uuid::Uuid;

pub use api_key::{ApiKey, ApiKeyGrant, hash_key, new_key};
pub use jwt::{JwtOptions, JwtVerifier};

use crate::domain::Caller;

pub const ACTOR_HEADER: &str = "x-actor-id";

/// Who proved themselves on a call, before `x-actor-id` is considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// For logs: the API key's name, the token's subject, or `anonymous`. Shared, as every call
    /// carries its principal.
    pub name: Arc<str>,
    pub kind: PrincipalKind,
    /// When the credential stops being valid (seconds since the epoch), if it expires: a
    /// token's `exp` plus the leeway. Streams opened with it end then.
    pub valid_until: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A trusted system caller: acts as the system, or for the user named by `x-actor-id`.
    System,
    /// A service that acts only on behalf of users: every call names one in `x-actor-id`.
    Delegate,
    /// A user, who acts as themselves only.
    User(Uuid),
}

impl Principal {
    /// Mode `none`: every caller is trusted, as a system caller that may act for any user.
    fn anonymous() -> Principal {
        static NAME: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| "anonymous".into());
        Principal {
            name: NAME.clone(),
            kind: PrincipalKind::System,
            valid_until: None,
        }
    }

    /// When the credential stops being valid, if it does: a stream opened with it ends then.
    pub fn expiry(&self) -> Option<std::time::SystemTime> {
        let seconds = u64::try_from(self.valid_until?).unwrap_or(0);
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
    }

    /// The caller the use cases see: this principal, or the user it acts for.
    pub fn caller(&self, actor: Option<Uuid>) -> Result<Caller, AuthError> {
        match (self.kind, actor) {
            (PrincipalKind::System, None) => Ok(Caller::System),
            (PrincipalKind::System | PrincipalKind::Delegate, Some(actor)) => {
                Ok(Caller::User(actor))
            }
            (PrincipalKind::Delegate, None) => {
                Err(AuthError::ActorRequiredFor(self.name.to_string()))
            }
            (PrincipalKind::User(user), None) => Ok(Caller::User(user)),
            (PrincipalKind::User(user), Some(actor)) if actor == user => Ok(Caller::User(user)),
            (PrincipalKind::User(_), Some(_)) => {
                Err(AuthError::ActorNotAllowed(self.name.to_string()))
            }
        }
    }
}

/// Why a call's credentials, or the user it names, were not accepted. The transport edge's
/// table (`grpc::error`) gives each its status and reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials are required: send `authorization: Bearer …`")]
    Missing,
    #[error("the credentials are not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another audience")]
    WrongAudience,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the {0} header appears more than once; send it once")]
    Duplicated(&'static str),
    #[error("x-actor-id must be a user UUID")]
    InvalidActor,
    #[error("principal {0:?} acts only on behalf of users: name the user in x-actor-id")]
    ActorRequiredFor(String),
    #[error("principal {0:?} may not act on behalf of another user (x-actor-id)")]
    ActorNotAllowed(String),
}

/// How callers prove who they are.
pub enum Authenticator {
    /// Nobody proves anything: development on loopback only.
    None,
    ApiKeys(api_key::ApiKeys),
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    pub fn api_keys(keys: Vec<ApiKey>) -> Result<Authenticator, String> {
        api_key::ApiKeys::new(keys).map(Authenticator::ApiKeys)
    }

    /// The principal the request's credentials prove.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        // Every mode reads x-actor-id (in the handlers); the others read their credential.
        let identity_headers: &[&'static str] = match self {
            Authenticator::None => &[ACTOR_HEADER],
            Authenticator::ApiKeys(_) => &[ACTOR_HEADER, AUTHORIZATION, API_KEY_HEADER],
            Authenticator::Jwt(_) => &[ACTOR_HEADER, AUTHORIZATION],
        };
        for name in identity_headers {
            single_value(headers, name)?;
        }
        match self {
            Authenticator::None => Ok(Principal::anonymous()),
            Authenticator::ApiKeys(keys) => {
                let key = match bearer(headers)? {
                    Some(key) => Some(key),
                    None => header_text(headers, API_KEY_HEADER)?,
                };
                keys.principal(key.ok_or(AuthError::Missing)?)
            }
            Authenticator::Jwt(verifier) => {
                verifier.verify(bearer(headers)?.ok_or(AuthError::Missing)?)
            }
        }
    }
}

const AUTHORIZATION: &str = "authorization";
const API_KEY_HEADER: &str = "x-api-key";

/// The one value of header `name`, if present; refused when it appears more than once.
fn single_value<'a>(
    headers: &'a http::HeaderMap,
    name: &'static str,
) -> Result<Option<&'a http::HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::Duplicated(name));
    }
    Ok(first)
}

fn header_text<'a>(
    headers: &'a http::HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    match single_value(headers, name)? {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim()))
            .map_err(|_| AuthError::Invalid(format!("the {name} header is not text"))),
    }
}

/// The credential of `authorization: Bearer <credential>`, if that header is present.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = header_text(headers, AUTHORIZATION)? else {
        return Ok(None);
    };
    match value.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(credential.trim()))
        }
        _ => Err(AuthError::Invalid(
            "the authorization header must be `Bearer <credential>`".to_string(),
        )),
    }
}

/// The caller a call acts as: its principal, or the user named by its one `x-actor-id`.
pub fn caller(principal: &Principal, headers: &http::HeaderMap) -> Result<Caller, AuthError> {
    let actor = match single_value(headers, ACTOR_HEADER)? {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| AuthError::InvalidActor)?;
            match Uuid::try_parse(text.trim()) {
                Ok(id) if !id.is_nil() => Some(id),
                _ => return Err(AuthError::InvalidActor),
            }
        }
    };
    principal.caller(actor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(kind: PrincipalKind) -> Principal {
        Principal {
            name: "p".into(),
            kind,
            valid_until: None,
        }
    }

    #[test]
    fn actor_rules() {
        let user = Uuid::now_v7();
        let other = Uuid::now_v7();
        let system = principal(PrincipalKind::System);
        assert!(matches!(system.caller(None), Ok(Caller::System)));
        assert!(matches!(system.caller(Some(other)), Ok(Caller::User(u)) if u == other));
        let delegate = principal(PrincipalKind::Delegate);
        assert!(matches!(delegate.caller(Some(other)), Ok(Caller::User(u)) if u == other));
        assert!(matches!(
            delegate.caller(None),
            Err(AuthError::ActorRequiredFor(_))
        ));
        let person = principal(PrincipalKind::User(user));
        assert!(matches!(person.caller(None), Ok(Caller::User(u)) if u == user));
        assert!(matches!(person.caller(Some(user)), Ok(Caller::User(u)) if u == user));
        assert!(matches!(
            person.caller(Some(other)),
            Err(AuthError::ActorNotAllowed(_))
        ));
    }

    #[test]
    fn reads_bearer_credentials() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer(&headers), Ok(None));
        headers.insert("authorization", "Bearer abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Ok(Some("abc")));
        headers.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Ok(Some("abc")));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&headers), Err(AuthError::Invalid(_))));
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        headers.append("authorization", "Bearer def".parse().unwrap());
        assert_eq!(
            bearer(&headers),
            Err(AuthError::Duplicated("authorization"))
        );
    }
}
