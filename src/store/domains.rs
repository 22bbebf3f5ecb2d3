//! Verified email domains.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::entities::{domains, verified_domains};
use super::{corrupt, db_error};
use crate::domain::DomainError;
use crate::domain::email_domain::{DomainState, TenantDomain};

fn to_domain(model: domains::Model) -> Result<TenantDomain, DomainError> {
    Ok(TenantDomain {
        state: DomainState::parse(&model.state)
            .ok_or_else(|| corrupt("domain state", &model.state))?,
        id: model.id,
        tenant_id: model.tenant_id,
        domain: model.domain,
        auto_join: model.auto_join,
        verification_token: model.verification_token,
        created_at: model.created_at,
        updated_at: model.updated_at,
        verified_at: model.verified_at,
        version: model.version,
    })
}

fn to_active(d: &TenantDomain) -> domains::ActiveModel {
    domains::ActiveModel {
        id: Set(d.id),
        tenant_id: Set(d.tenant_id),
        domain: Set(d.domain.clone()),
        state: Set(d.state.as_str().to_string()),
        auto_join: Set(d.auto_join),
        verification_token: Set(d.verification_token.clone()),
        created_at: Set(d.created_at),
        updated_at: Set(d.updated_at),
        verified_at: Set(d.verified_at),
        version: Set(d.version),
    }
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
) -> Result<Vec<TenantDomain>, DomainError> {
    domains::Entity::find()
        .filter(domains::Column::TenantId.eq(tenant_id))
        .order_by_asc(domains::Column::Domain)
        .all(conn)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(to_domain)
        .collect()
}

pub async fn get<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<TenantDomain, DomainError> {
    let model = domains::Entity::find_by_id(id)
        .filter(domains::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::DomainNotFound)?;
    to_domain(model)
}

pub async fn find_by_name<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    domain: &str,
) -> Result<Option<TenantDomain>, DomainError> {
    domains::Entity::find()
        .filter(domains::Column::TenantId.eq(tenant_id))
        .filter(domains::Column::Domain.eq(domain))
        .one(conn)
        .await
        .map_err(db_error)?
        .map(to_domain)
        .transpose()
}

/// The tenant that verified `domain`, if any.
pub async fn verified_by<C: ConnectionTrait>(
    conn: &C,
    domain: &str,
) -> Result<Option<(Uuid, Uuid)>, DomainError> {
    Ok(verified_domains::Entity::find_by_id(domain.to_string())
        .one(conn)
        .await
        .map_err(db_error)?
        .map(|row| (row.tenant_id, row.domain_id)))
}

/// Claims `domain` for a tenant; another tenant's claim is DOMAIN_TAKEN, even under a race
/// (the domain is the table's primary key).
pub async fn claim<C: ConnectionTrait>(conn: &C, domain: &TenantDomain) -> Result<(), DomainError> {
    if let Some((tenant_id, _)) = verified_by(conn, &domain.domain).await? {
        return if tenant_id == domain.tenant_id {
            Ok(())
        } else {
            Err(DomainError::DomainTaken)
        };
    }
    verified_domains::Entity::insert(verified_domains::ActiveModel {
        domain: Set(domain.domain.clone()),
        tenant_id: Set(domain.tenant_id),
        domain_id: Set(domain.id),
    })
    .exec(conn)
    .await
    .map_err(|e| match db_error(e) {
        DomainError::Conflict => DomainError::DomainTaken,
        other => other,
    })?;
    Ok(())
}

pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    domain: &TenantDomain,
) -> Result<(), DomainError> {
    domains::Entity::insert(to_active(domain))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(
    conn: &C,
    domain: &TenantDomain,
) -> Result<(), DomainError> {
    domains::Entity::update(to_active(domain))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Deletes a domain and releases its claim.
pub async fn delete<C: ConnectionTrait>(
    conn: &C,
    domain: &TenantDomain,
) -> Result<(), DomainError> {
    verified_domains::Entity::delete_many()
        .filter(verified_domains::Column::Domain.eq(domain.domain.clone()))
        .filter(verified_domains::Column::TenantId.eq(domain.tenant_id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    domains::Entity::delete_by_id(domain.id)
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Verified domains with auto-join on, for `domain`: at most one tenant (the claim is unique).
pub async fn auto_join_tenants<C: ConnectionTrait>(
    conn: &C,
    domain: &str,
) -> Result<Vec<Uuid>, DomainError> {
    let rows = domains::Entity::find()
        .filter(domains::Column::Domain.eq(domain))
        .filter(domains::Column::State.eq(DomainState::Verified.as_str()))
        .filter(domains::Column::AutoJoin.eq(true))
        .order_by_asc(domains::Column::TenantId)
        .all(conn)
        .await
        .map_err(db_error)?;
    Ok(rows.into_iter().map(|d| d.tenant_id).collect())
}
