//! Invitations (a pending one holds a seat until it expires) and verified email domains.

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
                    .table(Invitations::Table)
                    .col(uuid(Invitations::Id).primary_key())
                    .col(uuid(Invitations::TenantId))
                    .col(string_len(Invitations::Email, 320))
                    .col(uuid(Invitations::RoleId))
                    .col(uuid_null(Invitations::InviterId))
                    .col(string_len(Invitations::State, 16))
                    // SHA-256 of the token, hex: the plaintext token is never stored.
                    .col(string_len(Invitations::TokenHash, 64).unique_key())
                    .col(big_integer(Invitations::ExpiresAt))
                    .col(integer(Invitations::SendCount))
                    .col(big_integer(Invitations::LastSentAt))
                    .col(uuid_null(Invitations::AcceptedBy))
                    .col(big_integer_null(Invitations::AcceptedAt))
                    .col(big_integer(Invitations::CreatedAt))
                    .col(big_integer(Invitations::UpdatedAt))
                    .col(big_integer(Invitations::Version))
                    .to_owned(),
            )
            .await?;
        // Lists of pending invitations by email, and the seat count of pending ones.
        manager
            .create_index(
                Index::create()
                    .name("idx_invitations_tenant_email")
                    .table(Invitations::Table)
                    .col(Invitations::TenantId)
                    .col(Invitations::Email)
                    .col(Invitations::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_invitations_tenant_state")
                    .table(Invitations::Table)
                    .col(Invitations::TenantId)
                    .col(Invitations::State)
                    .col(Invitations::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_invitations_tenant_created")
                    .table(Invitations::Table)
                    .col(Invitations::TenantId)
                    .col(Invitations::CreatedAt)
                    .col(Invitations::Id)
                    .to_owned(),
            )
            .await?;
        // Members are found by email when inviting.
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_tenant_email_status")
                    .table(Memberships::Table)
                    .col(Memberships::TenantId)
                    .col(Memberships::Email)
                    .col(Memberships::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Domains::Table)
                    .col(uuid(Domains::Id).primary_key())
                    .col(uuid(Domains::TenantId))
                    .col(string_len(Domains::Domain, 253))
                    .col(string_len(Domains::State, 16))
                    .col(boolean(Domains::AutoJoin))
                    .col(string_len(Domains::VerificationToken, 64))
                    .col(big_integer(Domains::CreatedAt))
                    .col(big_integer(Domains::UpdatedAt))
                    .col(big_integer_null(Domains::VerifiedAt))
                    .col(big_integer(Domains::Version))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_domains_tenant_domain")
                    .table(Domains::Table)
                    .col(Domains::TenantId)
                    .col(Domains::Domain)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_domains_domain")
                    .table(Domains::Table)
                    .col(Domains::Domain)
                    .to_owned(),
            )
            .await?;
        // One row per verified domain, across tenants: the unique key makes two tenants
        // verifying the same domain at once a conflict instead of a race.
        manager
            .create_table(
                Table::create()
                    .table(VerifiedDomains::Table)
                    .col(string_len(VerifiedDomains::Domain, 253).primary_key())
                    .col(uuid(VerifiedDomains::TenantId))
                    .col(uuid(VerifiedDomains::DomainId))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_memberships_tenant_email_status")
                    .table(Memberships::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            VerifiedDomains::Table.into_iden(),
            Domains::Table.into_iden(),
            Invitations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    TenantId,
    Email,
    RoleId,
    InviterId,
    State,
    TokenHash,
    ExpiresAt,
    SendCount,
    LastSentAt,
    AcceptedBy,
    AcceptedAt,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    TenantId,
    Email,
    Status,
}

#[derive(DeriveIden)]
enum Domains {
    Table,
    Id,
    TenantId,
    Domain,
    State,
    AutoJoin,
    VerificationToken,
    CreatedAt,
    UpdatedAt,
    VerifiedAt,
    Version,
}

#[derive(DeriveIden)]
enum VerifiedDomains {
    Table,
    Domain,
    TenantId,
    DomainId,
}
