//! A connection whose every statement is bounded in time. A database that stops answering
//! without closing the connection (a network partition, a stalled proxy) would otherwise hold a
//! call until the caller's deadline; bounded, the call fails fast with UNAVAILABLE, and the
//! connection, still waiting for its answer, is discarded when it returns to the pool.

use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};

/// `C`, with each statement given at most `timeout`.
pub struct Bounded<C> {
    inner: C,
    timeout: Duration,
}

impl<C> Bounded<C> {
    pub fn new(inner: C, timeout: Duration) -> Self {
        Self { inner, timeout }
    }

    async fn within<T>(
        &self,
        statement: impl Future<Output = Result<T, DbErr>>,
    ) -> Result<T, DbErr> {
        within(self.timeout, statement).await
    }
}

/// `work`, or a connection error once `timeout` has passed without an answer.
pub async fn within<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, DbErr> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(DbErr::Conn(RuntimeErr::Internal(format!(
                "the database did not answer within {timeout:?}"
            ))))
        })
}

impl Bounded<DatabaseTransaction> {
    pub async fn commit(self) -> Result<(), DbErr> {
        within(self.timeout, self.inner.commit()).await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        within(self.timeout, self.inner.rollback()).await
    }
}

#[async_trait::async_trait]
impl<C: ConnectionTrait + Send + Sync> ConnectionTrait for Bounded<C> {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.within(self.inner.execute_raw(stmt)).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.within(self.inner.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.within(self.inner.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.within(self.inner.query_all_raw(stmt)).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}
