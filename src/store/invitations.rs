//! Invitations.

use std::collections::HashSet;

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::invitations;
use super::{corrupt, db_error, escape_like, tenants};
use crate::domain::invitation::{Invitation, InvitationFilter, InvitationState};
use crate::domain::membership::{Membership, MembershipSource, MembershipStatus, MembershipType};
use crate::domain::role::TenantRoles;
use crate::domain::{DomainError, Micros};

pub fn to_domain(
    model: invitations::Model,
    roles: &TenantRoles,
) -> Result<Invitation, DomainError> {
    Ok(Invitation {
        state: InvitationState::parse(&model.state)
            .ok_or_else(|| corrupt("invitation state", &model.state))?,
        role: roles
            .by_id(model.role_id)
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        id: model.id,
        tenant_id: model.tenant_id,
        email: model.email,
        role_id: model.role_id,
        inviter_id: model.inviter_id,
        expires_at: model.expires_at,
        send_count: model.send_count,
        last_sent_at: model.last_sent_at,
        accepted_by: model.accepted_by,
        accepted_at: model.accepted_at,
        created_at: model.created_at,
        updated_at: model.updated_at,
        version: model.version,
    })
}

fn to_active(i: &Invitation, token_hash: &str) -> invitations::ActiveModel {
    invitations::ActiveModel {
        id: Set(i.id),
        tenant_id: Set(i.tenant_id),
        email: Set(i.email.clone()),
        role_id: Set(i.role_id),
        inviter_id: Set(i.inviter_id),
        state: Set(i.state.as_str().to_string()),
        token_hash: Set(token_hash.to_string()),
        expires_at: Set(i.expires_at),
        send_count: Set(i.send_count),
        last_sent_at: Set(i.last_sent_at),
        accepted_by: Set(i.accepted_by),
        accepted_at: Set(i.accepted_at),
        created_at: Set(i.created_at),
        updated_at: Set(i.updated_at),
        version: Set(i.version),
    }
}

/// Invitations still pending (whatever their expiry).
fn pending() -> sea_orm::Condition {
    sea_orm::Condition::all().add(invitations::Column::State.eq(InvitationState::Pending.as_str()))
}

/// Invitations pending and not expired at `now`: the ones holding a seat.
pub(crate) fn pending_at(now: Micros) -> sea_orm::Condition {
    pending().add(invitations::Column::ExpiresAt.gt(now))
}

/// How a pending invitation appears in member lists.
pub fn as_member(i: &Invitation) -> Membership {
    Membership {
        tenant_id: i.tenant_id,
        user_id: i.id,
        email: i.email.clone(),
        display_name: String::new(),
        status: MembershipStatus::Invited,
        member_type: MembershipType::Member,
        source: MembershipSource::Invite,
        external_id: None,
        invited_by: i.inviter_id,
        joined_at: None,
        created_at: i.created_at,
        updated_at: i.updated_at,
        version: i.version,
        roles: vec![i.role.clone()],
        invitation_id: Some(i.id),
    }
}

/// Inserts an invitation; a pending one counts on its tenant's seats.
pub async fn insert<C: ConnectionTrait>(
    conn: &C,
    invitation: &Invitation,
    token_hash: &str,
) -> Result<(), DomainError> {
    invitations::Entity::insert(to_active(invitation, token_hash))
        .exec(conn)
        .await
        .map_err(db_error)?;
    tenants::count_invitation(conn, invitation.tenant_id, None, Some(invitation)).await
}

/// Saves `after` over `before` (as this transaction read it), every field but the token,
/// moving the tenant's seat count when the change takes or frees a seat.
pub async fn update<C: ConnectionTrait>(
    conn: &C,
    before: &Invitation,
    after: &Invitation,
) -> Result<(), DomainError> {
    save(conn, before, after, None).await
}

/// Like [`update`], with a new token; the previous token stops matching.
pub async fn update_with_token<C: ConnectionTrait>(
    conn: &C,
    before: &Invitation,
    after: &Invitation,
    token_hash: &str,
) -> Result<(), DomainError> {
    save(conn, before, after, Some(token_hash)).await
}

async fn save<C: ConnectionTrait>(
    conn: &C,
    before: &Invitation,
    after: &Invitation,
    token_hash: Option<&str>,
) -> Result<(), DomainError> {
    let mut row = to_active(after, token_hash.unwrap_or_default());
    if token_hash.is_none() {
        row.token_hash = sea_orm::NotSet;
    }
    invitations::Entity::update(row)
        .exec(conn)
        .await
        .map_err(db_error)?;
    tenants::count_invitation(conn, after.tenant_id, Some(before), Some(after)).await
}

pub async fn get<C: ConnectionTrait>(
    conn: &C,
    roles: &TenantRoles,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Invitation, DomainError> {
    let model = invitations::Entity::find_by_id(id)
        .filter(invitations::Column::TenantId.eq(tenant_id))
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::InvitationNotFound)?;
    to_domain(model, roles)
}

/// The tenant an invitation token belongs to, and the invitation's id.
pub async fn find_by_token_hash<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
) -> Result<Option<(Uuid, Uuid)>, DomainError> {
    let row = invitations::Entity::find()
        .select_only()
        .column(invitations::Column::TenantId)
        .column(invitations::Column::Id)
        .filter(invitations::Column::TokenHash.eq(token_hash))
        .into_tuple::<(Uuid, Uuid)>()
        .one(conn)
        .await
        .map_err(db_error)?;
    Ok(row)
}

/// Of `emails`, those with a pending, unexpired invitation in the tenant.
pub async fn pending_emails<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    emails: &[String],
    now: Micros,
) -> Result<HashSet<String>, DomainError> {
    let pending = invitations::Entity::find()
        .filter(invitations::Column::TenantId.eq(tenant_id))
        .filter(pending_at(now));
    super::present_among(conn, pending, invitations::Column::Email, emails).await
}

/// Pending, unexpired invitations: the seats invitations hold.
pub async fn count_pending<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    now: Micros,
) -> Result<i64, DomainError> {
    count_where(conn, tenant_id, pending_at(now)).await
}

/// Invitations of the tenant in state pending, expired or not: what `pending_invitations`
/// counts.
pub async fn count_stored_pending<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
) -> Result<i64, DomainError> {
    count_where(conn, tenant_id, pending()).await
}

async fn count_where<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    condition: sea_orm::Condition,
) -> Result<i64, DomainError> {
    let count = invitations::Entity::find()
        .filter(invitations::Column::TenantId.eq(tenant_id))
        .filter(condition)
        .count(conn)
        .await
        .map_err(db_error)?;
    Ok(count as i64)
}

/// The invitations `found` selects, with their roles' names.
async fn read_all<C: ConnectionTrait>(
    conn: &C,
    found: sea_orm::Select<invitations::Entity>,
    roles: &TenantRoles,
) -> Result<Vec<Invitation>, DomainError> {
    let models = found.all(conn).await.map_err(db_error)?;
    models.into_iter().map(|m| to_domain(m, roles)).collect()
}

/// Every pending invitation of a tenant (expired or not), or those to `role_id`: what
/// dissolution revokes, and what a role's deletion does.
pub async fn all_pending<C: ConnectionTrait>(
    conn: &C,
    roles: &TenantRoles,
    tenant_id: Uuid,
    role_id: Option<Uuid>,
) -> Result<Vec<Invitation>, DomainError> {
    let mut found = invitations::Entity::find()
        .filter(invitations::Column::TenantId.eq(tenant_id))
        .filter(pending());
    if let Some(role_id) = role_id {
        found = found.filter(invitations::Column::RoleId.eq(role_id));
    }
    read_all(conn, found.order_by_asc(invitations::Column::Id), roles).await
}

/// Invitations by id, for assembling a member list page.
pub async fn by_ids<C: ConnectionTrait>(
    conn: &C,
    roles: &TenantRoles,
    tenant_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Invitation>, DomainError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = invitations::Entity::find()
        .filter(invitations::Column::TenantId.eq(tenant_id))
        .filter(invitations::Column::Id.is_in(ids.iter().copied()));
    read_all(conn, found, roles).await
}

/// A page of a tenant's invitations, newest first, after the (created_at, id) keyset.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    roles: &TenantRoles,
    tenant_id: Uuid,
    filter: &InvitationFilter,
    after: Option<(Micros, Uuid)>,
    limit: u64,
    now: Micros,
) -> Result<Vec<Invitation>, DomainError> {
    use invitations::Column;
    let mut select = invitations::Entity::find().filter(Column::TenantId.eq(tenant_id));
    select = match filter.state {
        None => select,
        Some(InvitationState::Pending) => select.filter(pending_at(now)),
        Some(InvitationState::Expired) => {
            select.filter(pending()).filter(Column::ExpiresAt.lte(now))
        }
        Some(state) => select.filter(Column::State.eq(state.as_str())),
    };
    if let Some(query) = &filter.query {
        let pattern = format!("%{}%", escape_like(query));
        select = select.filter(Expr::col(Column::Email).like(LikeExpr::new(pattern).escape('\\')));
    }
    if let Some((created_at, id)) = after {
        select = select.filter(
            Expr::tuple([Expr::col(Column::CreatedAt), Expr::col(Column::Id)])
                .lt(Expr::tuple([Expr::val(created_at), Expr::val(id)])),
        );
    }
    let found = select
        .order_by(Column::CreatedAt, Order::Desc)
        .order_by(Column::Id, Order::Desc)
        .limit(limit);
    read_all(conn, found, roles).await
}

/// Pending invitations (expired or not) for one email in a tenant.
pub async fn pending_for_email<C: ConnectionTrait>(
    conn: &C,
    roles: &TenantRoles,
    tenant_id: Uuid,
    email: &str,
) -> Result<Vec<Invitation>, DomainError> {
    let found = invitations::Entity::find()
        .filter(invitations::Column::TenantId.eq(tenant_id))
        .filter(invitations::Column::Email.eq(email))
        .filter(pending());
    read_all(conn, found, roles).await
}
