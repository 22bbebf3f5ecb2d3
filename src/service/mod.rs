//! Use cases. Each write opens one transaction, locks the tenant, checks the rules, writes the
//! rows and emits the events that commit with them; reads use one snapshot.

pub mod access;
pub mod authz;
pub mod domains;
pub mod events;
pub mod groups;
pub mod invitations;
pub mod memberships;
pub mod page_token;
pub mod roles;
pub mod tenants;

use std::sync::Arc;

use uuid::Uuid;

use crate::dns::TxtLookup;
use crate::domain::Caller;
use crate::domain::DomainError;
use crate::domain::events::EventCursor;
use crate::domain::permissions::Permission;
use crate::domain::role::TenantRoles;
use crate::domain::tenant::Tenant;
use crate::events::EventFeed;
use crate::mail::Mailer;
use crate::store::Store;
use crate::store::{Transaction, Tx, TxFuture, db_error, event_log};
use access::Access;
use authz::{AuthzCache, CheckReason, Decision};
use page_token::PageTokens;

/// The use cases, over one store, this process's event feed, the mailer, the DNS resolver and
/// the deployment's page token key.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub feed: EventFeed,
    pub mailer: Mailer,
    pub dns: TxtLookup,
    pub authz: Arc<AuthzCache>,
    pub page_tokens: PageTokens,
}

/// Permission checks, one or a batch, at least as fresh as `min_cursor`.
pub struct Checks {
    pub checks: Vec<(Uuid, Uuid, Permission)>,
    pub min_cursor: EventCursor,
}

impl Services {
    pub fn new(
        store: Store,
        feed: EventFeed,
        mailer: Mailer,
        dns: TxtLookup,
        authz: Arc<AuthzCache>,
        page_tokens: PageTokens,
    ) -> Self {
        Self {
            store,
            feed,
            mailer,
            dns,
            authz,
            page_tokens,
        }
    }

    /// Permission checks. A system caller may check anyone; a user may check themselves, or
    /// others in tenants where they hold `members.read`.
    pub async fn check_permissions(
        &self,
        caller: Caller,
        Checks { checks, min_cursor }: Checks,
    ) -> Result<(Vec<Decision>, EventCursor), DomainError> {
        if let Caller::User(actor) = caller {
            let mut tenants: Vec<Uuid> = checks
                .iter()
                .filter(|(_, user, _)| *user != actor)
                .map(|(tenant, _, _)| *tenant)
                .collect();
            tenants.sort();
            tenants.dedup();
            let own: Vec<(Uuid, Uuid, Permission)> = tenants
                .into_iter()
                .map(|tenant| (tenant, actor, Permission::MembersRead))
                .collect();
            let (reasons, _) = self.authz.check(&own, min_cursor).await?;
            if reasons.iter().any(|d| d.reason != CheckReason::Granted) {
                return Err(DomainError::PermissionDenied(Permission::MembersRead));
            }
        }
        let (mut reasons, cursor) = self.authz.check(&checks, min_cursor).await?;
        if let Caller::User(_) = caller {
            // A user checking themselves in a tenant that does not exist hears what a non-member
            // hears (AIP-211): tenant ids cannot be probed through checks either.
            for decision in &mut reasons {
                if decision.reason == CheckReason::TenantNotFound {
                    decision.reason = CheckReason::NotAMember;
                }
            }
        }
        Ok((reasons, EventCursor(cursor)))
    }
}

impl Services {
    /// What an earlier call with `request_id` (AIP-155) produced, as `replay` finds it now in
    /// one snapshot, with the log head that snapshot reflects.
    pub(crate) async fn replayed<T>(
        &self,
        request_id: &str,
        replay: impl AsyncFnOnce(&Transaction, &str) -> Result<Option<T>, DomainError>,
    ) -> Result<Option<(T, EventCursor)>, DomainError> {
        let conn = self.store.read_snapshot().await?;
        let Some(found) = replay(&conn, request_id).await? else {
            return Ok(None);
        };
        let cursor = event_log::head(&conn).await.map_err(db_error)?;
        Ok(Some((found, EventCursor(cursor))))
    }

    /// The outcome of a create made with a request id. When two calls with the same request id
    /// race, the second fails on the request id the first recorded (CONCURRENT_MODIFICATION):
    /// it answers as the first did instead.
    pub(crate) async fn or_as_the_first_call<T>(
        &self,
        outcome: Result<(T, EventCursor), DomainError>,
        request_id: Option<&str>,
        replay: impl AsyncFnOnce(&Transaction, &str) -> Result<Option<T>, DomainError>,
    ) -> Result<(T, EventCursor), DomainError> {
        match (outcome, request_id) {
            (Err(DomainError::Conflict), Some(request_id)) => self
                .replayed(request_id, replay)
                .await?
                .ok_or(DomainError::Conflict),
            (outcome, _) => outcome,
        }
    }
}

/// The tenant locked for writing, its roles, what the caller may do in it, and its counters
/// as locked.
pub(crate) struct Locked {
    pub tenant: Tenant,
    pub roles: TenantRoles,
    pub access: Access,
    pub counters: crate::store::tenants::Counters,
}

impl Services {
    /// Runs `work` in a writing transaction (see [`Store::write_to`]: it may commit together
    /// with other writes waiting for the tenant) that first locks the tenant for a change of its
    /// members by `caller`: the tenant must manage members (ENTERPRISE, not
    /// dissolved). `work` gets the tenant, its roles and what the caller may do in it.
    pub(crate) async fn write_locked<T, F>(
        &self,
        caller: Caller,
        tenant_id: Uuid,
        work: F,
    ) -> Result<(T, EventCursor), DomainError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx, Locked) -> TxFuture<'t, T> + Send + 'static,
    {
        self.store
            .write_to(tenant_id, caller, move |tx| {
                Box::pin(async move {
                    let locked = Access::lock(&tx.txn, tenant_id, tx.caller()).await?;
                    locked.tenant.ensure_member_management()?;
                    work(tx, locked).await
                })
            })
            .await
    }
}

/// The idempotency key of a membership: tenant and user.
pub(crate) fn membership_key(tenant_id: Uuid, user_id: Uuid) -> String {
    format!("{tenant_id}/{user_id}")
}
