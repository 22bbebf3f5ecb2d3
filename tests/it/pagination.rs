//! ListMemberships at scale (DESIGN rule 5): every filter and order pages through a large tenant
//! with keyset tokens, each matching member exactly once and in order; tokens that were edited,
//! invented, forged without the secret or issued for another query are refused, by every list
//! that takes one, and genuine ones hold across replicas and restarts.

use std::cmp::Ordering;
use std::time::Instant;

use crate::common::*;
use futures::StreamExt;
use membership_service::domain::membership::{ListFilter, SortKey, TextQuery};
use membership_service::grpc::pb;
use membership_service::store::memberships::{
    After, PageRequest, SortValue, TextPath, list_statement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use tonic::Code;
use uuid::Uuid;

const MEMBERS: usize = 2_500;
const IN_FLIGHT: usize = 16;

/// What the test created for one member, to compute every filter's expected rows.
#[derive(Clone, Debug)]
struct Spec {
    user_id: Uuid,
    email: String,
    display_name: String,
    role: &'static str,
    member_type: pb::MembershipType,
    source: pb::MembershipSource,
    status: pb::MembershipStatus,
    /// As returned at creation: (seconds, nanos).
    create_time: (i64, i32),
}

const FIRST: [&str; 6] = ["Ann", "bob", "Chidi", "dana", "Eve", "Zoe"];
const LAST: [&str; 5] = ["Lopez", "nguyen", "Okafor", "smith", "Young"];
const DOMAINS: [&str; 3] = ["acme.example", "globex.example", "initech.example"];

/// A deterministic member: display names repeat often (so ties are broken by user id), every
/// 7th has "ZeTa" in its display name, every 11th (not 7th) has "ZETA" in its email local part,
/// every 50th has a literal '%' in its display name, every 13th a literal '_', every 19th a
/// letter beyond ASCII.
fn spec(i: usize, user_id: Uuid) -> (pb::CreateMembershipRequest, Spec) {
    let first = FIRST[i % FIRST.len()];
    let last = LAST[(i / 3) % LAST.len()];
    let mut display_name = if i.is_multiple_of(7) {
        format!("{first} ZeTa {last}")
    } else {
        format!("{first} {last}")
    };
    if i.is_multiple_of(50) {
        display_name.push_str(" 100%");
    }
    if i.is_multiple_of(13) {
        display_name.push_str(" snake_case");
    }
    if i.is_multiple_of(19) {
        display_name.push_str(" Ågren");
    }
    let local = if i.is_multiple_of(11) && !i.is_multiple_of(7) {
        format!("ZETA.{}{i:04}", first.to_lowercase())
    } else {
        format!("{}.{}{i:04}", first.to_lowercase(), last.to_lowercase())
    };
    let email = format!("{local}@{}", DOMAINS[i % DOMAINS.len()]);
    let role = match i % 3 {
        0 => "member",
        1 => "dev_admin",
        _ => "finance_admin",
    };
    let member_type = if matches!(i % 4, 1 | 2) {
        pb::MembershipType::Contractor
    } else {
        pb::MembershipType::Member
    };
    let source = if i.is_multiple_of(3) || i % 5 == 1 {
        pb::MembershipSource::Api
    } else {
        pb::MembershipSource::Scim
    };
    // Every 17th is created suspended; every 5th is suspended after creation (below).
    let created_suspended = i.is_multiple_of(17);
    let status = if created_suspended || i.is_multiple_of(5) {
        pb::MembershipStatus::Suspended
    } else {
        pb::MembershipStatus::Active
    };
    let request = pb::CreateMembershipRequest {
        tenant_id: String::new(),
        user_id: user_id.to_string(),
        email: email.clone(),
        display_name: display_name.clone(),
        r#type: member_type as i32,
        source: source as i32,
        external_id: format!("ext-{i}"),
        role: role.into(),
        status: if created_suspended {
            pb::MembershipStatus::Suspended as i32
        } else {
            0
        },
        request_id: String::new(),
    };
    let spec = Spec {
        user_id,
        email: email.to_lowercase(),
        display_name,
        role,
        member_type,
        source,
        status,
        create_time: (0, 0),
    };
    (request, spec)
}

/// One filter combination: the request fields and the same rule computed in the test.
struct Filter {
    name: &'static str,
    request: pb::ListMembershipsRequest,
    matches: Box<dyn Fn(&Spec) -> bool>,
}

fn filters() -> Vec<Filter> {
    let query_matches = |q: &'static str| {
        move |s: &Spec| {
            let q = q.to_lowercase();
            s.display_name.to_lowercase().contains(&q) || s.email.contains(&q)
        }
    };
    vec![
        Filter {
            name: "no filter",
            request: pb::ListMembershipsRequest::default(),
            matches: Box::new(|_| true),
        },
        Filter {
            name: "status=SUSPENDED",
            request: pb::ListMembershipsRequest {
                status: pb::MembershipStatus::Suspended as i32,
                ..Default::default()
            },
            matches: Box::new(|s| s.status == pb::MembershipStatus::Suspended),
        },
        Filter {
            name: "role=dev_admin",
            request: pb::ListMembershipsRequest {
                role: "dev_admin".into(),
                ..Default::default()
            },
            matches: Box::new(|s| s.role == "dev_admin"),
        },
        Filter {
            name: "type=CONTRACTOR source=API",
            request: pb::ListMembershipsRequest {
                r#type: pb::MembershipType::Contractor as i32,
                source: pb::MembershipSource::Api as i32,
                ..Default::default()
            },
            matches: Box::new(|s| {
                s.member_type == pb::MembershipType::Contractor
                    && s.source == pb::MembershipSource::Api
            }),
        },
        Filter {
            name: "query=zeta",
            request: pb::ListMembershipsRequest {
                query: "zeta".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("zeta")),
        },
        Filter {
            name: "query=ZeTa",
            request: pb::ListMembershipsRequest {
                query: "ZeTa".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("zeta")),
        },
        Filter {
            name: "query=% (a literal percent sign, not a wildcard)",
            request: pb::ListMembershipsRequest {
                query: "%".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("%")),
        },
        Filter {
            name: "query=_c (a literal underscore, not a wildcard)",
            request: pb::ListMembershipsRequest {
                query: "_c".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("_c")),
        },
        Filter {
            name: "query=ÅGR (case folded beyond ASCII)",
            request: pb::ListMembershipsRequest {
                query: "ÅGR".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("ÅGR")),
        },
        Filter {
            name: "query=z (shorter than a trigram)",
            request: pb::ListMembershipsRequest {
                query: "z".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("z")),
        },
        Filter {
            name: "query=ze",
            request: pb::ListMembershipsRequest {
                query: "ze".into(),
                ..Default::default()
            },
            matches: Box::new(query_matches("ze")),
        },
        Filter {
            name: "role=member status=ACTIVE",
            request: pb::ListMembershipsRequest {
                role: "member".into(),
                status: pb::MembershipStatus::Active as i32,
                ..Default::default()
            },
            matches: Box::new(|s| s.role == "member" && s.status == pb::MembershipStatus::Active),
        },
    ]
}

/// How a listing is ordered: the request's `order_by` and the comparison it implies.
#[derive(Clone, Copy, Debug)]
enum Order {
    CreateTime,
    EmailDesc,
    DisplayName,
}

impl Order {
    fn order_by(self) -> &'static str {
        match self {
            Order::CreateTime => "create_time",
            Order::EmailDesc => "email desc",
            Order::DisplayName => "display_name",
        }
    }

    /// The service's order: the sort key, then the user id, in the same direction.
    fn compare(self, a: &Spec, b: &Spec) -> Ordering {
        match self {
            Order::CreateTime => (a.create_time, a.user_id).cmp(&(b.create_time, b.user_id)),
            Order::EmailDesc => (&b.email, b.user_id).cmp(&(&a.email, a.user_id)),
            Order::DisplayName => (&a.display_name, a.user_id).cmp(&(&b.display_name, b.user_id)),
        }
    }
}

fn listed_spec(m: &pb::Membership) -> Spec {
    let created = m.create_time.unwrap();
    Spec {
        user_id: m.user_id.parse().unwrap(),
        email: m.email.clone(),
        display_name: m.display_name.clone(),
        role: "",
        member_type: pb::MembershipType::try_from(m.r#type).unwrap(),
        source: pb::MembershipSource::try_from(m.source).unwrap(),
        status: pb::MembershipStatus::try_from(m.status).unwrap(),
        create_time: (created.seconds, created.nanos),
    }
}

/// Pages through one filter and order, checking each page, and returns every row in order.
async fn list_all(
    server: &TestServer,
    tenant: &Tenant,
    filter: &Filter,
    order: Order,
    page_size: i32,
) -> Vec<pb::Membership> {
    let mut client = server.members().await;
    let head = server.head().await;
    let mut rows = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_memberships(as_user(
                pb::ListMembershipsRequest {
                    tenant_id: tenant.id.clone(),
                    page_size,
                    page_token: token.clone(),
                    order_by: order.order_by().into(),
                    ..filter.request.clone()
                },
                tenant.owner,
            ))
            .await
            .unwrap_or_else(|s| panic!("{} / {order:?}, page {pages}: {s:?}", filter.name))
            .into_inner();
        pages += 1;
        assert!(
            page.cursor >= head,
            "the page reflects the log at its start"
        );
        assert_eq!(page.cursor, head, "nothing was written while listing");
        let last = page.next_page_token.is_empty();
        if !last {
            assert_eq!(
                page.memberships.len(),
                page_size as usize,
                "{} / {order:?}: only the last page may be short",
                filter.name
            );
        }
        rows.extend(page.memberships);
        if last {
            break;
        }
        token = page.next_page_token;
        assert!(
            pages <= MEMBERS + 1,
            "{} / {order:?}: endless paging",
            filter.name
        );
    }
    rows
}

/// Creates `count` members of `tenant` (`spec(0)` to `spec(count - 1)`), 16 calls in flight over
/// clones of one client, and returns what was created, in index order.
async fn create_members(server: &TestServer, tenant: &Tenant, count: usize) -> Vec<Spec> {
    let client = server.members().await;
    futures::stream::iter(0..count)
        .map(|i| {
            let mut client = client.clone();
            let (mut request, mut spec) = spec(i, user());
            request.tenant_id = tenant.id.clone();
            async move {
                let created = client
                    .create_membership(as_system(request))
                    .await
                    .unwrap_or_else(|s| panic!("creating member {i}: {s:?}"))
                    .into_inner()
                    .membership
                    .unwrap();
                let t = created.create_time.unwrap();
                spec.create_time = (t.seconds, t.nanos);
                (i, spec)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<(usize, Spec)>>()
        .await
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect()
}

/// Suspends every 5th member of `specs` that was not created suspended (every 17th), also 16
/// at a time, as `spec` says their status is; returns how many.
async fn suspend_every_fifth(server: &TestServer, tenant: &Tenant, specs: &[Spec]) -> usize {
    let client = server.members().await;
    let to_suspend: Vec<Uuid> = (0..specs.len())
        .filter(|i| i.is_multiple_of(5) && !i.is_multiple_of(17))
        .map(|i| specs[i].user_id)
        .collect();
    let suspended_count = to_suspend.len();
    futures::stream::iter(to_suspend)
        .map(|user_id| {
            let mut client = client.clone();
            let tenant_id = tenant.id.clone();
            async move {
                let m = client
                    .suspend_membership(as_system(pb::SuspendMembershipRequest {
                        tenant_id,
                        user_id: user_id.to_string(),
                        etag: String::new(),
                    }))
                    .await
                    .unwrap_or_else(|s| panic!("suspending {user_id}: {s:?}"))
                    .into_inner()
                    .membership
                    .unwrap();
                assert_eq!(m.status, pb::MembershipStatus::Suspended as i32);
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    suspended_count
}

/// The tenant's owner, who is a member too and so in every listing their filter matches.
async fn owner_spec(server: &TestServer, tenant: &Tenant) -> Spec {
    let owner = get_member(server, tenant, tenant.owner).await.unwrap();
    let created = owner.create_time.unwrap();
    Spec {
        user_id: tenant.owner,
        email: owner.email.clone(),
        display_name: owner.display_name.clone(),
        role: "super_admin",
        member_type: pb::MembershipType::Owner,
        source: pb::MembershipSource::Signup,
        status: pb::MembershipStatus::Active,
        create_time: (created.seconds, created.nanos),
    }
}

/// Asserts that `rows`, a complete listing of `filter` in `order`, are exactly the `expected`
/// members (sorted in that order): strictly monotonic sort keys across all pages, so no row
/// twice and none skipped between pages, the same members in the same order, each with its own
/// data.
fn assert_lists_exactly(
    filter: &Filter,
    order: Order,
    page_size: i32,
    rows: &[pb::Membership],
    expected: &[&Spec],
) {
    let listed: Vec<Spec> = rows.iter().map(listed_spec).collect();
    for pair in listed.windows(2) {
        assert_eq!(
            order.compare(&pair[0], &pair[1]),
            Ordering::Less,
            "{} / {order:?}: out of order: {:?} then {:?}",
            filter.name,
            pair[0],
            pair[1]
        );
    }
    let ids: Vec<Uuid> = listed.iter().map(|s| s.user_id).collect();
    let expected_ids: Vec<Uuid> = expected.iter().map(|s| s.user_id).collect();
    assert_eq!(
        ids.len(),
        expected_ids.len(),
        "{} / {order:?} / {page_size}",
        filter.name
    );
    assert!(
        ids == expected_ids,
        "{} / {order:?} / {page_size}: rows differ from the expected set or order",
        filter.name
    );
    for (row, want) in rows.iter().zip(expected) {
        assert_eq!(row.email, want.email);
        assert_eq!(row.display_name, want.display_name);
        assert_eq!(row.status, want.status as i32, "{}", row.email);
        assert_eq!(row.r#type, want.member_type as i32, "{}", row.email);
        assert_eq!(row.source, want.source as i32, "{}", row.email);
        assert_eq!(row.roles, [want.role], "{}", row.email);
        let t = row.create_time.unwrap();
        assert_eq!((t.seconds, t.nanos), want.create_time, "{}", row.email);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_filter_and_order_pages_through_2500_members_exactly_once_in_order() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;

    let started = Instant::now();
    let mut specs = create_members(&server, &tenant, MEMBERS).await;
    let created_in = started.elapsed();
    let started = Instant::now();
    let suspended_count = suspend_every_fifth(&server, &tenant, &specs).await;
    let suspended_in = started.elapsed();
    eprintln!(
        "created {MEMBERS} members in {created_in:?}, suspended {suspended_count} in {suspended_in:?}"
    );
    specs.push(owner_spec(&server, &tenant).await);
    assert_eq!(
        server
            .scalar("SELECT COUNT(*) AS n FROM memberships WHERE status = 'suspended'")
            .await as usize,
        specs
            .iter()
            .filter(|s| s.status == pb::MembershipStatus::Suspended)
            .count()
    );

    let started = Instant::now();
    let mut listings = 0;
    for filter in filters() {
        let mut expected: Vec<&Spec> = specs.iter().filter(|s| (filter.matches)(s)).collect();
        assert!(
            (!expected.is_empty() && expected.len() < specs.len()) || filter.name == "no filter",
            "{}: the data set should make this filter selective",
            filter.name
        );
        for (order, page_size) in [
            (Order::CreateTime, 97),
            (Order::EmailDesc, 97),
            (Order::DisplayName, 97),
            (Order::CreateTime, 1000),
        ] {
            let rows = list_all(&server, &tenant, &filter, order, page_size).await;
            listings += 1;
            expected.sort_by(|a, b| order.compare(a, b));
            assert_lists_exactly(&filter, order, page_size, &rows, &expected);
        }
    }
    eprintln!("{listings} complete listings in {:?}", started.elapsed());
}

/// A page_size above the maximum is clamped to 1000 (the rest follows on the next page), and a
/// page_size of 0 means the default of 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_size_above_the_maximum_is_clamped_to_1000_and_zero_means_50() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    // With the owner, one more than the largest page.
    create_members(&server, &tenant, 1000).await;
    let mut members = server.members().await;

    let first = members
        .list_memberships(as_user(
            pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                page_size: 5000,
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.memberships.len(), 1000);
    assert!(!first.next_page_token.is_empty());
    let default = members
        .list_memberships(as_user(
            pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                ..Default::default()
            },
            tenant.owner,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default.memberships.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_tokens_are_refused_when_edited_invented_or_reused_for_another_query() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let other = enterprise(&server, None).await;
    for _ in 0..12 {
        add_member(&server, &tenant, "member").await;
    }
    let mut client = server.members().await;
    let list = |request: pb::ListMembershipsRequest| {
        as_user(
            pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                ..request
            },
            tenant.owner,
        )
    };
    let by_email = pb::ListMembershipsRequest {
        page_size: 5,
        order_by: "email".into(),
        ..Default::default()
    };
    let first = client
        .list_memberships(list(by_email.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.memberships.len(), 5);
    let token = first.next_page_token;
    assert!(!token.is_empty());

    // The token works for its own query, also with another page size (AIP-158).
    let second = client
        .list_memberships(list(pb::ListMembershipsRequest {
            page_token: token.clone(),
            page_size: 3,
            ..by_email.clone()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.memberships.len(), 3);
    assert!(second.memberships[0].email > first.memberships[4].email);

    let refused = |result| {
        assert_refused::<pb::ListMembershipsResponse>(
            result,
            Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
        );
    };
    // Another filter, another order, another direction.
    for changed in [
        pb::ListMembershipsRequest {
            status: pb::MembershipStatus::Active as i32,
            ..by_email.clone()
        },
        pb::ListMembershipsRequest {
            role: "member".into(),
            ..by_email.clone()
        },
        pb::ListMembershipsRequest {
            query: "user".into(),
            ..by_email.clone()
        },
        pb::ListMembershipsRequest {
            order_by: "display_name".into(),
            ..by_email.clone()
        },
        pb::ListMembershipsRequest {
            order_by: "email desc".into(),
            ..by_email.clone()
        },
    ] {
        let result = client
            .list_memberships(list(pb::ListMembershipsRequest {
                page_token: token.clone(),
                ..changed
            }))
            .await
            .map(|r| r.into_inner());
        refused(result);
    }
    // Another tenant (whose owner may list it).
    let result = client
        .list_memberships(as_user(
            pb::ListMembershipsRequest {
                tenant_id: other.id.clone(),
                page_token: token.clone(),
                ..by_email.clone()
            },
            other.owner,
        ))
        .await
        .map(|r| r.into_inner());
    refused(result);

    // One character changed, anywhere in the token.
    for position in [0, token.len() / 2, token.len() - 1] {
        let mut edited: Vec<char> = token.chars().collect();
        edited[position] = if edited[position] == 'A' { 'B' } else { 'A' };
        let edited: String = edited.into_iter().collect();
        let result = client
            .list_memberships(list(pb::ListMembershipsRequest {
                page_token: edited,
                ..by_email.clone()
            }))
            .await
            .map(|r| r.into_inner());
        refused(result);
    }
    // Truncated, and invented.
    for garbage in [
        &token[..token.len() - 4],
        "garbage",
        "not a token!",
        "eyJmIjoiIn0",
    ] {
        let result = client
            .list_memberships(list(pb::ListMembershipsRequest {
                page_token: garbage.to_string(),
                ..by_email.clone()
            }))
            .await
            .map(|r| r.into_inner());
        refused(result);
    }
}

#[tokio::test]
async fn list_arguments_name_their_field_and_a_role_nobody_holds_matches_nobody() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    for _ in 0..12 {
        add_member(&server, &tenant, "member").await;
    }
    let mut client = server.members().await;
    let list = |request: pb::ListMembershipsRequest| {
        as_user(
            pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                ..request
            },
            tenant.owner,
        )
    };

    // page_size below zero, and unknown orders, name their field.
    let negative = client
        .list_memberships(list(pb::ListMembershipsRequest {
            page_size: -1,
            ..Default::default()
        }))
        .await;
    let status = assert_refused(negative, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), ["page_size"]);
    for order_by in [
        "age",
        "email sideways",
        "email desc extra",
        "create_time,email",
    ] {
        let unknown = client
            .list_memberships(list(pb::ListMembershipsRequest {
                order_by: order_by.into(),
                ..Default::default()
            }))
            .await;
        let status = assert_refused(unknown, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violated_fields(&status), ["order_by"], "{order_by:?}");
    }

    // page_size above the maximum is accepted (clamped: a test of its own, over more than 1000
    // members, checks the 1000).
    let clamped = client
        .list_memberships(list(pb::ListMembershipsRequest {
            page_size: 5000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clamped.memberships.len(), 13);
    assert!(clamped.next_page_token.is_empty());

    // A role nobody can hold matches nobody: an empty page, not an error.
    let head = server.head().await;
    let unknown_role = client
        .list_memberships(list(pb::ListMembershipsRequest {
            role: "no_such_role".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(unknown_role.memberships.is_empty());
    assert!(unknown_role.next_page_token.is_empty());
    assert_eq!(unknown_role.cursor, head);
}

#[tokio::test]
async fn the_text_query_ignores_case_beyond_ascii() {
    let server = TestServer::start().await;
    let tenant = enterprise(&server, None).await;
    let mut client = server.members().await;
    let mut ids = std::collections::HashMap::new();
    for display_name in [
        "ÉMILE Zola",
        "Émile Durand",
        "émile petit",
        "Zoë ÅSTRÖM",
        "Emile Ascii",
    ] {
        let user_id = user();
        client
            .create_membership(as_system(pb::CreateMembershipRequest {
                display_name: display_name.into(),
                ..new_member(&tenant, user_id, "member")
            }))
            .await
            .unwrap();
        ids.insert(display_name, user_id.to_string());
    }
    for (query, expected) in [
        ("émile", vec!["ÉMILE Zola", "Émile Durand", "émile petit"]),
        ("ÉMILE", vec!["ÉMILE Zola", "Émile Durand", "émile petit"]),
        ("åström", vec!["Zoë ÅSTRÖM"]),
        ("ZOË", vec!["Zoë ÅSTRÖM"]),
        ("emile", vec!["Emile Ascii"]),
    ] {
        let found = client
            .list_memberships(as_system(pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                query: query.into(),
                order_by: "display_name".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .memberships;
        let mut names: Vec<&str> = found.iter().map(|m| m.display_name.as_str()).collect();
        names.sort_unstable();
        let mut expected = expected;
        expected.sort_unstable();
        assert_eq!(names, expected, "query {query:?}");
        for m in &found {
            assert_eq!(ids[m.display_name.as_str()], m.user_id);
        }
    }
}

/// The RPCs that take a page token (every `page_token` field in the protos).
#[derive(Clone, Copy, Debug)]
enum Listing {
    Memberships,
    Invitations,
    RoleBindings,
    Events,
}

const LISTINGS: [Listing; 4] = [
    Listing::Memberships,
    Listing::Invitations,
    Listing::RoleBindings,
    Listing::Events,
];

/// One page of two from `listing` for the tenant, as its owner: the keys of its rows, and the
/// next page's token.
async fn page_of(
    server: &TestServer,
    tenant: &Tenant,
    listing: Listing,
    page_token: &str,
) -> Result<(Vec<String>, String), tonic::Status> {
    use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
    use membership_service::grpc::pb::role_service_client::RoleServiceClient;
    let tenant_id = tenant.id.clone();
    let page_token = page_token.to_string();
    let page_size = 2;
    let owner = tenant.owner;
    match listing {
        Listing::Memberships => {
            let page = server
                .members()
                .await
                .list_memberships(as_user(
                    pb::ListMembershipsRequest {
                        tenant_id,
                        page_size,
                        page_token,
                        ..Default::default()
                    },
                    owner,
                ))
                .await?
                .into_inner();
            let keys = page
                .memberships
                .iter()
                .map(|m| format!("{}{}", m.user_id, m.invitation_id))
                .collect();
            Ok((keys, page.next_page_token))
        }
        Listing::Invitations => {
            let page = InvitationServiceClient::new(server.channel().await)
                .list_invitations(as_user(
                    pb::ListInvitationsRequest {
                        tenant_id,
                        page_size,
                        page_token,
                        ..Default::default()
                    },
                    owner,
                ))
                .await?
                .into_inner();
            let keys = page
                .invitations
                .iter()
                .map(|i| i.invitation_id.clone())
                .collect();
            Ok((keys, page.next_page_token))
        }
        Listing::RoleBindings => {
            let page = RoleServiceClient::new(server.channel().await)
                .list_role_bindings(as_user(
                    pb::ListRoleBindingsRequest {
                        tenant_id,
                        page_size,
                        page_token,
                        ..Default::default()
                    },
                    owner,
                ))
                .await?
                .into_inner();
            let keys = page
                .bindings
                .iter()
                .map(|b| format!("{}/{}", b.user_id, b.role))
                .collect();
            Ok((keys, page.next_page_token))
        }
        Listing::Events => {
            let page = server
                .members()
                .await
                .list_membership_events(as_user(
                    pb::ListMembershipEventsRequest {
                        tenant_id,
                        page_size,
                        page_token,
                        ..Default::default()
                    },
                    owner,
                ))
                .await?
                .into_inner();
            let keys = page.events.iter().map(|e| e.position.to_string()).collect();
            Ok((keys, page.next_page_token))
        }
    }
}

/// A tenant with enough members, invitations, bindings and events for several pages of each.
async fn tenant_with_pages(server: &TestServer) -> Tenant {
    use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
    let tenant = enterprise(server, None).await;
    for _ in 0..5 {
        add_member(server, &tenant, "member").await;
    }
    let mut invitations = InvitationServiceClient::new(server.channel().await);
    for i in 0..5 {
        invitations
            .create_invitation(as_user(
                pb::CreateInvitationRequest {
                    tenant_id: tenant.id.clone(),
                    email: format!("invitee{i}@acme.example"),
                    role: "member".into(),
                    ..Default::default()
                },
                tenant.owner,
            ))
            .await
            .unwrap();
    }
    tenant
}

/// The bytes of a page token, and where its JSON payload starts (after the checksum or tag).
fn token_parts(token: &str) -> (Vec<u8>, usize) {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("a page token is unpadded URL-safe base64");
    let start = bytes
        .windows(5)
        .position(|w| w == b"{\"f\":")
        .expect("a JSON payload in the token");
    (bytes, start)
}

fn encode_token(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with its cursor moved, and its integrity recomputed without any key: the 8-byte
/// SHA-256 checksum page tokens used to carry, and a full SHA-256 in place of a 32-byte tag.
fn forged_without_key(token: &str) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let (bytes, start) = token_parts(token);
    let mut payload: serde_json::Value =
        serde_json::from_slice(&bytes[start..]).expect("a JSON payload");
    // Back to the start of the list: the forger re-reads rows past the cursor it was given.
    if payload["i"].is_i64() {
        payload["i"] = serde_json::json!(0);
    } else {
        payload["t"] = serde_json::json!("");
    }
    payload["u"] = serde_json::json!(Uuid::nil());
    let payload = serde_json::to_vec(&payload).unwrap();
    let old_checksum = Sha256::new()
        .chain_update(b"membership.v1 page token")
        .chain_update(&payload)
        .finalize();
    let mut old = old_checksum[..8].to_vec();
    old.extend_from_slice(&payload);
    let full_hash = Sha256::new()
        .chain_update(b"membership.v1 page token\0")
        .chain_update(&payload)
        .finalize();
    let mut unkeyed = full_hash.to_vec();
    unkeyed.extend_from_slice(&payload);
    // And the genuine tag in front of the edited payload.
    let mut kept = bytes[..start].to_vec();
    kept.extend_from_slice(&payload);
    vec![
        encode_token(&old),
        encode_token(&unkeyed),
        encode_token(&kept),
    ]
}

#[tokio::test]
async fn an_edited_or_forged_page_token_is_refused_by_every_list() {
    let server = TestServer::start().await;
    let tenant = tenant_with_pages(&server).await;
    for listing in LISTINGS {
        let (first, token) = page_of(&server, &tenant, listing, "").await.unwrap();
        assert_eq!(first.len(), 2, "{listing:?}");
        assert!(!token.is_empty(), "{listing:?} has a second page");
        let (second, _) = page_of(&server, &tenant, listing, &token)
            .await
            .unwrap_or_else(|s| panic!("{listing:?}: the genuine token: {s:?}"));
        assert!(
            second.iter().all(|key| !first.contains(key)),
            "{listing:?}: page 2 goes on after page 1"
        );

        // Recomputing the checksum is no longer enough: the tag needs the secret.
        for forged in forged_without_key(&token) {
            let result = page_of(&server, &tenant, listing, &forged).await;
            assert_refused(result, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
        }
        // Any one byte changed, tag or payload.
        let (bytes, _) = token_parts(&token);
        for position in 0..bytes.len() {
            let mut edited = bytes.clone();
            edited[position] ^= 0x20;
            let result = page_of(&server, &tenant, listing, &encode_token(&edited)).await;
            assert_refused(result, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
        }
    }
}

#[tokio::test]
async fn page_tokens_hold_across_replicas_and_restarts() {
    let a = TestServer::start().await;
    let tenant = tenant_with_pages(&a).await;
    let b = TestServer::start_shared(a.database.clone(), test_options()).await;
    let mut tokens = Vec::new();
    for listing in LISTINGS {
        let (_, token) = page_of(&a, &tenant, listing, "").await.unwrap();
        let (on_a, _) = page_of(&a, &tenant, listing, &token).await.unwrap();
        let (on_b, _) = page_of(&b, &tenant, listing, &token)
            .await
            .unwrap_or_else(|s| panic!("{listing:?}: A's token on B: {s:?}"));
        assert_eq!(on_b, on_a, "{listing:?}");
        assert_eq!(on_a.len(), 2, "{listing:?}");
        tokens.push((listing, token, on_a));
    }
    // Both stop; a server started again over the database reads the tokens they issued.
    let database = a.database.clone();
    a.stop().await;
    b.stop().await;
    let c = TestServer::start_shared(database, test_options()).await;
    for (listing, token, expected) in tokens {
        let (on_c, _) = page_of(&c, &tenant, listing, &token)
            .await
            .unwrap_or_else(|s| panic!("{listing:?}: a token after a restart: {s:?}"));
        assert_eq!(on_c, expected, "{listing:?}");
    }
}

/// What a tenant filled in SQL holds for the filters to name: a role everyone holds, a role 20
/// hold, a group of everyone and a group of the same 20.
struct BigTenant {
    member_role: Uuid,
    admin_role: Uuid,
    everyone: Uuid,
    small_group: Uuid,
}

/// Fills `tenant_id` on PostgreSQL with `members` copies of its owner's row, one microsecond
/// apart, with names as varied as people's; every copy holds `member`, 20 of them `admin` too,
/// and a group of everyone and a group of the same 20 are made. Then the planner's statistics
/// are brought up to date, as autovacuum would.
async fn fill_big_tenant_on_postgresql(
    server: &TestServer,
    tenant_id: Uuid,
    members: i64,
) -> BigTenant {
    let db = server.db();
    db.execute_unprepared(&format!(
        "INSERT INTO memberships (tenant_id, user_id, email, display_name, search_name, status, \
         member_type, source, external_id, invited_by, joined_at, created_at, updated_at, version) \
         SELECT tenant_id, gen_random_uuid(), 'user' || g || '@acme.example', \
         'User ' || md5(g::text), 'user ' || md5(g::text), status, member_type, source, NULL, NULL, joined_at, created_at + g, \
         updated_at, 1 FROM memberships, generate_series(1, {members}) AS g \
         WHERE tenant_id = '{tenant_id}'"
    ))
    .await
    .unwrap();
    // A role filter that matches almost everyone, and one few match.
    let member_role = bind_role_in_sql(db, tenant_id, "member", "user%").await;
    let admin_role = bind_role_in_sql(db, tenant_id, "admin", "user%000@%").await;
    db.execute_unprepared("ANALYZE role_bindings")
        .await
        .unwrap();
    let everyone = group_in_sql(db, tenant_id, "everyone", "user%").await;
    let small_group = group_in_sql(db, tenant_id, "few", "user%000@%").await;
    db.execute_unprepared("ANALYZE group_members")
        .await
        .unwrap();
    // VACUUM also moves the new rows out of the trigram indexes' pending lists, as autovacuum
    // would: the planner prices a long pending list as a scan of it.
    db.execute_unprepared("VACUUM ANALYZE memberships")
        .await
        .unwrap();
    db.execute_unprepared("ANALYZE invitations").await.unwrap();
    server.store.note_outside_write();
    BigTenant {
        member_role,
        admin_role,
        everyone,
        small_group,
    }
}

/// Binds `role` to the members whose email matches `emails` (a LIKE pattern); returns the
/// role's id.
async fn bind_role_in_sql(
    db: &DatabaseConnection,
    tenant_id: Uuid,
    role: &str,
    emails: &str,
) -> Uuid {
    db.execute_unprepared(&format!(
        "INSERT INTO role_bindings (tenant_id, user_id, role_id, created_at) \
         SELECT m.tenant_id, m.user_id, r.id, m.created_at FROM memberships m \
         JOIN roles r ON r.tenant_id = m.tenant_id AND r.name = '{role}' \
         WHERE m.tenant_id = '{tenant_id}' AND m.email LIKE '{emails}'"
    ))
    .await
    .unwrap();
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        format!("SELECT id FROM roles WHERE tenant_id = '{tenant_id}' AND name = '{role}'"),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<Uuid>(0)
    .unwrap()
}

/// A group `name` of the members whose email matches `emails` (a LIKE pattern); returns its
/// id. Its links carry their members' sort keys (a trigger copies them).
async fn group_in_sql(db: &DatabaseConnection, tenant_id: Uuid, name: &str, emails: &str) -> Uuid {
    let group_id = Uuid::now_v7();
    db.execute_unprepared(&format!(
        "INSERT INTO groups (tenant_id, id, name, name_key, description, source, \
         member_count, version, created_at, updated_at) \
         VALUES ('{tenant_id}', '{group_id}', '{name}', '{name}', '', 'api', 0, 1, 0, 0)"
    ))
    .await
    .unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO group_members (tenant_id, group_id, user_id, created_at) \
         SELECT m.tenant_id, '{group_id}', m.user_id, m.created_at FROM memberships m \
         WHERE m.tenant_id = '{tenant_id}' AND m.email LIKE '{emails}'"
    ))
    .await
    .unwrap();
    group_id
}

/// Every filter whose plan is checked on the big tenant, with what it is called in a failure.
fn big_tenant_filters(big: &BigTenant) -> Vec<(ListFilter, &'static str)> {
    vec![
        (ListFilter::default(), "unfiltered"),
        (
            ListFilter {
                status: Some(membership_service::domain::membership::MembershipStatus::Active),
                ..ListFilter::default()
            },
            "ACTIVE",
        ),
        (
            ListFilter {
                role_id: Some(big.member_role),
                ..ListFilter::default()
            },
            "role member",
        ),
        (
            ListFilter {
                role_id: Some(big.admin_role),
                ..ListFilter::default()
            },
            "role admin",
        ),
        (
            ListFilter {
                group_id: Some(big.small_group),
                ..ListFilter::default()
            },
            "group of 20",
        ),
        (
            ListFilter {
                group_id: Some(big.everyone),
                ..ListFilter::default()
            },
            "group of everyone",
        ),
        // One member matches (named after md5('4000')): found through the trigram indexes,
        // then sorted.
        (
            ListFilter {
                query: Some(TextQuery::new("1BD69C7DF3112FB9A584")),
                ..ListFilter::default()
            },
            "rare text",
        ),
        // Everyone matches: read in list order until a page is full.
        (
            ListFilter {
                query: Some(TextQuery::new("acme")),
                ..ListFilter::default()
            },
            "common text",
        ),
    ]
}

/// A keyset position deep in the big tenant's list, for `sort`.
fn deep_in_the_list(sort: SortKey) -> After {
    After {
        value: match sort {
            SortKey::CreateTime => SortValue::Int(i64::MAX / 4),
            SortKey::Email => SortValue::Text("user40000@acme.example".into()),
            SortKey::DisplayName => SortValue::Text("User c".into()),
        },
        user_id: Uuid::nil(),
    }
}

/// PostgreSQL's plan for `sql`, one node a line.
async fn explain(db: &DatabaseConnection, sql: &str) -> String {
    let plan: Vec<String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("EXPLAIN {sql}"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    plan.join("\n")
}

/// Asserts that `plan`, for one page of the filter called `what`, reads through indexes what a
/// page needs and never scans and sorts the tenant.
fn assert_reads_a_page_not_the_tenant(case: &str, what: &str, first_page: bool, plan: &str) {
    assert!(
        !plan.contains("Seq Scan on memberships"),
        "{case}: the tenant is scanned\n{plan}"
    );
    assert!(
        plan.contains("Index Scan") || plan.contains("Index Only Scan"),
        "{case}: no index scan\n{plan}"
    );
    // Only the group's links are read: in list order, or (20 of them) all by the primary key
    // and sorted (the sort's size is checked below).
    if what.starts_with("group") {
        assert!(
            !plan.contains("Seq Scan on group_members")
                && (plan.contains("idx_group_members_") || plan.contains("group_members_pkey")),
            "{case}: the group's members are not read through its links\n{plan}"
        );
    }
    if what.starts_with("role") {
        assert!(
            plan.contains("idx_role_bindings_"),
            "{case}: the role's holders are not read in list order\n{plan}"
        );
    }
    if what == "rare text" && first_page {
        assert!(
            plan.contains("idx_memberships_email_trgm")
                && plan.contains("idx_memberships_search_name_trgm"),
            "{case}: the trigram indexes are not used\n{plan}"
        );
    }
    // Any sort left is over the two branches' pages, not over the tenant.
    for line in plan.lines().filter(|line| {
        let node = line.trim_start().trim_start_matches("->  ");
        node.starts_with("Sort  (")
    }) {
        let rows: i64 = line
            .split("rows=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(i64::MAX);
        assert!(rows <= 200, "{case}: sorts {rows} rows\n{plan}");
    }
}

/// On PostgreSQL, a page of a big tenant's member list is an index range scan that stops after
/// a page, for every order, deep in the list and with a filter: never a scan and sort of the
/// whole tenant. (SQLite plans these with its indexes already.)
#[tokio::test]
async fn a_page_of_a_big_tenant_is_an_index_range_scan_on_postgresql() {
    use sea_orm::sea_query::PostgresQueryBuilder;

    const MEMBERS: i64 = 50_000;
    let server = TestServer::start().await;
    if !server.database.is_postgres() {
        eprintln!("the plan is checked on the PostgreSQL run");
        return;
    }
    let tenant = organization(&server, None).await;
    let tenant_id: Uuid = tenant.id.parse().unwrap();
    let big = fill_big_tenant_on_postgresql(&server, tenant_id, MEMBERS).await;

    for sort in [SortKey::CreateTime, SortKey::Email, SortKey::DisplayName] {
        for descending in [false, true] {
            for (filter, what) in big_tenant_filters(&big) {
                let deep = deep_in_the_list(sort);
                for after in [None, Some(&deep)] {
                    let sql = list_statement(
                        tenant_id,
                        &filter,
                        &TextPath::Scan,
                        PageRequest {
                            sort,
                            descending,
                            after,
                            page_size: 50,
                        },
                        0,
                    )
                    .to_string(PostgresQueryBuilder);
                    let plan = explain(server.db(), &sql).await;
                    let case = format!(
                        "{sort:?}, descending {descending}, {what}, after {}",
                        after.is_some()
                    );
                    assert_reads_a_page_not_the_tenant(&case, what, after.is_none(), &plan);
                }
            }
        }
    }
}

/// On SQLite a text query that few rows match is looked up in the FTS5 trigram index and only
/// those rows are sorted; one that many match reads the tenant in list order; one shorter than
/// a trigram cannot use the index. (PostgreSQL's planner makes this choice itself, checked
/// above.)
#[tokio::test]
async fn a_rare_text_query_goes_through_the_full_text_index_on_sqlite() {
    use membership_service::domain::membership::{ListFilter, SortKey, TextQuery};
    use membership_service::store::memberships::{
        After, PageRequest, SortValue, TextPath, list_statement, text_path,
    };
    use sea_orm::sea_query::SqliteQueryBuilder;
    use sea_orm::{ConnectionTrait, Statement};

    const MEMBERS: i64 = 50_000;
    let server = TestServer::start().await;
    if server.database.is_postgres() {
        eprintln!("the full-text path is checked on the SQLite run");
        return;
    }
    let tenant = organization(&server, None).await;
    let tenant_id: Uuid = tenant.id.parse().unwrap();
    let db = server.db();
    db.execute_unprepared(&format!(
        "INSERT INTO memberships (tenant_id, user_id, email, display_name, search_name, status, \
         member_type, source, external_id, invited_by, joined_at, created_at, updated_at, version) \
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {MEMBERS}) \
         SELECT tenant_id, randomblob(16), 'user' || n || '@acme.example', 'User ' || n, \
         'user ' || n, status, member_type, source, NULL, NULL, joined_at, created_at + n, \
         updated_at, 1 FROM memberships, g WHERE tenant_id = {}",
        server.uuid_literal(&tenant.id)
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE").await.unwrap();
    server.store.note_outside_write();

    let filter = |query: &str| ListFilter {
        query: Some(TextQuery::new(query)),
        ..ListFilter::default()
    };
    // The index's candidates: exactly the matching members here, since none matches only
    // beyond what LIKE finds.
    for (query, found) in [
        ("R12345@", Some(1)),
        ("user 4999", Some(11)),
        ("acme", None),
        ("r1", None),
    ] {
        match text_path(db, &filter(query)).await.unwrap() {
            TextPath::FullTextIndex(ids) => {
                let ids: Vec<i64> = serde_json::from_str(&ids).unwrap();
                assert_eq!(Some(ids.len()), found, "{query}")
            }
            TextPath::Scan => assert_eq!(None, found, "{query}"),
        }
    }
    let rare = text_path(db, &filter("R12345@")).await.unwrap();

    for sort in [SortKey::CreateTime, SortKey::Email, SortKey::DisplayName] {
        let deep = After {
            value: match sort {
                SortKey::CreateTime => SortValue::Int(0),
                SortKey::Email | SortKey::DisplayName => SortValue::Text("u".into()),
            },
            user_id: Uuid::nil(),
        };
        for after in [None, Some(&deep)] {
            let sql = list_statement(
                tenant_id,
                &filter("R12345@"),
                &rare,
                PageRequest {
                    sort,
                    descending: false,
                    after,
                    page_size: 50,
                },
                0,
            )
            .to_string(SqliteQueryBuilder);
            let plan: Vec<String> = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("EXPLAIN QUERY PLAN {sql}"),
                ))
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<String>("", "detail").unwrap())
                .collect();
            let plan = plan.join("\n");
            let case = format!("{sort:?}, after {}", after.is_some());
            assert!(
                plan.contains("idx_memberships_search_id (search_id=?)"),
                "{case}: the full-text index is not used\n{plan}"
            );
            assert!(
                !plan.contains("SCAN memberships"),
                "{case}: the tenant is scanned\n{plan}"
            );
        }
    }

    // Both paths, through the service, find the same members.
    let mut client = server.members().await;
    for (query, expected) in [
        ("R12345@", vec!["user12345@acme.example".to_string()]),
        (
            "user 4999",
            std::iter::once(4999)
                .chain(49990..50000)
                .map(|n| format!("user{n}@acme.example"))
                .collect(),
        ),
    ] {
        let found = client
            .list_memberships(as_system(pb::ListMembershipsRequest {
                tenant_id: tenant.id.clone(),
                query: query.into(),
                order_by: "email".into(),
                page_size: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let mut expected = expected;
        expected.sort();
        let emails: Vec<String> = found.memberships.iter().map(|m| m.email.clone()).collect();
        assert_eq!(emails, expected, "{query}");
        assert!(found.next_page_token.is_empty(), "{query}");
    }
    let common = client
        .list_memberships(as_system(pb::ListMembershipsRequest {
            tenant_id: tenant.id.clone(),
            query: "@ACME.".into(),
            order_by: "email desc".into(),
            page_size: 3,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let emails: Vec<&str> = common
        .memberships
        .iter()
        .map(|m| m.email.as_str())
        .collect();
    assert_eq!(
        emails,
        [
            "user9@acme.example",
            "user99@acme.example",
            "user999@acme.example"
        ]
    );
}

/// The text query finds a member by what they are called now: renamed, they are found by the
/// new name and not the old; removed, by neither (on SQLite the FTS5 index follows every change
/// in the same statement).
#[tokio::test]
async fn the_text_query_follows_renames_and_removals() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let mut client = server.members().await;
    let user_id = user();
    let created = client
        .create_membership(as_system(pb::CreateMembershipRequest {
            display_name: "Quixote Wanderer".into(),
            email: "dq@la-mancha.example".into(),
            ..new_member(&tenant, user_id, "member")
        }))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    let reader = client.clone();
    let found = |query: &'static str| {
        let mut client = reader.clone();
        let tenant_id = tenant.id.clone();
        async move {
            client
                .list_memberships(as_system(pb::ListMembershipsRequest {
                    tenant_id,
                    query: query.into(),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
                .memberships
                .into_iter()
                .map(|m| m.user_id)
                .collect::<Vec<_>>()
        }
    };
    let one = vec![user_id.to_string()];
    assert_eq!(found("XOTE W").await, one);
    assert_eq!(found("la-manc").await, one);
    client
        .update_membership(as_system(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                display_name: "Sancho Panza".into(),
                ..created
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        }))
        .await
        .unwrap();
    assert!(found("xote w").await.is_empty());
    assert_eq!(found("cho pan").await, one);
    assert_eq!(found("la-manc").await, one);
    client
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: user_id.to_string(),
            etag: String::new(),
            validate_only: false,
        }))
        .await
        .unwrap();
    assert!(found("cho pan").await.is_empty());
    assert!(found("la-manc").await.is_empty());
}

/// A role filter lists the role's holders in list order by what they are called now: each
/// binding's copy of its member's sort keys follows a rename in the same transaction, and a
/// binding made after the member, or a member removed, is listed or not at once.
#[tokio::test]
async fn a_role_filter_lists_its_holders_by_their_current_names() {
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let mut client = server.members().await;
    let mut ids = std::collections::HashMap::new();
    for name in ["Alpha", "Bravo", "Charlie", "Delta"] {
        let user_id = user();
        client
            .create_membership(as_system(pb::CreateMembershipRequest {
                display_name: name.into(),
                ..new_member(&tenant, user_id, "member")
            }))
            .await
            .unwrap();
        ids.insert(name, user_id);
    }
    let reader = client.clone();
    let listed = |order_by: &'static str| {
        let mut client = reader.clone();
        let tenant_id = tenant.id.clone();
        async move {
            client
                .list_memberships(as_system(pb::ListMembershipsRequest {
                    tenant_id,
                    role: "member".into(),
                    order_by: order_by.into(),
                    ..Default::default()
                }))
                .await
                .unwrap()
                .into_inner()
                .memberships
                .into_iter()
                .map(|m| m.display_name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("display_name").await,
        ["Alpha", "Bravo", "Charlie", "Delta"]
    );
    let alpha = get_member(&server, &tenant, ids["Alpha"]).await.unwrap();
    client
        .update_membership(as_system(pb::UpdateMembershipRequest {
            membership: Some(pb::Membership {
                display_name: "Zulu".into(),
                ..alpha
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        }))
        .await
        .unwrap();
    assert_eq!(
        listed("display_name").await,
        ["Bravo", "Charlie", "Delta", "Zulu"]
    );
    assert_eq!(
        listed("display_name desc").await,
        ["Zulu", "Delta", "Charlie", "Bravo"]
    );
    assert_eq!(
        listed("create_time").await,
        ["Zulu", "Bravo", "Charlie", "Delta"]
    );
    client
        .delete_membership(as_system(pb::DeleteMembershipRequest {
            tenant_id: tenant.id.clone(),
            user_id: ids["Charlie"].to_string(),
            etag: String::new(),
            validate_only: false,
        }))
        .await
        .unwrap();
    assert_eq!(listed("display_name").await, ["Bravo", "Delta", "Zulu"]);
}
