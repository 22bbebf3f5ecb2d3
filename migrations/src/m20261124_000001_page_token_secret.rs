//! The secret page tokens are authenticated with (HMAC-SHA256, DESIGN rule 5). It is generated
//! here, once per database, so every replica over that database shares it without being
//! configured, and tokens outlive restarts. One row; never rotated by a migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// 256 bits: the full strength of HMAC-SHA256.
const SECRET_BYTES: usize = 32;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PageTokenSecret::Table)
                    // Always 1: the table holds one row.
                    .col(integer(PageTokenSecret::Id).primary_key())
                    .col(blob(PageTokenSecret::Secret))
                    .check(Expr::col(PageTokenSecret::Id).eq(1))
                    .to_owned(),
            )
            .await?;
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|e| DbErr::Migration(format!("generating the page token secret: {e}")))?;
        let insert = Query::insert()
            .into_table(PageTokenSecret::Table)
            .columns([PageTokenSecret::Id, PageTokenSecret::Secret])
            .values([1.into(), secret.to_vec().into()])
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PageTokenSecret::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PageTokenSecret {
    Table,
    Id,
    Secret,
}
