//! Memberships: reads, writes, and the filtered keyset-paginated list.

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{memberships, role_bindings};
use super::{corrupt, db_error, roles};
use crate::domain::DomainError;
use crate::domain::membership::{Membership, MembershipSource, MembershipStatus, MembershipType};
use crate::domain::role::TenantRoles;

/// What a list page is sorted by; ties are broken by user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    CreateTime,
    Email,
    DisplayName,
}

/// Filters of ListMemberships, already validated and resolved.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<MembershipStatus>,
    pub member_type: Option<MembershipType>,
    pub source: Option<MembershipSource>,
    /// A role id; the service resolves names (an unknown name matches nobody).
    pub role_id: Option<Uuid>,
    /// Lower-cased substring of email or display name.
    pub query: Option<String>,
}

/// The last row of the previous page: its sort value and user id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct After {
    pub value: SortValue,
    pub user_id: Uuid,
}

pub fn to_domain(model: memberships::Model, roles: Vec<String>) -> Result<Membership, DomainError> {
    Ok(Membership {
        status: MembershipStatus::parse(&model.status)
            .ok_or_else(|| corrupt("membership status", &model.status))?,
        member_type: MembershipType::parse(&model.member_type)
            .ok_or_else(|| corrupt("membership type", &model.member_type))?,
        source: MembershipSource::parse(&model.source)
            .ok_or_else(|| corrupt("membership source", &model.source))?,
        tenant_id: model.tenant_id,
        user_id: model.user_id,
        email: model.email,
        display_name: model.display_name,
        external_id: model.external_id,
        invited_by: model.invited_by,
        joined_at: model.joined_at,
        created_at: model.created_at,
        updated_at: model.updated_at,
        version: model.version,
        roles,
    })
}

fn to_active(m: &Membership) -> memberships::ActiveModel {
    memberships::ActiveModel {
        tenant_id: Set(m.tenant_id),
        user_id: Set(m.user_id),
        email: Set(m.email.clone()),
        display_name: Set(m.display_name.clone()),
        search_name: Set(m.display_name.to_lowercase()),
        status: Set(m.status.as_str().to_string()),
        member_type: Set(m.member_type.as_str().to_string()),
        source: Set(m.source.as_str().to_string()),
        external_id: Set(m.external_id.clone()),
        invited_by: Set(m.invited_by),
        joined_at: Set(m.joined_at),
        created_at: Set(m.created_at),
        updated_at: Set(m.updated_at),
        version: Set(m.version),
    }
}

/// A membership with its role ids, or `None`.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Option<(Membership, Vec<Uuid>)>, DomainError> {
    let Some(model) = memberships::Entity::find_by_id((tenant_id, user_id))
        .one(conn)
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    let role_ids = roles::bindings_of(conn, tenant_id, user_id).await?;
    let membership = to_domain(model, roles_of_tenant.names_of(&role_ids))?;
    Ok(Some((membership, role_ids)))
}

/// Like [`find`], but a missing membership is `NOT_FOUND`.
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(Membership, Vec<Uuid>), DomainError> {
    find(conn, roles_of_tenant, tenant_id, user_id)
        .await?
        .ok_or(DomainError::MembershipNotFound)
}

pub async fn insert<C: ConnectionTrait>(conn: &C, m: &Membership) -> Result<(), DomainError> {
    memberships::Entity::insert(to_active(m))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(conn: &C, m: &Membership) -> Result<(), DomainError> {
    memberships::Entity::update(to_active(m))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Deletes a membership and its role bindings.
pub async fn delete<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(), DomainError> {
    role_bindings::Entity::delete_many()
        .filter(role_bindings::Column::TenantId.eq(tenant_id))
        .filter(role_bindings::Column::UserId.eq(user_id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    memberships::Entity::delete_by_id((tenant_id, user_id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Every membership of a tenant in a seat-holding status, for dissolution.
pub async fn all_seated<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
) -> Result<Vec<(Membership, Vec<Uuid>)>, DomainError> {
    let seated: Vec<&str> = MembershipStatus::ALL
        .iter()
        .filter(|s| s.holds_seat())
        .map(|s| s.as_str())
        .collect();
    let models = memberships::Entity::find()
        .filter(memberships::Column::TenantId.eq(tenant_id))
        .filter(memberships::Column::Status.is_in(seated))
        .order_by_asc(memberships::Column::UserId)
        .all(conn)
        .await
        .map_err(db_error)?;
    with_roles(conn, roles_of_tenant, tenant_id, models).await
}

async fn with_roles<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    models: Vec<memberships::Model>,
) -> Result<Vec<(Membership, Vec<Uuid>)>, DomainError> {
    let user_ids: Vec<Uuid> = models.iter().map(|m| m.user_id).collect();
    let mut bindings = roles::bindings_of_many(conn, tenant_id, &user_ids).await?;
    models
        .into_iter()
        .map(|model| {
            let role_ids = bindings.remove(&model.user_id).unwrap_or_default();
            let names = roles_of_tenant.names_of(&role_ids);
            Ok((to_domain(model, names)?, role_ids))
        })
        .collect()
}

/// Which page of a list: its order, where the previous page ended, and its size.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest<'a> {
    pub sort: SortKey,
    pub descending: bool,
    pub after: Option<&'a After>,
    pub page_size: u64,
}

/// One page of a tenant's memberships, plus whether more rows follow.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    filter: &ListFilter,
    page: PageRequest<'_>,
) -> Result<(Vec<Membership>, bool), DomainError> {
    let PageRequest {
        sort,
        descending,
        after,
        page_size,
    } = page;
    use memberships::Column;
    let sort_column = match sort {
        SortKey::CreateTime => Column::CreatedAt,
        SortKey::Email => Column::Email,
        SortKey::DisplayName => Column::DisplayName,
    };
    let mut select = memberships::Entity::find().filter(Column::TenantId.eq(tenant_id));
    if let Some(status) = filter.status {
        select = select.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(member_type) = filter.member_type {
        select = select.filter(Column::MemberType.eq(member_type.as_str()));
    }
    if let Some(source) = filter.source {
        select = select.filter(Column::Source.eq(source.as_str()));
    }
    if let Some(role_id) = filter.role_id {
        select = select.filter(
            Column::UserId.in_subquery(
                Query::select()
                    .column(role_bindings::Column::UserId)
                    .from(role_bindings::Entity)
                    .and_where(role_bindings::Column::TenantId.eq(tenant_id))
                    .and_where(role_bindings::Column::RoleId.eq(role_id))
                    .to_owned(),
            ),
        );
    }
    if let Some(query) = &filter.query {
        let pattern = format!("%{}%", escape_like(query));
        select = select.filter(
            Condition::any()
                .add(Expr::col(Column::Email).like(LikeExpr::new(pattern.clone()).escape('\\')))
                .add(Expr::col(Column::SearchName).like(LikeExpr::new(pattern).escape('\\'))),
        );
    }
    if let Some(after) = after {
        let value: sea_orm::Value = match &after.value {
            SortValue::Int(v) => (*v).into(),
            SortValue::Text(v) => v.clone().into(),
        };
        let condition = if descending {
            Condition::any().add(sort_column.lt(value.clone())).add(
                Condition::all()
                    .add(sort_column.eq(value))
                    .add(Column::UserId.lt(after.user_id)),
            )
        } else {
            Condition::any().add(sort_column.gt(value.clone())).add(
                Condition::all()
                    .add(sort_column.eq(value))
                    .add(Column::UserId.gt(after.user_id)),
            )
        };
        select = select.filter(condition);
    }
    let order = if descending { Order::Desc } else { Order::Asc };
    let mut models = select
        .order_by(sort_column, order.clone())
        .order_by(Column::UserId, order)
        .limit(page_size + 1)
        .all(conn)
        .await
        .map_err(db_error)?;
    let more = models.len() as u64 > page_size;
    models.truncate(page_size as usize);
    let rows = with_roles(conn, roles_of_tenant, tenant_id, models).await?;
    Ok((rows.into_iter().map(|(m, _)| m).collect(), more))
}

/// The keyset value of `membership` for `sort`.
pub fn sort_value(membership: &Membership, sort: SortKey) -> SortValue {
    match sort {
        SortKey::CreateTime => SortValue::Int(membership.created_at),
        SortKey::Email => SortValue::Text(membership.email.clone()),
        SortKey::DisplayName => SortValue::Text(membership.display_name.clone()),
    }
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
