//! Persistence: SeaORM entities and queries over `C: ConnectionTrait`, so every query composes
//! inside a transaction, plus the one place writing transactions begin and commit.
//!
//! Writers serialize per tenant: on PostgreSQL by locking the tenant row (`SELECT … FOR UPDATE`),
//! on SQLite (one writer at a time anyway) by an in-process gate plus `BEGIN IMMEDIATE`, so
//! concurrent writers queue instead of failing with "database is locked".

pub mod bindings;
pub mod bounded;
pub mod bulk;
pub mod domains;
pub mod entities;
pub mod event_log;
mod group_commit;
pub mod groups;
pub mod invitations;
pub mod memberships;
pub mod page_token_secret;
pub mod requests;
pub mod roles;
pub mod sequencer;
pub mod tenants;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, IsolationLevel, SqlErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::{Mutex, Notify};

use crate::domain::events::NewEvent;
use crate::domain::events::{EventCursor, EventSubject, EventType};
use crate::domain::{Caller, DomainError, Micros, Versioned};
use bounded::{Bounded, within};

/// Advisory lock key taken while migrating PostgreSQL ("memb" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d656d62;

/// How a writing transaction begins: on SQLite with the write lock taken at once (`BEGIN
/// IMMEDIATE`), so it never fails to upgrade a read lock halfway; on PostgreSQL as any other.
const WRITING: TransactionOptions = TransactionOptions {
    isolation_level: None,
    access_mode: None,
    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
};

/// How the store connects.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// Longest a call waits on the database: for a pooled connection, a new connection, or any
    /// one statement.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// How often SQLite's planner statistics are looked at (see `Store::keep_statistics`).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(3600);

/// A read-only snapshot, or a writing transaction, whose statements are bounded in time.
pub type Transaction = Bounded<DatabaseTransaction>;

/// The database and how to write to it.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    timeout: Duration,
    /// Signalled after every commit that appended events, to wake this process's event feed.
    committed: Arc<Notify>,
    /// Called after every commit that appended events, before the writer returns.
    commit_hooks: Arc<std::sync::RwLock<Vec<CommitHook>>>,
    /// Present on SQLite: writers take turns in-process instead of contending for the file lock.
    write_gate: Option<Arc<Mutex<()>>>,
    /// Counts rows changed around the service's write path (no events): what this process
    /// remembers of the database is not trusted across a change of it.
    outside_writes: Arc<std::sync::atomic::AtomicU64>,
    /// Present on PostgreSQL: events are numbered after commit (see `sequencer`), through a
    /// connection of the sequencer's own, so writers filling the pool never hold it up.
    sequencer: Option<(Arc<sequencer::Sequencer>, sequencer::OwnConnection)>,
    /// Writes waiting for their tenant, committed together (see `group_commit`).
    queues: Arc<group_commit::Queues>,
}

/// A resource the write path saves whole, one version after another (see [`Tx::save`]).
pub trait Stored: Versioned + EventSubject + PartialEq + Send + Sync {
    /// Writes `after` over `before`, its row as the transaction read it.
    fn update<'a>(
        txn: &'a Transaction,
        before: &'a Self,
        after: &'a Self,
    ) -> impl Future<Output = Result<(), DomainError>> + Send + 'a;
}

/// Each resource's [`Stored::update`]: its module's own.
macro_rules! stored {
    ($($resource:ty => |$txn:ident, $before:pat, $after:ident| $update:expr;)*) => {$(
        impl Stored for $resource {
            fn update<'a>(
                $txn: &'a Transaction,
                $before: &'a Self,
                $after: &'a Self,
            ) -> impl Future<Output = Result<(), DomainError>> + Send + 'a {
                $update
            }
        }
    )*};
}

stored! {
    crate::domain::tenant::Tenant => |txn, _, after| tenants::update(txn, after);
    crate::domain::membership::Membership =>
        |txn, before, after| memberships::update(txn, before, after);
    crate::domain::invitation::Invitation =>
        |txn, before, after| invitations::update(txn, before, after);
    crate::domain::email_domain::TenantDomain => |txn, _, after| domains::update(txn, after);
    crate::domain::role::Role => |txn, _, after| roles::update(txn, after);
    crate::domain::group::Group => |txn, _, after| groups::update(txn, after);
}

/// A writing transaction for one caller, and the events it will append at commit.
pub struct Tx {
    pub txn: Transaction,
    caller: Caller,
    events: Vec<NewEvent>,
    rollback_only: bool,
}

impl Tx {
    fn new(txn: Transaction, caller: Caller) -> Self {
        Self {
            txn,
            caller,
            events: Vec::new(),
            rollback_only: false,
        }
    }

    /// The transaction, the events emitted in it, and whether it is to be rolled back.
    fn into_parts(self) -> (Transaction, Vec<NewEvent>, bool) {
        (self.txn, self.events, self.rollback_only)
    }

    /// Who the transaction writes for.
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// Emits the event of a change from `before` to `after`, made by this transaction's caller.
    /// It is appended, and numbered, when the transaction commits.
    pub fn emit<T: EventSubject>(
        &mut self,
        event_type: EventType,
        before: Option<&T>,
        after: Option<&T>,
    ) -> &mut NewEvent {
        let event = NewEvent::about(event_type, self.caller.user_id(), None, before, after);
        self.events.push(event);
        self.events.last_mut().expect("just pushed")
    }

    /// Saves `after`, changed at `now` from `before` (as this transaction read it), as the next
    /// version, and emits `event_type` for the change. A change that changed nothing writes
    /// nothing and emits nothing.
    pub async fn save<T: Stored>(
        &mut self,
        event_type: EventType,
        before: &T,
        mut after: T,
        now: Micros,
    ) -> Result<T, DomainError> {
        if after == *before {
            return Ok(after);
        }
        after.revise(now);
        T::update(&self.txn, before, &after).await?;
        self.emit(event_type, Some(before), Some(&after));
        Ok(after)
    }

    /// Emits an event of another shape than a subject's before and after.
    pub fn emit_event(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// Remembers that `request_id` (AIP-155) produced the resource `key` by `operation`, so a
    /// retry of the request finds it (see [`requests::find`]). Nothing without a request id.
    pub async fn remember_request(
        &self,
        operation: &str,
        request_id: Option<&str>,
        key: &str,
        now: Micros,
    ) -> Result<(), DomainError> {
        match request_id {
            Some(request_id) => requests::record(&self.txn, operation, request_id, key, now).await,
            None => Ok(()),
        }
    }

    /// Checks ran and passed, but nothing is to be written (`validate_only`).
    pub fn roll_back_at_end(&mut self) {
        self.rollback_only = true;
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// Observes committed events with their positions.
pub type CommitHook = Arc<dyn Fn(&[(i64, &NewEvent)]) + Send + Sync>;

/// The work of a writing transaction, as use cases pass it: `|tx| Box::pin(async move { … })`.
/// The box is what an async closure cannot yet replace: the future borrows `tx` for `'t`, and
/// its `Send` bound (a write may move between threads while it awaits the database) cannot be
/// written on an async closure's return type.
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, DomainError>> + Send + 't>>;

impl Store {
    /// Connects with a pool of `max_connections` and the default timeout. SQLite files are
    /// created if missing and use WAL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, DbErr> {
        Self::connect_with(
            url,
            StoreOptions {
                max_connections,
                ..StoreOptions::default()
            },
        )
        .await
    }

    pub async fn connect_with(url: &str, settings: StoreOptions) -> Result<Store, DbErr> {
        let timeout = settings.timeout;
        let mut options = ConnectOptions::new(url.to_string());
        options
            .max_connections(settings.max_connections)
            .min_connections(1)
            .connect_timeout(timeout)
            .acquire_timeout(timeout)
            .sqlx_logging(false)
            // No ping before a connection is handed out: on SQLite the connection is a thread of
            // this process, and the ping one more hand-off to it and back on every call, that
            // can find nothing the call's own first statement would not. PostgreSQL has its own
            // check (below).
            .test_before_acquire(false)
            // On PostgreSQL the check below runs, bounded by the timeout, whenever a connection
            // comes back to the pool (off the caller's path): one left inside a transaction, or
            // still waiting for an answer, is closed there instead of holding its pool slot
            // forever. It replaces sqlx's ping before a connection is handed out, too (the same
            // round trip also finds a dead connection), but only for one idle for a while: one
            // checked on its return within the last second is handed out as it is, sparing
            // every busy call a round trip (a connection that died in that second fails its
            // call with UNAVAILABLE, as one dying mid-call does).
            .map_sqlx_postgres_pool_opts(move |pool| {
                pool.test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for < RECENTLY_CHECKED {
                                return Ok(true);
                            }
                            leftover_transaction_check(conn).await
                        })
                    })
                    .after_release(move |conn, _| {
                        Box::pin(async move {
                            match tokio::time::timeout(timeout, leftover_transaction_check(conn))
                                .await
                            {
                                Ok(checked) => checked,
                                // Still waiting for an answer (a statement cut off by its timeout):
                                // the connection cannot be trusted again.
                                Err(_) => Err(sea_orm::sqlx::Error::PoolTimedOut),
                            }
                        })
                    })
            })
            .map_sqlx_sqlite_opts(|opts| {
                opts.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await?;
        let write_gate = match db.get_database_backend() {
            DbBackend::Sqlite => Some(Arc::new(Mutex::new(()))),
            _ => None,
        };
        let sequencer = match db.get_database_backend() {
            DbBackend::Postgres => {
                Some((Arc::default(), sequencer::OwnConnection::new(url, timeout)?))
            }
            _ => None,
        };
        Ok(Store {
            db,
            timeout,
            committed: Arc::new(Notify::new()),
            commit_hooks: Arc::default(),
            write_gate,
            outside_writes: Arc::default(),
            sequencer,
            queues: Arc::default(),
        })
    }

    /// Says that rows were changed through this store's connection without the service's write
    /// path (a bulk load, a repair): nothing read before is served from memory afterwards.
    pub fn note_outside_write(&self) {
        self.outside_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many such changes there have been; what was read under an older count is stale.
    pub fn outside_writes(&self) -> u64 {
        self.outside_writes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The pool, with every statement bounded in time: for reads outside a transaction.
    pub fn reader(&self) -> Bounded<DatabaseConnection> {
        Bounded::new(self.db.clone(), self.timeout)
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The connection pool's size now, its idle connections and its maximum.
    pub fn pool_stats(&self) -> PoolStats {
        match self.backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                PoolStats {
                    size: pool.size(),
                    idle: pool.num_idle() as u32,
                    max: pool.options().get_max_connections(),
                }
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                PoolStats {
                    size: pool.size(),
                    idle: pool.num_idle() as u32,
                    max: pool.options().get_max_connections(),
                }
            }
        }
    }

    /// Applies every pending migration, all in one transaction on one connection. On
    /// PostgreSQL it holds an advisory lock, so replicas starting together migrate once, one
    /// after another; on SQLite it takes the write lock first (`BEGIN IMMEDIATE`), for the same
    /// reason. (Statements spread over a pool's connections could meet one whose view of the
    /// schema is older than the statement before: a trigger dropped and created again is then
    /// found still there.)
    pub async fn migrate(&self) -> Result<(), DbErr> {
        use migration::MigratorTrait as _;
        match self.backend() {
            DbBackend::Postgres => {
                let txn = self.db.begin().await?;
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    .await?;
                migration::Migrator::up(&txn, None).await?;
                txn.commit().await?;
                self.warn_unless_text_search_indexed().await
            }
            _ => {
                let txn = self.db.begin_with_options(WRITING).await?;
                migration::Migrator::up(&txn, None).await?;
                txn.commit().await
            }
        }
    }

    /// Says at every start when member text search scans tenants because PostgreSQL could not
    /// give the migration its trigram extension, and how to fix it.
    async fn warn_unless_text_search_indexed(&self) -> Result<(), DbErr> {
        let indexed = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT COUNT(*) AS n FROM pg_indexes WHERE schemaname = current_schema() \
                 AND indexname = 'idx_memberships_search_name_trgm'",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0)
            > 0;
        if !indexed {
            tracing::warn!(
                "member text search is not indexed: the pg_trgm extension could not be created, \
                 so ListMemberships queries read the whole tenant. Install PostgreSQL's contrib \
                 modules, run CREATE EXTENSION pg_trgm as a role allowed to, and create the \
                 indexes of migrations/src/m20261130_000002_text_search.rs"
            );
        }
        Ok(())
    }

    /// Registers a function called after every commit that appended events, with each event
    /// and its position, before the writing call returns: how this process's caches observe
    /// its own writes at once.
    pub fn on_commit(&self, hook: CommitHook) {
        self.commit_hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Completes after the next commit that appended events (or at once if one happened since
    /// the last call): the local wake-up of the event feed.
    pub async fn committed(&self) {
        self.committed.notified().await
    }

    /// Keeps SQLite's planner statistics current until `stop`: at once, then every
    /// `STATISTICS_INTERVAL`, `PRAGMA optimize` analyzes the tables whose size changed a lot
    /// since their last analysis (a bounded sample, not a full read). Without statistics SQLite
    /// plans a big tenant's pages as it would a small one's: sorting every pending invitation
    /// for each page instead of reading them in list order. PostgreSQL's autovacuum does this
    /// there.
    pub async fn keep_statistics(self, stop: tokio_util::sync::CancellationToken) {
        if self.backend() != DbBackend::Sqlite {
            return;
        }
        // The first run looks at every table, not only those this connection has queried.
        let mut pragma = "PRAGMA optimize = 0x10002";
        loop {
            let started = std::time::Instant::now();
            let run = async {
                let _turn = self.write_turn().await;
                self.db.execute_unprepared(pragma).await
            };
            match tokio::time::timeout(self.timeout * 12, run).await {
                Ok(Ok(_)) => tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "planner statistics refreshed"
                ),
                Ok(Err(error)) => tracing::warn!(%error, "refreshing planner statistics failed"),
                Err(_) => tracing::warn!("refreshing planner statistics timed out"),
            }
            pragma = "PRAGMA optimize";
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(STATISTICS_INTERVAL) => {}
            }
        }
    }

    /// Numbers staged events until `stop`, on PostgreSQL (see `sequencer`); returns at once on
    /// SQLite, whose writers number their own.
    pub async fn keep_numbering(self, stop: tokio_util::sync::CancellationToken) {
        let Some((sequencer, connection)) = self.sequencer.clone() else {
            return;
        };
        sequencer::run(connection, sequencer, self.committed.clone(), stop).await
    }

    /// Positions the feed has read, for writers waiting for their events (numbered by another
    /// replica's sequencer).
    pub fn numbered(&self, events: &[crate::domain::events::FeedEvent]) {
        if let Some((sequencer, _)) = &self.sequencer {
            sequencer.numbered(
                events.iter().filter_map(|event| {
                    Some((event.position, (event.tenant_id?, event.tenant_seq?)))
                }),
            );
        }
    }

    /// On SQLite, this process's turn to write (held until dropped); nothing on PostgreSQL.
    async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// Whether the database answers, for the health service.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Runs `work` in one writing transaction, appends the events it emitted at the very end
    /// (so positions follow commit order), commits, and returns the last event position (or the
    /// current log head when nothing was emitted). Any error rolls everything back.
    pub async fn write<T, F>(
        &self,
        caller: Caller,
        work: F,
    ) -> Result<(T, EventCursor), DomainError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> TxFuture<'t, T> + Send,
    {
        let (turn, txn) = self.begin_writing().await?;
        let mut tx = Tx::new(txn, caller);
        // If the call is cancelled here, dropping `tx` queues a rollback on its connection,
        // which runs before the connection is handed out again.
        let outcome = work(&mut tx).await;
        // From here on the transaction ends (commit or rollback) on a task of its own: a call
        // cancelled now neither leaves it half-finished nor skips the commit hooks.
        let store = self.clone();
        uncancellable(async move {
            let _turn = turn;
            let (txn, events, rollback_only) = tx.into_parts();
            match outcome {
                Ok(value) if !rollback_only => {
                    let mut cursors = store.commit(txn, vec![events]).await?;
                    Ok((value, cursors.pop().expect("one write, one cursor")))
                }
                Ok(value) => {
                    let cursor = event_log::head(&txn).await.map_err(db_error)?;
                    txn.rollback().await.map_err(db_error)?;
                    Ok((value, EventCursor(cursor)))
                }
                Err(error) => {
                    if let Err(rollback) = txn.rollback().await {
                        tracing::warn!(error = %rollback, "rollback failed");
                    }
                    Err(error)
                }
            }
        })
        .await?
    }

    /// This process's turn to write (on SQLite), and a writing transaction begun.
    async fn begin_writing(
        &self,
    ) -> Result<(Option<tokio::sync::OwnedMutexGuard<()>>, Transaction), DomainError> {
        let turn = self.write_turn().await;
        let db = self.db.clone();
        let timeout = self.timeout;
        let txn =
            uncancellable(async move { within(timeout, db.begin_with_options(WRITING)).await })
                .await?
                .map_err(db_error)?;
        Ok((turn, Bounded::new(txn, timeout)))
    }

    /// Appends the events of the writes `txn` holds (each write's in emission order, the writes
    /// in the order they ran) and commits: each write's cursor, its last event's position, or
    /// for one with no events the newest position it saw. Bounded as a whole: a commit that
    /// gets no answer fails the call rather than hold it (its outcome is then unknown, as with
    /// any lost connection).
    async fn commit(
        &self,
        txn: Transaction,
        writes: Vec<Vec<NewEvent>>,
    ) -> Result<Vec<EventCursor>, DomainError> {
        match tokio::time::timeout(self.timeout * 2, self.append_and_commit(txn, writes)).await {
            Ok(committed) => committed,
            Err(_) => Err(db_error(DbErr::Conn(sea_orm::RuntimeErr::Internal(
                "the database did not answer the commit".into(),
            )))),
        }
    }

    async fn append_and_commit(
        &self,
        txn: Transaction,
        writes: Vec<Vec<NewEvent>>,
    ) -> Result<Vec<EventCursor>, DomainError> {
        let counts: Vec<usize> = writes.iter().map(Vec::len).collect();
        let events: Vec<NewEvent> = writes.into_iter().flatten().collect();
        let head = match counts.contains(&0) {
            true => event_log::head(&txn).await.map_err(db_error)?,
            false => 0,
        };
        let positions: Vec<i64> = if events.is_empty() {
            txn.commit().await.map_err(db_error)?;
            Vec::new()
        } else if self.sequencer.is_some() {
            self.commit_staged(txn, &events).await?
        } else {
            let last = event_log::append(&txn, &events).await.map_err(db_error)?;
            txn.commit().await.map_err(db_error)?;
            self.committed.notify_one();
            (last - events.len() as i64 + 1..=last).collect()
        };
        if !events.is_empty() {
            self.run_commit_hooks(
                &positions
                    .iter()
                    .copied()
                    .zip(events.iter())
                    .collect::<Vec<_>>(),
            );
        }
        let mut seen = head;
        let mut own = positions.as_slice();
        let mut cursors = Vec::with_capacity(counts.len());
        for count in counts {
            let (these, rest) = own.split_at(count);
            own = rest;
            let cursor = these.iter().copied().max().unwrap_or(seen);
            seen = seen.max(cursor);
            cursors.push(EventCursor(cursor));
        }
        Ok(cursors)
    }

    /// Stages `events`, commits, and waits for the sequencer to number them: their positions,
    /// in emission order.
    async fn commit_staged(
        &self,
        txn: Transaction,
        events: &[NewEvent],
    ) -> Result<Vec<i64>, DomainError> {
        let (sequencer, _) = self.sequencer.as_ref().expect("PostgreSQL");
        let keys = sequencer::stage(&txn, events).await.map_err(db_error)?;
        let waits = sequencer.expect(&keys);
        if let Err(error) = txn.commit().await {
            sequencer.forget(&keys);
            return Err(db_error(error));
        }
        sequencer.wake();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut positions = Vec::with_capacity(waits.len());
        for wait in waits {
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(Ok(position)) => positions.push(position),
                _ => {
                    sequencer.forget(&keys);
                    // Committed: the events appear in the feed once a sequencer runs again.
                    tracing::warn!("a committed write's events were not numbered in time");
                    return Err(DomainError::Unavailable);
                }
            }
        }
        Ok(positions)
    }

    fn run_commit_hooks(&self, committed: &[(i64, &NewEvent)]) {
        for hook in self
            .commit_hooks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            hook(committed);
        }
    }

    /// Begins a read-only transaction that sees one snapshot on both backends, so a page and the
    /// event cursor read with it agree.
    pub async fn read_snapshot(&self) -> Result<Transaction, DomainError> {
        let (isolation, access) = match self.backend() {
            DbBackend::Postgres => (
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            ),
            _ => (None, None),
        };
        let db = self.db.clone();
        let timeout = self.timeout;
        let txn =
            uncancellable(
                async move { within(timeout, db.begin_with_config(isolation, access)).await },
            )
            .await?
            .map_err(db_error)?;
        Ok(Bounded::new(txn, timeout))
    }
}

/// Runs `work` to completion on a task of its own, whether or not the caller still waits.
///
/// `BEGIN` and `COMMIT` must not be cut short: a call dropped while its `BEGIN` is in flight
/// leaves the driver believing no transaction is open while the server has one, and the next
/// user of that pooled connection would run inside it. On a task of its own the statement
/// completes, and a transaction nobody receives is dropped, which rolls it back.
async fn uncancellable<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, DomainError> {
    tokio::spawn(work).await.map_err(|error| {
        tracing::error!(%error, "a database task failed");
        DomainError::Internal("database task failed".into())
    })
}

/// Whether a PostgreSQL connection coming back to the pool may be kept: `false` (close it) when
/// it is still inside a transaction, an error (close it) when it does not answer or its
/// transaction failed. Every connection passes here on its way back, so none is handed out again
/// with a transaction left open by a call that was cut short.
///
/// Outside a transaction block a simple query is its own transaction, and PostgreSQL stamps the
/// transaction with the statement's start time; inside a block left open by an earlier user the
/// transaction began with that user's `BEGIN`, earlier.
/// How long after its check on return a pooled connection is handed out unchecked.
const RECENTLY_CHECKED: Duration = Duration::from_secs(1);

async fn leftover_transaction_check(
    conn: &mut sea_orm::sqlx::PgConnection,
) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Row as _;
    // A simple query (one protocol message): with the extended protocol the implicit
    // transaction starts at Parse, before the statement's own Execute message arrives.
    let row = sea_orm::sqlx::raw_sql(
        "SELECT transaction_timestamp() = statement_timestamp() AS outside_transaction",
    )
    .fetch_one(&mut *conn)
    .await?;
    let outside: bool = row.try_get("outside_transaction")?;
    if !outside {
        tracing::warn!("a pooled connection was left inside a transaction; closing it");
        metrics::counter!("membership_db_connections_discarded_total").increment(1);
    }
    Ok(outside)
}

/// Values a call names many of are read this many per statement (well under every backend's
/// limit on bound parameters).
pub(crate) const IDS_PER_STATEMENT: usize = 500;

/// Of `values`, those `column` holds in the rows `rows` selects, a statement per
/// [`IDS_PER_STATEMENT`] values.
pub(crate) async fn present_among<E, V, C>(
    conn: &C,
    rows: sea_orm::Select<E>,
    column: E::Column,
    values: &[V],
) -> Result<std::collections::HashSet<V>, DomainError>
where
    E: EntityTrait,
    V: Clone + Eq + std::hash::Hash + Into<sea_orm::Value> + sea_orm::TryGetable,
    C: ConnectionTrait,
{
    let mut found = std::collections::HashSet::new();
    for chunk in values.chunks(IDS_PER_STATEMENT) {
        let present: Vec<V> = rows
            .clone()
            .select_only()
            .column(column)
            .filter(column.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await
            .map_err(db_error)?;
        found.extend(present);
    }
    Ok(found)
}

/// Maps a database error to the domain: lost connections are UNAVAILABLE, lock conflicts ask
/// for a retry, the rest is internal (logged here, never shown to the caller).
pub fn db_error(error: DbErr) -> DomainError {
    match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            tracing::warn!(%error, "database unavailable");
            DomainError::Unavailable
        }
        _ => match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => DomainError::Conflict,
            _ => {
                let text = error.to_string();
                if text.contains("40P01") || text.contains("40001") || text.contains("deadlock") {
                    return DomainError::Conflict;
                }
                if text.contains("PoolTimedOut")
                    || text.contains("connection refused")
                    || text.contains("Connection refused")
                    || text.contains("pool timed out")
                {
                    tracing::warn!(%error, "database unavailable");
                    return DomainError::Unavailable;
                }
                tracing::error!(%error, "database error");
                DomainError::Internal("database error".into())
            }
        },
    }
}

/// Locks a row for the rest of the transaction on PostgreSQL; SQLite writers are already
/// serialized by the write gate, and its dialect has no row locks.
pub fn for_update<S: sea_orm::QuerySelect>(select: S, backend: DbBackend) -> S {
    match backend {
        DbBackend::Postgres => select.lock_exclusive(),
        _ => select,
    }
}

pub(crate) fn corrupt(what: &str, value: &str) -> DomainError {
    tracing::error!(what, value, "unreadable stored value");
    DomainError::Internal(format!("unreadable stored {what}"))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape character.
pub(crate) fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
