//! Event positions after commit, on PostgreSQL (`docs/event-log.md` has the design and the
//! argument for each guarantee).
//!
//! A writing transaction stages its events in `pending_events`, each with the next number of
//! its tenant's `event_seq` (incremented under the tenant's row lock, held to commit), and
//! commits without touching any row another tenant's writer needs. A sequencer then moves the
//! committed ones into `events` in batches, numbered from `log_head`: one batch at a time in
//! the whole deployment (the batch holds the `log_head` row), each batch in staging order.
//! Every replica runs one; whichever runs a batch numbers every committed staged event,
//! including those of another replica's writers (or of a replica that died after its commit).
//!
//! Why readers still see a gap-free, ordered log: only batches insert into `events`, one after
//! another, each at `head + 1 ..`, so a reader that has seen position p has seen every batch up to
//! p. Within a tenant, a transaction staging after another waited for the other's row lock, which
//! is released only once the other's commit is visible: a batch that sees the later one sees the
//! earlier, and the staging ids (drawn after the lock) put the earlier first.
//!
//! The writer waits for its events' positions before it returns, so its response carries a
//! cursor covering them, its commit hooks see them, and a write acknowledged before another
//! began is numbered before it, in whatever tenant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement, Value};
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use super::event_log::FEED_CHANNEL;
use crate::domain::events::NewEvent;
use crate::domain::now_micros;

/// Most events one batch numbers.
const BATCH: i64 = 5000;
/// Staged rows moved between two vacuums of `pending_events`.
const VACUUM_EVERY: u64 = 20_000;
/// How often the sequencer looks for staged events nobody announced (another replica's, whose
/// own sequencer is slow or gone).
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// Events per staging INSERT: under PostgreSQL's limit of bind parameters.
const STAGE_CHUNK: usize = 500;

/// An event's identity until it has a position: its tenant and its number there.
pub type StagedKey = (Uuid, i64);

/// This process's sequencer: wake-ups from its writers, and the writers waiting for positions.
#[derive(Default)]
pub struct Sequencer {
    staged: Notify,
    waiting: Mutex<HashMap<StagedKey, oneshot::Sender<i64>>>,
    moved_since_vacuum: AtomicU64,
}

impl Sequencer {
    /// Registers a wait for each staged event, before its transaction commits (so no batch can
    /// number it unseen).
    pub fn expect(&self, keys: &[StagedKey]) -> Vec<oneshot::Receiver<i64>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .map(|key| {
                let (tx, rx) = oneshot::channel();
                waiting.insert(*key, tx);
                rx
            })
            .collect()
    }

    /// Drops the waits of a transaction that did not commit, or gave up.
    pub fn forget(&self, keys: &[StagedKey]) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            waiting.remove(key);
        }
    }

    /// Staged events were committed: number them now.
    pub fn wake(&self) {
        self.staged.notify_one();
    }

    /// Hands positions to the writers waiting for them: from this process's batches, and from
    /// the feed for events another replica's sequencer numbered.
    pub fn numbered(&self, events: impl IntoIterator<Item = (i64, StagedKey)>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.is_empty() {
            return;
        }
        for (position, key) in events {
            if let Some(waiter) = waiting.remove(&key) {
                let _ = waiter.send(position);
            }
        }
    }

    pub async fn woken(&self) {
        self.staged.notified().await
    }

    /// Counts moved rows; true when `pending_events` is due a vacuum.
    fn moved(&self, rows: u64) -> bool {
        let total = self.moved_since_vacuum.fetch_add(rows, Ordering::Relaxed) + rows;
        if total >= VACUUM_EVERY {
            self.moved_since_vacuum.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Stages `events` in the writing transaction `conn` and returns each one's key, in emission
/// order. Each tenant's events go in with its `event_seq` increment, in one statement (the
/// increment takes the tenant's row lock if the transaction does not hold it already, and the
/// staging ids are drawn after it), tenants in the order their first event was emitted.
pub async fn stage<C: ConnectionTrait>(
    conn: &C,
    events: &[NewEvent],
) -> Result<Vec<StagedKey>, DbErr> {
    let mut tenants: Vec<Uuid> = Vec::new();
    for event in events {
        let tenant = event.tenant_id.ok_or_else(|| {
            DbErr::Custom(format!("a {} event without a tenant", event.event_type))
        })?;
        if !tenants.contains(&tenant) {
            tenants.push(tenant);
        }
    }
    let mut keys: Vec<StagedKey> = vec![(Uuid::nil(), 0); events.len()];
    let occurred_at = now_micros();
    for tenant in tenants {
        let indexes: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].tenant_id == Some(tenant))
            .collect();
        let count = indexes.len() as i64;
        // The tenant's number before these events, from the first chunk's increment.
        let mut base: Option<i64> = None;
        for (chunk_number, chunk) in indexes.chunks(STAGE_CHUNK).enumerate() {
            let offset = (chunk_number * STAGE_CHUNK) as i64;
            let mut values: Vec<Value> = vec![tenant.into(), Value::BigInt(None)];
            let mut rows = Vec::with_capacity(chunk.len());
            for (k, &i) in chunk.iter().enumerate() {
                let event = &events[i];
                let n = values.len();
                rows.push(format!(
                    "({}::bigint, ${}, ${}::uuid, ${}, ${}::bigint, ${}, ${}, ${})",
                    offset + k as i64 + 1,
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7
                ));
                values.extend([
                    event.event_type.as_str().into(),
                    event.actor_id.into(),
                    event.subject_id.clone().into(),
                    occurred_at.into(),
                    event.request_id.clone().into(),
                    event.before.as_ref().map(|v| v.to_string()).into(),
                    event.after.as_ref().map(|v| v.to_string()).into(),
                ]);
            }
            // The first chunk increments the tenant's count; later ones continue from its base.
            let seq = match base {
                None => {
                    values[1] = count.into();
                    "UPDATE tenants SET event_seq = event_seq + $2 WHERE id = $1 \
                     RETURNING event_seq - $2 AS base"
                }
                Some(known) => {
                    values[1] = known.into();
                    "SELECT $2::bigint AS base"
                }
            };
            let sql = format!(
                "WITH seq AS ({seq})
                 INSERT INTO pending_events (tenant_id, tenant_seq, event_type, actor_id,
                                             subject_id, occurred_at, request_id, before, after)
                 SELECT $1, seq.base + v.k, v.event_type, v.actor_id, v.subject_id,
                        v.occurred_at, v.request_id, v.before, v.after
                   FROM seq, (VALUES {}) AS v(k, event_type, actor_id, subject_id,
                                            occurred_at, request_id, before, after)
                  ORDER BY v.k
              RETURNING tenant_seq",
                rows.join(", ")
            );
            let staged = conn
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .await?;
            let mut first: Option<i64> = None;
            for row in &staged {
                let seq: i64 = row.try_get("", "tenant_seq")?;
                first = Some(first.map_or(seq, |f: i64| f.min(seq)));
            }
            let first = first.ok_or_else(|| DbErr::RecordNotFound(format!("tenant {tenant}")))?;
            let known = *base.get_or_insert(first - offset - 1);
            for (k, &i) in chunk.iter().enumerate() {
                keys[i] = (tenant, known + offset + k as i64 + 1);
            }
        }
    }
    Ok(keys)
}

/// One batch, sent as one simple-query message: PostgreSQL runs its statements as a single
/// implicit transaction (an error anywhere rolls back all of it and leaves the connection
/// clean), in one round trip instead of five. The head's lock is taken in a statement of its
/// own, so the next statement's snapshot (READ COMMITTED takes one per statement) is newer than
/// the previous batch's commit. The head moves, and every replica's feed is notified, only when
/// the batch moved something.
static BATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT position FROM log_head WHERE id = 1 FOR UPDATE;
         WITH moved AS (
              DELETE FROM pending_events
               WHERE id IN (SELECT id FROM pending_events ORDER BY id LIMIT {BATCH})
           RETURNING *),
          numbered AS (
              SELECT (SELECT position FROM log_head WHERE id = 1)
                     + row_number() OVER (ORDER BY id) AS position, * FROM moved),
          inserted AS (
              INSERT INTO events (position, tenant_id, tenant_seq, event_type, actor_id,
                                  subject_id, occurred_at, request_id, before, after)
              SELECT position, tenant_id, tenant_seq, event_type, actor_id, subject_id,
                     occurred_at, request_id, before, after
                FROM numbered
           RETURNING position, tenant_id, tenant_seq),
          head AS (
              UPDATE log_head SET position = (SELECT max(position) FROM inserted)
               WHERE id = 1 AND EXISTS (SELECT 1 FROM inserted)
           RETURNING position),
          notified AS (
              SELECT pg_notify('{FEED_CHANNEL}', position::text) FROM head)
         SELECT i.position, i.tenant_id, i.tenant_seq
           FROM inserted i, (SELECT count(*) FROM notified) n"
    )
});

/// The sequencer's own connection, outside any pool: opened when a statement needs it, and
/// dropped (its socket closed) after any statement that failed or ran out of time. A pooled
/// connection cut off with an answer still owed goes back through the pool's release check,
/// which waits for that answer with no bound: with a pool of one, a database that stopped
/// answering for a moment would leave the sequencer waiting for a free connection for good.
pub(super) struct OwnConnection {
    options: PgConnectOptions,
    timeout: Duration,
    open: Option<PgConnection>,
}

/// A copy with the same settings, not yet open.
impl Clone for OwnConnection {
    fn clone(&self) -> Self {
        OwnConnection {
            options: self.options.clone(),
            timeout: self.timeout,
            open: None,
        }
    }
}

impl OwnConnection {
    /// `idle_in_transaction_session_timeout` ends the session if this process stalls inside a
    /// batch (frozen, or its task dropped mid-batch), and the `log_head` lock every replica's
    /// batches need goes with it.
    pub(super) fn new(url: &str, timeout: Duration) -> Result<OwnConnection, DbErr> {
        let idle_limit = format!("{}ms", timeout.as_millis().max(1000));
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(error.into())))?
            .options([("idle_in_transaction_session_timeout", idle_limit.as_str())]);
        Ok(OwnConnection {
            options,
            timeout,
            open: None,
        })
    }

    /// Runs `sql` (one or more statements, as one simple-query message) within `limit`.
    async fn fetch(&mut self, sql: &'static str, limit: Duration) -> Result<Vec<PgRow>, DbErr> {
        use sea_orm::sqlx::{AssertSqlSafe, Connection as _};
        let ran = tokio::time::timeout(limit, async {
            if self.open.is_none() {
                self.open = Some(PgConnection::connect_with(&self.options).await?);
            }
            let connection = self.open.as_mut().expect("opened");
            sea_orm::sqlx::raw_sql(AssertSqlSafe(sql))
                .fetch_all(connection)
                .await
        })
        .await;
        match ran {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(error)) => {
                self.open = None;
                Err(DbErr::Query(RuntimeErr::SqlxError(error.into())))
            }
            Err(_) => {
                self.open = None;
                Err(DbErr::Custom(format!("no answer within {limit:?}")))
            }
        }
    }
}

/// Numbers one batch of committed staged events: moves them into `events` at the positions
/// after the head, advances the head and wakes every replica's feed, in one transaction.
/// Returns the numbered events' positions and keys, in position order.
async fn number_batch(db: &mut OwnConnection) -> Result<Vec<(i64, StagedKey)>, DbErr> {
    use sea_orm::sqlx::Row as _;
    let rows = db.fetch(BATCH_SQL.as_str(), db.timeout * 2).await?;
    let mut numbered = Vec::with_capacity(rows.len());
    // The first row is the head's, from the locking statement; the rest are the batch's.
    for row in rows.iter().filter(|row| row.columns().len() == 3) {
        let decode = |error| DbErr::Custom(format!("numbering events: {error}"));
        let position: i64 = row.try_get("position").map_err(decode)?;
        let tenant: Uuid = row.try_get("tenant_id").map_err(decode)?;
        let seq: i64 = row.try_get("tenant_seq").map_err(decode)?;
        numbered.push((position, (tenant, seq)));
    }
    numbered.sort_unstable_by_key(|(position, _)| *position);
    Ok(numbered)
}

/// Whether anything is staged (a cheap look, before taking the head's lock for nothing).
async fn anything_staged(db: &mut OwnConnection) -> Result<bool, DbErr> {
    use sea_orm::sqlx::Row as _;
    let rows = db
        .fetch(
            "SELECT EXISTS (SELECT 1 FROM pending_events) AS staged",
            db.timeout,
        )
        .await?;
    match rows.first() {
        Some(row) => row
            .try_get("staged")
            .map_err(|error| DbErr::Custom(format!("looking for staged events: {error}"))),
        None => Ok(false),
    }
}

/// The sequencer loop of one process: numbers batches whenever this process's writers commit
/// staged events, and every `IDLE_CHECK` if anything is staged at all; hands the positions to
/// the waiting writers and wakes the local feed (`feed`).
pub(super) async fn run(
    mut db: OwnConnection,
    sequencer: std::sync::Arc<Sequencer>,
    feed: std::sync::Arc<Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut announced = true;
    loop {
        if !announced {
            match anything_staged(&mut db).await {
                Ok(true) => {}
                Ok(false) => {
                    let Some(woken) = wait(&sequencer, &stop).await else {
                        return;
                    };
                    announced = woken;
                    continue;
                }
                Err(error) => tracing::warn!(%error, "looking for staged events failed"),
            }
        }
        // Until a batch comes back short: writers that commit meanwhile ride the next one.
        loop {
            match number_batch(&mut db).await {
                Ok(numbered) => {
                    let count = numbered.len();
                    if count > 0 {
                        sequencer.numbered(numbered);
                        feed.notify_one();
                        metrics::counter!("membership_events_numbered_total")
                            .increment(count as u64);
                        if sequencer.moved(count as u64) {
                            vacuum(&mut db).await;
                        }
                    }
                    if (count as i64) < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "numbering events failed; retrying");
                    break;
                }
            }
        }
        let Some(woken) = wait(&sequencer, &stop).await else {
            return;
        };
        announced = woken;
    }
}

/// Waits for a wake-up (`Some(true)`), the idle check (`Some(false)`) or the stop (`None`).
async fn wait(sequencer: &Sequencer, stop: &tokio_util::sync::CancellationToken) -> Option<bool> {
    tokio::select! {
        _ = stop.cancelled() => None,
        _ = sequencer.woken() => Some(true),
        _ = tokio::time::sleep(IDLE_CHECK) => Some(false),
    }
}

/// Vacuums `pending_events`: every batch leaves its rows dead, and the table would otherwise
/// grow, with every scan of it, until autovacuum comes by.
async fn vacuum(db: &mut OwnConnection) {
    if let Err(error) = db.fetch("VACUUM pending_events", db.timeout * 12).await {
        tracing::warn!(%error, "vacuuming pending_events failed");
    }
}
