//! Groups (DESIGN rules 24–28): named sets of a tenant's members, roles bound to them, and the
//! `groups.manage` permission for the built-in roles that get it.
//!
//! User bindings stay in `role_bindings` as they are; a group's bindings have a table of their
//! own, so every stored binding and every existing query keeps its meaning. `member_count` is
//! kept by the writes that add and remove members, under the tenant lock (no count on a read).
//!
//! The group filter of ListMemberships reads in list order, as the role filter does (see
//! `m20261202_000003_role_list_keys`): every link carries a copy of its member's three sort
//! keys, indexed after the group, kept by triggers in the same statement as every change, so a
//! page of a group's members is one index range read however small the group.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Groups {
    Table,
    TenantId,
    Id,
    Name,
    /// The name folded as member names are (lower case): what uniqueness and the query compare.
    NameKey,
    Description,
    Source,
    ExternalId,
    MemberCount,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    TenantId,
    GroupId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GroupRoleBindings {
    Table,
    TenantId,
    GroupId,
    RoleId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Id,
}

/// The built-in roles that manage groups: each preset's owner role, and the organization
/// preset's admin. Roles created from now on get it from the preset itself.
const GRANT_GROUPS_MANAGE: &str = "UPDATE roles SET permissions = permissions || ' groups.manage'
     WHERE builtin AND (is_owner OR (name = 'admin' AND tenant_id IN
         (SELECT id FROM tenants WHERE role_preset = 'organization')))
       AND permissions NOT LIKE '%groups.manage%'";

const LIST_KEY_INDEXES: [(&str, &str); 3] = [
    ("idx_group_members_created", "member_created_at"),
    ("idx_group_members_email", "member_email"),
    ("idx_group_members_display_name", "member_display_name"),
];

/// A link takes its member's sort keys when inserted (a member exists before any link to it),
/// and a member's new keys are copied to their links. On PostgreSQL the function that copies a
/// member's keys to their role bindings copies them to their group links too.
const POSTGRES_LIST_KEYS: [&str; 4] = [
    "ALTER TABLE group_members ADD COLUMN member_created_at BIGINT, \
         ADD COLUMN member_email VARCHAR(320), ADD COLUMN member_display_name VARCHAR(200)",
    "CREATE FUNCTION group_member_list_keys() RETURNS trigger LANGUAGE plpgsql
         SET plan_cache_mode = force_custom_plan AS $$
     BEGIN
         SELECT m.created_at, m.email, m.display_name
           INTO NEW.member_created_at, NEW.member_email, NEW.member_display_name
           FROM memberships m WHERE m.tenant_id = NEW.tenant_id AND m.user_id = NEW.user_id;
         RETURN NEW;
     END $$",
    "CREATE TRIGGER group_member_list_keys BEFORE INSERT ON group_members
         FOR EACH ROW EXECUTE FUNCTION group_member_list_keys()",
    "CREATE OR REPLACE FUNCTION member_list_keys_to_bindings() RETURNS trigger
         LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
     BEGIN
         UPDATE role_bindings SET member_created_at = NEW.created_at,
                member_email = NEW.email, member_display_name = NEW.display_name
          WHERE tenant_id = NEW.tenant_id AND user_id = NEW.user_id;
         UPDATE group_members SET member_created_at = NEW.created_at,
                member_email = NEW.email, member_display_name = NEW.display_name
          WHERE tenant_id = NEW.tenant_id AND user_id = NEW.user_id;
         RETURN NULL;
     END $$",
];

const SQLITE_LIST_KEYS: [&str; 5] = [
    "ALTER TABLE group_members ADD COLUMN member_created_at INTEGER",
    "ALTER TABLE group_members ADD COLUMN member_email TEXT",
    "ALTER TABLE group_members ADD COLUMN member_display_name TEXT",
    "CREATE TRIGGER group_member_list_keys AFTER INSERT ON group_members BEGIN
         UPDATE group_members SET (member_created_at, member_email, member_display_name) =
             (SELECT m.created_at, m.email, m.display_name FROM memberships m
               WHERE m.tenant_id = new.tenant_id AND m.user_id = new.user_id)
          WHERE rowid = new.rowid;
     END",
    "CREATE TRIGGER member_list_keys_to_groups AFTER UPDATE OF created_at, email, display_name
         ON memberships
         WHEN old.created_at IS NOT new.created_at OR old.email IS NOT new.email
              OR old.display_name IS NOT new.display_name BEGIN
         UPDATE group_members SET member_created_at = new.created_at, member_email = new.email,
                member_display_name = new.display_name
          WHERE tenant_id = new.tenant_id AND user_id = new.user_id;
     END",
];

const POSTGRES_LIST_KEYS_DOWN: [&str; 3] = [
    "DROP TRIGGER IF EXISTS group_member_list_keys ON group_members",
    "DROP FUNCTION IF EXISTS group_member_list_keys()",
    "CREATE OR REPLACE FUNCTION member_list_keys_to_bindings() RETURNS trigger
         LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
     BEGIN
         UPDATE role_bindings SET member_created_at = NEW.created_at,
                member_email = NEW.email, member_display_name = NEW.display_name
          WHERE tenant_id = NEW.tenant_id AND user_id = NEW.user_id;
         RETURN NULL;
     END $$",
];

const SQLITE_LIST_KEYS_DOWN: [&str; 2] = [
    "DROP TRIGGER IF EXISTS member_list_keys_to_groups",
    "DROP TRIGGER IF EXISTS group_member_list_keys",
];

const REVOKE_GROUPS_MANAGE: &str =
    "UPDATE roles SET permissions = trim(replace(permissions, 'groups.manage', '')) WHERE builtin";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Groups::Table)
                    .col(uuid(Groups::TenantId))
                    .col(uuid(Groups::Id))
                    .col(string_len(Groups::Name, 200))
                    // Lower-casing can lengthen a name (`İ` becomes two characters).
                    .col(text(Groups::NameKey))
                    .col(string_len(Groups::Description, 500))
                    .col(string_len(Groups::Source, 16))
                    .col(string_len_null(Groups::ExternalId, 256))
                    .col(big_integer(Groups::MemberCount).default(0))
                    .col(big_integer(Groups::Version))
                    .col(big_integer(Groups::CreatedAt))
                    .col(big_integer(Groups::UpdatedAt))
                    .primary_key(Index::create().col(Groups::TenantId).col(Groups::Id))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_groups_name", Groups::NameKey),
            ("idx_groups_external_id", Groups::ExternalId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Groups::Table)
                        .col(Groups::TenantId)
                        .col(column)
                        .unique()
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(GroupMembers::Table)
                    .col(uuid(GroupMembers::TenantId))
                    .col(uuid(GroupMembers::GroupId))
                    .col(uuid(GroupMembers::UserId))
                    .col(big_integer(GroupMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GroupMembers::TenantId)
                            .col(GroupMembers::GroupId)
                            .col(GroupMembers::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        // The groups of one member: the permission load, removal and leave ask it.
        manager
            .create_index(
                Index::create()
                    .name("idx_group_members_user")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::TenantId)
                    .col(GroupMembers::UserId)
                    .col(GroupMembers::GroupId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GroupRoleBindings::Table)
                    .col(uuid(GroupRoleBindings::TenantId))
                    .col(uuid(GroupRoleBindings::GroupId))
                    .col(uuid(GroupRoleBindings::RoleId))
                    .col(big_integer(GroupRoleBindings::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(GroupRoleBindings::TenantId)
                            .col(GroupRoleBindings::GroupId)
                            .col(GroupRoleBindings::RoleId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(GroupRoleBindings::Table, GroupRoleBindings::RoleId)
                            .to(Roles::Table, Roles::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Deleting a role finds its group bindings as it finds its member bindings.
        manager
            .create_index(
                Index::create()
                    .name("idx_group_role_bindings_role")
                    .table(GroupRoleBindings::Table)
                    .col(GroupRoleBindings::TenantId)
                    .col(GroupRoleBindings::RoleId)
                    .col(GroupRoleBindings::GroupId)
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        let list_keys: &[&str] = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => &POSTGRES_LIST_KEYS,
            _ => &SQLITE_LIST_KEYS,
        };
        for statement in list_keys {
            db.execute_unprepared(statement).await?;
        }
        for (name, column) in LIST_KEY_INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON group_members (tenant_id, group_id, {column}, user_id)"
            ))
            .await?;
        }
        db.execute_unprepared(GRANT_GROUPS_MANAGE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(REVOKE_GROUPS_MANAGE).await?;
        let list_keys: &[&str] = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => &POSTGRES_LIST_KEYS_DOWN,
            _ => &SQLITE_LIST_KEYS_DOWN,
        };
        for statement in list_keys {
            db.execute_unprepared(statement).await?;
        }
        for table in [
            GroupRoleBindings::Table.into_iden(),
            GroupMembers::Table.into_iden(),
            Groups::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
