//! The event feed: one tailer per process loads newly committed events, in position order, into
//! a bounded ring shared by every subscription, and advances `head`. Each subscription is a task
//! with its own cursor: it reads from the ring while its cursor is inside it, and from the
//! database when it has fallen behind (a slow subscriber catches up instead of being dropped),
//! sending through a small bounded channel, so memory per subscriber stays bounded however far
//! behind it is.
//!
//! The tailer wakes on local commits, on PostgreSQL notifications from other replicas
//! (LISTEN/NOTIFY), and on a poll as the fallback. The events table is the truth: a lost
//! wake-up only delays delivery until the next one.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::DbBackend;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::events::{EventFilter, FeedEvent};
use crate::domain::watcher::WatcherAccess;
use crate::domain::{DomainError, now_micros};
use crate::store::{Store, db_error, event_log};

#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Events kept in memory for subscribers that are close to the head.
    pub buffer: usize,
    /// How often the tailer looks for new events when no wake-up came.
    pub poll_interval: Duration,
    /// How long a stream may stay silent before it gets a progress message.
    pub progress_interval: Duration,
    /// How long events are kept.
    pub retention: Duration,
    /// How often old events are pruned.
    pub prune_interval: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            buffer: 10_000,
            poll_interval: Duration::from_secs(1),
            progress_interval: Duration::from_secs(5),
            retention: Duration::from_secs(30 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// After this position.
    After(i64),
    /// At the current head: new events only.
    Now,
    /// At the oldest retained event.
    Oldest,
}

/// What a subscription delivers.
#[derive(Clone, Debug)]
pub enum WatchItem {
    Event(Arc<FeedEvent>),
    /// Nothing matched for a while; the log has been examined up to `cursor`.
    Progress {
        cursor: i64,
    },
}

/// A watcher's access to its tenant, read at log position `since`: every event of the tenant
/// after `since` is applied to it before anything after that event is delivered, and the watch
/// ends with PERMISSION_DENIED at the first one that takes the access away.
pub struct WatchGuard {
    pub access: WatcherAccess,
    pub since: i64,
}

/// Events loaded by one tailer read, and by one catch-up read from the database.
const LOAD_BATCH: u64 = 1000;
/// Events a subscription takes from the ring at a time.
const RING_BATCH: usize = 256;
/// Items buffered between a subscription and its gRPC stream.
const CHANNEL_CAPACITY: usize = 64;

#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    options: FeedOptions,
    ring: RwLock<Ring>,
    /// The newest position loaded into the ring: everything up to it is committed.
    head: watch::Sender<i64>,
    /// Wake-ups from other replicas.
    remote_commit: Notify,
    shutdown: CancellationToken,
}

/// Recent events with contiguous positions, oldest first.
struct Ring {
    events: VecDeque<Arc<FeedEvent>>,
    capacity: usize,
}

impl Ring {
    fn push(&mut self, event: Arc<FeedEvent>) {
        if self
            .events
            .back()
            .is_some_and(|last| last.position + 1 != event.position)
        {
            // Never serve across a hole (only retention can make one): start a new run.
            self.events.clear();
        }
        self.events.push_back(event);
        while self.events.len() > self.capacity {
            self.events.pop_front();
        }
    }

    /// Up to `limit` events after `cursor`, or `None` if the ring does not reach back to it.
    fn after(&self, cursor: i64, limit: usize) -> Option<Vec<Arc<FeedEvent>>> {
        let first = self.events.front()?.position;
        if cursor < first - 1 {
            return None;
        }
        let start = usize::try_from(cursor - first + 1).ok()?;
        let end = self.events.len().min(start.saturating_add(limit));
        (start < end).then(|| self.events.range(start..end).cloned().collect())
    }
}

impl EventFeed {
    /// Starts the tailer (and on PostgreSQL the listener for other replicas' commits) and the
    /// retention pruner, from the current head of the log.
    pub async fn start(store: Store, options: FeedOptions) -> Result<EventFeed, DomainError> {
        let head = event_log::head(&store.reader()).await.map_err(db_error)?;
        let inner = Arc::new(Inner {
            ring: RwLock::new(Ring {
                events: VecDeque::new(),
                capacity: options.buffer.max(1),
            }),
            head: watch::Sender::new(head),
            remote_commit: Notify::new(),
            shutdown: CancellationToken::new(),
            store,
            options,
        });
        tokio::spawn(tail(inner.clone()));
        tokio::spawn(prune(inner.clone()));
        if inner.store.backend() == DbBackend::Postgres {
            tokio::spawn(listen_to_replicas(inner.clone()));
        }
        Ok(EventFeed { inner })
    }

    /// The newest position this process has loaded.
    pub fn head(&self) -> i64 {
        *self.inner.head.borrow()
    }

    /// Stops the feed: every subscription ends, and the background tasks stop.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Cancelled when the feed shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Resolves the starting point against the database and starts a subscription for a
    /// watcher (counted in `membership_event_subscribers`), ended when `guard` (a user's access)
    /// is lost. The returned position is the cursor the stream starts after.
    pub async fn subscribe(
        &self,
        start: StartAt,
        filter: EventFilter,
        guard: Option<WatchGuard>,
    ) -> Result<(i64, mpsc::Receiver<Result<WatchItem, DomainError>>), DomainError> {
        self.start_subscription(start, filter, true, guard).await
    }

    /// A subscription for this process's own caches: the same, but not counted as a watcher.
    pub async fn follow(
        &self,
        start: StartAt,
        filter: EventFilter,
    ) -> Result<(i64, mpsc::Receiver<Result<WatchItem, DomainError>>), DomainError> {
        self.start_subscription(start, filter, false, None).await
    }

    async fn start_subscription(
        &self,
        start: StartAt,
        filter: EventFilter,
        counted: bool,
        guard: Option<WatchGuard>,
    ) -> Result<(i64, mpsc::Receiver<Result<WatchItem, DomainError>>), DomainError> {
        let conn = &self.inner.store.reader();
        let head = event_log::head(conn).await.map_err(db_error)?;
        let oldest = event_log::oldest_retained(conn).await.map_err(db_error)?;
        let cursor = match start {
            StartAt::Now => head,
            StartAt::Oldest => oldest - 1,
            StartAt::After(cursor) if cursor > head => {
                return Err(DomainError::CursorAhead { cursor, head });
            }
            StartAt::After(cursor) if cursor < oldest - 1 => {
                return Err(DomainError::CursorExpired { cursor, oldest });
            }
            StartAt::After(cursor) => cursor,
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(run_subscription(
            self.inner.clone(),
            cursor,
            filter,
            tx,
            counted,
            guard,
        ));
        Ok((cursor, rx))
    }

    /// Asks the tailer to look for new events now (e.g. a reader needs a newer cursor).
    pub fn nudge(&self) {
        self.inner.remote_commit.notify_one();
    }
}

/// Loads new events whenever something may have been committed.
async fn tail(inner: Arc<Inner>) {
    let mut poll = tokio::time::interval(inner.options.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = inner.store.committed() => {}
            _ = inner.remote_commit.notified() => {}
            _ = poll.tick() => {}
        }
        if let Err(error) = load_new(&inner).await {
            tracing::warn!(%error, "event feed could not read new events; retrying");
        }
    }
}

async fn load_new(inner: &Inner) -> Result<(), DomainError> {
    loop {
        let loaded = *inner.head.borrow();
        let batch = event_log::read_after(
            &inner.store.reader(),
            loaded,
            &EventFilter::default(),
            LOAD_BATCH,
        )
        .await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(());
        };
        let full = batch.len() as u64 == LOAD_BATCH;
        inner.store.numbered(&batch);
        {
            let mut ring = inner.ring.write().unwrap_or_else(|e| e.into_inner());
            for event in batch {
                ring.push(Arc::new(event));
            }
        }
        inner.head.send_replace(last);
        metrics::gauge!("membership_event_feed_position").set(last as f64);
        if !full {
            return Ok(());
        }
    }
}

/// Wakes the tailer when another replica commits (PostgreSQL LISTEN/NOTIFY).
async fn listen_to_replicas(inner: Arc<Inner>) {
    use sea_orm::sqlx::postgres::PgListener;
    let pool = inner
        .store
        .connection()
        .get_postgres_connection_pool()
        .clone();
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(event_log::FEED_CHANNEL).await?;
            // Anything committed while we were not listening is picked up now.
            inner.remote_commit.notify_one();
            loop {
                listener.recv().await?;
                inner.remote_commit.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            result = listening => {
                if let Err(error) = result {
                    tracing::warn!(%error, "lost the event notification channel; polling until it is back");
                }
            }
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(inner.options.poll_interval) => {}
        }
    }
}

/// Deletes events older than the retention period, periodically.
async fn prune(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(inner.options.prune_interval);
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let retention = i64::try_from(inner.options.retention.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now_micros().saturating_sub(retention);
        match event_log::prune_before(&inner.store.reader(), cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned events past retention"),
            Err(error) => tracing::warn!(%error, "pruning events failed"),
        }
    }
}

/// One subscriber: sends every matching event after `deliver_after`, in order, then follows the
/// head. With a guard it reads every event of the tenant from the guard's position on (whatever
/// types the watcher filters on), to see each change of the watcher's access in order.
async fn run_subscription(
    inner: Arc<Inner>,
    deliver_after: i64,
    filter: EventFilter,
    tx: mpsc::Sender<Result<WatchItem, DomainError>>,
    counted: bool,
    mut guard: Option<WatchGuard>,
) {
    let mut head = inner.head.subscribe();
    let mut quiet_since = Instant::now();
    let _counted = counted.then(SubscriberGauge::open);
    let (mut cursor, read_filter) = match &guard {
        Some(guard) => (
            deliver_after.min(guard.since),
            EventFilter {
                tenant_id: filter.tenant_id,
                types: Vec::new(),
            },
        ),
        None => (deliver_after, filter.clone()),
    };
    loop {
        let loaded = *head.borrow_and_update();
        if cursor < loaded {
            let from_ring = inner
                .ring
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .after(cursor, RING_BATCH);
            let (events, next_cursor) = match from_ring {
                Some(events) => {
                    let last = events.last().map_or(cursor, |e| e.position);
                    (events, last)
                }
                // Boxed: the read's state is large, and as part of this task it would stay
                // allocated for the subscription's whole life, idle included.
                None => match Box::pin(catch_up(&inner, cursor, &read_filter, loaded)).await {
                    Ok(caught_up) => caught_up,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                },
            };
            for event in events {
                if let Some(guard) = &mut guard
                    && event.position > guard.since
                    && !guard.access.apply(&event)
                {
                    let _ = tx.send(Err(DomainError::AccessRevoked)).await;
                    return;
                }
                if event.position <= deliver_after || !filter.matches(&event) {
                    continue;
                }
                let lag_micros = crate::domain::now_micros() - event.occurred_at;
                metrics::histogram!("membership_event_delivery_lag_seconds")
                    .record(lag_micros.max(0) as f64 / 1e6);
                tokio::select! {
                    sent = tx.send(Ok(WatchItem::Event(event))) => {
                        if sent.is_err() {
                            return;
                        }
                    }
                    _ = inner.shutdown.cancelled() => return,
                }
                quiet_since = Instant::now();
            }
            cursor = next_cursor;
            continue;
        }
        let progress_due = quiet_since + inner.options.progress_interval;
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(progress_due) => {
                let cursor = cursor.max(deliver_after);
                if tx.send(Ok(WatchItem::Progress { cursor })).await.is_err() {
                    return;
                }
                quiet_since = Instant::now();
            }
            _ = inner.shutdown.cancelled() => return,
            _ = tx.closed() => return,
        }
    }
}

/// Counts a watcher's subscription in `membership_event_subscribers` while it runs.
struct SubscriberGauge;

impl SubscriberGauge {
    fn open() -> SubscriberGauge {
        metrics::gauge!("membership_event_subscribers").increment(1.0);
        SubscriberGauge
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        metrics::gauge!("membership_event_subscribers").decrement(1.0);
    }
}

/// Reads matching events after `cursor` from the database, for a subscriber behind the ring.
/// Returns them with the cursor the read covers: when fewer than a batch came back, the whole
/// log up to `loaded` (known committed before the read) has been examined.
async fn catch_up(
    inner: &Inner,
    cursor: i64,
    filter: &EventFilter,
    loaded: i64,
) -> Result<(Vec<Arc<FeedEvent>>, i64), DomainError> {
    let conn = &inner.store.reader();
    let events = event_log::read_after(conn, cursor, filter, LOAD_BATCH).await?;
    // Checked after the read: if the events after `cursor` still exist now, they existed
    // during the read, so nothing was silently skipped.
    let oldest = event_log::oldest_retained(conn).await.map_err(db_error)?;
    if cursor < oldest - 1 {
        return Err(DomainError::CursorExpired { cursor, oldest });
    }
    let last = events.last().map(|e| e.position);
    let covered = if (events.len() as u64) < LOAD_BATCH {
        last.unwrap_or(cursor).max(loaded)
    } else {
        last.unwrap_or(cursor)
    };
    Ok((events.into_iter().map(Arc::new).collect(), covered))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64) -> Arc<FeedEvent> {
        Arc::new(FeedEvent {
            position,
            tenant_id: None,
            event_type: "tenant.created".into(),
            occurred_at: 0,
            actor_id: None,
            subject_id: None,
            request_id: None,
            before: None,
            after: None,
            tenant_seq: None,
        })
    }

    #[test]
    fn ring_serves_only_contiguous_ranges_it_holds() {
        let mut ring = Ring {
            events: VecDeque::new(),
            capacity: 3,
        };
        assert!(ring.after(0, 10).is_none());
        for p in 1..=5 {
            ring.push(event(p));
        }
        // Holds 3..=5.
        assert!(ring.after(1, 10).is_none());
        let got: Vec<i64> = ring
            .after(2, 10)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(got, [3, 4, 5]);
        let got: Vec<i64> = ring
            .after(3, 1)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(got, [4]);
        assert!(ring.after(5, 10).is_none());
        ring.push(event(9));
        assert!(ring.after(5, 10).is_none(), "a hole empties the ring");
        assert_eq!(ring.after(8, 10).unwrap().len(), 1);
    }
}
