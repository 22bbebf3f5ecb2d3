//! `pending_invitations` on the tenant row: its invitations in state pending, expired or not,
//! kept by the service in the same transaction as every invitation change (beside
//! `held_invitations`, which counts only the ones holding a seat). A write that would look for
//! pending invitations — a new member closes the ones sent to its email — skips the lookup when
//! the locked row says there are none.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(big_integer(Tenants::PendingInvitations).default(0))
                    .to_owned(),
            )
            .await?;
        let pending = Query::select()
            .expr(Expr::col((Invitations::Table, Invitations::Id)).count())
            .from(Invitations::Table)
            .and_where(
                Expr::col((Invitations::Table, Invitations::TenantId))
                    .equals((Tenants::Table, Tenants::Id)),
            )
            .and_where(Expr::col((Invitations::Table, Invitations::State)).eq("pending"))
            .to_owned();
        let backfill = Query::update()
            .table(Tenants::Table)
            .value(
                Tenants::PendingInvitations,
                Expr::SubQuery(None, Box::new(pending.into())),
            )
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::PendingInvitations)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    PendingInvitations,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    TenantId,
    State,
}
