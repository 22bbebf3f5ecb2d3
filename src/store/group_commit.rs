//! Group commit: writes waiting for the same tenant commit together.
//!
//! A tenant's writes run one at a time whatever happens (each locks the tenant row to keep its
//! seats and owners right), and each used to hold that lock through its own commit and WAL
//! flush: a busy tenant wrote no faster than one flush per write, with every waiting writer
//! holding a pooled connection parked on the row lock. Here a tenant's writes queue in the
//! process instead, and one task per busy queue (its runner) runs what has queued, one after
//! another in one transaction, each but the first in a savepoint of its own, then commits once
//! and answers every caller:
//!
//! - **A refusal stays its own.** A write that fails rolls back to its savepoint; the writes
//!   before and after it commit. The first write of a transaction has no savepoint (most
//!   batches hold one write, and a savepoint is one more round trip): when it fails the
//!   transaction is rolled back and the next write begins another.
//! - **Order is queue order.** Each write sees the ones queued before it, as it would had they
//!   committed first, and its events follow theirs, in the tenant's order and the feed's.
//! - **A caller gone is skipped.** A write whose caller stopped waiting before its turn is not
//!   run; one that had begun completes with its batch (its caller, gone, never learns the
//!   outcome, as with any call cut off before its answer).
//! - **Every answer after the commit.** A refusal may rest on the writes before it (the member
//!   they created exists), so its caller, like every other, hears back once those are
//!   committed and readable. A write's cursor is its own last event's position; one with no
//!   events (nothing changed, `validate_only`) gets the newest position it saw, the events of
//!   the writes before it in the batch included. A failed commit fails every write of the
//!   batch, refused ones too.
//!
//! Only writes that lock one tenant, as their first statement, and no other may come here
//! (`Store::write_to`): a batch holds that lock to its commit, and a write that also locked
//! another tenant would hold that one across other callers' writes too.
//!
//! On SQLite, which runs one writing transaction at a time for the whole database, there is one
//! queue for every tenant: whatever waits for the write gate commits together.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::oneshot;
use uuid::Uuid;

use sea_orm::ConnectionTrait;

use super::{Store, Transaction, Tx, TxFuture, db_error, event_log};
use crate::domain::events::{EventCursor, NewEvent};
use crate::domain::{Caller, DomainError};

/// At most this many writes commit together, so a busy tenant's lock is released, and its
/// writes answered, at least this often. More is slower, not faster: each write reads the
/// tenant row again, and PostgreSQL walks every version of it the transaction's writes left
/// (measured into one tenant at 64 in flight: 16 did best, 32 and 64 fell back to less than 8).
const MOST_PER_COMMIT: usize = 16;

const SAVEPOINT: &str = "SAVEPOINT queued_write";
const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT queued_write";

/// The writes waiting in each queue (a tenant's on PostgreSQL, the database's on SQLite) for
/// its runner; a queue is present while its runner runs.
#[derive(Default)]
pub(super) struct Queues {
    waiting: Mutex<HashMap<Uuid, VecDeque<Job>>>,
}

/// A queued write, its result type erased: run on a transaction, it says how to answer its
/// caller once the transaction has ended, and whether it is to be kept (`None` when it was not
/// run because its caller had gone).
struct Job {
    caller: Caller,
    work: Box<dyn for<'t> FnOnce(&'t mut Tx) -> JobFuture<'t> + Send>,
}

type JobFuture<'t> = Pin<Box<dyn Future<Output = Option<Ran>> + Send + 't>>;

/// A write that ran: how to answer its caller, and whether it succeeded.
struct Ran {
    answer: Answer,
    succeeded: bool,
}

/// Answers a write's caller once its batch has committed (with the write's cursor, which a
/// refusal ignores) or failed to. A refused write is answered after the commit too: its refusal
/// may rest on the writes before it (the member they created exists), and its caller must be
/// able to read them at once.
type Answer = Box<dyn FnOnce(Result<EventCursor, DomainError>) + Send>;

impl Queues {
    /// Queues `job` in `queue`; `true` when no runner runs for it, and the caller starts one.
    fn push(&self, queue: Uuid, job: Job) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match waiting.get_mut(&queue) {
            Some(jobs) => {
                jobs.push_back(job);
                false
            }
            None => {
                waiting.insert(queue, VecDeque::from([job]));
                true
            }
        }
    }

    /// The next write for the runner to begin a transaction with; when none waits, the runner
    /// stops (in the same step, so a write queued after this starts a new one).
    fn next(&self, queue: Uuid) -> Option<Job> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let job = waiting.get_mut(&queue).and_then(VecDeque::pop_front);
        if job.is_none() {
            waiting.remove(&queue);
        }
        job
    }

    /// The next write to add to the open transaction, if one waits.
    fn more(&self, queue: Uuid) -> Option<Job> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.get_mut(&queue).and_then(VecDeque::pop_front)
    }

    /// The runner ended without `next` saying so (it panicked): the writes still queued are
    /// dropped, and their callers hear UNAVAILABLE.
    fn abandon(&self, queue: Uuid) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.remove(&queue);
    }
}

impl Store {
    /// Runs `work` as [`Store::write`] does, but committed together with the writes waiting for
    /// the same tenant (see the module doc). `work` must lock `tenant`, and no other, as its
    /// first statement.
    pub async fn write_to<T, F>(
        &self,
        tenant: Uuid,
        caller: Caller,
        work: F,
    ) -> Result<(T, EventCursor), DomainError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> TxFuture<'t, T> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let job = Job {
            caller,
            work: Box::new(move |tx| {
                Box::pin(async move {
                    if sender.is_closed() {
                        return None;
                    }
                    Some(match work(tx).await {
                        Ok(value) => Ran {
                            answer: Box::new(move |cursor| {
                                let _ = sender.send(cursor.map(|cursor| (value, cursor)));
                            }),
                            succeeded: true,
                        },
                        Err(refused) => Ran {
                            answer: Box::new(move |committed| {
                                let _ = sender.send(Err(committed.err().unwrap_or(refused)));
                            }),
                            succeeded: false,
                        },
                    })
                })
            }),
        };
        // SQLite writes one transaction at a time in the whole database: there every write
        // queues behind every other, whatever its tenant.
        let queue = match self.write_gate {
            Some(_) => Uuid::nil(),
            None => tenant,
        };
        if self.queues.push(queue, job) {
            tokio::spawn(self.clone().run(queue));
        }
        // A write dropped unanswered is one whose transaction could not begin, or whose runner
        // failed.
        receiver.await.unwrap_or(Err(DomainError::Unavailable))
    }

    /// A queue's runner: batches until its queue is empty.
    async fn run(self, queue: Uuid) {
        struct Running<'a>(&'a Store, Uuid, bool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    self.0.queues.abandon(self.1);
                }
            }
        }
        let mut running = Running(&self, queue, false);
        while let Some(first) = self.queues.next(queue) {
            self.batch(queue, first).await;
        }
        running.2 = true;
    }

    /// One transaction: `first`, then what queues behind it, then one commit.
    async fn batch(&self, queue: Uuid, first: Job) {
        let Ok((turn, txn)) = self.begin_writing().await else {
            // The writes queued now would meet the same database, one timeout after another:
            // they are dropped with `first`, and their callers hear UNAVAILABLE at once.
            while self.queues.more(queue).is_some() {}
            return;
        };
        let mut tx = Tx::new(txn, first.caller);
        let ran = (first.work)(&mut tx).await;
        let (mut txn, events, rollback_only) = tx.into_parts();
        let Some(Ran { answer, succeeded }) = ran else {
            return roll_back(txn).await;
        };
        // Alone in its transaction, a refusal rests on nothing uncommitted: it is answered now
        // (the cursor is for a success; on PostgreSQL a failed statement leaves the
        // transaction unable to read one).
        if !succeeded {
            roll_back(txn).await;
            return answer(Ok(EventCursor::default()));
        }
        if rollback_only {
            let head = event_log::head(&txn).await.map_err(db_error);
            roll_back(txn).await;
            return answer(head.map(EventCursor));
        }
        let mut done = vec![(events, answer)];
        while done.len() < MOST_PER_COMMIT {
            let Some(job) = self.queues.more(queue) else {
                break;
            };
            // A savepoint for each write, never released (the commit releases them all): a
            // write that fails rolls back to the newest of the name, its own. One round trip a
            // write instead of two, and at most `MOST_PER_COMMIT` of them, well within the 64
            // subtransactions PostgreSQL tracks per backend in shared memory.
            if txn.execute_unprepared(SAVEPOINT).await.is_err() {
                break; // `job` is dropped; the commit below most likely fails too.
            }
            let mut tx = Tx::new(txn, job.caller);
            let ran = (job.work)(&mut tx).await;
            let (back, events, rollback_only) = tx.into_parts();
            txn = back;
            let Some(Ran { answer, succeeded }) = ran else {
                continue; // Not run: nothing to undo.
            };
            if succeeded && !rollback_only {
                done.push((events, answer));
                continue;
            }
            if let Err(error) = txn.execute_unprepared(ROLLBACK_TO_SAVEPOINT).await {
                answer(Err(db_error(error)));
                break;
            }
            done.push((Vec::new(), answer));
        }
        let (events, answers): (Vec<Vec<NewEvent>>, Vec<Answer>) = done.into_iter().unzip();
        metrics::histogram!("membership_writes_per_commit").record(answers.len() as f64);
        let committed = self.commit(txn, events).await;
        drop(turn);
        match committed {
            Ok(cursors) => {
                for (answer, cursor) in answers.into_iter().zip(cursors) {
                    answer(Ok(cursor));
                }
            }
            Err(error) => {
                for answer in answers {
                    answer(Err(error.again()));
                }
            }
        }
    }
}

async fn roll_back(txn: Transaction) {
    if let Err(error) = txn.rollback().await {
        tracing::warn!(%error, "rollback failed");
    }
}
