//! Indexed text search of members on PostgreSQL: trigram (pg_trgm) GIN indexes on the two
//! columns the ListMemberships text query matches with `LIKE '%…%'` (the canonical email and
//! the lower-cased display name) and on invitations' emails, so a query reads the rows that
//! contain it instead of the whole tenant.
//!
//! pg_trgm ships with PostgreSQL's contrib modules and is a trusted extension, but a server
//! may lack it or the role may not create it: then nothing is created here, searches stay
//! correct and scan the tenant, and the service says so in a warning at every start. The
//! extension goes into `public` when it can, so it outlives any one schema; its operator class
//! is named with the schema it is in, whatever the search path.
//!
//! On SQLite this migration does nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Index name, table, column.
const INDEXES: [(&str, &str, &str); 3] = [
    ("idx_memberships_email_trgm", "memberships", "email"),
    (
        "idx_memberships_search_name_trgm",
        "memberships",
        "search_name",
    ),
    ("idx_invitations_email_trgm", "invitations", "email"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "DO $$ BEGIN
                 BEGIN
                     CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
                 EXCEPTION WHEN OTHERS THEN
                     BEGIN
                         CREATE EXTENSION IF NOT EXISTS pg_trgm;
                     EXCEPTION WHEN OTHERS THEN
                         RAISE WARNING 'pg_trgm is not available (%): member text search is not indexed', SQLERRM;
                     END;
                 END;
             END $$",
        )
        .await?;
        for (index, table, column) in INDEXES {
            db.execute_unprepared(&format!(
                "DO $$ DECLARE trgm_schema text; BEGIN
                     SELECT extnamespace::regnamespace::text INTO trgm_schema
                         FROM pg_extension WHERE extname = 'pg_trgm';
                     IF trgm_schema IS NOT NULL THEN
                         EXECUTE format('CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin ({column} %I.gin_trgm_ops)', trgm_schema);
                     END IF;
                 END $$"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        for (index, _, _) in INDEXES {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }
        Ok(())
    }
}
