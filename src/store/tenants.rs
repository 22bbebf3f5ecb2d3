//! Tenants and their seat counters.
//!
//! Seat usage is never counted over a tenant: the tenant row carries `seated_members` (ACTIVE
//! and SUSPENDED memberships) and `held_invitations` (pending invitations expiring after
//! `seats_counted_until`), and every membership and invitation write in this store moves them
//! by the seat it takes or frees, in its own transaction, under the tenant lock. Invitations
//! expire by the clock with no write, so readers subtract the ones that expired since
//! `seats_counted_until`, and a seat check under the lock moves that instant to now.
//! `pending_invitations` counts the pending ones, expired or not, so a write can skip looking
//! for them when there are none.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, NotSet, PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::entities::{invitations, memberships, tenants};
use super::{corrupt, db_error, for_update};
use crate::domain::invitation::{Invitation, InvitationState};
use crate::domain::membership::MembershipStatus;
use crate::domain::role::TenantRoles;
use crate::domain::tenant::{RolePreset, SeatUsage, Tenant, TenantKind, TenantState};
use crate::domain::{DomainError, Micros, now_micros};

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
        // The seat counters change only by delta, never by writing a tenant read earlier.
        seated_members: NotSet,
        held_invitations: NotSet,
        seats_counted_until: NotSet,
        pending_invitations: NotSet,
        // Written only by the triggers on roles.
        roles_stamp: NotSet,
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
    to_domain(lock_row(conn, id).await?)
}

async fn lock_row<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<tenants::Model, DomainError> {
    let query = for_update(tenants::Entity::find_by_id(id), conn.get_database_backend());
    query
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::TenantNotFound)
}

/// The seat and invitation counters of a locked tenant row, as its newest version holds them:
/// current for the transaction holding the lock until that transaction changes them.
#[derive(Clone, Copy, Debug)]
pub struct Counters {
    seated_members: i64,
    held_invitations: i64,
    pending_invitations: i64,
}

impl Counters {
    fn of(model: &tenants::Model) -> Counters {
        Counters {
            seated_members: model.seated_members,
            held_invitations: model.held_invitations,
            pending_invitations: model.pending_invitations,
        }
    }

    /// Whether the tenant has pending invitations (expired or not) as locked: none means a
    /// write that has not invited anyone yet need not look for one.
    pub fn has_pending_invitations(&self) -> bool {
        self.pending_invitations > 0
    }
}

/// `lock`, with the locked row's counters, and the tenant's roles as of the locked row: read
/// again only when they changed since this process last read them.
pub async fn lock_with_roles<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<(Tenant, TenantRoles, Counters), DomainError> {
    let model = lock_row(conn, id).await?;
    let roles = super::roles::of_tenant(conn, id, model.roles_stamp).await?;
    let counters = Counters::of(&model);
    Ok((to_domain(model)?, roles, counters))
}

/// `get`, and the tenant's roles in the same snapshot (`conn` is one), read again only when
/// they changed since this process last read them.
pub async fn get_with_roles<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<(Tenant, TenantRoles), DomainError> {
    let model = tenants::Entity::find_by_id(id)
        .one(conn)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::TenantNotFound)?;
    let roles = super::roles::of_tenant(conn, id, model.roles_stamp).await?;
    Ok((to_domain(model)?, roles))
}

pub async fn insert<C: ConnectionTrait>(conn: &C, tenant: &Tenant) -> Result<(), DomainError> {
    let mut row = to_active(tenant);
    row.seated_members = Set(0);
    row.held_invitations = Set(0);
    row.pending_invitations = Set(0);
    row.seats_counted_until = Set(tenant.created_at);
    tenants::Entity::insert(row)
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

/// Invitations whose expiry passed since the tenant's `seats_counted_until`, up to `now`: still
/// in `held_invitations`, no longer holding a seat. A correlated subquery of a statement over
/// `tenants`; one index range over `idx_invitations_tenant_state`, as short as the time since a
/// writer last moved `seats_counted_until`.
fn expired_since_counted(now: Micros) -> SimpleExpr {
    use super::entities::invitations::Column;
    let count = Query::select()
        .expr(Expr::col((invitations::Entity, Column::Id)).count())
        .from(invitations::Entity)
        .and_where(
            Expr::col((invitations::Entity, Column::TenantId))
                .equals((tenants::Entity, tenants::Column::Id)),
        )
        .and_where(
            Expr::col((invitations::Entity, Column::State)).eq(InvitationState::Pending.as_str()),
        )
        .and_where(
            Expr::col((invitations::Entity, Column::ExpiresAt)).gt(Expr::col((
                tenants::Entity,
                tenants::Column::SeatsCountedUntil,
            ))),
        )
        .and_where(Expr::col((invitations::Entity, Column::ExpiresAt)).lte(now))
        .to_owned();
    Expr::SubQuery(None, Box::new(count.into()))
}

fn usage_from(row: sea_orm::QueryResult, tenant: &Tenant) -> Result<SeatUsage, DomainError> {
    let members: i64 = row.try_get("", "seated_members").map_err(db_error)?;
    let invitations: i64 = row.try_get("", "held_invitations").map_err(db_error)?;
    Ok(SeatUsage {
        used: members + invitations,
        limit: tenant.seat_limit.map(i64::from),
    })
}

/// Seats in use: ACTIVE and SUSPENDED members plus pending invitations not yet expired (an
/// expired invitation frees its seat by the clock alone, no job needed). Read from the tenant's
/// counters in one statement, whatever the tenant's size.
pub async fn seat_usage<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
) -> Result<SeatUsage, DomainError> {
    use tenants::Column;
    let select = Query::select()
        .column(Column::SeatedMembers)
        .expr_as(
            Expr::col(Column::HeldInvitations).sub(expired_since_counted(now_micros())),
            Alias::new("held_invitations"),
        )
        .from(tenants::Entity)
        .and_where(Column::Id.eq(tenant.id))
        .to_owned();
    let row = conn
        .query_one(&select)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::TenantNotFound)?;
    usage_from(row, tenant)
}

/// Refuses when `wanted` more seats do not fit. Tenants without a limit skip the check.
/// Under the tenant lock, with `counters` as this transaction locked them and before it moved
/// them. When no invitation holds a seat the locked row is the usage, and nothing is read;
/// otherwise it also moves `seats_counted_until` to now, taking what expired meanwhile out of
/// `held_invitations`: one statement that writes the locked row and returns the usage.
/// (With none held, leaving `seats_counted_until` behind is right too: no pending invitation
/// expires after it, so none is counted that would have to be taken out later.)
pub async fn ensure_seats<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    counters: &Counters,
    wanted: i64,
) -> Result<(), DomainError> {
    if tenant.seat_limit.is_none() {
        return Ok(());
    }
    if counters.held_invitations == 0 {
        return SeatUsage {
            used: counters.seated_members,
            limit: tenant.seat_limit.map(i64::from),
        }
        .ensure_room_for(wanted);
    }
    use tenants::Column;
    let now = now_micros();
    let update = Query::update()
        .table(tenants::Entity)
        .value(
            Column::HeldInvitations,
            Expr::col(Column::HeldInvitations).sub(expired_since_counted(now)),
        )
        .value(
            Column::SeatsCountedUntil,
            Expr::case(Expr::col(Column::SeatsCountedUntil).lt(now), now)
                .finally(Expr::col(Column::SeatsCountedUntil)),
        )
        .and_where(Column::Id.eq(tenant.id))
        .returning(Query::returning().columns([Column::SeatedMembers, Column::HeldInvitations]))
        .to_owned();
    let row = conn
        .query_one(&update)
        .await
        .map_err(db_error)?
        .ok_or(DomainError::TenantNotFound)?;
    usage_from(row, tenant)?.ensure_room_for(wanted)
}

/// Adds `delta` to the tenant's seated members: called by every membership write whose status
/// change takes or frees a seat, in its transaction.
pub(super) async fn count_members<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    delta: i64,
) -> Result<(), DomainError> {
    if delta == 0 {
        return Ok(());
    }
    use tenants::Column;
    let update = Query::update()
        .table(tenants::Entity)
        .value(
            Column::SeatedMembers,
            Expr::col(Column::SeatedMembers).add(delta),
        )
        .and_where(Column::Id.eq(tenant_id))
        .to_owned();
    conn.execute(&update).await.map_err(db_error)?;
    Ok(())
}

/// Moves an invitation's seat in `held_invitations` from `before` to `after` (either absent
/// for an insert or a delete): a pending invitation is counted when it expires after
/// `seats_counted_until`, which the statement compares in the database so it holds whatever
/// another writer moved it to. `pending_invitations` moves in the same statement when the
/// change enters or leaves the pending state.
pub(super) async fn count_invitation<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    before: Option<&Invitation>,
    after: Option<&Invitation>,
) -> Result<(), DomainError> {
    use tenants::Column;
    let counted = |invitation: Option<&Invitation>| {
        invitation
            .filter(|i| i.state == InvitationState::Pending)
            .map(|i| {
                Expr::case(Expr::col(Column::SeatsCountedUntil).lt(i.expires_at), 1).finally(0)
            })
    };
    let delta = match (counted(before), counted(after)) {
        (None, None) => return Ok(()),
        (None, Some(added)) => Expr::col(Column::HeldInvitations).add(added),
        (Some(removed), None) => Expr::col(Column::HeldInvitations).sub(removed),
        (Some(removed), Some(added)) => Expr::col(Column::HeldInvitations).add(added).sub(removed),
    };
    let pending = |invitation: Option<&Invitation>| {
        i64::from(invitation.is_some_and(|i| i.state == InvitationState::Pending))
    };
    let mut update = Query::update();
    update
        .table(tenants::Entity)
        .value(Column::HeldInvitations, delta)
        .and_where(Column::Id.eq(tenant_id));
    match pending(after) - pending(before) {
        0 => {}
        moved => {
            update.value(
                Column::PendingInvitations,
                Expr::col(Column::PendingInvitations).add(moved),
            );
        }
    }
    conn.execute(&update).await.map_err(db_error)?;
    Ok(())
}

/// Sets the tenant's seat counters from a full count of its rows: for rows written in bulk
/// outside the service (the benchmark's seed) and for checking the counters.
pub async fn recount_seats<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
) -> Result<(), DomainError> {
    let now = now_micros();
    let members = memberships::Entity::find()
        .filter(memberships::Column::TenantId.eq(tenant_id))
        .filter(memberships::Column::Status.is_in(MembershipStatus::seated()))
        .count(conn)
        .await
        .map_err(db_error)?;
    let invited = super::invitations::count_pending(conn, tenant_id, now).await?;
    let pending = super::invitations::count_stored_pending(conn, tenant_id).await?;
    let update = Query::update()
        .table(tenants::Entity)
        .value(tenants::Column::SeatedMembers, members as i64)
        .value(tenants::Column::HeldInvitations, invited)
        .value(tenants::Column::PendingInvitations, pending)
        .value(tenants::Column::SeatsCountedUntil, now)
        .and_where(tenants::Column::Id.eq(tenant_id))
        .to_owned();
    conn.execute(&update).await.map_err(db_error)?;
    Ok(())
}
