//! `tenants.roles_stamp`: a random number that changes, in the same statement, whenever one of
//! the tenant's roles is created, changed or deleted. A process that has read a tenant's roles
//! keeps them beside the stamp it read with the tenant row, and reads them again only when the
//! stamp differs: every write and every snapshot read that loads a tenant saves a statement,
//! and the roles it uses are always those of its own snapshot (the stamp comes from the same
//! read of the tenant row, under the tenant lock for writers).
//!
//! Random rather than a counter, so a stamp names one set of roles across databases too: a
//! process serving several databases (the tests do) cannot mistake one tenant's roles in one
//! database for another's with the same id. Triggers rather than the service's own writes, so
//! no path that changes roles (a repair, a bulk load) can leave a stale stamp behind.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: [&str; 4] = [
    "ALTER TABLE tenants ADD COLUMN roles_stamp BIGINT NOT NULL DEFAULT 0",
    "UPDATE tenants SET roles_stamp = floor(random() * 9007199254740991)::bigint + 1",
    "CREATE FUNCTION restamp_tenant_roles() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         -- A role never moves to another tenant: its tenant is OLD's or NEW's.
         IF TG_OP = 'DELETE' THEN
             UPDATE tenants SET roles_stamp = floor(random() * 9007199254740991)::bigint + 1
              WHERE id = OLD.tenant_id;
         ELSE
             UPDATE tenants SET roles_stamp = floor(random() * 9007199254740991)::bigint + 1
              WHERE id = NEW.tenant_id;
         END IF;
         RETURN NULL;
     END $$",
    "CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE ON roles
         FOR EACH ROW EXECUTE FUNCTION restamp_tenant_roles()",
];

const POSTGRES_DOWN: [&str; 3] = [
    "DROP TRIGGER IF EXISTS roles_changed ON roles",
    "DROP FUNCTION IF EXISTS restamp_tenant_roles()",
    "ALTER TABLE tenants DROP COLUMN roles_stamp",
];

const SQLITE_UP: [&str; 5] = [
    "ALTER TABLE tenants ADD COLUMN roles_stamp INTEGER NOT NULL DEFAULT 0",
    "UPDATE tenants SET roles_stamp = random()",
    "CREATE TRIGGER roles_inserted AFTER INSERT ON roles BEGIN
         UPDATE tenants SET roles_stamp = random() WHERE id = new.tenant_id;
     END",
    "CREATE TRIGGER roles_updated AFTER UPDATE ON roles BEGIN
         UPDATE tenants SET roles_stamp = random() WHERE id = new.tenant_id;
     END",
    "CREATE TRIGGER roles_deleted AFTER DELETE ON roles BEGIN
         UPDATE tenants SET roles_stamp = random() WHERE id = old.tenant_id;
     END",
];

const SQLITE_DOWN: [&str; 4] = [
    "DROP TRIGGER IF EXISTS roles_deleted",
    "DROP TRIGGER IF EXISTS roles_updated",
    "DROP TRIGGER IF EXISTS roles_inserted",
    "ALTER TABLE tenants DROP COLUMN roles_stamp",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements: &[&str] = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => &POSTGRES_UP,
            _ => &SQLITE_UP,
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements: &[&str] = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => &POSTGRES_DOWN,
            _ => &SQLITE_DOWN,
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
