//! The one error type of the domain. Each variant is a refusal a caller can act on; the gRPC
//! layer maps it to a status code and a `google.rpc.ErrorInfo` reason in a single table.
//! Refusals of the transport edge (credentials, limits, shutdown) are not domain errors: they
//! are `grpc::error::EdgeRefusal`, mapped in the same table.

use super::permissions::Permission;

/// One invalid request field, reported as a `google.rpc.BadRequest` field violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("the request has invalid fields")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("the page token is invalid or was issued for other filters or order")]
    InvalidPageToken,
    #[error("tenant not found")]
    TenantNotFound,
    #[error("membership not found")]
    MembershipNotFound,
    #[error("role {0:?} not found in this tenant")]
    RoleNotFound(String),
    #[error("member management is only available for enterprise tenants")]
    TenantNotEnterprise,
    #[error("the tenant is dissolved; it accepts no more changes")]
    TenantDissolved,
    #[error(
        "the tenant has no free seat: {used}/{limit} in use, {missing} more needed; remove members, cancel pending invitations or raise the seat limit"
    )]
    SeatLimitReached { used: i64, limit: i64, missing: i64 },
    #[error("the user is already a member of this tenant")]
    MemberExists,
    #[error("the resource changed since it was read (etag mismatch); read it again and retry")]
    EtagMismatch,
    #[error(
        "the owner cannot be removed, suspended, demoted or leave: transfer ownership first, or dissolve the tenant"
    )]
    LastOwner,
    #[error("the caller lacks the permission {0}")]
    PermissionDenied(Permission),
    #[error("the caller is not an active member of this tenant")]
    NotAMember,
    #[error("this call acts on the caller's own membership and needs an x-actor-id")]
    ActorRequired,
    #[error("the owner role moves only by TransferOwnership")]
    OwnerRoleReserved,
    #[error("the member's status is {0}; this change needs an ACTIVE member")]
    MembershipNotActive(&'static str),
    #[error("the member is {0}; only ACTIVE or SUSPENDED members can be {1}")]
    InvalidStatusTransition(&'static str, &'static str),
    #[error("the user already owns this tenant")]
    AlreadyOwner,
    #[error("a PERSONAL tenant can be upgraded to ENTERPRISE, not the other way")]
    TenantDowngrade,
    #[error("request_id was already used for a different request")]
    RequestIdReused,
    #[error("a concurrent request changed the same data; retry")]
    Conflict,
    #[error(
        "cursor {cursor} is older than the retained events (oldest is {oldest}); list the members again and watch from the list's cursor"
    )]
    CursorExpired { cursor: i64, oldest: i64 },
    #[error("cursor {cursor} is ahead of the event log (head is {head})")]
    CursorAhead { cursor: i64, head: i64 },
    #[error(
        "the caller lost access to this tenant's events (removed, suspended, left, lost audit_logs.read, or the tenant was dissolved)"
    )]
    AccessRevoked,
    #[error("a role named {0:?} already exists in this tenant")]
    RoleExists(String),
    #[error("built-in roles cannot be changed or deleted")]
    RoleBuiltin,
    #[error(
        "the role is bound to {bindings} member(s) or group(s) and named by {invitations} pending \
         invitation(s); unbind it and revoke them first, or pass unbind_everywhere"
    )]
    RoleInUse { bindings: usize, invitations: usize },
    #[error("this replica has not reached cursor {0} yet; retry")]
    CursorNotReached(i64),
    #[error("x-actor-id names another user than the request")]
    ActorMismatch,
    #[error("no invitation has this token")]
    InvitationNotFound,
    #[error("the invitation has expired; ask for it to be sent again")]
    InvitationExpired,
    #[error("the invitation is {0}, no longer pending")]
    InvitationNotPending(&'static str),
    #[error("the invitation was sent to another email address")]
    EmailMismatch,
    #[error("this email address already has a pending invitation")]
    InvitationPending,
    #[error("{0} is a consumer mail domain; only an organization's own domain can be verified")]
    ConsumerDomain(String),
    #[error("the tenant already has this domain")]
    DomainExists,
    #[error("another tenant has verified this domain")]
    DomainTaken,
    #[error("group not found")]
    GroupNotFound,
    #[error("the tenant already has a group with this {0}")]
    GroupExists(&'static str),
    #[error("domain not found")]
    DomainNotFound,
    #[error("domain verification failed: {0}")]
    DomainVerificationFailed(String),
    #[error("the DNS lookup failed: {0}")]
    DnsUnavailable(String),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        DomainError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// The same failure, for another caller it befell too: a commit that failed fails every
    /// write committed with it. Only the database's failures are shared this way.
    pub fn again(&self) -> Self {
        match self {
            DomainError::Unavailable => DomainError::Unavailable,
            DomainError::Conflict => DomainError::Conflict,
            _ => DomainError::Internal("database error".into()),
        }
    }
}
