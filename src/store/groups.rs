//! Groups, their member links and their role bindings.

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{group_members, group_role_bindings, groups};
use super::{IDS_PER_STATEMENT, bindings, corrupt, db_error, escape_like};
use crate::domain::group::Group;
use crate::domain::membership::MembershipSource;
use crate::domain::role::{BindingKind, BindingSubject, TenantRoles};
use crate::domain::{DomainError, Micros};

fn to_domain(model: groups::Model, roles: Vec<String>) -> Result<Group, DomainError> {
    Ok(Group {
        source: MembershipSource::parse(&model.source)
            .ok_or_else(|| corrupt("group source", &model.source))?,
        id: model.id,
        tenant_id: model.tenant_id,
        name: model.name,
        description: model.description,
        external_id: model.external_id,
        roles,
        member_count: model.member_count,
        version: model.version,
        created_at: model.created_at,
        updated_at: model.updated_at,
    })
}

fn to_active(g: &Group) -> groups::ActiveModel {
    groups::ActiveModel {
        tenant_id: Set(g.tenant_id),
        id: Set(g.id),
        name: Set(g.name.clone()),
        name_key: Set(Group::name_key(&g.name)),
        description: Set(g.description.clone()),
        source: Set(g.source.as_str().to_string()),
        external_id: Set(g.external_id.clone()),
        member_count: Set(g.member_count),
        version: Set(g.version),
        created_at: Set(g.created_at),
        updated_at: Set(g.updated_at),
    }
}

/// Groups with the names of their roles.
async fn with_roles<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    models: Vec<groups::Model>,
) -> Result<Vec<Group>, DomainError> {
    let ids: Vec<Uuid> = models.iter().map(|g| g.id).collect();
    let mut bound = bindings::of_many(conn, tenant_id, BindingKind::Group, &ids).await?;
    models
        .into_iter()
        .map(|model| {
            let role_ids = bound.remove(&model.id).unwrap_or_default();
            to_domain(model, roles_of_tenant.names_of(&role_ids))
        })
        .collect()
}

/// A group with its role ids, or `GROUP_NOT_FOUND`.
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    group_id: Uuid,
) -> Result<(Group, Vec<Uuid>), DomainError> {
    let model = groups::Entity::find_by_id((tenant_id, group_id))
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::GroupNotFound)?;
    let role_ids = bindings::of_many(conn, tenant_id, BindingKind::Group, &[group_id])
        .await?
        .remove(&group_id)
        .unwrap_or_default();
    let group = to_domain(model, roles_of_tenant.names_of(&role_ids))?;
    Ok((group, role_ids))
}

/// Which of a group's unique keys another group of the tenant holds already: its name (case
/// aside) or its external id.
pub async fn taken_key<C: ConnectionTrait>(
    conn: &C,
    group: &Group,
) -> Result<Option<&'static str>, DomainError> {
    let mut keys = Condition::any().add(groups::Column::NameKey.eq(Group::name_key(&group.name)));
    if let Some(external_id) = &group.external_id {
        keys = keys.add(groups::Column::ExternalId.eq(external_id.clone()));
    }
    let others = groups::Entity::find()
        .filter(groups::Column::TenantId.eq(group.tenant_id))
        .filter(groups::Column::Id.ne(group.id))
        .filter(keys)
        .limit(2)
        .all(conn)
        .await
        .map_err(db_error)?;
    Ok(others.iter().find_map(|other| {
        if other.name_key == Group::name_key(&group.name) {
            Some("name")
        } else if other.external_id.is_some() && other.external_id == group.external_id {
            Some("external_id")
        } else {
            None
        }
    }))
}

pub async fn insert<C: ConnectionTrait>(conn: &C, group: &Group) -> Result<(), DomainError> {
    groups::Entity::insert(to_active(group))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(conn: &C, group: &Group) -> Result<(), DomainError> {
    groups::Entity::update(to_active(group))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Deletes a group with its member links and role bindings.
pub async fn delete<C: ConnectionTrait>(conn: &C, group: &Group) -> Result<(), DomainError> {
    group_members::Entity::delete_many()
        .filter(group_members::Column::TenantId.eq(group.tenant_id))
        .filter(group_members::Column::GroupId.eq(group.id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    bindings::unbind(conn, group.tenant_id, BindingSubject::Group(group.id), None).await?;
    groups::Entity::delete_by_id((group.tenant_id, group.id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// What a page of groups asks for.
pub struct GroupQuery {
    /// Lower-cased substring of the name.
    pub name_contains: Option<String>,
    pub source: Option<MembershipSource>,
    /// Only the groups this user is in.
    pub user_id: Option<Uuid>,
    /// The last (name key, id) of the previous page.
    pub after: Option<(String, Uuid)>,
    pub limit: u64,
}

/// A page of a tenant's groups in (name key, id) order.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    query: &GroupQuery,
) -> Result<Vec<Group>, DomainError> {
    use groups::Column;
    let mut select = groups::Entity::find().filter(Column::TenantId.eq(tenant_id));
    if let Some(text) = &query.name_contains {
        let pattern = format!("%{}%", escape_like(text));
        select =
            select.filter(Expr::col(Column::NameKey).like(LikeExpr::new(pattern).escape('\\')));
    }
    if let Some(source) = query.source {
        select = select.filter(Column::Source.eq(source.as_str()));
    }
    if let Some(user_id) = query.user_id {
        let links = sea_orm::sea_query::Query::select()
            .column(group_members::Column::GroupId)
            .from(group_members::Entity)
            .and_where(group_members::Column::TenantId.eq(tenant_id))
            .and_where(group_members::Column::UserId.eq(user_id))
            .to_owned();
        select = select.filter(Column::Id.in_subquery(links));
    }
    if let Some((name_key, id)) = &query.after {
        select = select.filter(
            Expr::tuple([Expr::col(Column::NameKey), Expr::col(Column::Id)])
                .gt(Expr::tuple([Expr::val(name_key.clone()), Expr::val(*id)])),
        );
    }
    let models = select
        .order_by_asc(Column::NameKey)
        .order_by_asc(Column::Id)
        .limit(query.limit)
        .all(conn)
        .await
        .map_err(db_error)?;
    with_roles(conn, roles_of_tenant, tenant_id, models).await
}

/// Joins group role bindings `b` to the member links `l` of their groups.
pub(super) fn bindings_of_links(
    b: &sea_orm::sea_query::Alias,
    l: &sea_orm::sea_query::Alias,
) -> Condition {
    Condition::all()
        .add(
            Expr::col((b.clone(), group_role_bindings::Column::TenantId))
                .equals((l.clone(), group_members::Column::TenantId)),
        )
        .add(
            Expr::col((b.clone(), group_role_bindings::Column::GroupId))
                .equals((l.clone(), group_members::Column::GroupId)),
        )
}

/// The roles each of `user_ids` holds through groups, as (role, group) pairs, in one
/// statement per chunk: each member's links joined to their groups' bindings.
pub async fn granted_to_many<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(Uuid, Uuid)>>, DomainError> {
    use sea_orm::sea_query::{Alias, JoinType, Query};
    let mut by_user: HashMap<Uuid, Vec<(Uuid, Uuid)>> = HashMap::new();
    let (l, b) = (Alias::new("l"), Alias::new("b"));
    for chunk in user_ids.chunks(IDS_PER_STATEMENT) {
        let select = Query::select()
            .expr_as(
                Expr::col((l.clone(), group_members::Column::UserId)),
                Alias::new("user_id"),
            )
            .expr_as(
                Expr::col((b.clone(), group_role_bindings::Column::RoleId)),
                Alias::new("role_id"),
            )
            .expr_as(
                Expr::col((b.clone(), group_role_bindings::Column::GroupId)),
                Alias::new("group_id"),
            )
            .from_as(group_members::Entity, l.clone())
            .join_as(
                JoinType::InnerJoin,
                group_role_bindings::Entity,
                b.clone(),
                bindings_of_links(&b, &l),
            )
            .and_where(Expr::col((l.clone(), group_members::Column::TenantId)).eq(tenant_id))
            .and_where(
                Expr::col((l.clone(), group_members::Column::UserId)).is_in(chunk.iter().copied()),
            )
            .order_by(
                (b.clone(), group_role_bindings::Column::GroupId),
                sea_orm::Order::Asc,
            )
            .to_owned();
        for row in conn.query_all(&select).await.map_err(db_error)? {
            let user_id: Uuid = row.try_get("", "user_id").map_err(db_error)?;
            let role_id: Uuid = row.try_get("", "role_id").map_err(db_error)?;
            let group_id: Uuid = row.try_get("", "group_id").map_err(db_error)?;
            by_user
                .entry(user_id)
                .or_default()
                .push((role_id, group_id));
        }
    }
    Ok(by_user)
}

/// Every member of a group, by user id.
pub async fn member_ids<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    group_id: Uuid,
) -> Result<Vec<Uuid>, DomainError> {
    group_members::Entity::find()
        .select_only()
        .column(group_members::Column::UserId)
        .filter(group_members::Column::TenantId.eq(tenant_id))
        .filter(group_members::Column::GroupId.eq(group_id))
        .order_by_asc(group_members::Column::UserId)
        .into_tuple()
        .all(conn)
        .await
        .map_err(db_error)
}

/// A page of a group's members' user ids, after `after`.
pub async fn member_page<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    group_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Uuid>, DomainError> {
    let mut select = group_members::Entity::find()
        .select_only()
        .column(group_members::Column::UserId)
        .filter(group_members::Column::TenantId.eq(tenant_id))
        .filter(group_members::Column::GroupId.eq(group_id));
    if let Some(after) = after {
        select = select.filter(group_members::Column::UserId.gt(after));
    }
    select
        .order_by_asc(group_members::Column::UserId)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await
        .map_err(db_error)
}

/// Of `user_ids`, those in the group.
pub async fn members_among<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    group_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashSet<Uuid>, DomainError> {
    let links = group_members::Entity::find()
        .filter(group_members::Column::TenantId.eq(tenant_id))
        .filter(group_members::Column::GroupId.eq(group_id));
    super::present_among(conn, links, group_members::Column::UserId, user_ids).await
}

/// Links `user_ids` (none of them in it yet) to the group, many per statement.
pub async fn add_members<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    group_id: Uuid,
    user_ids: &[Uuid],
    now: Micros,
) -> Result<(), DomainError> {
    let rows: Vec<group_members::ActiveModel> = user_ids
        .iter()
        .map(|user_id| group_members::ActiveModel {
            tenant_id: Set(tenant_id),
            group_id: Set(group_id),
            user_id: Set(*user_id),
            created_at: Set(now),
        })
        .collect();
    super::bulk::insert_rows(conn, rows).await?;
    Ok(())
}

/// Unlinks `user_ids` from the group.
pub async fn remove_members<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    group_id: Uuid,
    user_ids: &[Uuid],
) -> Result<(), DomainError> {
    for chunk in user_ids.chunks(IDS_PER_STATEMENT) {
        group_members::Entity::delete_many()
            .filter(group_members::Column::TenantId.eq(tenant_id))
            .filter(group_members::Column::GroupId.eq(group_id))
            .filter(group_members::Column::UserId.is_in(chunk.iter().copied()))
            .exec(conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// The groups one member is in.
pub async fn groups_of<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<Group>, DomainError> {
    let query = GroupQuery {
        name_contains: None,
        source: None,
        user_id: Some(user_id),
        after: None,
        limit: u64::MAX >> 1,
    };
    list(conn, roles_of_tenant, tenant_id, &query).await
}

/// Moves a group's member count by `delta` (the links were just added or removed) and makes
/// it the group's next version, changed at `now`: its etag follows its members too.
pub async fn count_members<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    group_id: Uuid,
    delta: i64,
    now: Micros,
) -> Result<(), DomainError> {
    if delta == 0 {
        return Ok(());
    }
    groups::Entity::update_many()
        .col_expr(
            groups::Column::MemberCount,
            Expr::col(groups::Column::MemberCount).add(delta),
        )
        .col_expr(
            groups::Column::Version,
            Expr::col(groups::Column::Version).add(1),
        )
        .col_expr(groups::Column::UpdatedAt, Expr::val(now))
        .filter(groups::Column::TenantId.eq(tenant_id))
        .filter(groups::Column::Id.eq(group_id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}
