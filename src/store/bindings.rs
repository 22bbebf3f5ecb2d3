//! Role bindings, to members (`role_bindings`) and to groups (`group_role_bindings`): two tables
//! of one shape but for the subject's column, written and read by the same functions.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entities::{group_role_bindings, role_bindings};
use super::{IDS_PER_STATEMENT, db_error};
use crate::domain::role::{BindingKind, BindingSubject};
use crate::domain::{DomainError, Micros};

/// One stored binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBinding {
    pub tenant_id: Uuid,
    pub subject: BindingSubject,
    pub role_id: Uuid,
    pub created_at: Micros,
}

/// A binding table: the columns both have, and how a row is made and read.
trait Table: EntityTrait {
    const TENANT: Self::Column;
    const SUBJECT: Self::Column;
    const ROLE: Self::Column;

    fn row(tenant_id: Uuid, subject: Uuid, role_id: Uuid, now: Micros) -> Self::ActiveModel;
    fn read(model: Self::Model) -> StoredBinding;
}

impl Table for role_bindings::Entity {
    const TENANT: Self::Column = role_bindings::Column::TenantId;
    const SUBJECT: Self::Column = role_bindings::Column::UserId;
    const ROLE: Self::Column = role_bindings::Column::RoleId;

    fn row(tenant_id: Uuid, user_id: Uuid, role_id: Uuid, now: Micros) -> Self::ActiveModel {
        role_bindings::ActiveModel {
            tenant_id: Set(tenant_id),
            user_id: Set(user_id),
            role_id: Set(role_id),
            created_at: Set(now),
        }
    }

    fn read(m: role_bindings::Model) -> StoredBinding {
        StoredBinding {
            tenant_id: m.tenant_id,
            subject: BindingSubject::User(m.user_id),
            role_id: m.role_id,
            created_at: m.created_at,
        }
    }
}

impl Table for group_role_bindings::Entity {
    const TENANT: Self::Column = group_role_bindings::Column::TenantId;
    const SUBJECT: Self::Column = group_role_bindings::Column::GroupId;
    const ROLE: Self::Column = group_role_bindings::Column::RoleId;

    fn row(tenant_id: Uuid, group_id: Uuid, role_id: Uuid, now: Micros) -> Self::ActiveModel {
        group_role_bindings::ActiveModel {
            tenant_id: Set(tenant_id),
            group_id: Set(group_id),
            role_id: Set(role_id),
            created_at: Set(now),
        }
    }

    fn read(m: group_role_bindings::Model) -> StoredBinding {
        StoredBinding {
            tenant_id: m.tenant_id,
            subject: BindingSubject::Group(m.group_id),
            role_id: m.role_id,
            created_at: m.created_at,
        }
    }
}

/// Calls the generic `$function` on the table of `$kind`, with the arguments that follow.
macro_rules! on_table {
    ($kind:expr, $function:ident($($arg:expr),* $(,)?)) => {
        match $kind {
            BindingKind::User => $function::<role_bindings::Entity, _>($($arg),*).await,
            BindingKind::Group => $function::<group_role_bindings::Entity, _>($($arg),*).await,
        }
    };
}

pub async fn bind<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    subject: BindingSubject,
    role_id: Uuid,
    now: Micros,
) -> Result<(), DomainError> {
    async fn insert<T: Table, C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        subject: Uuid,
        role_id: Uuid,
        now: Micros,
    ) -> Result<(), DomainError>
    where
        T::ActiveModel: ActiveModelTrait<Entity = T> + Send,
    {
        T::insert(T::row(tenant_id, subject, role_id, now))
            .exec_without_returning(conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }
    on_table!(
        subject.kind(),
        insert(conn, tenant_id, subject.id(), role_id, now)
    )
}

/// Unbinds `role_id` from `subject`, or every role it holds when `role_id` is `None`.
pub async fn unbind<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    subject: BindingSubject,
    role_id: Option<Uuid>,
) -> Result<(), DomainError> {
    async fn delete<T: Table, C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        subject: Uuid,
        role_id: Option<Uuid>,
    ) -> Result<(), DomainError> {
        let mut delete = T::delete_many()
            .filter(T::TENANT.eq(tenant_id))
            .filter(T::SUBJECT.eq(subject));
        if let Some(role_id) = role_id {
            delete = delete.filter(T::ROLE.eq(role_id));
        }
        delete.exec(conn).await.map_err(db_error)?;
        Ok(())
    }
    on_table!(
        subject.kind(),
        delete(conn, tenant_id, subject.id(), role_id)
    )
}

/// The subjects of one kind `role_id` is bound to, in id order.
pub async fn holders_of<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    kind: BindingKind,
    role_id: Uuid,
) -> Result<Vec<Uuid>, DomainError> {
    async fn holders<T: Table, C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        role_id: Uuid,
    ) -> Result<Vec<Uuid>, DomainError> {
        T::find()
            .select_only()
            .column(T::SUBJECT)
            .filter(T::TENANT.eq(tenant_id))
            .filter(T::ROLE.eq(role_id))
            .order_by_asc(T::SUBJECT)
            .into_tuple()
            .all(conn)
            .await
            .map_err(db_error)
    }
    on_table!(kind, holders(conn, tenant_id, role_id))
}

/// The role ids bound to each of `subjects` (all of one kind), a statement per 500.
pub async fn of_many<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    kind: BindingKind,
    subjects: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Uuid>>, DomainError> {
    async fn read<T: Table, C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        subjects: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<Uuid>>, DomainError> {
        let mut by_subject: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for chunk in subjects.chunks(IDS_PER_STATEMENT) {
            let rows = T::find()
                .filter(T::TENANT.eq(tenant_id))
                .filter(T::SUBJECT.is_in(chunk.iter().copied()))
                .all(conn)
                .await
                .map_err(db_error)?;
            for row in rows.into_iter().map(T::read) {
                by_subject
                    .entry(row.subject.id())
                    .or_default()
                    .push(row.role_id);
            }
        }
        Ok(by_subject)
    }
    on_table!(kind, read(conn, tenant_id, subjects))
}

/// What a page of one kind's bindings asks for: an optional subject and role, and the
/// (subject, role) pair the previous page ended at.
pub struct BindingQuery {
    pub subject: Option<Uuid>,
    pub role_id: Option<Uuid>,
    pub after: Option<(Uuid, Uuid)>,
    pub limit: u64,
}

/// A page of one kind's bindings, ordered by (subject, role).
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    kind: BindingKind,
    query: &BindingQuery,
) -> Result<Vec<StoredBinding>, DomainError> {
    async fn page<T: Table, C: ConnectionTrait>(
        conn: &C,
        tenant_id: Uuid,
        query: &BindingQuery,
    ) -> Result<Vec<StoredBinding>, DomainError> {
        let mut select = T::find().filter(T::TENANT.eq(tenant_id));
        if let Some(subject) = query.subject {
            select = select.filter(T::SUBJECT.eq(subject));
        }
        if let Some(role_id) = query.role_id {
            select = select.filter(T::ROLE.eq(role_id));
        }
        if let Some((subject, role)) = query.after {
            select = select.filter(
                Expr::tuple([Expr::col(T::SUBJECT), Expr::col(T::ROLE)])
                    .gt(Expr::tuple([Expr::val(subject), Expr::val(role)])),
            );
        }
        let rows = select
            .order_by_asc(T::SUBJECT)
            .order_by_asc(T::ROLE)
            .limit(query.limit)
            .all(conn)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(T::read).collect())
    }
    on_table!(kind, page(conn, tenant_id, query))
}
