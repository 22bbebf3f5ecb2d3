//! Invitation use cases (DESIGN rules 15-19). Emails go out after the transaction commits, so
//! a failing mail server never loses an invitation.

use std::collections::HashSet;

use uuid::Uuid;

use super::access::Access;
use super::{Locked, Services};
use crate::domain::email::canonical_email;
use crate::domain::events::{EventCursor, EventType};
use crate::domain::invitation::InvitationFilter;
use crate::domain::invitation::{Invitation, InvitationState, new_token, token_hash};
use crate::domain::membership::{Membership, MembershipSource, MembershipStatus};
use crate::domain::permissions::Permission;
use crate::domain::role::Role;
use crate::domain::{Caller, DomainError, Micros, Versioned, now_micros};
use crate::mail::Delivery;
use crate::store::memberships::{After, SortValue};
use crate::store::{self, Tx, requests};

pub struct CreateInvitation {
    pub tenant_id: Uuid,
    pub email: String,
    pub role: String,
    pub ttl: Micros,
    pub request_id: Option<String>,
}

/// An invitation just created or resent, with what the caller needs to deliver it.
pub struct Sent {
    pub invitation: Invitation,
    /// Plaintext, only here; `None` on an idempotent retry.
    pub token: Option<String>,
    pub accept_url: Option<String>,
    /// `None` when nothing was sent (an idempotent retry).
    pub delivery: Option<Delivery>,
}

/// What a bulk invitation did with one email, in request order.
pub enum BulkOutcome {
    Created(Box<Sent>),
    InvalidEmail(String),
    AlreadyMember,
    AlreadyInvited,
    Duplicate,
}

pub struct BulkResult {
    pub email: String,
    pub outcome: BulkOutcome,
}

const CREATE_INVITATION: &str = "CreateInvitation";

/// The role to invite with: it must exist, not be the owner role, and be grantable by the
/// caller (rule 13: no escalation, `admins.manage` for roles holding `members.manage`).
fn invitable_role(locked: &Locked, name: &str) -> Result<Role, DomainError> {
    let role = locked.roles.bindable(name)?;
    locked.access.require_grant(role)?;
    Ok(role.clone())
}

/// Acting on an existing invitation needs the rights to grant its role.
fn require_manage_invitation(locked: &Locked, invitation: &Invitation) -> Result<(), DomainError> {
    match locked.roles.by_id(invitation.role_id) {
        Some(role) => locked.access.require_grant(role),
        None => locked.access.require(Permission::MembersManage),
    }
}

/// Invitations to many email addresses, with one role and expiry.
pub struct BulkCreateInvitations {
    pub tenant_id: Uuid,
    pub emails: Vec<String>,
    pub role: String,
    pub ttl: Micros,
}

/// An invitation of a tenant, by id.
pub struct InvitationRef {
    pub tenant_id: Uuid,
    pub id: Uuid,
}

/// A page of a tenant's invitations.
pub struct ListInvitations {
    pub tenant_id: Uuid,
    pub filter: InvitationFilter,
    pub page_size: u64,
    pub page_token: String,
}

/// An invitation to send again with a new token and expiry.
pub struct ResendInvitation {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub ttl: Micros,
}

/// A user accepting an invitation by its token, with their verified email.
pub struct AcceptInvitation {
    pub token: String,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
}

impl Services {
    pub async fn create_invitation(
        &self,
        caller: Caller,
        command: CreateInvitation,
    ) -> Result<(Sent, EventCursor), DomainError> {
        let ((invitation, token, tenant_name), cursor) = self
            .write_locked(caller, command.tenant_id, move |tx, locked| {
                Box::pin(async move {
                    if let Some(request_id) = &command.request_id
                        && let Some(key) =
                            requests::find(&tx.txn, CREATE_INVITATION, request_id).await?
                    {
                        let id = Uuid::try_parse(&key)
                            .map_err(|_| store::corrupt("request key", &key))?;
                        let invitation =
                            store::invitations::get(&tx.txn, &locked.roles, command.tenant_id, id)
                                .await
                                .map_err(|_| DomainError::RequestIdReused)?;
                        if invitation.email != command.email {
                            return Err(DomainError::RequestIdReused);
                        }
                        return Ok((invitation, None, locked.tenant.name));
                    }
                    let role = invitable_role(&locked, &command.role)?;
                    let emails = [command.email.clone()];
                    if !store::memberships::seated_emails(&tx.txn, command.tenant_id, &emails)
                        .await?
                        .is_empty()
                    {
                        return Err(DomainError::MemberExists);
                    }
                    let now = now_micros();
                    if !store::invitations::pending_emails(&tx.txn, command.tenant_id, &emails, now)
                        .await?
                        .is_empty()
                    {
                        return Err(DomainError::InvitationPending);
                    }
                    store::tenants::ensure_seats(&tx.txn, &locked.tenant, &locked.counters, 1)
                        .await?;
                    let token = new_token()?;
                    let invitation = Invitation::new(
                        command.tenant_id,
                        command.email,
                        &role,
                        caller,
                        command.ttl,
                        now,
                    );
                    store::invitations::insert(&tx.txn, &invitation, &token_hash(&token)).await?;
                    let key = invitation.id.to_string();
                    tx.remember_request(
                        CREATE_INVITATION,
                        command.request_id.as_deref(),
                        &key,
                        now,
                    )
                    .await?;
                    tx.emit(EventType::InvitationCreated, None, Some(&invitation))
                        .for_request(command.request_id.as_deref());
                    Ok((invitation, Some(token), locked.tenant.name))
                })
            })
            .await?;
        let sent = self.deliver(invitation, token, &tenant_name).await;
        Ok((sent, cursor))
    }

    /// Sends the email for a new token (none for an idempotent retry).
    async fn deliver(
        &self,
        invitation: Invitation,
        token: Option<String>,
        tenant_name: &str,
    ) -> Sent {
        let Some(token) = token else {
            return Sent {
                invitation,
                token: None,
                accept_url: None,
                delivery: None,
            };
        };
        let delivery = self
            .mailer
            .send_invitation(&invitation, tenant_name, &token)
            .await;
        Sent {
            accept_url: self.mailer.accept_url(&token),
            invitation,
            token: Some(token),
            delivery: Some(delivery),
        }
    }

    /// Invites up to 1,000 emails, all or nothing on seats.
    pub async fn bulk_create_invitations(
        &self,
        caller: Caller,
        BulkCreateInvitations {
            tenant_id,
            emails,
            role,
            ttl,
        }: BulkCreateInvitations,
    ) -> Result<(Vec<BulkResult>, EventCursor), DomainError> {
        let ((planned, created, tenant_name), cursor) = self
            .write_locked(caller, tenant_id, move |tx, locked| {
                Box::pin(async move {
                    let role = invitable_role(&locked, &role)?;
                    // Normalize and deduplicate first: the outcome of each email, in order.
                    let mut seen = HashSet::new();
                    let mut planned: Vec<(String, Result<String, BulkOutcome>)> = Vec::new();
                    for given in emails {
                        let outcome = match canonical_email(&given) {
                            Err(description) => Err(BulkOutcome::InvalidEmail(description)),
                            Ok(email) if !seen.insert(email.clone()) => Err(BulkOutcome::Duplicate),
                            Ok(email) => Ok(email),
                        };
                        planned.push((given, outcome));
                    }
                    let candidates: Vec<String> = planned
                        .iter()
                        .filter_map(|(_, o)| o.as_ref().ok().cloned())
                        .collect();
                    let now = now_micros();
                    let members =
                        store::memberships::seated_emails(&tx.txn, tenant_id, &candidates).await?;
                    let invited =
                        store::invitations::pending_emails(&tx.txn, tenant_id, &candidates, now)
                            .await?;
                    for (_, outcome) in planned.iter_mut() {
                        if let Ok(email) = outcome {
                            if members.contains(email.as_str()) {
                                *outcome = Err(BulkOutcome::AlreadyMember);
                            } else if invited.contains(email.as_str()) {
                                *outcome = Err(BulkOutcome::AlreadyInvited);
                            }
                        }
                    }
                    let wanted = planned.iter().filter(|(_, o)| o.is_ok()).count() as i64;
                    store::tenants::ensure_seats(&tx.txn, &locked.tenant, &locked.counters, wanted)
                        .await?;
                    let mut created = Vec::new();
                    for (_, outcome) in &planned {
                        let Ok(email) = outcome else { continue };
                        let token = new_token()?;
                        let invitation =
                            Invitation::new(tenant_id, email.clone(), &role, caller, ttl, now);
                        store::invitations::insert(&tx.txn, &invitation, &token_hash(&token))
                            .await?;
                        tx.emit(EventType::InvitationCreated, None, Some(&invitation));
                        created.push((invitation, token));
                    }
                    Ok((planned, created, locked.tenant.name))
                })
            })
            .await?;
        // Deliver a few at a time: a thousand sequential SMTP sessions would take minutes.
        let mut sent: Vec<Sent> = Vec::with_capacity(created.len());
        for chunk in created.chunks(16) {
            let mut batch = tokio::task::JoinSet::new();
            for (index, (invitation, token)) in chunk.iter().cloned().enumerate() {
                let services = self.clone();
                let name = tenant_name.clone();
                batch.spawn(async move {
                    (
                        index,
                        services.deliver(invitation, Some(token), &name).await,
                    )
                });
            }
            let mut results: Vec<(usize, Sent)> = batch.join_all().await;
            results.sort_by_key(|(index, _)| *index);
            sent.extend(results.into_iter().map(|(_, s)| s));
        }
        let mut sent = sent.into_iter();
        let results = planned
            .into_iter()
            .map(|(email, outcome)| BulkResult {
                email,
                outcome: match outcome {
                    Ok(_) => match sent.next() {
                        Some(s) => BulkOutcome::Created(Box::new(s)),
                        None => BulkOutcome::InvalidEmail("not created".into()),
                    },
                    Err(outcome) => outcome,
                },
            })
            .collect();
        Ok((results, cursor))
    }

    pub async fn get_invitation(
        &self,
        caller: Caller,
        InvitationRef { tenant_id, id }: InvitationRef,
    ) -> Result<Invitation, DomainError> {
        let conn = self.store.read_snapshot().await?;
        let (_, roles, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        store::invitations::get(&conn, &roles, tenant_id, id).await
    }

    pub async fn list_invitations(
        &self,
        caller: Caller,
        ListInvitations {
            tenant_id,
            filter,
            page_size,
            page_token,
        }: ListInvitations,
    ) -> Result<(Vec<Invitation>, String), DomainError> {
        let pager = self.page_tokens.pager(
            &[
                "invitations",
                &tenant_id.to_string(),
                filter.state.map_or("", |s| s.as_str()),
                filter.query.as_deref().unwrap_or(""),
            ],
            page_size,
        );
        let after = match pager.after(&page_token)? {
            None => None,
            Some(After {
                value: SortValue::Int(created_at),
                user_id,
            }) => Some((created_at, user_id)),
            Some(_) => return Err(DomainError::InvalidPageToken),
        };
        let conn = self.store.read_snapshot().await?;
        let (tenant, roles, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        tenant.ensure_enterprise()?;
        let mut page = store::invitations::list(
            &conn,
            &roles,
            tenant_id,
            &filter,
            after,
            pager.limit(),
            now_micros(),
        )
        .await?;
        let next = pager.finish(&mut page, |last| After {
            value: SortValue::Int(last.created_at),
            user_id: last.id,
        });
        Ok((page, next))
    }

    /// A new token and expiry; an expired invitation needs a free seat to re-open.
    pub async fn resend_invitation(
        &self,
        caller: Caller,
        ResendInvitation { tenant_id, id, ttl }: ResendInvitation,
    ) -> Result<(Sent, EventCursor), DomainError> {
        let ((invitation, token, tenant_name), cursor) = self
            .write_locked(caller, tenant_id, move |tx, locked| {
                Box::pin(async move {
                    let before =
                        store::invitations::get(&tx.txn, &locked.roles, tenant_id, id).await?;
                    require_manage_invitation(&locked, &before)?;
                    let now = now_micros();
                    match before.state_at(now) {
                        InvitationState::Pending => {}
                        InvitationState::Expired => {
                            store::tenants::ensure_seats(
                                &tx.txn,
                                &locked.tenant,
                                &locked.counters,
                                1,
                            )
                            .await?;
                        }
                        state => return Err(DomainError::InvitationNotPending(state.as_str())),
                    }
                    let token = new_token()?;
                    let mut after = before.clone();
                    after.expires_at = now + ttl;
                    after.send_count += 1;
                    after.last_sent_at = now;
                    after.revise(now);
                    store::invitations::update_with_token(
                        &tx.txn,
                        &before,
                        &after,
                        &token_hash(&token),
                    )
                    .await?;
                    tx.emit(EventType::InvitationResent, Some(&before), Some(&after));
                    Ok((after, Some(token), locked.tenant.name))
                })
            })
            .await?;
        let sent = self.deliver(invitation, token, &tenant_name).await;
        Ok((sent, cursor))
    }

    pub async fn revoke_invitation(
        &self,
        caller: Caller,
        InvitationRef { tenant_id, id }: InvitationRef,
    ) -> Result<(Invitation, EventCursor), DomainError> {
        self.write_locked(caller, tenant_id, move |tx, locked| {
            Box::pin(async move {
                let before = store::invitations::get(&tx.txn, &locked.roles, tenant_id, id).await?;
                require_manage_invitation(&locked, &before)?;
                if before.state != InvitationState::Pending {
                    return Err(DomainError::InvitationNotPending(before.state.as_str()));
                }
                revoke(tx, before).await
            })
        })
        .await
    }

    /// Accepts an invitation for `user_id`, whose verified email must be the invited one.
    pub async fn accept_invitation(
        &self,
        caller: Caller,
        AcceptInvitation {
            token,
            user_id,
            email,
            display_name,
        }: AcceptInvitation,
    ) -> Result<(Membership, Invitation, EventCursor), DomainError> {
        caller.ensure_acting_for(user_id)?;
        let hash = token_hash(&token);
        let (tenant_id, id) = store::invitations::find_by_token_hash(&self.store.reader(), &hash)
            .await?
            .ok_or(DomainError::InvitationNotFound)?;
        let ((membership, invitation), cursor) = self
            .store
            .write_to(tenant_id, caller, move |tx| {
                Box::pin(async move {
                    let tenant = store::tenants::lock(&tx.txn, tenant_id).await?;
                    // The token again, under the lock: a resend that committed since it was
                    // looked up has rotated it, and the old one must open nothing.
                    if store::invitations::find_by_token_hash(&tx.txn, &hash).await?
                        != Some((tenant_id, id))
                    {
                        return Err(DomainError::InvitationNotFound);
                    }
                    tenant.ensure_member_management()?;
                    let roles = store::roles::list(&tx.txn, tenant_id).await?;
                    // Read again under the tenant lock: of two concurrent accepts, the second
                    // sees the first one's result.
                    let before = store::invitations::get(&tx.txn, &roles, tenant_id, id).await?;
                    let now = now_micros();
                    before.ensure_acceptable(now)?;
                    if before.email != email {
                        return Err(DomainError::EmailMismatch);
                    }
                    let role = roles
                        .by_id(before.role_id)
                        .ok_or_else(|| DomainError::RoleNotFound(before.role.clone()))?
                        .clone();
                    let existing =
                        store::memberships::find(&tx.txn, &roles, tenant_id, user_id).await?;
                    if let Some((member, _)) = &existing
                        && member.status != MembershipStatus::Left
                    {
                        return Err(DomainError::MemberExists);
                    }
                    let previous = existing.map(|(m, _)| m);
                    let membership = Membership {
                        source: MembershipSource::Invite,
                        invited_by: before.inviter_id,
                        ..Membership::joining(
                            (tenant_id, user_id),
                            before.email.clone(),
                            display_name,
                            &role.name,
                            now,
                        )
                    }
                    .returning(previous.as_ref());
                    store::memberships::join(&tx.txn, previous.as_ref(), &membership, role.id)
                        .await?;
                    let mut after = before.clone();
                    after.state = InvitationState::Accepted;
                    after.accepted_by = Some(user_id);
                    after.accepted_at = Some(now);
                    after.revise(now);
                    store::invitations::update(&tx.txn, &before, &after).await?;
                    tx.emit(
                        EventType::MembershipCreated,
                        previous.as_ref(),
                        Some(&membership),
                    );
                    tx.emit(EventType::InvitationAccepted, Some(&before), Some(&after));
                    Ok((membership, after))
                })
            })
            .await?;
        Ok((membership, invitation, cursor))
    }
}

/// Revokes a pending invitation inside a writing transaction; its seat frees at once.
pub(crate) async fn revoke(tx: &mut Tx, before: Invitation) -> Result<Invitation, DomainError> {
    let now = now_micros();
    let mut after = before.clone();
    after.state = InvitationState::Revoked;
    tx.save(EventType::InvitationRevoked, &before, after, now)
        .await
}

/// Revokes the pending invitations of an email that just became a member another way (linked
/// directly, auto-joined): they would otherwise hold a second seat and list the person twice.
pub(crate) async fn close_for_new_member(
    tx: &mut Tx,
    roles: &crate::domain::role::TenantRoles,
    tenant_id: Uuid,
    email: &str,
) -> Result<(), DomainError> {
    for invitation in
        store::invitations::pending_for_email(&tx.txn, roles, tenant_id, email).await?
    {
        revoke(tx, invitation).await?;
    }
    Ok(())
}
