//! The one table from refusals to gRPC statuses (AIP-193): a code, a sentence a person
//! understands, a `google.rpc.ErrorInfo` with an UPPER_SNAKE reason, and for invalid input a
//! `google.rpc.BadRequest` naming every bad field. Internal causes are logged, never sent.
//!
//! Two kinds of refusal meet here: [`DomainError`], what a use case refuses, and
//! [`EdgeRefusal`], what the transport edge refuses before or around a handler (credentials,
//! limits, shutdown).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::domain::DomainError;

/// The ErrorInfo domain of every error this service returns.
pub const ERROR_DOMAIN: &str = "membership.v1";

pub fn to_status(error: DomainError) -> Status {
    use DomainError::*;
    let mut metadata = HashMap::new();
    let (code, reason) = match &error {
        InvalidArgument(_) => (Code::InvalidArgument, "INVALID_ARGUMENT"),
        InvalidPageToken => (Code::InvalidArgument, "INVALID_PAGE_TOKEN"),
        TenantNotFound => (Code::NotFound, "TENANT_NOT_FOUND"),
        MembershipNotFound => (Code::NotFound, "MEMBERSHIP_NOT_FOUND"),
        RoleNotFound(name) => {
            metadata.insert("role".to_string(), name.clone());
            (Code::NotFound, "ROLE_NOT_FOUND")
        }
        TenantNotEnterprise => (Code::FailedPrecondition, "TENANT_NOT_ENTERPRISE"),
        TenantDissolved => (Code::FailedPrecondition, "TENANT_DISSOLVED"),
        SeatLimitReached {
            used,
            limit,
            missing,
        } => {
            metadata.insert("seats_used".to_string(), used.to_string());
            metadata.insert("seat_limit".to_string(), limit.to_string());
            metadata.insert("seats_missing".to_string(), missing.to_string());
            (Code::ResourceExhausted, "SEAT_LIMIT_REACHED")
        }
        MemberExists => (Code::AlreadyExists, "MEMBER_EXISTS"),
        EtagMismatch => (Code::Aborted, "ETAG_MISMATCH"),
        LastOwner => (Code::FailedPrecondition, "LAST_OWNER"),
        PermissionDenied(permission) => {
            metadata.insert("permission".to_string(), permission.as_str().to_string());
            (Code::PermissionDenied, "PERMISSION_DENIED")
        }
        NotAMember => (Code::PermissionDenied, "NOT_A_MEMBER"),
        ActorRequired => (Code::Unauthenticated, "ACTOR_REQUIRED"),
        OwnerRoleReserved => (Code::FailedPrecondition, "OWNER_ROLE_RESERVED"),
        MembershipNotActive(_) => (Code::FailedPrecondition, "MEMBERSHIP_NOT_ACTIVE"),
        InvalidStatusTransition(..) => (Code::FailedPrecondition, "INVALID_STATUS_TRANSITION"),
        AlreadyOwner => (Code::FailedPrecondition, "ALREADY_OWNER"),
        TenantDowngrade => (Code::FailedPrecondition, "TENANT_DOWNGRADE"),
        RequestIdReused => (Code::InvalidArgument, "REQUEST_ID_REUSED"),
        Conflict => (Code::Aborted, "CONCURRENT_MODIFICATION"),
        CursorExpired { oldest, .. } => {
            metadata.insert("oldest_position".to_string(), oldest.to_string());
            (Code::OutOfRange, "CURSOR_EXPIRED")
        }
        CursorAhead { head, .. } => {
            metadata.insert("head".to_string(), head.to_string());
            (Code::OutOfRange, "CURSOR_AHEAD")
        }
        AccessRevoked => (Code::PermissionDenied, "ACCESS_REVOKED"),
        ActorMismatch => (Code::PermissionDenied, "ACTOR_MISMATCH"),
        RoleExists(_) => (Code::AlreadyExists, "ROLE_EXISTS"),
        GroupNotFound => (Code::NotFound, "GROUP_NOT_FOUND"),
        GroupExists(_) => (Code::AlreadyExists, "GROUP_EXISTS"),
        RoleBuiltin => (Code::FailedPrecondition, "ROLE_BUILTIN"),
        RoleInUse {
            bindings,
            invitations,
        } => {
            metadata.insert("bindings".to_string(), bindings.to_string());
            metadata.insert("invitations".to_string(), invitations.to_string());
            (Code::FailedPrecondition, "ROLE_IN_USE")
        }
        CursorNotReached(_) => (Code::Unavailable, "CURSOR_NOT_REACHED"),
        InvitationNotFound => (Code::NotFound, "INVITATION_NOT_FOUND"),
        InvitationExpired => (Code::FailedPrecondition, "INVITATION_EXPIRED"),
        InvitationNotPending(_) => (Code::FailedPrecondition, "INVITATION_NOT_PENDING"),
        EmailMismatch => (Code::PermissionDenied, "EMAIL_MISMATCH"),
        InvitationPending => (Code::AlreadyExists, "INVITATION_PENDING"),
        ConsumerDomain(_) => (Code::InvalidArgument, "CONSUMER_DOMAIN"),
        DomainExists => (Code::AlreadyExists, "DOMAIN_EXISTS"),
        DomainTaken => (Code::AlreadyExists, "DOMAIN_TAKEN"),
        DomainNotFound => (Code::NotFound, "DOMAIN_NOT_FOUND"),
        DomainVerificationFailed(_) => (Code::FailedPrecondition, "DOMAIN_VERIFICATION_FAILED"),
        DnsUnavailable(_) => (Code::Unavailable, "DNS_UNAVAILABLE"),
        Unavailable => (Code::Unavailable, "DATABASE_UNAVAILABLE"),
        Internal(cause) => {
            tracing::error!(cause, "internal error");
            (Code::Internal, "INTERNAL")
        }
    };
    let message = match &error {
        Internal(_) => "internal error".to_string(),
        InvalidArgument(violations) => {
            let mut message = String::from("invalid request: ");
            for (index, v) in violations.iter().enumerate() {
                if index > 0 {
                    message.push_str("; ");
                }
                message.push_str(&format!("{}: {}", v.field, v.description));
                if message.len() > MAX_MESSAGE_BYTES {
                    break;
                }
            }
            message
        }
        other => other.to_string(),
    };
    let mut details = error_info(reason, metadata);
    if let InvalidArgument(violations) = &error {
        let mut listed = 0;
        let mut bytes = 0;
        for violation in violations {
            let field = clip(&violation.field, MAX_VALUE_BYTES);
            let description = clip(&violation.description, MAX_DESCRIPTION_BYTES);
            bytes += field.len() + description.len();
            if listed == MAX_VIOLATIONS || bytes > MAX_VIOLATION_BYTES {
                break;
            }
            details.add_bad_request_violation(field, description);
            listed += 1;
        }
        if listed < violations.len() {
            details.add_bad_request_violation(
                "",
                format!("and {} more invalid field(s)", violations.len() - listed),
            );
        }
    }
    if let ConsumerDomain(_) = &error {
        details.add_bad_request_violation("domain", "is a consumer mail domain");
    }
    Status::with_error_details(code, clip(&message, MAX_MESSAGE_BYTES), details)
}

/// A refusal of the transport edge: the call's credentials, the server's limits, or its
/// shutdown, never the call's own content or the tenant's rules.
#[derive(Debug, thiserror::Error)]
pub enum EdgeRefusal {
    #[error("{0}")]
    Auth(AuthError),
    #[error("the server is at its limit of concurrent calls; retry with backoff")]
    Overloaded,
    #[error(
        "the server is at its limit of {0} open watch streams; retry after the delay (RetryInfo), or on another replica"
    )]
    TooManyWatchers(usize),
    #[error("the call did not finish within its deadline ({0:?})")]
    DeadlineExceeded(std::time::Duration),
    #[error("the request message is larger than the server accepts")]
    MessageTooLarge,
    #[error("the request message could not be decoded ({0}); send a valid protobuf message")]
    MalformedRequest(String),
    #[error("the server is shutting down; reconnect and resume from the last cursor")]
    ShuttingDown,
}

/// The status of a refusal at the transport edge, with its ErrorInfo, and a RetryInfo where
/// waiting helps.
pub fn edge_status(refusal: EdgeRefusal) -> Status {
    use EdgeRefusal::*;
    let mut metadata = HashMap::new();
    let mut retry_after = None;
    let (code, reason) = match &refusal {
        Auth(error) => auth_refusal(error, &mut metadata),
        Overloaded => {
            retry_after = Some(OVERLOADED_RETRY_DELAY);
            (Code::ResourceExhausted, "OVERLOADED")
        }
        TooManyWatchers(max_watchers) => {
            metadata.insert("max_watchers".to_string(), max_watchers.to_string());
            retry_after = Some(WATCHER_RETRY_DELAY);
            (Code::ResourceExhausted, "TOO_MANY_WATCHERS")
        }
        DeadlineExceeded(_) => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        MessageTooLarge => (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
        MalformedRequest(_) => (Code::InvalidArgument, "MALFORMED_REQUEST"),
        ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
    };
    let mut details = error_info(reason, metadata);
    if retry_after.is_some() {
        details.set_retry_info(retry_after);
    }
    Status::with_error_details(code, clip(&refusal.to_string(), MAX_MESSAGE_BYTES), details)
}

fn auth_refusal(error: &AuthError, metadata: &mut HashMap<String, String>) -> (Code, &'static str) {
    let unauthenticated = |reason| (Code::Unauthenticated, reason);
    match error {
        AuthError::Missing => unauthenticated("CREDENTIALS_MISSING"),
        AuthError::Invalid(_) => unauthenticated("CREDENTIALS_INVALID"),
        AuthError::Expired => unauthenticated("TOKEN_EXPIRED"),
        AuthError::NotYetValid => unauthenticated("TOKEN_NOT_YET_VALID"),
        AuthError::WrongAudience => unauthenticated("TOKEN_WRONG_AUDIENCE"),
        AuthError::WrongIssuer => unauthenticated("TOKEN_WRONG_ISSUER"),
        AuthError::Duplicated(_) => unauthenticated("DUPLICATE_CREDENTIAL"),
        AuthError::InvalidActor => unauthenticated("INVALID_ACTOR"),
        AuthError::ActorRequiredFor(principal) => {
            metadata.insert("principal".to_string(), principal.clone());
            (Code::PermissionDenied, "DELEGATE_ACTOR_REQUIRED")
        }
        AuthError::ActorNotAllowed(principal) => {
            metadata.insert("principal".to_string(), principal.clone());
            (Code::PermissionDenied, "ACTOR_NOT_ALLOWED")
        }
    }
}

/// How long a call refused at the concurrency bound is asked to wait: the bound frees up as
/// calls in flight finish, in milliseconds, so a short pause (with the client's own backoff on
/// top) is enough, and retrying at once only adds to the load.
pub const OVERLOADED_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a watch refused at the bound is asked to wait before trying again. The bound
/// frees up only as other watches end, so there is no point in retrying at once; a second is
/// short enough that a client which came back too early is not kept away for long.
pub const WATCHER_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Bounds on what a refusal carries, so that message and details together stay well under the
/// 8 KiB of metadata every gRPC client accepts (gRPC C-core clients refuse more than 16 KiB
/// and report a metadata error instead of the refusal), however large the request was: echoed
/// input is cut, and only the first violations are listed.
const MAX_MESSAGE_BYTES: usize = 600;
const MAX_VALUE_BYTES: usize = 120;
const MAX_DESCRIPTION_BYTES: usize = 400;
const MAX_VIOLATIONS: usize = 10;
const MAX_VIOLATION_BYTES: usize = 2400;

/// The ErrorInfo of a refusal, its metadata values cut to the bound.
fn error_info(reason: &str, mut metadata: HashMap<String, String>) -> ErrorDetails {
    for value in metadata.values_mut() {
        *value = clip(value, MAX_VALUE_BYTES);
    }
    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata)
}

/// `text` cut to at most `max` bytes on a character boundary, marked with "…" when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries() {
        assert_eq!(clip("short", 10), "short");
        let clipped = clip(&"é".repeat(100), 11);
        assert!(clipped.len() <= 11, "{clipped}");
        assert!(clipped.ends_with('…'));
    }
}
