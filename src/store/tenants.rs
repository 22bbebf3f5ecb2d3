//! Tenants and seat counts.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use uuid::Uuid;

use super::entities::{memberships, tenants};
use super::{corrupt, db_error, for_update};
use crate::domain::membership::MembershipStatus;
use crate::domain::tenant::{RolePreset, SeatUsage, Tenant, TenantKind, TenantState};
use crate::domain::{DomainError, now_micros};

fn to_domain(model: tenants::Model) -> Result<Tenant, DomainError> {
    Ok(Tenant {
        id: model.id,
        kind: TenantKind::parse(&model.kind).ok_or_else(|| corrupt("tenant kind", &model.kind))?,
        role_preset: RolePreset::parse(&model.role_preset)
            .ok_or_else(|| corrupt("role preset", &model.role_preset))?,
        state: TenantState::parse(&model.state)
            .ok_or_else(|| corrupt("tenant state", &model.state))?,
        name: model.name,
        seat_limit: model.seat_limit,
        version: model.version,
        created_at: model.created_at,
        updated_at: model.updated_at,
        dissolved_at: model.dissolved_at,
    })
}

fn to_active(tenant: &Tenant) -> tenants::ActiveModel {
    tenants::ActiveModel {
        id: Set(tenant.id),
        name: Set(tenant.name.clone()),
        kind: Set(tenant.kind.as_str().to_string()),
        role_preset: Set(tenant.role_preset.as_str().to_string()),
        seat_limit: Set(tenant.seat_limit),
        state: Set(tenant.state.as_str().to_string()),
        version: Set(tenant.version),
        created_at: Set(tenant.created_at),
        updated_at: Set(tenant.updated_at),
        dissolved_at: Set(tenant.dissolved_at),
    }
}

/// Reads a tenant; `NOT_FOUND` when it does not exist.
pub async fn get<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Tenant, DomainError> {
    let model = tenants::Entity::find_by_id(id)
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::TenantNotFound)?;
    to_domain(model)
}

/// Reads a tenant and locks its row until the transaction ends: the per-tenant serialization
/// point of every writer, so seat and owner checks cannot race.
pub async fn lock<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Tenant, DomainError> {
    let query = for_update(tenants::Entity::find_by_id(id), conn.get_database_backend());
    let model = query
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::TenantNotFound)?;
    to_domain(model)
}

pub async fn insert<C: ConnectionTrait>(conn: &C, tenant: &Tenant) -> Result<(), DomainError> {
    tenants::Entity::insert(to_active(tenant))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(conn: &C, tenant: &Tenant) -> Result<(), DomainError> {
    tenants::Entity::update(to_active(tenant))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Seats in use: ACTIVE and SUSPENDED members plus pending invitations not yet expired at
/// `now` (an expired invitation frees its seat by the clock alone, no job needed).
pub async fn seat_usage<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
) -> Result<SeatUsage, DomainError> {
    let seated = MembershipStatus::seated();
    let members = memberships::Entity::find()
        .filter(memberships::Column::TenantId.eq(tenant.id))
        .filter(memberships::Column::Status.is_in(seated))
        .count(conn)
        .await
        .map_err(db_error)?;
    let invited = super::invitations::count_pending(conn, tenant.id, now_micros()).await?;
    Ok(SeatUsage {
        used: members as i64 + invited,
        limit: tenant.seat_limit.map(i64::from),
    })
}

/// Refuses when `wanted` more seats do not fit. Tenants without a limit skip the count, which
/// grows with the tenant.
pub async fn ensure_seats<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    wanted: i64,
) -> Result<(), DomainError> {
    if tenant.seat_limit.is_none() {
        return Ok(());
    }
    seat_usage(conn, tenant).await?.ensure_room_for(wanted)
}
