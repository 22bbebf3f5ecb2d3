//! Tenant use cases: create with a first owner, read, update, dissolve, seat usage.

use uuid::Uuid;

use super::access::Access;
use super::{Locked, Services};
use crate::domain::events::{EventCursor, EventType};
use crate::domain::membership::{Membership, MembershipStatus, MembershipType};
use crate::domain::permissions::Permission;
use crate::domain::role::{BindingKind, BindingSubject};
use crate::domain::tenant::{RolePreset, SeatUsage, Tenant, TenantKind, TenantState, check_etag};
use crate::domain::{Caller, DomainError, Versioned, now_micros};
use crate::store::{self, Transaction, requests};

pub struct CreateTenant {
    pub name: String,
    pub kind: TenantKind,
    pub role_preset: RolePreset,
    pub seat_limit: Option<i32>,
    pub owner_user_id: Uuid,
    pub owner_email: String,
    pub owner_display_name: String,
    pub request_id: Option<String>,
}

/// The fields UpdateTenant may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub kind: Option<TenantKind>,
    /// `Some(None)` removes the limit.
    pub seat_limit: Option<Option<i32>>,
}

const CREATE_TENANT: &str = "CreateTenant";

impl CreateTenant {
    /// What makes a retry "the same request" (AIP-155): every field but the request_id. A
    /// tenant's name, seats and owner can all change after it is created, so the tenant cannot
    /// be compared with a retry; this digest of the first request is recorded with it instead.
    fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let seat_limit = self.seat_limit.map(|n| n.to_string()).unwrap_or_default();
        let owner_user_id = self.owner_user_id.to_string();
        let mut hasher = Sha256::new();
        for part in [
            self.name.as_str(),
            self.kind.as_str(),
            self.role_preset.as_str(),
            seat_limit.as_str(),
            owner_user_id.as_str(),
            self.owner_email.as_str(),
            self.owner_display_name.as_str(),
        ] {
            // Length-prefixed, so no two different requests hash the same bytes.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The request key of a created tenant: its id and the digest of the request that made it.
/// Keys recorded before the digest existed hold the id alone.
fn tenant_request_key(tenant_id: Uuid, digest: &str) -> String {
    format!("{tenant_id}#{digest}")
}

/// A change to a tenant's fields, at the etag the caller read it at.
pub struct UpdateTenant {
    pub tenant_id: Uuid,
    pub etag: String,
    pub patch: TenantPatch,
}

/// A tenant to dissolve, at the etag the caller read it at; `validate_only` checks and writes
/// nothing.
pub struct DissolveTenant {
    pub tenant_id: Uuid,
    pub etag: String,
    pub validate_only: bool,
}

impl Services {
    pub async fn create_tenant(
        &self,
        caller: Caller,
        command: CreateTenant,
    ) -> Result<(Tenant, Membership, EventCursor), DomainError> {
        if let Caller::User(actor) = caller
            && actor != command.owner_user_id
        {
            return Err(DomainError::PermissionDenied(Permission::TenantManage));
        }
        let digest = command.digest();
        let replay = async |conn: &Transaction, request_id: &str| {
            replay_create_tenant(conn, request_id, &digest).await
        };
        if let Some(request_id) = &command.request_id
            && let Some(((tenant, owner), cursor)) = self.replayed(request_id, replay).await?
        {
            return Ok((tenant, owner, cursor));
        }
        let request_id = command.request_id.clone();
        let recorded_digest = digest.clone();
        let outcome = self
            .store
            .write(caller, move |tx| {
                Box::pin(async move {
                    let now = now_micros();
                    let tenant = Tenant {
                        id: Uuid::now_v7(),
                        name: command.name,
                        kind: command.kind,
                        role_preset: command.role_preset,
                        seat_limit: command.seat_limit,
                        state: TenantState::Active,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                        dissolved_at: None,
                    };
                    store::tenants::insert(&tx.txn, &tenant).await?;
                    let roles =
                        store::roles::create_builtin(&tx.txn, tenant.id, tenant.role_preset, now)
                            .await?;
                    let owner_role = roles
                        .owner_role()
                        .ok_or_else(|| DomainError::Internal("preset without owner".into()))?;
                    let owner = Membership {
                        member_type: MembershipType::Owner,
                        ..Membership::joining(
                            (tenant.id, command.owner_user_id),
                            command.owner_email,
                            command.owner_display_name,
                            &owner_role.name,
                            now,
                        )
                    };
                    store::memberships::join(&tx.txn, None, &owner, owner_role.id).await?;
                    let key = tenant_request_key(tenant.id, &recorded_digest);
                    tx.remember_request(CREATE_TENANT, command.request_id.as_deref(), &key, now)
                        .await?;
                    tx.emit(EventType::TenantCreated, None, Some(&tenant))
                        .for_request(command.request_id.as_deref());
                    tx.emit(EventType::MembershipCreated, None, Some(&owner))
                        .for_request(command.request_id.as_deref());
                    Ok((tenant, owner))
                })
            })
            .await;
        let ((tenant, owner), cursor) = self
            .or_as_the_first_call(outcome, request_id.as_deref(), async |conn, request_id| {
                replay_create_tenant(conn, request_id, &digest).await
            })
            .await?;
        Ok((tenant, owner, cursor))
    }

    pub async fn get_tenant(&self, caller: Caller, tenant_id: Uuid) -> Result<Tenant, DomainError> {
        let conn = self.store.read_snapshot().await?;
        let (tenant, _, _) = Access::read(&conn, tenant_id, caller).await?;
        Ok(tenant)
    }

    pub async fn update_tenant(
        &self,
        caller: Caller,
        UpdateTenant {
            tenant_id,
            etag,
            patch,
        }: UpdateTenant,
    ) -> Result<(Tenant, EventCursor), DomainError> {
        self.store
            .write_to(tenant_id, caller, move |tx| {
                Box::pin(async move {
                    let locked = Access::lock(&tx.txn, tenant_id, caller).await?;
                    let before = active_at(&locked, Permission::TenantManage, &etag)?;
                    let mut tenant = before.clone();
                    if let Some(name) = patch.name {
                        tenant.name = name;
                    }
                    if let Some(kind) = patch.kind {
                        if tenant.kind == TenantKind::Enterprise && kind == TenantKind::Personal {
                            return Err(DomainError::TenantDowngrade);
                        }
                        tenant.kind = kind;
                    }
                    if let Some(seat_limit) = patch.seat_limit {
                        tenant.seat_limit = seat_limit;
                    }
                    tx.save(EventType::TenantUpdated, &before, tenant, now_micros())
                        .await
                })
            })
            .await
    }

    /// Ends every membership (status LEFT, bindings dropped) and marks the tenant DISSOLVED.
    pub async fn dissolve_tenant(
        &self,
        caller: Caller,
        DissolveTenant {
            tenant_id,
            etag,
            validate_only,
        }: DissolveTenant,
    ) -> Result<(Tenant, EventCursor), DomainError> {
        self.store
            .write_to(tenant_id, caller, move |tx| {
                Box::pin(async move {
                    let locked = Access::lock(&tx.txn, tenant_id, caller).await?;
                    let before = active_at(&locked, Permission::TenantDelete, &etag)?;
                    let roles = locked.roles;
                    if validate_only {
                        tx.roll_back_at_end();
                        return Ok(before);
                    }
                    let now = now_micros();
                    for (member, _) in
                        store::memberships::all_seated(&tx.txn, &roles, tenant_id).await?
                    {
                        let mut ended = member.clone();
                        ended.status = MembershipStatus::Left;
                        ended.roles.clear();
                        ended.revise(now);
                        let subject = BindingSubject::User(member.user_id);
                        store::bindings::unbind(&tx.txn, tenant_id, subject, None).await?;
                        super::groups::leave_all_groups(tx, &roles, tenant_id, member.user_id)
                            .await?;
                        store::memberships::update(&tx.txn, &member, &ended).await?;
                        tx.emit(EventType::MembershipLeft, Some(&member), Some(&ended));
                    }
                    for invitation in
                        store::invitations::all_pending(&tx.txn, &roles, tenant_id, None).await?
                    {
                        super::invitations::revoke(tx, invitation).await?;
                    }
                    // A dissolved tenant can no longer manage its domains: release them, so
                    // the organization can verify them again under another tenant.
                    for domain in store::domains::list(&tx.txn, tenant_id).await? {
                        super::domains::remove(tx, domain).await?;
                    }
                    let mut tenant = before.clone();
                    tenant.state = TenantState::Dissolved;
                    tenant.dissolved_at = Some(now);
                    tx.save(EventType::TenantDissolved, &before, tenant, now)
                        .await
                })
            })
            .await
    }

    pub async fn seat_usage(
        &self,
        caller: Caller,
        tenant_id: Uuid,
    ) -> Result<SeatUsage, DomainError> {
        let conn = self.store.read_snapshot().await?;
        let (tenant, _, access) = Access::read(&conn, tenant_id, caller).await?;
        access.require(Permission::MembersRead)?;
        store::tenants::seat_usage(&conn, &tenant).await
    }
}

/// The locked tenant, for a change of it by a caller holding `permission`: still ACTIVE, and
/// at the etag the caller read it at.
fn active_at(locked: &Locked, permission: Permission, etag: &str) -> Result<Tenant, DomainError> {
    locked.access.require(permission)?;
    locked.tenant.ensure_active()?;
    check_etag(etag, locked.tenant.version)?;
    Ok(locked.tenant.clone())
}

/// The answer an earlier call with this request_id got, as the tenant is now; refused when
/// that call asked for something else (`digest` differs).
async fn replay_create_tenant(
    conn: &Transaction,
    request_id: &str,
    digest: &str,
) -> Result<Option<(Tenant, Membership)>, DomainError> {
    let Some(key) = requests::find(conn, CREATE_TENANT, request_id).await? else {
        return Ok(None);
    };
    let (id, recorded_digest) = match key.split_once('#') {
        Some((id, recorded)) => (id, Some(recorded)),
        None => (key.as_str(), None),
    };
    if recorded_digest.is_some_and(|recorded| recorded != digest) {
        return Err(DomainError::RequestIdReused);
    }
    let tenant_id = Uuid::try_parse(id).map_err(|_| store::corrupt("request key", &key))?;
    let (tenant, roles) = store::tenants::get_with_roles(conn, tenant_id).await?;
    let owner_role = roles
        .owner_role()
        .ok_or_else(|| DomainError::Internal("tenant without owner role".into()))?;
    let owner_id = store::bindings::holders_of(conn, tenant_id, BindingKind::User, owner_role.id)
        .await?
        .into_iter()
        .next()
        .ok_or(DomainError::MembershipNotFound)?;
    let (owner, _) = store::memberships::get(conn, &roles, tenant_id, owner_id).await?;
    Ok(Some((tenant, owner)))
}
