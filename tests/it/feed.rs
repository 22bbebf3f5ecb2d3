//! The event feed (DESIGN section 5): order, exactly-once delivery, resume, slow subscribers,
//! snapshot-then-watch, retention, progress, replicas and shutdown, over a real server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use membership_service::events::FeedOptions;
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::watch_membership_events_response::Kind;
use tonic::Code;
use uuid::Uuid;

/// Makes `count` mutations in `tenant` (creates and renames), `parallel` at a time.
async fn churn(server: &TestServer, tenant: &Tenant, count: usize, parallel: usize) {
    let channel = server.channel().await;
    futures::stream::iter(0..count)
        .map(|i| {
            let mut members = MembershipServiceClient::new(channel.clone());
            let tenant = Tenant {
                id: tenant.id.clone(),
                owner: tenant.owner,
            };
            async move {
                let id = user();
                members
                    .create_membership(as_system(new_member(&tenant, id, "member")))
                    .await
                    .unwrap();
                if i % 2 == 0 {
                    members
                        .update_membership(as_system(pb::UpdateMembershipRequest {
                            membership: Some(pb::Membership {
                                tenant_id: tenant.id.clone(),
                                user_id: id.to_string(),
                                display_name: format!("Renamed {i}"),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["display_name".into()],
                            }),
                        }))
                        .await
                        .unwrap();
                }
            }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<()>>()
        .await;
}

/// Reads events from `stream` until `last` has been delivered; checks strict order.
async fn collect_through(
    stream: &mut tonic::Streaming<pb::WatchMembershipEventsResponse>,
    last: i64,
) -> Vec<pb::MembershipEvent> {
    let mut events: Vec<pb::MembershipEvent> = Vec::new();
    while events.last().is_none_or(|e| e.position < last) {
        let event = next_event(stream).await;
        if let Some(previous) = events.last() {
            assert!(
                event.position > previous.position,
                "out of order: {} after {}",
                event.position,
                previous.position
            );
        }
        events.push(event);
    }
    events
}

fn positions(events: &[pb::MembershipEvent]) -> Vec<i64> {
    events.iter().map(|e| e.position).collect()
}

#[tokio::test]
async fn watch_delivers_every_event_with_its_states_and_resumes_without_gap_or_duplicate() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let mut stream = watch(
        &server,
        pb::WatchMembershipEventsRequest {
            from_oldest: true,
            ..Default::default()
        },
    )
    .await;
    let first = collect_through(&mut stream, server.head().await).await;
    assert_eq!(
        positions(&first),
        (1..=server.head().await).collect::<Vec<_>>()
    );
    let created = &first[1];
    assert_eq!(created.r#type, "membership.created");
    assert_eq!(created.tenant_id, tenant.id);
    assert_eq!(created.subject_id, tenant.owner.to_string());
    match created.after.as_ref().and_then(|s| s.state.as_ref()) {
        Some(pb::event_state::State::Membership(m)) => assert_eq!(m.roles, ["owner"]),
        other => panic!("unexpected state {other:?}"),
    }

    // Actor, request id and before/after travel with the event.
    let member = user();
    let mut request = new_member(&tenant, member, "member");
    request.request_id = Uuid::new_v4().to_string();
    server
        .members()
        .await
        .create_membership(as_user(request.clone(), tenant.owner))
        .await
        .unwrap();
    server
        .api()
        .await
        .as_user(tenant.owner)
        .suspend_member(&tenant, member)
        .await
        .unwrap();
    let created = next_event(&mut stream).await;
    assert_eq!(created.actor_id, tenant.owner.to_string());
    assert_eq!(created.request_id, request.request_id);
    let suspended = next_event(&mut stream).await;
    assert_eq!(suspended.r#type, "membership.suspended");
    let status = |s: &Option<pb::EventState>| match s.as_ref().and_then(|s| s.state.as_ref()) {
        Some(pb::event_state::State::Membership(m)) => m.status,
        other => panic!("unexpected state {other:?}"),
    };
    assert_eq!(
        status(&suspended.before),
        pb::MembershipStatus::Active as i32
    );
    assert_eq!(
        status(&suspended.after),
        pb::MembershipStatus::Suspended as i32
    );

    // Disconnect, let changes happen, resume from the last position seen.
    let resume_from = suspended.position;
    drop(stream);
    churn(&server, &tenant, 30, 4).await;
    let head = server.head().await;
    let mut resumed = watch(&server, watch_after(resume_from)).await;
    let missed = collect_through(&mut resumed, head).await;
    assert_eq!(
        positions(&missed),
        ((resume_from + 1)..=head).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn resume_after_a_restart_delivers_what_was_committed_while_the_server_was_down() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut stream = watch(
        &server,
        pb::WatchMembershipEventsRequest {
            from_oldest: true,
            ..Default::default()
        },
    )
    .await;
    let seen = collect_through(&mut stream, server.head().await).await;
    let last_seen = seen.last().unwrap().position;

    // Shutting down ends the stream with UNAVAILABLE.
    let database = server.database.clone();
    let stopping = tokio::spawn(server.stop());
    let status = tokio::time::timeout(WAIT, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Code::Unavailable);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server did not stop")
        .unwrap();

    // Another server on the same database commits while the first one is down.
    let other = TestServer::start_shared(database.clone(), test_options()).await;
    churn(&other, &tenant, 20, 2).await;
    let head = other.head().await;
    other.stop().await;

    let restarted = TestServer::start_shared(database, test_options()).await;
    let mut resumed = watch(&restarted, watch_after(last_seen)).await;
    let missed = collect_through(&mut resumed, head).await;
    assert_eq!(
        positions(&missed),
        ((last_seen + 1)..=head).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_are_seen_exactly_once_by_a_watcher_and_a_paged_reader() {
    let server = TestServer::start().await;
    let start = server.head().await;
    let mut stream = watch(&server, watch_after(start)).await;

    // A reader paging the audit log while the writers commit, always after the last position
    // it has seen: with positions drawn from a plain sequence it would skip late commits.
    let stop_reading = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let mut members = server.members().await;
        let stop = stop_reading.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut stopping = false;
            loop {
                let after = seen.last().copied().unwrap_or(start);
                let page = members
                    .list_membership_events(as_system(pb::ListMembershipEventsRequest {
                        page_size: 200,
                        after_cursor: Some(after),
                        ..Default::default()
                    }))
                    .await
                    .unwrap()
                    .into_inner();
                let empty = page.events.is_empty();
                seen.extend(page.events.iter().map(|e| e.position));
                if empty && stopping {
                    return seen;
                }
                if empty {
                    tokio::select! {
                        _ = stop.notified() => stopping = true,
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    }
                }
            }
        })
    };

    // 8 writers, one per tenant, 201 mutations each (134 creates, 67 renames).
    let tenants: Vec<Tenant> =
        futures::future::join_all((0..8).map(|_| enterprise(&server, None))).await;
    futures::future::join_all(tenants.iter().map(|tenant| churn(&server, tenant, 134, 1))).await;
    let head = server.head().await;
    stop_reading.notify_one();

    let watched = positions(&collect_through(&mut stream, head).await);
    let paged = reader.await.unwrap();
    let expected: Vec<i64> = ((start + 1)..=head).collect();
    assert!(head - start >= 8 * 200, "{} events", head - start);
    assert_eq!(
        watched, expected,
        "the watcher saw every event exactly once, in order"
    );
    assert_eq!(
        paged, expected,
        "the paged reader saw every event exactly once, in order"
    );
    let table = server
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM events WHERE position > {start}"
        ))
        .await;
    assert_eq!(table, head - start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_stops_reading_later_receives_every_event_in_order() {
    // A small ring, so the subscriber falls out of it and must catch up from the database.
    let mut options = test_options();
    options.feed = FeedOptions {
        buffer: 256,
        ..options.feed
    };
    let server = TestServer::start_with(TestDatabase::create().await, options).await;
    let tenant = enterprise(&server, None).await;
    let start = server.head().await;
    let mut stream = watch(&server, watch_after(start)).await;

    churn(&server, &tenant, 6_667, 8).await; // 6,667 creates + 3,334 renames = 10,001 events
    let head = server.head().await;
    assert!(head - start >= 10_000);

    let events = collect_through(&mut stream, head).await;
    assert_eq!(positions(&events), ((start + 1)..=head).collect::<Vec<_>>());
}

/// Every membership of a tenant, paging through the list.
async fn list_all(server: &TestServer, tenant_id: &str) -> BTreeMap<String, pb::Membership> {
    let mut members = server.members().await;
    let mut state = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = members
            .list_memberships(as_system(pb::ListMembershipsRequest {
                tenant_id: tenant_id.into(),
                page_size: 7,
                page_token: token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        for m in page.memberships {
            state.insert(m.user_id.clone(), m);
        }
        token = page.next_page_token;
        if token.is_empty() {
            return state;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_then_watch_reproduces_the_current_state() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    churn(&server, &tenant, 40, 4).await;

    // Changes keep coming while the snapshot is taken.
    let writer = {
        let channel = server.channel().await;
        let tenant = Tenant {
            id: tenant.id.clone(),
            owner: tenant.owner,
        };
        tokio::spawn(async move {
            let mut members = MembershipServiceClient::new(channel);
            let mut added = Vec::new();
            for i in 0..60 {
                let id = user();
                members
                    .create_membership(as_system(new_member(&tenant, id, "member")))
                    .await
                    .unwrap();
                added.push(id);
                if i % 3 == 0 && added.len() > 2 {
                    let victim = added.remove(0);
                    members
                        .delete_membership(as_system(pb::DeleteMembershipRequest {
                            tenant_id: tenant.id.clone(),
                            user_id: victim.to_string(),
                            etag: String::new(),
                            validate_only: false,
                        }))
                        .await
                        .unwrap();
                }
                if i % 5 == 0 {
                    members
                        .suspend_membership(as_system(pb::SuspendMembershipRequest {
                            tenant_id: tenant.id.clone(),
                            user_id: added.last().unwrap().to_string(),
                            etag: String::new(),
                        }))
                        .await
                        .unwrap();
                }
            }
        })
    };

    // One page reflects one cursor; a single large page is the snapshot.
    let mut members = server.members().await;
    let snapshot = members
        .list_memberships(as_system(pb::ListMembershipsRequest {
            tenant_id: tenant.id.clone(),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut state: BTreeMap<String, pb::Membership> = snapshot
        .memberships
        .into_iter()
        .map(|m| (m.user_id.clone(), m))
        .collect();
    let mut stream = watch(
        &server,
        pb::WatchMembershipEventsRequest {
            tenant_id: tenant.id.clone(),
            after_cursor: Some(snapshot.cursor),
            ..Default::default()
        },
    )
    .await;
    writer.await.unwrap();
    let head = server.head().await;
    for event in collect_through(&mut stream, head).await {
        let after = event.after.and_then(|s| s.state);
        match (event.r#type.as_str(), after) {
            ("membership.deleted", _) => {
                state
                    .remove(&event.subject_id)
                    .expect("deleted a member the snapshot knew");
            }
            (_, Some(pb::event_state::State::Membership(m))) => {
                state.insert(m.user_id.clone(), m);
            }
            _ => {}
        }
    }
    let current = list_all(&server, &tenant.id).await;
    assert_eq!(state, current);
}

#[tokio::test]
async fn a_cursor_older_than_retention_is_refused_with_cursor_expired() {
    let mut options = test_options();
    options.feed = FeedOptions {
        retention: Duration::from_millis(1),
        prune_interval: Duration::from_millis(100),
        ..options.feed
    };
    let server = TestServer::start_with(TestDatabase::create().await, options).await;
    let tenant = enterprise(&server, None).await;
    add_member(&server, &tenant, "member").await;
    tokio::time::timeout(WAIT, async {
        while server.event_count().await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the pruner removed the events past retention");

    let refused = server
        .members()
        .await
        .watch_membership_events(as_system(watch_after(0)))
        .await;
    let status = assert_refused(refused.map(|_| ()), Code::OutOfRange, "CURSOR_EXPIRED");
    assert!(
        status.message().contains("list the members again"),
        "{}",
        status.message()
    );

    // The way back: list, then watch from the list's cursor.
    let listed = server
        .members()
        .await
        .list_memberships(as_system(pb::ListMembershipsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut stream = watch(&server, watch_after(listed.cursor)).await;
    let id = add_member(&server, &tenant, "member").await;
    let event = next_event(&mut stream).await;
    assert_eq!(event.subject_id, id.to_string());

    let ahead = server
        .members()
        .await
        .watch_membership_events(as_system(watch_after(listed.cursor + 1000)))
        .await;
    assert_refused(ahead.map(|_| ()), Code::OutOfRange, "CURSOR_AHEAD");
}

#[tokio::test]
async fn idle_and_filtered_streams_get_progress_with_the_current_cursor() {
    let server = TestServer::start().await;
    let quiet = enterprise(&server, None).await;
    let busy = enterprise(&server, None).await;
    let mut stream = watch(
        &server,
        pb::WatchMembershipEventsRequest {
            tenant_id: quiet.id.clone(),
            types: vec!["membership.deleted".into()],
            after_cursor: Some(server.head().await),
            ..Default::default()
        },
    )
    .await;
    add_member(&server, &busy, "member").await;
    add_member(&server, &quiet, "member").await; // created, not deleted: filtered out
    let head = server.head().await;
    // Progress messages carry the cursor forward past events the filter skipped.
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            match next_item(&mut stream).await {
                Kind::Progress(progress) if progress.cursor >= head => return progress.cursor,
                Kind::Progress(_) => continue,
                Kind::Event(event) => panic!("filtered event delivered: {event:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(reached, head);

    let types = server
        .members()
        .await
        .watch_membership_events(as_system(pb::WatchMembershipEventsRequest {
            types: vec!["membership.exploded".into()],
            ..Default::default()
        }))
        .await;
    let status = assert_refused(types.map(|_| ()), Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["types"]);
}

#[tokio::test]
async fn watching_and_the_audit_log_need_audit_logs_read_in_the_tenant() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let admin = add_member(&server, &tenant, "admin").await;
    let member = add_member(&server, &tenant, "member").await;
    let outsider = organization(&server, None).await.owner;
    let mut members = server.members().await;
    let request = |tenant_id: &str| pb::WatchMembershipEventsRequest {
        tenant_id: tenant_id.into(),
        from_oldest: true,
        ..Default::default()
    };

    let mut allowed = members
        .watch_membership_events(as_user(request(&tenant.id), admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut allowed).await.tenant_id, tenant.id);
    for (actor, reason) in [(member, "PERMISSION_DENIED"), (outsider, "NOT_A_MEMBER")] {
        let refused = members
            .watch_membership_events(as_user(request(&tenant.id), actor))
            .await;
        assert_refused(refused.map(|_| ()), Code::PermissionDenied, reason);
    }
    let everything = members
        .watch_membership_events(as_user(request(""), admin))
        .await;
    let status = assert_refused(
        everything.map(|_| ()),
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violated_fields(&status), ["tenant_id"]);

    // The audit log: filters by type, actor and subject, newest first, in pages.
    members
        .suspend_membership(as_user(
            pb::SuspendMembershipRequest {
                tenant_id: tenant.id.clone(),
                user_id: member.to_string(),
                etag: String::new(),
            },
            admin,
        ))
        .await
        .unwrap();
    let log = |f: fn(&mut pb::ListMembershipEventsRequest)| {
        let mut r = pb::ListMembershipEventsRequest {
            tenant_id: tenant.id.clone(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let by_admin = members
        .list_membership_events(as_user(log(|_| {}), admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_admin.events.len(),
        5,
        "tenant, owner, admin, member, suspension"
    );
    let all = positions(&by_admin.events);
    let filtered = members
        .list_membership_events(as_user(
            pb::ListMembershipEventsRequest {
                actor_id: admin.to_string(),
                subject_id: member.to_string(),
                types: vec!["membership.suspended".into()],
                ..log(|_| {})
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.events.len(), 1);
    assert_eq!(filtered.events[0].r#type, "membership.suspended");
    let newest_first = members
        .list_membership_events(as_system(log(|r| {
            r.order_by = "position desc".into();
            r.page_size = 3;
        })))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(positions(&newest_first.events), [all[4], all[3], all[2]]);
    let rest = members
        .list_membership_events(as_system(pb::ListMembershipEventsRequest {
            page_token: newest_first.next_page_token,
            ..log(|r| {
                r.order_by = "position desc".into();
                r.page_size = 3;
            })
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(positions(&rest.events), [all[1], all[0]]);
    assert!(rest.next_page_token.is_empty());
    let in_future = members
        .list_membership_events(as_system(pb::ListMembershipEventsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..log(|_| {})
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(in_future.events.is_empty());
    // A plain member holds no audit_logs.read.
    let reader = add_member(&server, &tenant, "member").await;
    let refused = members
        .list_membership_events(as_user(log(|_| {}), reader))
        .await;
    assert_refused(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    let tampered = members
        .list_membership_events(as_system(pb::ListMembershipEventsRequest {
            page_token: "AAAA".into(),
            ..log(|_| {})
        }))
        .await;
    assert_refused(tampered, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn a_subscriber_on_one_replica_sees_events_written_through_another() {
    let database = TestDatabase::create().await;
    // Two real server processes over the one database; each migrates (or finds it migrated)
    // before it serves.
    let poll = ["--event-poll-interval", "200ms"];
    let a = ServerProcess::spawn(&database.url, &poll).await;
    let b = ServerProcess::spawn(&database.url, &poll).await;
    let mut on_b = MembershipServiceClient::new(b.channel().await)
        .watch_membership_events(as_system(pb::WatchMembershipEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let created = pb::tenant_service_client::TenantServiceClient::new(a.channel().await)
        .create_tenant(as_system(pb::CreateTenantRequest {
            name: "Replicated".into(),
            kind: pb::TenantKind::Enterprise as i32,
            role_preset: pb::RolePreset::Enterprise as i32,
            owner_user_id: user().to_string(),
            owner_email: "owner@replicated.example".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let event = next_event(&mut on_b).await;
    assert_eq!(event.r#type, "tenant.created");
    assert_eq!(event.tenant_id, created.tenant.unwrap().tenant_id);
    let second = next_event(&mut on_b).await;
    assert_eq!(second.position, created.cursor);
    assert!(a.terminate().await.success());
    assert!(b.terminate().await.success());
}

/// Timestamps the protobuf spec rules out, each with what makes it malformed.
const MALFORMED_TIMESTAMPS: &[(i64, i32, &str)] = &[
    (1_700_000_000, -1, "negative nanos"),
    (1_700_000_000, 1_000_000_000, "nanos of a whole second"),
    (253_402_300_800, 0, "after 9999-12-31T23:59:59Z"),
    (-62_135_596_801, 0, "before 0001-01-01T00:00:00Z"),
    (i64::MAX, 0, "seconds far out of range"),
];

/// Every request Timestamp (the audit log's time range) is checked as the protobuf spec
/// defines it: a malformed one is INVALID_ARGUMENT naming the field, every bad field at once;
/// the extremes of the valid range are accepted.
#[tokio::test]
async fn malformed_timestamps_in_the_audit_log_time_range_are_refused() {
    assert_eq!(
        request_fields_of_type(".google.protobuf.Timestamp"),
        [
            "ListMembershipEventsRequest.end_time",
            "ListMembershipEventsRequest.start_time",
        ],
        "every Timestamp in a request is covered here"
    );
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut members = server.members().await;
    let time = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
    let log = |start_time, end_time| pb::ListMembershipEventsRequest {
        tenant_id: tenant.id.clone(),
        start_time,
        end_time,
        ..Default::default()
    };
    for &(seconds, nanos, what) in MALFORMED_TIMESTAMPS {
        for (request, fields) in [
            (log(time(seconds, nanos), None), vec!["start_time"]),
            (log(None, time(seconds, nanos)), vec!["end_time"]),
            (
                log(time(seconds, nanos), time(seconds, nanos)),
                vec!["start_time", "end_time"],
            ),
        ] {
            let status = assert_refused(
                members.list_membership_events(as_system(request)).await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert_eq!(violated_fields(&status), fields, "{what}");
        }
    }
    let everything = members
        .list_membership_events(as_system(log(
            time(-62_135_596_800, 0),
            time(253_402_300_799, 999_999_999),
        )))
        .await
        .expect("the widest valid range")
        .into_inner();
    assert_eq!(everything.events.len(), 2, "tenant and owner created");
}

/// A negative cursor is never a position: every cursor a request carries (where to start a
/// list or a watch, how fresh a check must be) refuses it the same way, INVALID_ARGUMENT naming
/// the field, rather than as an expired cursor.
#[tokio::test]
async fn a_negative_cursor_is_invalid_in_every_request_that_takes_one() {
    assert_eq!(
        request_fields_where(|field| field.name().contains("cursor")),
        [
            "BatchCheckPermissionsRequest.min_cursor",
            "CheckPermissionRequest.min_cursor",
            "GetMembershipRequest.min_cursor",
            "ListMembershipEventsRequest.after_cursor",
            "ListMembershipsRequest.min_cursor",
            "WatchMembershipEventsRequest.after_cursor",
        ],
        "every cursor in a request is covered here"
    );
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut members = server.members().await;
    let mut roles = pb::role_service_client::RoleServiceClient::new(server.channel().await);
    let check = pb::PermissionCheck {
        tenant_id: tenant.id.clone(),
        user_id: tenant.owner.to_string(),
        permission: "members.read".into(),
    };
    for cursor in [-1, i64::MIN, 0] {
        let results = [
            (
                "ListMembershipEvents",
                "after_cursor",
                members
                    .list_membership_events(as_system(pb::ListMembershipEventsRequest {
                        tenant_id: tenant.id.clone(),
                        after_cursor: Some(cursor),
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
            ),
            (
                "WatchMembershipEvents",
                "after_cursor",
                members
                    .watch_membership_events(as_system(pb::WatchMembershipEventsRequest {
                        tenant_id: tenant.id.clone(),
                        after_cursor: Some(cursor),
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
            ),
            (
                "GetMembership",
                "min_cursor",
                members
                    .get_membership(as_system(pb::GetMembershipRequest {
                        tenant_id: tenant.id.clone(),
                        user_id: tenant.owner.to_string(),
                        min_cursor: cursor,
                    }))
                    .await
                    .map(drop),
            ),
            (
                "ListMemberships",
                "min_cursor",
                members
                    .list_memberships(as_system(pb::ListMembershipsRequest {
                        tenant_id: tenant.id.clone(),
                        min_cursor: cursor,
                        ..Default::default()
                    }))
                    .await
                    .map(drop),
            ),
            (
                "CheckPermission",
                "min_cursor",
                roles
                    .check_permission(as_system(pb::CheckPermissionRequest {
                        tenant_id: check.tenant_id.clone(),
                        user_id: check.user_id.clone(),
                        permission: check.permission.clone(),
                        min_cursor: cursor,
                    }))
                    .await
                    .map(drop),
            ),
            (
                "BatchCheckPermissions",
                "min_cursor",
                roles
                    .batch_check_permissions(as_system(pb::BatchCheckPermissionsRequest {
                        checks: vec![check.clone()],
                        min_cursor: cursor,
                    }))
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, field, result) in results {
            if cursor == 0 {
                result.unwrap_or_else(|s| panic!("{rpc} with cursor 0: {s:?}"));
                continue;
            }
            let status = assert_refused(result, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(violated_fields(&status), [field], "{rpc} with {cursor}");
            assert!(status.message().contains("negative"), "{rpc}: {status:?}");
        }
    }
}

/// Every way a user watching a tenant can lose access.
#[derive(Clone, Copy, Debug)]
enum Revocation {
    Removed,
    Suspended,
    Left,
    RoleChanged,
    Unbound,
    RoleEdited,
    Dissolved,
    /// The watcher holds `audit_logs.read` through a group (admin bound to it), and is taken
    /// out of the group.
    LeftGroup,
    /// … the group's role is unbound.
    GroupUnbound,
    /// … the group is deleted.
    GroupDeleted,
}

/// The group through which a watcher of the group causes holds `admin`.
const WATCHERS_GROUP: &str = "Watchers";

/// A new member holding `member` directly and `admin` through a new group; the member and the
/// group's id.
async fn member_through_group(server: &TestServer, tenant: &Tenant) -> (Uuid, String) {
    use pb::group_service_client::GroupServiceClient;
    use pb::role_service_client::RoleServiceClient;
    let watcher = add_member(server, tenant, "member").await;
    let mut groups = GroupServiceClient::new(server.channel().await);
    let group_id = groups
        .create_group(as_user(
            pb::CreateGroupRequest {
                tenant_id: tenant.id.clone(),
                name: WATCHERS_GROUP.into(),
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
        .group_id;
    RoleServiceClient::new(server.channel().await)
        .bind_role(as_user(
            pb::BindRoleRequest {
                tenant_id: tenant.id.clone(),
                group_id: group_id.clone(),
                role: "admin".into(),
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .unwrap();
    groups
        .add_group_members(as_user(
            pb::AddGroupMembersRequest {
                tenant_id: tenant.id.clone(),
                group_id: group_id.clone(),
                user_ids: vec![watcher.to_string()],
            },
            tenant.owner,
        ))
        .await
        .unwrap();
    (watcher, group_id)
}

/// The group `member_through_group` made in `tenant`.
async fn watchers_group(server: &TestServer, tenant: &Tenant) -> String {
    pb::group_service_client::GroupServiceClient::new(server.channel().await)
        .list_groups(as_system(pb::ListGroupsRequest {
            tenant_id: tenant.id.clone(),
            query: WATCHERS_GROUP.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .groups
        .remove(0)
        .group_id
}

/// Applies `cause` to `watcher` through `server`.
async fn revoke(server: &TestServer, tenant: &Tenant, watcher: Uuid, cause: Revocation) {
    use pb::role_service_client::RoleServiceClient;
    let mut members = server.members().await;
    let mut roles = RoleServiceClient::new(server.channel().await);
    let owner = tenant.owner;
    let member = |tenant_id: &str| (tenant_id.to_string(), watcher.to_string());
    let (tenant_id, user_id) = member(&tenant.id);
    match cause {
        Revocation::Removed => {
            members
                .delete_membership(as_user(
                    pb::DeleteMembershipRequest {
                        tenant_id,
                        user_id,
                        ..Default::default()
                    },
                    owner,
                ))
                .await
                .unwrap();
        }
        Revocation::Suspended => {
            members
                .suspend_membership(as_user(
                    pb::SuspendMembershipRequest {
                        tenant_id,
                        user_id,
                        etag: String::new(),
                    },
                    owner,
                ))
                .await
                .unwrap();
        }
        Revocation::Left => {
            members
                .leave_tenant(as_user(pb::LeaveTenantRequest { tenant_id }, watcher))
                .await
                .unwrap();
        }
        Revocation::RoleChanged => {
            roles
                .set_member_role(as_user(
                    pb::SetMemberRoleRequest {
                        tenant_id,
                        user_id,
                        role: "member".into(),
                    },
                    owner,
                ))
                .await
                .unwrap();
        }
        Revocation::Unbound => {
            roles
                .unbind_role(as_user(
                    pb::UnbindRoleRequest {
                        tenant_id,
                        user_id,
                        role: "admin".into(),
                        ..Default::default()
                    },
                    owner,
                ))
                .await
                .unwrap();
        }
        Revocation::RoleEdited => {
            roles
                .update_role(as_user(
                    pb::UpdateRoleRequest {
                        role: Some(pb::Role {
                            tenant_id,
                            name: "auditor".into(),
                            permissions: vec!["members.read".into()],
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["permissions".into()],
                        }),
                    },
                    owner,
                ))
                .await
                .unwrap();
        }
        Revocation::LeftGroup | Revocation::GroupUnbound | Revocation::GroupDeleted => {
            let group_id = watchers_group(server, tenant).await;
            let mut groups =
                pb::group_service_client::GroupServiceClient::new(server.channel().await);
            match cause {
                Revocation::LeftGroup => groups
                    .remove_group_members(as_user(
                        pb::RemoveGroupMembersRequest {
                            tenant_id,
                            group_id,
                            user_ids: vec![user_id],
                        },
                        owner,
                    ))
                    .await
                    .map(drop),
                Revocation::GroupUnbound => roles
                    .unbind_role(as_user(
                        pb::UnbindRoleRequest {
                            tenant_id,
                            group_id,
                            role: "admin".into(),
                            ..Default::default()
                        },
                        owner,
                    ))
                    .await
                    .map(drop),
                _ => groups
                    .delete_group(as_user(
                        pb::DeleteGroupRequest {
                            tenant_id,
                            group_id,
                            ..Default::default()
                        },
                        owner,
                    ))
                    .await
                    .map(drop),
            }
            .unwrap();
        }
        Revocation::Dissolved => {
            server
                .tenants()
                .await
                .dissolve_tenant(as_user(
                    pb::DissolveTenantRequest {
                        tenant_id,
                        ..Default::default()
                    },
                    owner,
                ))
                .await
                .unwrap();
        }
    }
}

/// A user's watch ends with PERMISSION_DENIED ACCESS_REVOKED when they lose access, whatever
/// the cause, and delivers nothing committed after the change: on the replica that made the
/// change, and on another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_access_ends_a_users_watch_before_anything_later_is_delivered() {
    use pb::role_service_client::RoleServiceClient;
    let writer = TestServer::start().await;
    let other = TestServer::start_shared(writer.database.clone(), test_options()).await;
    for cause in [
        Revocation::Removed,
        Revocation::Suspended,
        Revocation::Left,
        Revocation::RoleChanged,
        Revocation::Unbound,
        Revocation::RoleEdited,
        Revocation::Dissolved,
        Revocation::LeftGroup,
        Revocation::GroupUnbound,
        Revocation::GroupDeleted,
    ] {
        for (replica, watched) in [("same replica", &writer), ("another replica", &other)] {
            let tenant = organization(&writer, None).await;
            let watcher = match cause {
                Revocation::RoleEdited => {
                    RoleServiceClient::new(writer.channel().await)
                        .create_role(as_user(
                            pb::CreateRoleRequest {
                                tenant_id: tenant.id.clone(),
                                name: "auditor".into(),
                                description: String::new(),
                                permissions: vec!["audit_logs.read".into(), "members.read".into()],
                            },
                            tenant.owner,
                        ))
                        .await
                        .unwrap();
                    add_member(&writer, &tenant, "auditor").await
                }
                Revocation::LeftGroup | Revocation::GroupUnbound | Revocation::GroupDeleted => {
                    member_through_group(&writer, &tenant).await.0
                }
                _ => add_member(&writer, &tenant, "admin").await,
            };
            let mut stream = watched
                .members()
                .await
                .watch_membership_events(as_user(
                    pb::WatchMembershipEventsRequest {
                        tenant_id: tenant.id.clone(),
                        ..Default::default()
                    },
                    watcher,
                ))
                .await
                .unwrap()
                .into_inner();
            // Seen while the watcher has access.
            let before = add_member(&writer, &tenant, "member").await;
            assert_eq!(
                next_event(&mut stream).await.subject_id,
                before.to_string(),
                "{cause:?}, {replica}"
            );
            revoke(&writer, &tenant, watcher, cause).await;
            let revoked_by = writer.head().await;
            // Committed after the revocation: must never reach the watcher.
            let after = match cause {
                Revocation::Dissolved => None,
                _ => Some(add_member(&writer, &tenant, "member").await),
            };
            let ended = tokio::time::timeout(WAIT, async {
                loop {
                    match stream.message().await {
                        Ok(Some(message)) => {
                            if let Some(Kind::Event(event)) = message.kind {
                                assert!(
                                    event.position <= revoked_by,
                                    "{cause:?}, {replica}: delivered {} at {} after the revocation at {revoked_by}",
                                    event.r#type,
                                    event.position
                                );
                                assert_ne!(
                                    Some(event.subject_id.clone()),
                                    after.map(|a| a.to_string())
                                );
                            }
                        }
                        Ok(None) => panic!("{cause:?}, {replica}: the stream ended without a status"),
                        Err(status) => return status,
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{cause:?}, {replica}: the watch went on"));
            assert_refused::<()>(Err(ended), Code::PermissionDenied, "ACCESS_REVOKED");
        }
    }
    // A watcher who keeps access keeps watching: a change to someone else ends nothing.
    let tenant = organization(&writer, None).await;
    let watcher = add_member(&writer, &tenant, "admin").await;
    let bystander = add_member(&writer, &tenant, "admin").await;
    let mut stream = other
        .members()
        .await
        .watch_membership_events(as_user(
            pb::WatchMembershipEventsRequest {
                tenant_id: tenant.id.clone(),
                ..Default::default()
            },
            watcher,
        ))
        .await
        .unwrap()
        .into_inner();
    revoke(&writer, &tenant, bystander, Revocation::Suspended).await;
    let later = add_member(&writer, &tenant, "member").await;
    assert_eq!(next_event(&mut stream).await.r#type, "membership.suspended");
    assert_eq!(next_event(&mut stream).await.subject_id, later.to_string());
}

/// The replica a randomized client calls: the in-process server, or the server process that is
/// killed and restarted mid-run (absent while it is down).
#[derive(Clone)]
struct Replicas {
    a: tonic::transport::Channel,
    b: Arc<std::sync::RwLock<Option<tonic::transport::Channel>>>,
}

impl Replicas {
    fn pick(&self, rng: &mut impl rand::Rng) -> Option<tonic::transport::Channel> {
        if rng.gen_bool(0.5) {
            Some(self.a.clone())
        } else {
            self.b.read().unwrap().clone()
        }
    }
}

/// One acknowledged write: its type of event, its member, and the cursor its response carried.
struct Acknowledged {
    event_type: &'static str,
    user_id: String,
    cursor: i64,
}

/// A writer of the randomized run: creates members and suspends, reactivates and renames the
/// shared ones of every tenant, racing the other writers on the same members, through either
/// replica.
async fn random_writes(
    seed: u64,
    replicas: Replicas,
    tenants: Arc<Vec<(Tenant, Vec<Uuid>)>>,
    operations: usize,
) -> Vec<Acknowledged> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acknowledged = Vec::new();
    for i in 0..operations {
        let Some(channel) = replicas.pick(&mut rng) else {
            continue;
        };
        let mut members = MembershipServiceClient::new(channel);
        let (tenant, shared) = &tenants[rng.gen_range(0..tenants.len())];
        let target = shared[rng.gen_range(0..shared.len())];
        let (event_type, user_id, result) = match rng.gen_range(0..4) {
            0 => {
                let id = user();
                let call = members
                    .create_membership(as_system(new_member(tenant, id, "member")))
                    .await
                    .map(|r| r.into_inner().cursor);
                ("membership.created", id, call)
            }
            1 => {
                let call = members
                    .suspend_membership(as_system(pb::SuspendMembershipRequest {
                        tenant_id: tenant.id.clone(),
                        user_id: target.to_string(),
                        ..Default::default()
                    }))
                    .await
                    .map(|r| r.into_inner().cursor);
                ("membership.suspended", target, call)
            }
            2 => {
                let call = members
                    .reactivate_membership(as_system(pb::ReactivateMembershipRequest {
                        tenant_id: tenant.id.clone(),
                        user_id: target.to_string(),
                        ..Default::default()
                    }))
                    .await
                    .map(|r| r.into_inner().cursor);
                ("membership.reactivated", target, call)
            }
            _ => {
                let call = members
                    .update_membership(as_system(pb::UpdateMembershipRequest {
                        membership: Some(pb::Membership {
                            tenant_id: tenant.id.clone(),
                            user_id: target.to_string(),
                            display_name: format!("name {seed}-{i}"),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["display_name".into()],
                        }),
                    }))
                    .await
                    .map(|r| r.into_inner().cursor);
                ("membership.updated", target, call)
            }
        };
        match result {
            Ok(cursor) => acknowledged.push(Acknowledged {
                event_type,
                user_id: user_id.to_string(),
                cursor,
            }),
            // Refused by the rules (already suspended, not suspended), or the replica died
            // under the call: not acknowledged, so nothing is expected of it.
            Err(status) => assert!(
                matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::Unavailable | Code::Unknown | Code::Cancelled
                ),
                "unexpected refusal: {status:?}"
            ),
        }
    }
    acknowledged
}

/// A watcher of the randomized run: watches the whole feed from the start through a random
/// replica, drops the stream at random and resumes from the last position it received (on
/// either replica), until it has received `through`. Returns every event it received.
async fn random_watch(
    seed: u64,
    replicas: Replicas,
    start: i64,
    through: tokio::sync::watch::Receiver<Option<i64>>,
) -> Vec<pb::MembershipEvent> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut received: Vec<pb::MembershipEvent> = Vec::new();
    loop {
        let cursor = received.last().map_or(start, |e| e.position);
        if through.borrow().is_some_and(|last| cursor >= last) {
            return received;
        }
        let Some(channel) = replicas.pick(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(stream) = MembershipServiceClient::new(channel)
            .watch_membership_events(as_system(watch_after(cursor)))
            .await
        else {
            continue;
        };
        let mut stream = stream.into_inner();
        let give_up = tokio::time::sleep(Duration::from_millis(rng.gen_range(20..400)));
        tokio::pin!(give_up);
        loop {
            tokio::select! {
                _ = &mut give_up => break,
                message = stream.message() => match message {
                    Ok(Some(pb::WatchMembershipEventsResponse { kind: Some(Kind::Event(event)) })) => {
                        let previous = received.last().map_or(start, |e| e.position);
                        assert_eq!(
                            event.position,
                            previous + 1,
                            "watcher {seed}: a gap, a duplicate or a step back"
                        );
                        received.push(event);
                        if through.borrow().is_some_and(|last| previous + 1 >= last) {
                            break;
                        }
                    }
                    Ok(Some(_)) => {}
                    // The replica went away: resume elsewhere.
                    Ok(None) | Err(_) => break,
                },
            }
        }
    }
}

/// DESIGN section 5 under load: 64 writers over 16 tenants, racing on the same members, through
/// two replicas over one database while one of them is killed (SIGKILL) and restarted; watchers
/// on both that drop and resume at random. Every acknowledged write appears exactly once at or
/// below the cursor it was acknowledged with; every watcher sees the one order, gap-free; the
/// state rebuilt from the feed equals the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_writers_and_watchers_over_two_replicas_with_one_killed() {
    let seed: u64 = std::env::var("MEMBERSHIP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (MEMBERSHIP_TEST_SEED reruns it)");
    let database = Arc::new(TestDatabase::create().await);
    let a = TestServer::start_shared(database.clone(), test_options()).await;
    let poll = ["--event-poll-interval", "200ms"];
    let b = ServerProcess::spawn(&database.url, &poll).await;
    let replicas = Replicas {
        a: a.channel().await,
        b: Arc::new(std::sync::RwLock::new(Some(b.channel().await))),
    };

    let mut tenants = Vec::new();
    for _ in 0..16 {
        let tenant = organization(&a, None).await;
        let mut shared = Vec::new();
        for _ in 0..3 {
            shared.push(add_member(&a, &tenant, "member").await);
        }
        tenants.push((tenant, shared));
    }
    let tenants = Arc::new(tenants);
    let start = a.head().await;

    let (through_tx, through) = tokio::sync::watch::channel(None);
    let watchers: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(random_watch(
                seed + 1000 + i,
                replicas.clone(),
                start,
                through.clone(),
            ))
        })
        .collect();
    let writers: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(random_writes(
                seed + i,
                replicas.clone(),
                tenants.clone(),
                25,
            ))
        })
        .collect();

    // Mid-run, the process replica dies without a word and comes back.
    tokio::time::sleep(Duration::from_millis(700)).await;
    *replicas.b.write().unwrap() = None;
    let mut b = b;
    b.child.start_kill().expect("SIGKILL");
    b.child.wait().await.expect("the killed replica is reaped");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = ServerProcess::spawn(&database.url, &poll).await;
    *replicas.b.write().unwrap() = Some(b.channel().await);

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    // Every committed event is numbered within moments (the replica killed after a commit
    // leaves its staged events to the other's sequencer).
    let head = tokio::time::timeout(WAIT, async {
        loop {
            let pending = if database.is_postgres() {
                a.scalar("SELECT COUNT(*) AS n FROM pending_events").await
            } else {
                0
            };
            if pending == 0 {
                return a.head().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("staged events numbered");
    through_tx.send_replace(Some(head));
    let mut seen = Vec::new();
    for watcher in watchers {
        seen.push(
            tokio::time::timeout(WAIT * 2, watcher)
                .await
                .expect("watcher finished")
                .expect("watcher"),
        );
    }

    let table = a.events_after(start).await;
    let order: Vec<(i64, String, String)> = table
        .iter()
        .map(|e| {
            (
                e.position,
                e.event_type.clone(),
                e.subject_id.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        order.iter().map(|e| e.0).collect::<Vec<_>>(),
        ((start + 1)..=head).collect::<Vec<_>>(),
        "the table's positions are contiguous"
    );
    for (i, events) in seen.iter().enumerate() {
        let watched: Vec<(i64, String, String)> = events
            .iter()
            .map(|e| (e.position, e.r#type.clone(), e.subject_id.clone()))
            .collect();
        assert_eq!(watched, order, "watcher {i} saw the table's order exactly");
    }

    // Every acknowledged write appears exactly once, at or below its cursor.
    let mut created = std::collections::HashMap::new();
    for (position, event_type, subject) in &order {
        if event_type == "membership.created" {
            assert!(
                created.insert(subject.clone(), *position).is_none(),
                "{subject} created twice"
            );
        }
    }
    let mut expected: std::collections::HashMap<(&str, &str), usize> = Default::default();
    // Suspending a suspended member (or reactivating an active one) is acknowledged with no
    // event: only creates and renames (each to a name of its own) always write one.
    for write in acknowledged
        .iter()
        .filter(|w| matches!(w.event_type, "membership.created" | "membership.updated"))
    {
        *expected
            .entry((write.event_type, write.user_id.as_str()))
            .or_default() += 1;
        let at_or_below = order
            .iter()
            .any(|(p, t, s)| *p <= write.cursor && t == write.event_type && *s == write.user_id);
        assert!(
            at_or_below,
            "{} of {} not at or below its cursor {}",
            write.event_type, write.user_id, write.cursor
        );
    }
    for ((event_type, user_id), count) in &expected {
        if *event_type == "membership.created" {
            assert_eq!(*count, 1);
            assert!(
                created.contains_key(*user_id),
                "acknowledged create of {user_id} has no event"
            );
        } else {
            // Unacknowledged calls (cut off by the kill) may have committed too: at least.
            let found = order
                .iter()
                .filter(|(_, t, s)| t == event_type && s == user_id)
                .count();
            assert!(
                found >= *count,
                "{event_type} of {user_id}: {found} events, {count} acknowledged"
            );
        }
    }
    eprintln!(
        "{} writes acknowledged, {} events",
        acknowledged.len(),
        head - start
    );
    assert!(
        acknowledged.len() > 64 * 5,
        "{} writes acknowledged",
        acknowledged.len()
    );

    // The state rebuilt from the whole feed equals the tables.
    let mut rebuilt: BTreeMap<(String, String), (i32, String)> = BTreeMap::new();
    for event in &seen[0] {
        if let Some(pb::event_state::State::Membership(m)) =
            event.after.as_ref().and_then(|s| s.state.as_ref())
        {
            rebuilt.insert(
                (m.tenant_id.clone(), m.user_id.clone()),
                (m.status, m.display_name.clone()),
            );
        }
    }
    for (tenant, _) in tenants.iter() {
        for (user_id, m) in list_all(&a, &tenant.id).await {
            if m.user_id.is_empty() {
                continue;
            }
            let rebuilt_state = rebuilt.get(&(tenant.id.clone(), user_id.clone()));
            // Members that existed before `start` and never changed are not in the rebuilt map.
            if let Some(state) = rebuilt_state {
                assert_eq!(
                    state,
                    &(m.status, m.display_name.clone()),
                    "member {user_id}"
                );
            }
        }
    }
    drop(b);
}
