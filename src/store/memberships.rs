//! Memberships: reads, writes, and the filtered keyset-paginated list.

use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, LikeExpr, Query, SelectStatement, UnionType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{memberships, role_bindings};
use super::{bindings, corrupt, db_error, entities, escape_like, invitations, tenants};
use crate::domain::membership::{
    ListFilter, Membership, MembershipSource, MembershipStatus, MembershipType, SortKey, TextQuery,
};
use crate::domain::permissions::PermissionSet;
use crate::domain::role::{BindingKind, BindingSubject, TenantRoles};
use crate::domain::{DomainError, Micros};

/// The FTS5 query that finds every row containing `query`'s forms (and, rarely, a few more:
/// the `LIKE` after it decides). None when a form is shorter than a trigram, which the index
/// cannot look up.
fn full_text_match(query: &TextQuery) -> Option<String> {
    let phrase = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    (query.email.chars().count() >= 3 && query.name.chars().count() >= 3).then(|| {
        format!(
            "email : {} OR search_name : {}",
            phrase(&query.email),
            phrase(&query.name)
        )
    })
}

/// How a page finds the members its text query matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextPath {
    /// Reads the tenant's members in list order, testing each, until a page is full: quick
    /// when many match. Always the path on PostgreSQL, whose planner chooses between this and
    /// its trigram indexes itself.
    Scan,
    /// The `search_id`s of every row SQLite's FTS5 index found for the query, in any tenant,
    /// as a JSON array: only those are read, then sorted. Quick when few match.
    FullTextIndex(String),
}

/// Up to this many rows matching a text query anywhere, SQLite goes through its FTS5 index;
/// beyond it, a page is sooner filled by reading the tenant in list order.
const FULL_TEXT_CANDIDATES: u64 = 2_000;

/// The path for `filter`'s text query on this connection. On SQLite one bounded read of the
/// FTS5 index tells a selective query (whose rows it returns) from a common one (scanned).
pub async fn text_path<C: ConnectionTrait>(
    conn: &C,
    filter: &ListFilter,
) -> Result<TextPath, DomainError> {
    let Some(query) = filter.query.as_ref() else {
        return Ok(TextPath::Scan);
    };
    if conn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(TextPath::Scan);
    }
    let Some(full_text) = full_text_match(query) else {
        return Ok(TextPath::Scan);
    };
    // The candidates come back as one JSON array, which the list statement reads as it is.
    let row = conn
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "SELECT COUNT(*), json_group_array(rowid) FROM \
             (SELECT rowid FROM member_search WHERE member_search MATCH ? LIMIT ?)",
            [full_text.into(), (FULL_TEXT_CANDIDATES + 1).into()],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| DomainError::Internal("a count returned no row".into()))?;
    let count: i64 = row.try_get_by_index(0).map_err(db_error)?;
    if count as u64 > FULL_TEXT_CANDIDATES {
        return Ok(TextPath::Scan);
    }
    Ok(TextPath::FullTextIndex(
        row.try_get_by_index(1).map_err(db_error)?,
    ))
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
        invitation_id: None,
    })
}

pub(super) fn to_active(m: &Membership) -> memberships::ActiveModel {
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
    let found = find_with_groups(conn, roles_of_tenant, tenant_id, user_id, false).await?;
    Ok(found.map(|(membership, bindings)| (membership, bindings.own)))
}

/// The roles a member holds: bound to them, and bound to a group they are in.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    pub own: Vec<Uuid>,
    /// (role, group) pairs.
    pub through_groups: Vec<(Uuid, Uuid)>,
}

impl Bindings {
    /// What the member may do: the union of every role they hold, either way.
    pub fn permissions(&self, roles: &TenantRoles) -> PermissionSet {
        self.through_groups
            .iter()
            .fold(roles.permissions_of(&self.own), |held, (role_id, _)| {
                held.union(roles.permissions_of(&[*role_id]))
            })
    }
}

/// A membership with its bindings, in one statement: the membership joined to its own
/// bindings and, with `groups`, to its groups' bindings.
pub async fn find_with_groups<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_id: Uuid,
    groups: bool,
) -> Result<Option<(Membership, Bindings)>, DomainError> {
    let Some((model, bindings)) = rows_with_bindings(conn, tenant_id, &[user_id], groups)
        .await?
        .remove(&user_id)
    else {
        return Ok(None);
    };
    let membership = to_domain(model, roles_of_tenant.names_of(&bindings.own))?;
    Ok(Some((membership, bindings)))
}

/// Like [`find_with_groups`] (with the groups' bindings), but a missing membership is
/// `NOT_FOUND`.
pub async fn get_with_groups<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(Membership, Bindings), DomainError> {
    find_with_groups(conn, roles_of_tenant, tenant_id, user_id, true)
        .await?
        .ok_or(DomainError::MembershipNotFound)
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

/// A membership with the names of its roles, read in one statement with its tenant's existence
/// and the event log's head (the position the answer reflects: one statement sees one
/// snapshot): `TENANT_NOT_FOUND` when there is no such tenant, `MEMBERSHIP_NOT_FOUND` when the
/// tenant has no such member. One row per role bound (at least one row when the tenant exists).
pub async fn get_in_one_read<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<(Membership, i64), DomainError> {
    use sea_orm::sea_query::{Asterisk, JoinType};
    use sea_orm::{FromQueryResult, QueryResult};
    let (t, m, b, r) = (
        Alias::new("t"),
        Alias::new("m"),
        Alias::new("b"),
        Alias::new("r"),
    );
    let select = Query::select()
        .column((m.clone(), Asterisk))
        .expr_as(
            Expr::col((r.clone(), entities::roles::Column::Name)),
            Alias::new("role_name"),
        )
        .expr_as(
            Expr::cust(super::event_log::HEAD_SUBQUERY),
            Alias::new("log_position"),
        )
        .from_as(entities::tenants::Entity, t.clone())
        .join_as(
            JoinType::LeftJoin,
            memberships::Entity,
            m.clone(),
            Condition::all()
                .add(
                    Expr::col((m.clone(), memberships::Column::TenantId))
                        .equals((t.clone(), entities::tenants::Column::Id)),
                )
                .add(Expr::col((m.clone(), memberships::Column::UserId)).eq(user_id)),
        )
        .join_as(
            JoinType::LeftJoin,
            role_bindings::Entity,
            b.clone(),
            bindings_of_member(&b, &m),
        )
        .join_as(
            JoinType::LeftJoin,
            entities::roles::Entity,
            r.clone(),
            Expr::col((r, entities::roles::Column::Id)).equals((b, role_bindings::Column::RoleId)),
        )
        .and_where(Expr::col((t, entities::tenants::Column::Id)).eq(tenant_id))
        .to_owned();
    let rows: Vec<QueryResult> = conn.query_all(&select).await.map_err(db_error)?;
    let first = rows.first().ok_or(DomainError::TenantNotFound)?;
    let found: Option<Uuid> = first.try_get("", "user_id").map_err(db_error)?;
    if found.is_none() {
        return Err(DomainError::MembershipNotFound);
    }
    let position: i64 = first.try_get("", "log_position").map_err(db_error)?;
    let model = memberships::Model::from_query_result(first, "").map_err(db_error)?;
    let mut names = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: Option<String> = row.try_get("", "role_name").map_err(db_error)?;
        names.extend(name);
    }
    names.sort();
    Ok((to_domain(model, names)?, position))
}

/// Inserts a membership; a seated one counts on its tenant's seats.
pub async fn insert<C: ConnectionTrait>(conn: &C, m: &Membership) -> Result<(), DomainError> {
    memberships::Entity::insert(to_active(m))
        .exec(conn)
        .await
        .map_err(db_error)?;
    tenants::count_members(conn, m.tenant_id, seats_of(m)).await
}

/// Saves `after` over `before` (the row as this transaction read it), moving the tenant's seat
/// count when the status change takes or frees a seat.
pub async fn update<C: ConnectionTrait>(
    conn: &C,
    before: &Membership,
    after: &Membership,
) -> Result<(), DomainError> {
    memberships::Entity::update(to_active(after))
        .exec(conn)
        .await
        .map_err(db_error)?;
    tenants::count_members(conn, after.tenant_id, seats_of(after) - seats_of(before)).await
}

/// Inserts `after`, or saves it over `before` when the member has a row already.
pub async fn save<C: ConnectionTrait>(
    conn: &C,
    before: Option<&Membership>,
    after: &Membership,
) -> Result<(), DomainError> {
    match before {
        Some(before) => update(conn, before, after).await,
        None => insert(conn, after).await,
    }
}

/// Inserts a new member's row unless the tenant has one for the user already (a member, or one
/// who left): `false` then, and nothing is written. One statement for the common case instead of
/// a lookup and an insert; [`joined`] then counts the seat and binds the role.
pub async fn insert_unless_present<C: ConnectionTrait>(
    conn: &C,
    m: &Membership,
) -> Result<bool, DomainError> {
    let inserted = memberships::Entity::insert(to_active(m))
        .on_conflict_do_nothing_on([memberships::Column::TenantId, memberships::Column::UserId])
        .exec_without_returning(conn)
        .await
        .map_err(db_error)?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(rows) if rows > 0))
}

/// Completes the join of a member [`insert_unless_present`] inserted: its seat and its one role
/// `role_id`, bound as of the membership's update time.
pub async fn joined<C: ConnectionTrait>(
    conn: &C,
    member: &Membership,
    role_id: Uuid,
) -> Result<(), DomainError> {
    tenants::count_members(conn, member.tenant_id, seats_of(member)).await?;
    let subject = BindingSubject::User(member.user_id);
    bindings::bind(conn, member.tenant_id, subject, role_id, member.updated_at).await
}

/// Saves a member who joins (or comes back, over `before`) with the one role `role_id`, bound
/// as of the membership's update time.
pub async fn join<C: ConnectionTrait>(
    conn: &C,
    before: Option<&Membership>,
    member: &Membership,
    role_id: Uuid,
) -> Result<(), DomainError> {
    save(conn, before, member).await?;
    let subject = BindingSubject::User(member.user_id);
    bindings::bind(conn, member.tenant_id, subject, role_id, member.updated_at).await
}

/// Deletes a membership and its role bindings; its seat, if it held one, is freed.
pub async fn delete<C: ConnectionTrait>(conn: &C, m: &Membership) -> Result<(), DomainError> {
    bindings::unbind(conn, m.tenant_id, BindingSubject::User(m.user_id), None).await?;
    memberships::Entity::delete_by_id((m.tenant_id, m.user_id))
        .exec(conn)
        .await
        .map_err(db_error)?;
    tenants::count_members(conn, m.tenant_id, -seats_of(m)).await
}

fn seats_of(m: &Membership) -> i64 {
    i64::from(m.status.holds_seat())
}

/// Every membership of a tenant in a seat-holding status, for dissolution.
pub async fn all_seated<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
) -> Result<Vec<(Membership, Vec<Uuid>)>, DomainError> {
    let seated = MembershipStatus::seated();
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
    let mut bindings = bindings::of_many(conn, tenant_id, BindingKind::User, &user_ids).await?;
    models
        .into_iter()
        .map(|model| {
            let role_ids = bindings.remove(&model.user_id).unwrap_or_default();
            let names = roles_of_tenant.names_of(&role_ids);
            Ok((to_domain(model, names)?, role_ids))
        })
        .collect()
}

/// Joins role bindings `b` to the membership `m` they belong to.
fn bindings_of_member(b: &Alias, m: &Alias) -> Condition {
    Condition::all()
        .add(
            Expr::col((b.clone(), role_bindings::Column::TenantId))
                .equals((m.clone(), memberships::Column::TenantId)),
        )
        .add(
            Expr::col((b.clone(), role_bindings::Column::UserId))
                .equals((m.clone(), memberships::Column::UserId)),
        )
}

/// The membership rows of `user_ids` and the ids of the roles bound to each, in one statement
/// (each membership joined to its bindings; a user without a membership is absent). With
/// `groups`, a second branch of the same statement joins each membership to its group links
/// and their groups' bindings.
async fn rows_with_bindings<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    user_ids: &[Uuid],
    groups: bool,
) -> Result<HashMap<Uuid, (memberships::Model, Bindings)>, DomainError> {
    use entities::{group_members, group_role_bindings};
    use sea_orm::sea_query::{Asterisk, JoinType};
    use sea_orm::{FromQueryResult, QueryResult};
    let mut members: HashMap<Uuid, (memberships::Model, Bindings)> = HashMap::new();
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let (m, b, l, g) = (
        Alias::new("m"),
        Alias::new("b"),
        Alias::new("l"),
        Alias::new("g"),
    );
    let of_members = |select: &mut SelectStatement| {
        select
            .and_where(Expr::col((m.clone(), memberships::Column::TenantId)).eq(tenant_id))
            .and_where(
                Expr::col((m.clone(), memberships::Column::UserId)).is_in(user_ids.iter().copied()),
            );
    };
    let mut select = Query::select()
        .column((m.clone(), Asterisk))
        .expr_as(
            Expr::col((b.clone(), role_bindings::Column::RoleId)),
            Alias::new("bound_role_id"),
        )
        .expr_as(Expr::cust("NULL"), Alias::new("via_group_id"))
        .from_as(memberships::Entity, m.clone())
        .join_as(
            JoinType::LeftJoin,
            role_bindings::Entity,
            b.clone(),
            bindings_of_member(&b, &m),
        )
        .to_owned();
    of_members(&mut select);
    if groups {
        let mut through = Query::select()
            .column((m.clone(), Asterisk))
            .expr_as(
                Expr::col((g.clone(), group_role_bindings::Column::RoleId)),
                Alias::new("bound_role_id"),
            )
            .expr_as(
                Expr::col((g.clone(), group_role_bindings::Column::GroupId)),
                Alias::new("via_group_id"),
            )
            .from_as(memberships::Entity, m.clone())
            .join_as(
                JoinType::InnerJoin,
                group_members::Entity,
                l.clone(),
                Condition::all()
                    .add(
                        Expr::col((l.clone(), group_members::Column::TenantId))
                            .equals((m.clone(), memberships::Column::TenantId)),
                    )
                    .add(
                        Expr::col((l.clone(), group_members::Column::UserId))
                            .equals((m.clone(), memberships::Column::UserId)),
                    ),
            )
            .join_as(
                JoinType::InnerJoin,
                group_role_bindings::Entity,
                g.clone(),
                super::groups::bindings_of_links(&g, &l),
            )
            .to_owned();
        of_members(&mut through);
        select.union(UnionType::All, through);
    }
    let rows: Vec<QueryResult> = conn.query_all(&select).await.map_err(db_error)?;
    for row in &rows {
        let user_id: Uuid = row.try_get("", "user_id").map_err(db_error)?;
        let role_id: Option<Uuid> = row.try_get("", "bound_role_id").map_err(db_error)?;
        let group_id: Option<Uuid> = row.try_get("", "via_group_id").map_err(db_error)?;
        let entry = match members.entry(user_id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert((
                memberships::Model::from_query_result(row, "").map_err(db_error)?,
                Bindings::default(),
            )),
        };
        match (role_id, group_id) {
            (Some(role_id), None) => entry.1.own.push(role_id),
            (Some(role_id), Some(group_id)) => entry.1.through_groups.push((role_id, group_id)),
            _ => {}
        }
    }
    Ok(members)
}

/// The memberships of `user_ids` (a page: at most a thousand) with their roles, by user.
pub async fn many<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Membership>, DomainError> {
    with_bound_roles(conn, roles_of_tenant, tenant_id, user_ids).await
}

/// The status of each of `user_ids` that has a membership.
pub async fn statuses<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, MembershipStatus>, DomainError> {
    let mut found = HashMap::new();
    for chunk in user_ids.chunks(super::IDS_PER_STATEMENT) {
        let rows: Vec<(Uuid, String)> = memberships::Entity::find()
            .select_only()
            .column(memberships::Column::UserId)
            .column(memberships::Column::Status)
            .filter(memberships::Column::TenantId.eq(tenant_id))
            .filter(memberships::Column::UserId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await
            .map_err(db_error)?;
        for (user_id, status) in rows {
            let status = MembershipStatus::parse(&status)
                .ok_or_else(|| corrupt("membership status", &status))?;
            found.insert(user_id, status);
        }
    }
    Ok(found)
}

/// The memberships of `user_ids` (a page: at most a thousand) with their roles, in one
/// statement: each membership joined to its role bindings.
async fn with_bound_roles<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Membership>, DomainError> {
    let members = rows_with_bindings(conn, tenant_id, user_ids, false).await?;
    members
        .into_iter()
        .map(|(user_id, (model, bindings))| {
            Ok((
                user_id,
                to_domain(model, roles_of_tenant.names_of(&bindings.own))?,
            ))
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

/// One page of a tenant's member list.
pub struct ListedPage {
    pub members: Vec<Membership>,
    /// Whether more rows follow.
    pub more: bool,
    /// The earliest expiry of the invitations on the page: from then on, the clock alone has
    /// changed the page (nothing else the page shows changes without an event).
    pub changes_at: Option<Micros>,
}

/// One page of a tenant's member list. Pending, unexpired invitations appear as INVITED
/// entries: both tables are filtered, keyset-bounded, ordered and limited to a page on their
/// own, then merged by one `UNION ALL … ORDER BY … LIMIT` so the database orders both with the
/// same collation as its keyset comparisons.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    roles_of_tenant: &TenantRoles,
    tenant_id: Uuid,
    filter: &ListFilter,
    page: PageRequest<'_>,
    now: Micros,
) -> Result<ListedPage, DomainError> {
    let text = text_path(conn, filter).await?;
    let union = list_statement(tenant_id, filter, &text, page, now);
    let rows = conn.query_all(&union).await.map_err(db_error)?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: String = row.try_get("", "kind").map_err(db_error)?;
        let id: Uuid = row.try_get("", "row_id").map_err(db_error)?;
        keys.push((kind == "i", id));
    }
    let more = keys.len() as u64 > page.page_size;
    keys.truncate(page.page_size as usize);

    let user_ids: Vec<Uuid> = keys.iter().filter(|(i, _)| !i).map(|(_, id)| *id).collect();
    let invitation_ids: Vec<Uuid> = keys.iter().filter(|(i, _)| *i).map(|(_, id)| *id).collect();
    let mut members = with_bound_roles(conn, roles_of_tenant, tenant_id, &user_ids).await?;
    let mut changes_at: Option<Micros> = None;
    for invitation in invitations::by_ids(conn, roles_of_tenant, tenant_id, &invitation_ids).await?
    {
        changes_at = Some(changes_at.map_or(invitation.expires_at, |at| {
            std::cmp::min(at, invitation.expires_at)
        }));
        members.insert(invitation.id, invitations::as_member(&invitation));
    }
    let members = keys
        .into_iter()
        .filter_map(|(_, id)| members.remove(&id))
        .collect();
    Ok(ListedPage {
        members,
        more,
        changes_at,
    })
}

/// The statement that finds one page of the member list (its kinds and ids, in order, one row
/// more than the page to tell whether more follow). Public so its plan can be checked.
pub fn list_statement(
    tenant_id: Uuid,
    filter: &ListFilter,
    text: &TextPath,
    page: PageRequest<'_>,
    now: Micros,
) -> SelectStatement {
    let PageRequest {
        sort,
        descending,
        after,
        page_size,
    } = page;
    let mut union = first_rows(
        member_rows(tenant_id, filter, text, sort, descending, after),
        descending,
        page_size + 1,
        "m",
    );
    if invitations_may_match(filter) {
        union = union
            .union(
                UnionType::All,
                first_rows(
                    invitation_rows(tenant_id, filter, sort, descending, after, now),
                    descending,
                    page_size + 1,
                    "i",
                ),
            )
            .to_owned();
    }
    let order = if descending { Order::Desc } else { Order::Asc };
    union
        .order_by(Alias::new("sort_key"), order.clone())
        .order_by(Alias::new("row_id"), order)
        .limit(page_size + 1);
    union
}

/// Whether pending invitations can match the filter: they are INVITED members of type MEMBER
/// from source INVITE.
fn invitations_may_match(filter: &ListFilter) -> bool {
    filter.status.is_none_or(|s| s == MembershipStatus::Invited)
        && filter
            .member_type
            .is_none_or(|t| t == MembershipType::Member)
        && filter.source.is_none_or(|s| s == MembershipSource::Invite)
        && filter.group_id.is_none()
}

/// `(sort, id) > (value, after_id)`, or `<` when descending: a row comparison, which
/// PostgreSQL turns into one index range scan (the equivalent `sort > v OR (sort = v AND id >
/// after)` it does not, and reads the whole tenant).
fn keyset(sort_expr: Expr, id_col: Expr, after: &After, descending: bool) -> Expr {
    let value: sea_orm::Value = match &after.value {
        SortValue::Int(v) => (*v).into(),
        SortValue::Text(v) => v.clone().into(),
    };
    let row = Expr::tuple([sort_expr, id_col]);
    let bound = Expr::tuple([Expr::val(value), Expr::val(after.user_id)]);
    if descending {
        row.lt(bound)
    } else {
        row.gt(bound)
    }
}

/// `rows` in keyset order, at most `limit` of them, as a subquery a union can take: each branch
/// of the member list stops at a page on its own, so neither reads past it.
fn first_rows(
    mut rows: SelectStatement,
    descending: bool,
    limit: u64,
    alias: &str,
) -> SelectStatement {
    let order = if descending { Order::Desc } else { Order::Asc };
    rows.order_by(Alias::new("sort_key"), order.clone())
        .order_by(Alias::new("row_id"), order)
        .limit(limit);
    Query::select()
        .column(sea_orm::sea_query::Asterisk)
        .from_subquery(rows, Alias::new(alias))
        .to_owned()
}

fn member_rows(
    tenant_id: Uuid,
    filter: &ListFilter,
    text: &TextPath,
    sort: SortKey,
    descending: bool,
    after: Option<&After>,
) -> SelectStatement {
    use memberships::Column;
    let sort_column = match sort {
        SortKey::CreateTime => Column::CreatedAt,
        SortKey::Email => Column::Email,
        SortKey::DisplayName => Column::DisplayName,
    };
    let mut select = Query::select();
    select.from(memberships::Entity);
    let full_text = match text {
        TextPath::FullTextIndex(ids) if filter.query.is_some() => Some(ids),
        _ => None,
    };
    if let Some(ids) = full_text {
        // Only the rows the index found (one JSON array: one statement whatever their
        // number). `+` keeps SQLite from reading the tenant through its list-order index and
        // probing each row against them instead.
        select
            .and_where(Expr::cust_with_values("+tenant_id = ?", [tenant_id]))
            .and_where(Expr::cust_with_values(
                "search_id IN (SELECT value FROM json_each(?))",
                [ids.clone()],
            ));
    } else {
        select.and_where(Column::TenantId.eq(tenant_id));
    }
    if let Some(status) = filter.status {
        select.and_where(Column::Status.eq(status.as_str()));
    }
    if let Some(member_type) = filter.member_type {
        select.and_where(Column::MemberType.eq(member_type.as_str()));
    }
    if let Some(source) = filter.source {
        select.and_where(Column::Source.eq(source.as_str()));
    }
    if let Some(query) = &filter.query {
        let email = format!("%{}%", escape_like(&query.email));
        let name = format!("%{}%", escape_like(&query.name));
        select.cond_where(
            Condition::any()
                .add(Expr::col(Column::Email).like(LikeExpr::new(email).escape('\\')))
                .add(Expr::col(Column::SearchName).like(LikeExpr::new(name).escape('\\'))),
        );
    }
    // A role or a group: read its links in list order, each carrying its member's sort keys
    // (kept by triggers), probing the member's own filters per link. With both, the role's
    // links are read and the group probed per member.
    if let (Some(role_id), Some(group_id)) = (filter.role_id, filter.group_id) {
        select.and_where(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(entities::group_members::Entity)
                .and_where(entities::group_members::Column::TenantId.eq(tenant_id))
                .and_where(entities::group_members::Column::GroupId.eq(group_id))
                .and_where(
                    Expr::col((
                        entities::group_members::Entity,
                        entities::group_members::Column::UserId,
                    ))
                    .equals((memberships::Entity, Column::UserId)),
                )
                .to_owned(),
        ));
        let links = Links::RoleBindings(role_id);
        return holder_rows(select, tenant_id, links, sort, descending, after);
    }
    if let Some(role_id) = filter.role_id {
        let links = Links::RoleBindings(role_id);
        return holder_rows(select, tenant_id, links, sort, descending, after);
    }
    if let Some(group_id) = filter.group_id {
        let links = Links::GroupMembers(group_id);
        return holder_rows(select, tenant_id, links, sort, descending, after);
    }
    select
        .expr_as(Expr::val("m"), Alias::new("kind"))
        .expr_as(Expr::col(Column::UserId), Alias::new("row_id"))
        .expr_as(Expr::col(sort_column), Alias::new("sort_key"));
    if let Some(after) = after {
        select.cond_where(keyset(
            Expr::col(sort_column),
            Expr::col(Column::UserId),
            after,
            descending,
        ));
    }
    select.to_owned()
}

/// The links a role or group filter reads members through: both tables carry each member's
/// sort keys after the role or group.
#[derive(Clone, Copy)]
enum Links {
    RoleBindings(Uuid),
    GroupMembers(Uuid),
}

/// The member rows of a role or group filter, read from its links in list order (each link
/// carries its member's sort keys, kept by triggers): one index range read of the holders that
/// stops after a page, with the member's own filters (`members`, a select over `memberships`
/// with its conditions) probed per row.
fn holder_rows(
    mut members: SelectStatement,
    tenant_id: Uuid,
    links: Links,
    sort: SortKey,
    descending: bool,
    after: Option<&After>,
) -> SelectStatement {
    let b = Alias::new("b");
    let (table, key_column, key) = match links {
        Links::RoleBindings(role_id) => {
            (Alias::new("role_bindings"), Alias::new("role_id"), role_id)
        }
        Links::GroupMembers(group_id) => (
            Alias::new("group_members"),
            Alias::new("group_id"),
            group_id,
        ),
    };
    let sort_column = Alias::new(match sort {
        SortKey::CreateTime => "member_created_at",
        SortKey::Email => "member_email",
        SortKey::DisplayName => "member_display_name",
    });
    // Inside the subquery unqualified columns are the membership's.
    members
        .expr(Expr::val(1))
        .cond_where(bindings_of_member(&b, &Alias::new("memberships")));
    let mut select = Query::select();
    select
        .expr_as(Expr::val("m"), Alias::new("kind"))
        .expr_as(
            Expr::col((b.clone(), role_bindings::Column::UserId)),
            Alias::new("row_id"),
        )
        .expr_as(
            Expr::col((b.clone(), sort_column.clone())),
            Alias::new("sort_key"),
        )
        .from_as(table, b.clone())
        .and_where(Expr::col((b.clone(), role_bindings::Column::TenantId)).eq(tenant_id))
        .and_where(Expr::col((b.clone(), key_column)).eq(key))
        .and_where(Expr::exists(members));
    if let Some(after) = after {
        select.cond_where(keyset(
            Expr::col((b.clone(), sort_column)),
            Expr::col((b, role_bindings::Column::UserId)),
            after,
            descending,
        ));
    }
    select.to_owned()
}

fn invitation_rows(
    tenant_id: Uuid,
    filter: &ListFilter,
    sort: SortKey,
    descending: bool,
    after: Option<&After>,
    now: Micros,
) -> SelectStatement {
    use entities::invitations::Column;
    // Invitations have no display name yet: they sort as the empty name.
    let sort_expr = match sort {
        SortKey::CreateTime => Expr::col(Column::CreatedAt),
        SortKey::Email => Expr::col(Column::Email),
        SortKey::DisplayName => Expr::val(""),
    };
    let mut select = Query::select();
    select
        .expr_as(Expr::val("i"), Alias::new("kind"))
        .expr_as(Expr::col(Column::Id), Alias::new("row_id"))
        .expr_as(sort_expr.clone(), Alias::new("sort_key"))
        .from(entities::invitations::Entity)
        .and_where(Column::TenantId.eq(tenant_id))
        .cond_where(invitations::pending_at(now));
    if let Some(role_id) = filter.role_id {
        select.and_where(Column::RoleId.eq(role_id));
    }
    if let Some(query) = &filter.query {
        let pattern = format!("%{}%", escape_like(&query.email));
        select.and_where(Expr::col(Column::Email).like(LikeExpr::new(pattern).escape('\\')));
    }
    if let Some(after) = after {
        select.cond_where(keyset(sort_expr, Expr::col(Column::Id), after, descending));
    }
    select.to_owned()
}

/// The keyset value of `membership` for `sort`.
pub fn sort_value(membership: &Membership, sort: SortKey) -> SortValue {
    match sort {
        SortKey::CreateTime => SortValue::Int(membership.created_at),
        SortKey::Email => SortValue::Text(membership.email.clone()),
        SortKey::DisplayName => SortValue::Text(membership.display_name.clone()),
    }
}

/// Of `emails`, those of the tenant's ACTIVE or SUSPENDED members.
pub async fn seated_emails<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    emails: &[String],
) -> Result<std::collections::HashSet<String>, DomainError> {
    let seated = memberships::Entity::find()
        .filter(memberships::Column::TenantId.eq(tenant_id))
        .filter(memberships::Column::Status.is_in(MembershipStatus::seated()));
    super::present_among(conn, seated, memberships::Column::Email, emails).await
}
