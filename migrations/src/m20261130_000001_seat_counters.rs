//! Seat counters on the tenant row, kept by the service in the same transaction as every change
//! that takes or frees a seat, so a seat check reads one row instead of counting the tenant.
//!
//! - `seated_members`: memberships in a seat-holding status (active, suspended).
//! - `held_invitations`: pending invitations expiring after `seats_counted_until`.
//! - `seats_counted_until`: invitations expire by the clock alone, with no write; the ones that
//!   expired after this instant are still in `held_invitations`, and whoever reads the seats
//!   subtracts them (one index range over `idx_invitations_tenant_state`). Writers move it
//!   forward, subtracting what expired meanwhile, so that range stays short.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            Tenants::SeatedMembers,
            Tenants::HeldInvitations,
            Tenants::SeatsCountedUntil,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(big_integer(column).default(0))
                        .to_owned(),
                )
                .await?;
        }
        // The counters of existing tenants, counted once here.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .as_micros() as i64;
        let seated = Query::select()
            .expr(Expr::col((Memberships::Table, Memberships::UserId)).count())
            .from(Memberships::Table)
            .and_where(
                Expr::col((Memberships::Table, Memberships::TenantId))
                    .equals((Tenants::Table, Tenants::Id)),
            )
            .and_where(
                Expr::col((Memberships::Table, Memberships::Status)).is_in(["active", "suspended"]),
            )
            .to_owned();
        let held = Query::select()
            .expr(Expr::col((Invitations::Table, Invitations::Id)).count())
            .from(Invitations::Table)
            .and_where(
                Expr::col((Invitations::Table, Invitations::TenantId))
                    .equals((Tenants::Table, Tenants::Id)),
            )
            .and_where(Expr::col((Invitations::Table, Invitations::State)).eq("pending"))
            .and_where(Expr::col((Invitations::Table, Invitations::ExpiresAt)).gt(now))
            .to_owned();
        let backfill = Query::update()
            .table(Tenants::Table)
            .value(
                Tenants::SeatedMembers,
                Expr::SubQuery(None, Box::new(seated.into())),
            )
            .value(
                Tenants::HeldInvitations,
                Expr::SubQuery(None, Box::new(held.into())),
            )
            .value(Tenants::SeatsCountedUntil, now)
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Tenants::SeatedMembers,
            Tenants::HeldInvitations,
            Tenants::SeatsCountedUntil,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Tenants {
    Table,
    Id,
    SeatedMembers,
    HeldInvitations,
    SeatsCountedUntil,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    TenantId,
    UserId,
    Status,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    TenantId,
    State,
    ExpiresAt,
}
