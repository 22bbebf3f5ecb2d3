//! Groups (DESIGN rules 24–28): named sets of a tenant's members, roles bound to them, and the
//! `groups.manage` permission for the built-in roles that get it.
//!
//! User bindings stay in `role_bindings` as they are; a group's bindings have a table of their
//! own, so every stored binding and every existing query keeps its meaning. `member_count` is
//! kept by the writes that add and remove members, under the tenant lock (no count on a read).

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
                    .col(string_len(Groups::NameKey, 200))
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

        manager
            .get_connection()
            .execute_unprepared(GRANT_GROUPS_MANAGE)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(REVOKE_GROUPS_MANAGE)
            .await?;
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
