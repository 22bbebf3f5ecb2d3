//! Indexed text search of members on SQLite: an FTS5 table with the trigram tokenizer over the
//! two columns the ListMemberships text query matches (the canonical email and the lower-cased
//! display name), kept by triggers in the same statement as every change to a membership.
//!
//! FTS5 addresses rows by integer: each membership gets a `search_id` of its own, assigned once
//! by the insert trigger and never changed. (The table's implicit rowid would not do: VACUUM may
//! renumber it.) The tokenizer is case-sensitive on purpose: both columns and every query are
//! already in their folded forms, so a substring of a stored value is always a substring of the
//! indexed text, byte for byte, and the service's own `LIKE` decides the exact match after the
//! index has narrowed the rows.
//!
//! On PostgreSQL this migration does nothing: the trigram indexes of
//! `m20261130_000002_text_search` serve the same queries.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const UP: [&str; 8] = [
    "ALTER TABLE memberships ADD COLUMN search_id INTEGER",
    "UPDATE memberships SET search_id = rowid",
    "CREATE UNIQUE INDEX idx_memberships_search_id ON memberships (search_id)",
    "CREATE VIRTUAL TABLE member_search USING fts5 \
         (email, name, tokenize = 'trigram case_sensitive 1')",
    "INSERT INTO member_search (rowid, email, name) \
         SELECT search_id, email, search_name FROM memberships",
    // Ids only grow: the largest is one probe of the unique index, and SQLite's single writer
    // means no two inserts read the same one.
    "CREATE TRIGGER member_search_insert AFTER INSERT ON memberships BEGIN
         UPDATE memberships
            SET search_id = (SELECT COALESCE(MAX(search_id), 0) + 1 FROM memberships)
          WHERE rowid = new.rowid;
         INSERT INTO member_search (rowid, email, name)
             SELECT search_id, new.email, new.search_name FROM memberships
              WHERE rowid = new.rowid;
     END",
    "CREATE TRIGGER member_search_update AFTER UPDATE OF email, search_name ON memberships
     WHEN old.email IS NOT new.email OR old.search_name IS NOT new.search_name BEGIN
         UPDATE member_search SET email = new.email, name = new.search_name
          WHERE rowid = old.search_id;
     END",
    "CREATE TRIGGER member_search_delete AFTER DELETE ON memberships BEGIN
         DELETE FROM member_search WHERE rowid = old.search_id;
     END",
];

const DOWN: [&str; 6] = [
    "DROP TRIGGER IF EXISTS member_search_delete",
    "DROP TRIGGER IF EXISTS member_search_update",
    "DROP TRIGGER IF EXISTS member_search_insert",
    "DROP TABLE IF EXISTS member_search",
    "DROP INDEX IF EXISTS idx_memberships_search_id",
    "ALTER TABLE memberships DROP COLUMN search_id",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &DOWN).await
    }
}

/// Runs `statements` in order on SQLite; nothing on PostgreSQL.
pub(crate) async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(());
    }
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}
