//! Writes waiting for one tenant commit together (`store::group_commit`): in one transaction,
//! each but the first in a savepoint, so that each keeps its own outcome. The first test holds a
//! batch open from inside its first write, so what queues behind it is known; the second races
//! calls through the server, as callers do.

use std::time::Duration;

use crate::common::*;
use futures::future::join_all;
use membership_service::domain::events::{EventCursor, EventType};
use membership_service::domain::{Caller, DomainError, now_micros};
use membership_service::store::{Store, Tx, TxFuture};
use sea_orm::{ConnectionTrait, Statement};
use tokio::sync::oneshot;
use tonic::Code;
use uuid::Uuid;

/// Signals that a write began (it holds the tenant), and waits for the test to let it go on.
type Gate = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// A write to `tenant` as the group commit runs it: it locks the tenant, waits at `gate` if
/// given, records `request_id` (one row) and emits one event, and then succeeds or, when
/// `refuse`, fails after writing, on a statement the database refuses (the request id again:
/// on PostgreSQL the transaction can run nothing more until it rolls back to a savepoint).
fn recording(
    tenant: Uuid,
    request_id: &'static str,
    refuse: bool,
    gate: Option<Gate>,
) -> impl for<'t> FnOnce(&'t mut Tx) -> TxFuture<'t, &'static str> + Send + 'static {
    move |tx| {
        Box::pin(async move {
            let locked = membership_service::store::tenants::lock(&tx.txn, tenant).await?;
            if let Some((began, held)) = gate {
                let _ = began.send(());
                held.await.expect("the test lets the write go on");
            }
            tx.remember_request("batch-test", Some(request_id), request_id, now_micros())
                .await?;
            tx.emit(EventType::TenantUpdated, Some(&locked), Some(&locked))
                .for_request(Some(request_id));
            if refuse {
                tx.remember_request("batch-test", Some(request_id), "again", now_micros())
                    .await?;
            }
            Ok(request_id)
        })
    }
}

type Write = tokio::task::JoinHandle<Result<(&'static str, EventCursor), DomainError>>;

fn spawn_write(store: &Store, tenant: Uuid, request_id: &'static str, refuse: bool) -> Write {
    let store = store.clone();
    tokio::spawn(async move {
        let work = recording(tenant, request_id, refuse, None);
        store.write_to(tenant, Caller::System, work).await
    })
}

/// Starts a write that holds its batch open (inside its transaction, the tenant locked) until
/// the returned sender fires.
async fn held_first_write(
    store: &Store,
    tenant: Uuid,
    refuse: bool,
) -> (Write, oneshot::Sender<()>) {
    let (hold, held) = oneshot::channel();
    let (began, first_began) = oneshot::channel();
    let store = store.clone();
    let first = tokio::spawn(async move {
        let work = recording(tenant, "first", refuse, Some((began, held)));
        store.write_to(tenant, Caller::System, work).await
    });
    first_began.await.expect("the first write began");
    (first, hold)
}

async fn recorded(store: &Store, request_id: &str) -> bool {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(
            store.backend(),
            format!("SELECT COUNT(*) AS n FROM request_ids WHERE request_id = '{request_id}'"),
        ))
        .await
        .expect("reading requests")
        .expect("one row");
    row.try_get::<i64>("", "n").unwrap() == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_queued_behind_a_tenants_write_commit_with_it_and_a_refusal_undoes_only_its_own() {
    let server = TestServer::start().await;
    let tenant: Uuid = enterprise(&server, None).await.id.parse().unwrap();
    let store = server.store.clone();
    let head = server.head().await;

    // The first write waits inside its transaction until three more have queued behind it.
    let (first, hold) = held_first_write(&store, tenant, false).await;
    let queued: Vec<Write> = [("second", false), ("refused", true), ("third", false)]
        .into_iter()
        .map(|(request_id, refuse)| spawn_write(&store, tenant, request_id, refuse))
        .collect();
    // Queued: none of them can begin while the first one's batch is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(queued.iter().all(|call| !call.is_finished()));
    hold.send(()).unwrap();

    let first = first.await.unwrap().expect("the first write");
    let outcomes: Vec<Result<(&str, EventCursor), DomainError>> = join_all(queued)
        .await
        .into_iter()
        .map(|call| call.expect("a write's task panicked"))
        .collect();
    let [second, refused, third] = outcomes.try_into().expect("three outcomes");
    let second = second.expect("the second write");
    let third = third.expect("the third write");
    assert!(
        matches!(refused, Err(DomainError::Conflict)),
        "the refused write hears its own refusal: {refused:?}"
    );

    // The refusal wrote a row and an event before failing: both undone, the others' kept.
    for request_id in ["first", "second", "third"] {
        assert!(recorded(&store, request_id).await, "{request_id} was kept");
    }
    assert!(
        !recorded(&store, "refused").await,
        "the refusal's row was undone"
    );
    // The three kept writes' events follow the head without a gap, the first write's first
    // (the other two in whichever order their callers queued), each at its write's cursor.
    let events = server.events_after(head).await;
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![head + 1, head + 2, head + 3],
    );
    assert_eq!(first.1, EventCursor(head + 1));
    for (request_id, cursor) in [first, second, third] {
        let event = events.iter().find(|e| EventCursor(e.position) == cursor);
        assert_eq!(
            event.and_then(|e| e.request_id.as_deref()),
            Some(request_id),
            "{request_id}'s cursor names its own event"
        );
    }

    // One transaction: a commit appends (SQLite) or stages (PostgreSQL) its events in one go,
    // stamped with one time.
    let times = server
        .scalar(&format!(
            "SELECT COUNT(DISTINCT occurred_at) AS n FROM events WHERE position > {head}"
        ))
        .await;
    assert_eq!(times, 1, "the three writes committed together");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_first_write_leaves_the_writes_queued_behind_it_to_the_next_transaction() {
    let server = TestServer::start().await;
    let tenant: Uuid = enterprise(&server, None).await.id.parse().unwrap();
    let store = server.store.clone();
    let head = server.head().await;

    let (first, hold) = held_first_write(&store, tenant, true).await;
    let next = spawn_write(&store, tenant, "next", false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hold.send(()).unwrap();

    let refused = first.await.unwrap();
    assert!(
        matches!(refused, Err(DomainError::Conflict)),
        "the refusal, not a failure to read after it: {refused:?}"
    );
    let (_, cursor) = next
        .await
        .unwrap()
        .expect("the write queued behind the refusal");
    assert_eq!(cursor, EventCursor(head + 1));
    assert!(
        !recorded(&store, "first").await,
        "the refused first write left nothing"
    );
    assert!(recorded(&store, "next").await);
}

/// Many calls into one tenant at once through the server, some refused: every caller gets the
/// answer it would get alone, every refusal is answered after the writes it rests on are
/// readable, and every success has its one event at its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_calls_into_one_tenant_each_get_their_own_answer() {
    const NEW: usize = 24;
    const TWINS: usize = 12;
    const CHECKS: usize = 12;
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let existing = add_member(&server, &tenant, "member").await;
    let head = server.head().await;
    let twin = user();

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(NEW + TWINS + CHECKS));
    let mut calls = Vec::new();
    for i in 0..NEW + TWINS + CHECKS {
        let mut client = server.members().await;
        let start = start.clone();
        let tenant = tenant.clone();
        calls.push(tokio::spawn(async move {
            start.wait().await;
            if i < NEW + TWINS {
                let user_id = if i < NEW { user() } else { twin };
                let outcome = client
                    .create_membership(as_system(new_member(&tenant, user_id, "member")))
                    .await;
                // A refusal arrives only once the member it rests on can be read.
                let visible = match &outcome {
                    Err(_) => Some(
                        client
                            .get_membership(as_system(
                                membership_service::grpc::pb::GetMembershipRequest {
                                    tenant_id: tenant.id.clone(),
                                    user_id: user_id.to_string(),
                                    min_cursor: 0,
                                },
                            ))
                            .await
                            .is_ok(),
                    ),
                    Ok(_) => None,
                };
                (user_id, outcome.map(|r| r.into_inner().cursor), visible)
            } else {
                let outcome = client
                    .delete_membership(as_system(
                        membership_service::grpc::pb::DeleteMembershipRequest {
                            tenant_id: tenant.id.clone(),
                            user_id: existing.to_string(),
                            etag: String::new(),
                            validate_only: true,
                        },
                    ))
                    .await;
                (existing, outcome.map(|r| r.into_inner().cursor), None)
            }
        }));
    }

    let mut created = Vec::new();
    let mut twins_created = 0;
    for call in join_all(calls).await {
        let (user_id, outcome, visible) = call.expect("a call's task panicked");
        match (user_id, outcome) {
            (id, Ok(cursor)) if id == existing => {
                assert!(
                    cursor >= head,
                    "a validate-only answer names the log it saw"
                )
            }
            (id, Err(status)) if id == twin => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                assert_eq!(visible, Some(true), "refused before the twin was readable");
            }
            (id, Ok(cursor)) => {
                twins_created += usize::from(id == twin);
                created.push((id, cursor));
            }
            (id, Err(status)) => panic!("{id}: {status:?}"),
        }
    }
    assert_eq!(twins_created, 1, "the one user was created once");
    assert_eq!(created.len(), NEW + 1);

    let events = server.events_after(head).await;
    assert_eq!(
        events.len(),
        NEW + 1,
        "one event per creation, none for the rest"
    );
    for (user_id, cursor) in &created {
        let event = events
            .iter()
            .find(|e| e.position == *cursor)
            .unwrap_or_else(|| panic!("no event at {user_id}'s cursor {cursor}"));
        assert_eq!(event.event_type, "membership.created");
        assert_eq!(
            event.subject_id.as_deref(),
            Some(user_id.to_string().as_str())
        );
    }
    assert!(
        get_member(&server, &tenant, existing).await.is_ok(),
        "validate-only deleted nothing"
    );
}

/// When a batch cannot begin (here SQLite's write lock is held from outside past the store
/// timeout), the writes queued behind it fail with it, not one timeout after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_queued_behind_a_batch_that_cannot_begin_fail_with_it() {
    use sea_orm::TransactionTrait;
    const TIMEOUT: Duration = Duration::from_secs(1);
    let server = TestServer::start().await;
    if server.database.is_postgres() {
        // BEGIN does not wait for a row lock there; a held tenant fails inside each write.
        return;
    }
    let tenant: Uuid = enterprise(&server, None).await.id.parse().unwrap();
    let options = membership_service::store::StoreOptions {
        max_connections: 2,
        timeout: TIMEOUT,
    };
    let store = Store::connect_with(&server.database.url, options)
        .await
        .unwrap();
    let blocker = server
        .store
        .connection()
        .begin_with_options(sea_orm::TransactionOptions {
            isolation_level: None,
            access_mode: None,
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        })
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let writes: Vec<Write> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|request_id| spawn_write(&store, tenant, request_id, false))
        .collect();
    for write in join_all(writes).await {
        let outcome = write.expect("a write's task panicked");
        assert!(
            matches!(outcome, Err(DomainError::Unavailable)),
            "{outcome:?}"
        );
    }
    // One at a time, the four would take four timeouts.
    assert!(
        started.elapsed() < TIMEOUT * 3,
        "the queued writes failed with the first: {:?}",
        started.elapsed()
    );
    blocker.rollback().await.unwrap();
}
