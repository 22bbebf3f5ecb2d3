//! Event positions on PostgreSQL are assigned after commit, by a sequencer, instead of by every
//! writing transaction from the one `log_head` row (which serialized every commit in the
//! deployment). See `docs/event-log.md` for the design and why the feed's guarantees hold.
//!
//! - `tenants.event_seq`: how many events the tenant has had since this migration, incremented
//!   under the tenant's row lock by each transaction that writes its events. It rolls back with
//!   the transaction, so it has no gaps, and the row lock orders a tenant's writers.
//! - `pending_events` (PostgreSQL only): a writing transaction's events, committed with it but not
//!   yet numbered. The sequencer moves them into `events`, numbered from `log_head`, in batches.
//! - `events.tenant_seq`: the `event_seq` an event was staged with, by which a writer recognizes
//!   its events once they are numbered. Events written before this migration, and every event on
//!   SQLite (whose writers still number their own events: it has one writer at a time anyway),
//!   have none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const BOTH_UP: [&str; 2] = [
    "ALTER TABLE tenants ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE events ADD COLUMN tenant_seq BIGINT",
];

const POSTGRES_UP: [&str; 1] = [
    // Rows live here for milliseconds: vacuumed by the sequencer itself (autovacuum's minute is
    // far too slow for a table that is emptied many times a second), never analyzed stale.
    "CREATE TABLE pending_events (
         id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         tenant_id UUID NOT NULL,
         tenant_seq BIGINT NOT NULL,
         event_type VARCHAR(64) NOT NULL,
         actor_id UUID,
         subject_id VARCHAR(64),
         occurred_at BIGINT NOT NULL,
         request_id VARCHAR(64),
         before TEXT,
         after TEXT
     ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in BOTH_UP {
            db.execute_unprepared(statement).await?;
        }
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            for statement in POSTGRES_UP {
                db.execute_unprepared(statement).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared("DROP TABLE IF EXISTS pending_events")
                .await?;
        }
        db.execute_unprepared("ALTER TABLE events DROP COLUMN tenant_seq")
            .await?;
        db.execute_unprepared("ALTER TABLE tenants DROP COLUMN event_seq")
            .await?;
        Ok(())
    }
}
