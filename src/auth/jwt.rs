//! JWT bearer tokens, signed with HS256 (a shared secret) or RS256 (the issuer's public key).
//! The issuer, the audience and the expiry are always checked. The subject is the acting user,
//! unless the token carries the configured system scope: then it is a trusted system caller.
//!
//! A service sends the same token on call after call, and an RS256 signature costs far more to
//! verify than a permission check costs to answer; so a verified token is remembered, with its
//! validity window, and a repeat is only checked against the clock.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::{AuthError, Principal, PrincipalKind};

#[derive(Clone, Debug, Default)]
pub struct JwtOptions {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of the token's audiences).
    pub audience: String,
    /// Secret for HS256 tokens.
    pub hs256_secret: Option<Vec<u8>>,
    /// PEM public key (SPKI or PKCS#1) for RS256 tokens.
    pub rs256_public_key_pem: Option<Vec<u8>>,
    /// A token whose `scope` (space-separated) or `scp` lists this is a trusted system caller.
    pub system_scope: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

pub struct JwtVerifier {
    hs256: Option<(DecodingKey, Validation)>,
    rs256: Option<(DecodingKey, Validation)>,
    system_scope: String,
    leeway: i64,
    /// Tokens verified before, by their text.
    verified: RwLock<HashMap<String, Verified>>,
}

/// Tokens remembered at most; when full, expired ones go, and if none had, all of them.
const VERIFIED_CAPACITY: usize = 10_000;

/// A token that verified, and when it is valid (seconds since the epoch, leeway included).
#[derive(Clone)]
struct Verified {
    principal: Principal,
    not_before: i64,
    expires: i64,
}

/// The claims read beyond those jsonwebtoken validates.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Scopes>,
}

/// `scp` is a list in some issuers' tokens and a space-separated string in others'.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Text(String),
}

impl Claims {
    fn has_scope(&self, wanted: &str) -> bool {
        let in_text = |text: &str| text.split_whitespace().any(|s| s == wanted);
        self.scope.as_deref().is_some_and(in_text)
            || match &self.scp {
                Some(Scopes::List(list)) => list.iter().any(|s| s == wanted),
                Some(Scopes::Text(text)) => in_text(text),
                None => false,
            }
    }
}

impl JwtVerifier {
    pub fn new(options: JwtOptions) -> Result<JwtVerifier, String> {
        if options.issuer.trim().is_empty() || options.audience.trim().is_empty() {
            return Err("auth mode jwt needs --jwt-issuer and --jwt-audience".to_string());
        }
        if options.system_scope.trim().is_empty() {
            return Err("--jwt-system-scope must not be empty".to_string());
        }
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[&options.issuer]);
            validation.set_audience(&[&options.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = options.leeway.as_secs();
            validation
        };
        let hs256 = match &options.hs256_secret {
            Some(secret) if secret.len() < 32 => {
                return Err("--jwt-hs256-secret must be at least 32 bytes".to_string());
            }
            Some(secret) => Some((
                DecodingKey::from_secret(secret),
                validation(Algorithm::HS256),
            )),
            None => None,
        };
        let rs256 = match &options.rs256_public_key_pem {
            Some(pem) => Some((
                DecodingKey::from_rsa_pem(pem)
                    .map_err(|e| format!("--jwt-rs256-public-key: not an RSA public key: {e}"))?,
                validation(Algorithm::RS256),
            )),
            None => None,
        };
        if hs256.is_none() && rs256.is_none() {
            return Err(
                "auth mode jwt needs --jwt-hs256-secret or --jwt-rs256-public-key".to_string(),
            );
        }
        Ok(JwtVerifier {
            hs256,
            rs256,
            system_scope: options.system_scope,
            leeway: i64::try_from(options.leeway.as_secs()).unwrap_or(i64::MAX),
            verified: RwLock::new(HashMap::new()),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let remembered = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned();
        if let Some(verified) = remembered
            && (verified.not_before..=verified.expires).contains(&now)
        {
            return Ok(verified.principal);
        }
        // Outside its window (or never seen): verify in full, which says what is wrong.
        let (principal, claims) = self.verify_signed(token)?;
        let verified = Verified {
            principal: principal.clone(),
            not_before: claims.nbf.unwrap_or(i64::MIN).saturating_sub(self.leeway),
            expires: claims.exp.saturating_add(self.leeway),
        };
        let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CAPACITY {
            cache.retain(|_, v| v.expires >= now);
            if cache.len() >= VERIFIED_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), verified);
        Ok(principal)
    }

    /// Checks the token's signature and claims, as if never seen before.
    fn verify_signed(&self, token: &str) -> Result<(Principal, Claims), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("not a JWT".to_string()))?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| {
            AuthError::Invalid(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            ))
        })?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("the token has no {claim} claim"))
                }
                ErrorKind::InvalidSignature => {
                    AuthError::Invalid("the token's signature does not verify".to_string())
                }
                _ => AuthError::Invalid("malformed token".to_string()),
            })?
            .claims;
        let valid_until = Some(claims.exp.saturating_add(self.leeway));
        if claims.has_scope(&self.system_scope) {
            let principal = Principal {
                name: claims.sub.as_str().into(),
                kind: PrincipalKind::System,
                valid_until,
            };
            return Ok((principal, claims));
        }
        match Uuid::try_parse(&claims.sub) {
            Ok(user) if !user.is_nil() => Ok((
                Principal {
                    name: claims.sub.as_str().into(),
                    kind: PrincipalKind::User(user),
                    valid_until,
                },
                claims,
            )),
            _ => Err(AuthError::Invalid(
                "the token's sub must be a user UUID (or the token must carry the system scope)"
                    .to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn options() -> JwtOptions {
        JwtOptions {
            issuer: "https://issuer.example".to_string(),
            audience: "membership".to_string(),
            hs256_secret: Some(SECRET.to_vec()),
            rs256_public_key_pem: None,
            system_scope: "membership.system".to_string(),
            leeway: Duration::from_secs(5),
        }
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(options()).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn claims(sub: &str, exp_in: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": "https://issuer.example",
            "aud": "membership",
            "sub": sub,
            "exp": chrono::Utc::now().timestamp() + exp_in,
        })
    }

    #[test]
    fn checks_claims() {
        let verifier = verifier();
        let user = Uuid::now_v7();
        let principal = verifier
            .verify(&token(claims(&user.to_string(), 60)))
            .unwrap();
        assert_eq!(principal.kind, PrincipalKind::User(user));
        assert_eq!(
            verifier.verify(&token(claims(&user.to_string(), -60))),
            Err(AuthError::Expired)
        );
        let mut other_audience = claims(&user.to_string(), 60);
        other_audience["aud"] = "billing".into();
        assert_eq!(
            verifier.verify(&token(other_audience)),
            Err(AuthError::WrongAudience)
        );
        assert!(matches!(
            verifier.verify(&token(claims("billing-service", 60))),
            Err(AuthError::Invalid(_))
        ));
        let mut system = claims("billing-service", 60);
        system["scp"] = serde_json::json!(["read", "membership.system"]);
        assert_eq!(
            verifier.verify(&token(system)).unwrap().kind,
            PrincipalKind::System
        );
        let mut system = claims("billing-service", 60);
        system["scope"] = "openid membership.system".into();
        assert_eq!(
            verifier.verify(&token(system)).unwrap().kind,
            PrincipalKind::System
        );
        assert!(matches!(
            verifier.verify("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let verifier = JwtVerifier::new(JwtOptions {
            leeway: Duration::ZERO,
            ..options()
        })
        .unwrap();
        let user = Uuid::now_v7();
        let token = token(claims(&user.to_string(), 1));
        assert!(verifier.verify(&token).is_ok());
        assert!(verifier.verify(&token).is_ok());
        assert_eq!(verifier.verified.read().unwrap().len(), 1, "remembered");
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(verifier.verify(&token), Err(AuthError::Expired));
    }
}
