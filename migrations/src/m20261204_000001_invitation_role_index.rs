//! The role filter of ListMemberships reads pending invitations in list order too: an index per
//! order after `(tenant_id, role_id)`, so a page of a rare role's holders stops after the page
//! instead of testing every pending invitation of the tenant for the role, one by one. (Display
//! name order sorts invitations by id: they have no name yet.)

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Invitations {
    Table,
    TenantId,
    RoleId,
    CreatedAt,
    Email,
    Id,
}

const INDEXES: [(&str, Option<Invitations>); 3] = [
    ("idx_invitations_role_created", Some(Invitations::CreatedAt)),
    ("idx_invitations_role_email", Some(Invitations::Email)),
    ("idx_invitations_role_id", None),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, sort) in INDEXES {
            let mut index = Index::create();
            index
                .name(name)
                .table(Invitations::Table)
                .col(Invitations::TenantId)
                .col(Invitations::RoleId);
            if let Some(sort) = sort {
                index.col(sort);
            }
            manager
                .create_index(index.col(Invitations::Id).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Invitations::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
