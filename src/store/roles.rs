//! Roles and role bindings.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::db_error;
use super::entities::roles;
use crate::domain::permissions::{PermissionSet, builtin_roles};
use crate::domain::role::{Role, TenantRoles};
use crate::domain::tenant::RolePreset;
use crate::domain::{DomainError, Micros};

fn to_domain(model: roles::Model) -> Role {
    Role {
        id: model.id,
        tenant_id: model.tenant_id,
        name: model.name,
        description: model.description,
        builtin: model.builtin,
        is_owner: model.is_owner,
        permissions: PermissionSet::from_stored(&model.permissions),
        version: model.version,
        created_at: model.created_at,
        updated_at: model.updated_at,
    }
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
) -> Result<TenantRoles, DomainError> {
    let models = roles::Entity::find()
        .filter(roles::Column::TenantId.eq(tenant_id))
        .order_by_asc(roles::Column::Name)
        .all(conn)
        .await
        .map_err(db_error)?;
    Ok(TenantRoles(models.into_iter().map(to_domain).collect()))
}

/// Roles as this process last read them, by tenant, with the tenant's `roles_stamp` at the
/// time: the stamp changes in the same statement as any change of the tenant's roles, so roles
/// kept under the stamp a reader finds on the tenant row are exactly those its snapshot holds.
/// Stamps are random (see the migration), so one process serving several databases never
/// takes one database's roles for another's. Bounded: emptied when it holds too many tenants.
static KNOWN: LazyLock<RwLock<HashMap<Uuid, (i64, TenantRoles)>>> = LazyLock::new(Default::default);

/// Tenants whose roles `KNOWN` keeps at most.
const KNOWN_TENANTS: usize = 50_000;

/// The roles of `tenant_id`, whose row (read in the same snapshot as `conn`, or locked by it)
/// carries `stamp`: from memory when this process read them under the same stamp.
pub async fn of_tenant<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    stamp: i64,
) -> Result<TenantRoles, DomainError> {
    // 0 is the column's default: not a stamp any trigger wrote.
    if stamp != 0
        && let Some((known, roles)) = KNOWN
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant_id)
        && *known == stamp
    {
        return Ok(roles.clone());
    }
    let roles = list(conn, tenant_id).await?;
    if stamp != 0 {
        let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
        if known.len() >= KNOWN_TENANTS {
            known.clear();
        }
        known.insert(tenant_id, (stamp, roles.clone()));
    }
    Ok(roles)
}

/// Creates the preset's built-in roles for a new tenant.
pub async fn create_builtin<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    preset: RolePreset,
    now: Micros,
) -> Result<TenantRoles, DomainError> {
    let created: Vec<Role> = builtin_roles(preset)
        .into_iter()
        .map(|builtin| Role {
            id: Uuid::now_v7(),
            tenant_id,
            name: builtin.name.to_string(),
            description: builtin.description.to_string(),
            builtin: true,
            is_owner: builtin.is_owner,
            permissions: builtin.permissions,
            version: 1,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let rows = created.iter().map(to_active);
    roles::Entity::insert_many(rows.collect::<Vec<_>>())
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(TenantRoles(created))
}

fn to_active(role: &Role) -> roles::ActiveModel {
    roles::ActiveModel {
        id: Set(role.id),
        tenant_id: Set(role.tenant_id),
        name: Set(role.name.clone()),
        description: Set(role.description.clone()),
        builtin: Set(role.builtin),
        is_owner: Set(role.is_owner),
        permissions: Set(role.permissions.to_stored()),
        version: Set(role.version),
        created_at: Set(role.created_at),
        updated_at: Set(role.updated_at),
    }
}

pub async fn insert<C: ConnectionTrait>(conn: &C, role: &Role) -> Result<(), DomainError> {
    roles::Entity::insert(to_active(role))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(conn: &C, role: &Role) -> Result<(), DomainError> {
    roles::Entity::update(to_active(role))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub async fn delete<C: ConnectionTrait>(conn: &C, role_id: Uuid) -> Result<(), DomainError> {
    roles::Entity::delete_by_id(role_id)
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}
