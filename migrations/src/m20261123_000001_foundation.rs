//! Tenants, memberships, roles, role bindings, the event log and its head, idempotency keys.
//!
//! Times are stored as microseconds since the Unix epoch (BIGINT) so that ordering, keyset
//! pagination and range filters behave the same on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(uuid(Tenants::Id).primary_key())
                    .col(string_len(Tenants::Name, 200))
                    .col(string_len(Tenants::Kind, 16))
                    .col(string_len(Tenants::RolePreset, 16))
                    .col(integer_null(Tenants::SeatLimit))
                    .col(string_len(Tenants::State, 16))
                    .col(big_integer(Tenants::Version))
                    .col(big_integer(Tenants::CreatedAt))
                    .col(big_integer(Tenants::UpdatedAt))
                    .col(big_integer_null(Tenants::DissolvedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(uuid(Memberships::TenantId))
                    .col(uuid(Memberships::UserId))
                    .col(string_len(Memberships::Email, 320))
                    .col(string_len(Memberships::DisplayName, 200))
                    // Lower-cased by the service, so the text query ignores case beyond ASCII
                    // on SQLite too (its LOWER() folds ASCII only).
                    .col(string_len(Memberships::SearchName, 200))
                    .col(string_len(Memberships::Status, 16))
                    .col(string_len(Memberships::MemberType, 32))
                    .col(string_len(Memberships::Source, 16))
                    .col(string_len_null(Memberships::ExternalId, 256))
                    .col(uuid_null(Memberships::InvitedBy))
                    .col(big_integer_null(Memberships::JoinedAt))
                    .col(big_integer(Memberships::CreatedAt))
                    .col(big_integer(Memberships::UpdatedAt))
                    .col(big_integer(Memberships::Version))
                    .primary_key(
                        Index::create()
                            .col(Memberships::TenantId)
                            .col(Memberships::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::TenantId)
                            .to(Tenants::Table, Tenants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One index per sort order of ListMemberships, so every page is an index range scan.
        for (name, column) in [
            ("idx_memberships_created", Memberships::CreatedAt),
            ("idx_memberships_email", Memberships::Email),
            ("idx_memberships_display_name", Memberships::DisplayName),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Memberships::Table)
                        .col(Memberships::TenantId)
                        .col(column)
                        .col(Memberships::UserId)
                        .to_owned(),
                )
                .await?;
        }
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
            .create_index(
                Index::create()
                    .name("idx_memberships_user")
                    .table(Memberships::Table)
                    .col(Memberships::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(uuid(Roles::Id).primary_key())
                    .col(uuid(Roles::TenantId))
                    .col(string_len(Roles::Name, 64))
                    .col(string_len(Roles::Description, 500))
                    .col(boolean(Roles::Builtin))
                    .col(boolean(Roles::IsOwner))
                    .col(text(Roles::Permissions))
                    .col(big_integer(Roles::Version))
                    .col(big_integer(Roles::CreatedAt))
                    .col(big_integer(Roles::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Roles::Table, Roles::TenantId)
                            .to(Tenants::Table, Tenants::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_roles_tenant_name")
                    .table(Roles::Table)
                    .col(Roles::TenantId)
                    .col(Roles::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoleBindings::Table)
                    .col(uuid(RoleBindings::TenantId))
                    .col(uuid(RoleBindings::UserId))
                    .col(uuid(RoleBindings::RoleId))
                    .col(big_integer(RoleBindings::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RoleBindings::TenantId)
                            .col(RoleBindings::UserId)
                            .col(RoleBindings::RoleId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleBindings::Table, RoleBindings::RoleId)
                            .to(Roles::Table, Roles::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_role_bindings_role")
                    .table(RoleBindings::Table)
                    .col(RoleBindings::TenantId)
                    .col(RoleBindings::RoleId)
                    .col(RoleBindings::UserId)
                    .to_owned(),
            )
            .await?;

        // The event log. Positions are assigned from `log_head` at the end of each writing
        // transaction, so they follow commit order (see the store's event appender).
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_integer(Events::Position).primary_key())
                    .col(uuid_null(Events::TenantId))
                    .col(string_len(Events::EventType, 64))
                    .col(uuid_null(Events::ActorId))
                    .col(string_len_null(Events::SubjectId, 64))
                    .col(big_integer(Events::OccurredAt))
                    .col(string_len_null(Events::RequestId, 64))
                    .col(text_null(Events::Before))
                    .col(text_null(Events::After))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_tenant_position")
                    .table(Events::Table)
                    .col(Events::TenantId)
                    .col(Events::Position)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_occurred")
                    .table(Events::Table)
                    .col(Events::OccurredAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LogHead::Table)
                    .col(integer(LogHead::Id).primary_key())
                    .col(big_integer(LogHead::Position))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(LogHead::Table)
                    .columns([LogHead::Id, LogHead::Position])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RequestIds::Table)
                    .col(string_len(RequestIds::Operation, 64))
                    .col(string_len(RequestIds::RequestId, 64))
                    .col(string_len(RequestIds::ResourceKey, 128))
                    .col(big_integer(RequestIds::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RequestIds::Operation)
                            .col(RequestIds::RequestId),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RequestIds::Table.into_iden(),
            LogHead::Table.into_iden(),
            Events::Table.into_iden(),
            RoleBindings::Table.into_iden(),
            Roles::Table.into_iden(),
            Memberships::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    Kind,
    RolePreset,
    SeatLimit,
    State,
    Version,
    CreatedAt,
    UpdatedAt,
    DissolvedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    TenantId,
    UserId,
    Email,
    DisplayName,
    SearchName,
    Status,
    MemberType,
    Source,
    ExternalId,
    InvitedBy,
    JoinedAt,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    Builtin,
    IsOwner,
    Permissions,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RoleBindings {
    Table,
    TenantId,
    UserId,
    RoleId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Position,
    TenantId,
    EventType,
    ActorId,
    SubjectId,
    OccurredAt,
    RequestId,
    Before,
    After,
}

#[derive(DeriveIden)]
enum LogHead {
    Table,
    Id,
    Position,
}

#[derive(DeriveIden)]
enum RequestIds {
    Table,
    Operation,
    RequestId,
    ResourceKey,
    CreatedAt,
}
