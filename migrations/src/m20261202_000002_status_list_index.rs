//! The status filter of ListMemberships in list order: `(tenant_id, status)` becomes
//! `(tenant_id, status, created_at, user_id)`, so a page of one status in the default order is
//! one index range read that stops after the page, however many members have that status.
//! SQLite, which assumes every status is equally common, otherwise read a big tenant's members
//! of a status through the old index and sorted them all for every page. The new index still
//! serves what the old one did (seat recounts, members by status).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Memberships {
    Table,
    TenantId,
    Status,
    CreatedAt,
    UserId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_status_created")
                    .table(Memberships::Table)
                    .col(Memberships::TenantId)
                    .col(Memberships::Status)
                    .col(Memberships::CreatedAt)
                    .col(Memberships::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_memberships_status")
                    .table(Memberships::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_status")
                    .table(Memberships::Table)
                    .col(Memberships::TenantId)
                    .col(Memberships::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_memberships_status_created")
                    .table(Memberships::Table)
                    .to_owned(),
            )
            .await
    }
}
