//! Verified email domains and auto-join (DESIGN rule 20). The DNS lookup happens outside any
//! transaction: a slow nameserver never holds a tenant lock.

use uuid::Uuid;

use super::Services;
use super::access::Access;
use crate::domain::email;
use crate::domain::email_domain::{self, DomainState, TenantDomain};
use crate::domain::events::{EventCursor, EventType};
use crate::domain::invitation::new_token;
use crate::domain::membership::Membership;
use crate::domain::permissions::{MEMBER_ROLE, Permission};
use crate::domain::tenant::check_etag;
use crate::domain::{Caller, DomainError, now_micros};
use crate::store;

/// What AutoJoin did in one tenant.
pub enum JoinOutcome {
    Joined(Membership),
    AlreadyMember(Membership),
    NoSeat,
}

/// A domain to add to a tenant, normalized.
pub struct AddDomain {
    pub tenant_id: Uuid,
    pub domain: String,
    pub auto_join: bool,
}

/// A tenant's domain, by id.
pub struct DomainRef {
    pub tenant_id: Uuid,
    pub domain_id: Uuid,
}

/// A change to a domain's auto-join, at the etag the caller read it at.
pub struct UpdateDomain {
    pub tenant_id: Uuid,
    pub domain_id: Uuid,
    pub etag: String,
    pub auto_join: Option<bool>,
}

/// A user signing up with an email address.
pub struct AutoJoin {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
}

impl Services {
    pub async fn add_domain(
        &self,
        caller: Caller,
        AddDomain {
            tenant_id,
            domain,
            auto_join,
        }: AddDomain,
    ) -> Result<(TenantDomain, EventCursor), DomainError> {
        if email_domain::is_consumer(&domain) {
            return Err(DomainError::ConsumerDomain(domain));
        }
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require(Permission::TenantManage)?;
                if store::domains::find_by_name(&tx.txn, tenant_id, &domain)
                    .await?
                    .is_some()
                {
                    return Err(DomainError::DomainExists);
                }
                if store::domains::verified_by(&tx.txn, &domain)
                    .await?
                    .is_some()
                {
                    return Err(DomainError::DomainTaken);
                }
                let now = now_micros();
                let added = TenantDomain {
                    id: Uuid::now_v7(),
                    tenant_id,
                    domain,
                    state: DomainState::Pending,
                    auto_join,
                    verification_token: new_token()?,
                    created_at: now,
                    updated_at: now,
                    verified_at: None,
                    version: 1,
                };
                store::domains::insert(&tx.txn, &added).await?;
                tx.emit(EventType::DomainAdded, None, Some(&added));
                Ok(added)
            })
        })
        .await
    }

    /// Looks up the TXT record and, when it holds the expected value, claims the domain.
    pub async fn verify_domain(
        &self,
        caller: Caller,
        DomainRef {
            tenant_id,
            domain_id,
        }: DomainRef,
    ) -> Result<(TenantDomain, EventCursor), DomainError> {
        let pending = {
            let conn = &self.store.reader();
            let (tenant, _, access) = Access::read(conn, tenant_id, caller).await?;
            access.require(Permission::TenantManage)?;
            tenant.ensure_member_management()?;
            store::domains::get(conn, tenant_id, domain_id).await?
        };
        if pending.state == DomainState::Pending {
            // Another tenant's claim wins whatever the record says; no need to ask DNS.
            if let Some((owner, _)) =
                store::domains::verified_by(&self.store.reader(), &pending.domain).await?
                && owner != tenant_id
            {
                return Err(DomainError::DomainTaken);
            }
            let name = pending.record_name();
            let expected = pending.record_value();
            let found = self.dns.txt(&name).await?;
            if !found.contains(&expected) {
                let reason = if found.is_empty() {
                    format!("no TXT record at {name}; publish {expected:?} there and retry")
                } else {
                    format!("the TXT records at {name} are {found:?}, not {expected:?}")
                };
                return Err(DomainError::DomainVerificationFailed(reason));
            }
        }
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require(Permission::TenantManage)?;
                let before = store::domains::get(&tx.txn, tenant_id, domain_id).await?;
                if before.state == DomainState::Verified {
                    return Ok(before);
                }
                store::domains::claim(&tx.txn, &before).await?;
                let now = now_micros();
                let mut after = before.clone();
                after.state = DomainState::Verified;
                after.verified_at = Some(now);
                tx.save(EventType::DomainVerified, &before, after, now)
                    .await
            })
        })
        .await
    }

    pub async fn list_domains(
        &self,
        caller: Caller,
        tenant_id: Uuid,
    ) -> Result<Vec<TenantDomain>, DomainError> {
        let conn = self.store.read_snapshot().await?;
        let (_, _, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        store::domains::list(&conn, tenant_id).await
    }

    pub async fn update_domain(
        &self,
        caller: Caller,
        UpdateDomain {
            tenant_id,
            domain_id,
            etag,
            auto_join,
        }: UpdateDomain,
    ) -> Result<(TenantDomain, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                locked.access.require(Permission::TenantManage)?;
                let before = store::domains::get(&tx.txn, tenant_id, domain_id).await?;
                check_etag(&etag, before.version)?;
                let mut after = before.clone();
                if let Some(auto_join) = auto_join {
                    after.auto_join = auto_join;
                }
                tx.save(EventType::DomainUpdated, &before, after, now_micros())
                    .await
            })
        })
        .await
    }

    pub async fn remove_domain(
        &self,
        caller: Caller,
        DomainRef {
            tenant_id,
            domain_id,
        }: DomainRef,
    ) -> Result<EventCursor, DomainError> {
        let ((), cursor) = self
            .write_locked(caller, tenant_id, move |tx, locked| {
                Box::pin(async move {
                    locked.access.require(Permission::TenantManage)?;
                    let before = store::domains::get(&tx.txn, tenant_id, domain_id).await?;
                    remove(tx, before).await
                })
            })
            .await?;
        Ok(cursor)
    }

    /// Joins every tenant that verified the email's domain with auto-join on and has a free
    /// seat; one transaction per tenant, so one full tenant does not hold up the others.
    pub async fn auto_join(
        &self,
        caller: Caller,
        AutoJoin {
            user_id,
            email,
            display_name,
        }: AutoJoin,
    ) -> Result<(Vec<(Uuid, JoinOutcome)>, EventCursor), DomainError> {
        caller.ensure_acting_for(user_id)?;
        let Some(domain) = email::domain_of(&email).map(str::to_string) else {
            return Ok((Vec::new(), EventCursor(self.feed.head())));
        };
        let tenants = store::domains::auto_join_tenants(&self.store.reader(), &domain).await?;
        let mut results = Vec::new();
        let mut cursor = EventCursor(
            store::event_log::head(&self.store.reader())
                .await
                .map_err(store::db_error)?,
        );
        for tenant_id in tenants {
            let (email, display_name) = (email.clone(), display_name.clone());
            let (outcome, at) = self
                .store
                .write_to(tenant_id, caller, move |tx| {
                    Box::pin(async move {
                        let (tenant, roles, counters) =
                            store::tenants::lock_with_roles(&tx.txn, tenant_id).await?;
                        if tenant.ensure_member_management().is_err() {
                            return Ok(None);
                        }
                        if let Some((member, _)) =
                            store::memberships::find(&tx.txn, &roles, tenant_id, user_id).await?
                        {
                            return Ok(Some(JoinOutcome::AlreadyMember(member)));
                        }
                        if store::tenants::ensure_seats(&tx.txn, &tenant, &counters, 1)
                            .await
                            .is_err()
                        {
                            return Ok(Some(JoinOutcome::NoSeat));
                        }
                        let role = roles.named(MEMBER_ROLE)?.clone();
                        let now = now_micros();
                        let membership = Membership::joining(
                            (tenant_id, user_id),
                            email,
                            display_name,
                            &role.name,
                            now,
                        );
                        store::memberships::join(&tx.txn, None, &membership, role.id).await?;
                        tx.emit(EventType::MembershipCreated, None, Some(&membership));
                        if counters.has_pending_invitations() {
                            super::invitations::close_for_new_member(
                                tx,
                                &roles,
                                tenant_id,
                                &membership.email,
                            )
                            .await?;
                        }
                        Ok(Some(JoinOutcome::Joined(membership)))
                    })
                })
                .await?;
            cursor = cursor.max(at);
            // Tenants that stopped taking members (dissolved, downgraded) are not reported.
            if let Some(outcome) = outcome {
                results.push((tenant_id, outcome));
            }
        }
        Ok((results, cursor))
    }
}

/// Deletes a domain inside a writing transaction, releasing its verification claim.
pub(crate) async fn remove(
    tx: &mut crate::store::Tx,
    domain: TenantDomain,
) -> Result<(), DomainError> {
    store::domains::delete(&tx.txn, &domain).await?;
    tx.emit(EventType::DomainRemoved, Some(&domain), None);
    Ok(())
}
