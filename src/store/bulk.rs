//! Bulk loading for the benchmark's `seed`: many rows per INSERT, converted by the same code the
//! service writes single rows with, so a seeded row is what the service would have stored.
//!
//! Nothing here appends events, moves seat counters or checks a rule: the caller loads rows it
//! built correctly, inside a transaction of its own, and recounts what depends on them
//! (`tenants::recount_seats`) before it commits.

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Iterable};

use super::entities::{memberships, role_bindings};
use super::{db_error, invitations};
use crate::domain::DomainError;
use crate::domain::invitation::Invitation;
use crate::domain::membership::Membership;

/// Most rows one INSERT carries, whatever the parameter limit allows: bigger statements gain
/// nothing and cost memory to build.
const MAX_ROWS_PER_STATEMENT: usize = 5_000;

/// Most bound parameters one statement may carry: SQLite's default limit
/// (`SQLITE_MAX_VARIABLE_NUMBER`, 32,766 since 3.32) and the 16-bit count of PostgreSQL's wire
/// protocol (65,535).
fn max_parameters(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 65_535,
        _ => 32_766,
    }
}

/// Rows per INSERT into a table of `columns` columns on `backend`.
pub fn rows_per_statement(backend: DbBackend, columns: usize) -> usize {
    (max_parameters(backend) / columns.max(1)).clamp(1, MAX_ROWS_PER_STATEMENT)
}

/// Inserts `rows` into `E`'s table, as many per statement as the backend allows.
pub(crate) async fn insert_rows<C, E, A>(conn: &C, rows: Vec<A>) -> Result<u64, DomainError>
where
    C: ConnectionTrait,
    E: EntityTrait<ActiveModel = A>,
    A: sea_orm::ActiveModelTrait<Entity = E> + Send,
{
    let per_statement = rows_per_statement(conn.get_database_backend(), E::Column::iter().count());
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(per_statement).collect();
        inserted += E::insert_many(chunk)
            .exec_without_returning(conn)
            .await
            .map_err(db_error)?;
    }
    Ok(inserted)
}

/// Inserts new membership rows (their role names are not stored here: bind the roles with
/// [`insert_role_bindings`]). Returns the rows inserted.
pub async fn insert_memberships<C: ConnectionTrait>(
    conn: &C,
    members: &[Membership],
) -> Result<u64, DomainError> {
    let rows: Vec<memberships::ActiveModel> =
        members.iter().map(super::memberships::to_active).collect();
    insert_rows(conn, rows).await
}

/// Inserts role bindings. Returns the rows inserted.
pub async fn insert_role_bindings<C: ConnectionTrait>(
    conn: &C,
    bindings: &[role_bindings::Model],
) -> Result<u64, DomainError> {
    let rows: Vec<role_bindings::ActiveModel> = bindings.iter().cloned().map(Into::into).collect();
    insert_rows(conn, rows).await
}

/// Inserts invitations, each with the hash of its token. One statement each, through the
/// invitation store's own insert (which also counts each on the tenant's seats; the caller's
/// recount sets the counters anyway): seeds carry a few thousand at most.
pub async fn insert_invitations<C: ConnectionTrait>(
    conn: &C,
    invitations: &[(Invitation, String)],
) -> Result<u64, DomainError> {
    for (invitation, token_hash) in invitations {
        invitations::insert(conn, invitation, token_hash).await?;
    }
    Ok(invitations.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_within_the_parameter_limits() {
        let columns = memberships::Column::iter().count();
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let rows = rows_per_statement(backend, columns);
            assert!(rows >= 1);
            assert!(rows * columns <= max_parameters(backend));
        }
        assert_eq!(rows_per_statement(DbBackend::Postgres, 4), 5_000);
        assert_eq!(rows_per_statement(DbBackend::Sqlite, 14), 2_340);
    }
}
