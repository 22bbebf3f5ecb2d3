//! SQLite's FTS5 index of members keeps no copy of the text and no per-row sizes: an external
//! content table over `memberships` itself (`content_rowid = search_id`), with `columnsize = 0`.
//! Every query of the index asks only for row ids and leaves the exact match to the service's
//! own `LIKE`, so the copy (a row in `member_search_content` for every member) and the sizes (a
//! row in `member_search_docsize`, kept for ranking, which nothing asks for) were two writes of
//! every member insert that nothing read. Measured in the `sqlite3` shell, 4,000 member inserts
//! in transactions of 16: 0.60–0.79 s with the copy, 0.46–0.66 s without, 0.19 s with no text
//! index at all (`docs/event-log.md`, "SQLite: where a write's time goes").
//!
//! An external content index must be told what it indexed when a row leaves it: the update and
//! delete triggers pass the old values with FTS5's `delete` command. The column `name` is now
//! `search_name`, the content column it indexes.
//!
//! On PostgreSQL this migration does nothing.

use sea_orm_migration::prelude::*;

use crate::m20261202_000001_sqlite_text_search::{self as earlier, run};

#[derive(DeriveMigrationName)]
pub struct Migration;

const DROP: [&str; 4] = [
    "DROP TRIGGER IF EXISTS member_search_delete",
    "DROP TRIGGER IF EXISTS member_search_update",
    "DROP TRIGGER IF EXISTS member_search_insert",
    "DROP TABLE IF EXISTS member_search",
];

/// The statements of `m20261202_000001_sqlite_text_search` that made the index it replaces:
/// all but the first three, which added `search_id` and its unique index (both kept).
const EARLIER_INDEX: std::ops::RangeFrom<usize> = 3..;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let up = [
            "CREATE VIRTUAL TABLE member_search USING fts5 (email, search_name, \
                 content = 'memberships', content_rowid = 'search_id', columnsize = 0, \
                 tokenize = 'trigram case_sensitive 1')",
            "INSERT INTO member_search (member_search) VALUES ('rebuild')",
            // The id assignment of the earlier trigger, unchanged: ids only grow, and SQLite's
            // single writer means no two inserts read the same one.
            "CREATE TRIGGER member_search_insert AFTER INSERT ON memberships BEGIN
                 UPDATE memberships
                    SET search_id = (SELECT COALESCE(MAX(search_id), 0) + 1 FROM memberships)
                  WHERE rowid = new.rowid;
                 INSERT INTO member_search (rowid, email, search_name)
                     SELECT search_id, new.email, new.search_name FROM memberships
                      WHERE rowid = new.rowid;
             END",
            "CREATE TRIGGER member_search_update AFTER UPDATE OF email, search_name ON memberships
             WHEN old.email IS NOT new.email OR old.search_name IS NOT new.search_name BEGIN
                 INSERT INTO member_search (member_search, rowid, email, search_name)
                     VALUES ('delete', old.search_id, old.email, old.search_name);
                 INSERT INTO member_search (rowid, email, search_name)
                     VALUES (new.search_id, new.email, new.search_name);
             END",
            "CREATE TRIGGER member_search_delete AFTER DELETE ON memberships BEGIN
                 INSERT INTO member_search (member_search, rowid, email, search_name)
                     VALUES ('delete', old.search_id, old.email, old.search_name);
             END",
        ];
        let statements: Vec<&str> = DROP.iter().copied().chain(up).collect();
        run(manager, &statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let earlier_index = &earlier::UP[EARLIER_INDEX];
        let statements: Vec<&str> = DROP.iter().chain(earlier_index).copied().collect();
        run(manager, &statements).await
    }
}
