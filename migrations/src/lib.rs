//! Schema migrations, applied at start-up and by `membership-service migrate`.
//! A migration is never edited after it lands; a schema change is a new file.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_invitations_and_domains;
mod m20261124_000001_page_token_secret;
mod m20261130_000001_seat_counters;
mod m20261130_000002_text_search;
mod m20261202_000001_sqlite_text_search;
mod m20261202_000002_status_list_index;
mod m20261202_000003_role_list_keys;
mod m20261204_000001_invitation_role_index;
mod m20261205_000001_event_sequencer;
mod m20261206_000001_roles_stamp;
mod m20261207_000001_groups;
mod m20261208_000001_pending_invitations;
mod m20261208_000002_sqlite_text_search_without_copy;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_invitations_and_domains::Migration),
            Box::new(m20261124_000001_page_token_secret::Migration),
            Box::new(m20261130_000001_seat_counters::Migration),
            Box::new(m20261130_000002_text_search::Migration),
            Box::new(m20261202_000001_sqlite_text_search::Migration),
            Box::new(m20261202_000002_status_list_index::Migration),
            Box::new(m20261202_000003_role_list_keys::Migration),
            Box::new(m20261204_000001_invitation_role_index::Migration),
            Box::new(m20261205_000001_event_sequencer::Migration),
            Box::new(m20261206_000001_roles_stamp::Migration),
            Box::new(m20261207_000001_groups::Migration),
            Box::new(m20261208_000001_pending_invitations::Migration),
            Box::new(m20261208_000002_sqlite_text_search_without_copy::Migration),
        ]
    }
}
