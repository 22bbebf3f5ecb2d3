//! Seat counters (DESIGN rule 4): the tenant row's counters, moved in the transaction of every
//! change that takes or frees a seat, always equal a full recount of the tenant's members and
//! pending, unexpired invitations — under concurrent invites, accepts, revokes, expiries,
//! resends, removals, leaves, suspensions, auto-joins and limit changes. The count of pending
//! invitations, expired or not, is checked the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::*;
use membership_service::app::ServeOptions;
use membership_service::dns::DnsOptions;
use membership_service::grpc::pb;
use membership_service::grpc::pb::invitation_service_client::InvitationServiceClient;
use prost_types::FieldMask;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Status};
use uuid::Uuid;

/// What the workers know of one tenant: invitations they may act on, members they may act on.
#[derive(Default)]
struct Known {
    invitations: Vec<(String, String, String)>,
    members: Vec<Uuid>,
}

struct Workload {
    server: Arc<TestServer>,
    tenant: Tenant,
    domain: String,
    known: Mutex<Known>,
}

/// Refusals a racing workload meets; anything else (INTERNAL above all) is a defect.
fn tolerate<T>(op: &str, result: Result<T, Status>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(status)
            if matches!(
                status.code(),
                Code::ResourceExhausted
                    | Code::NotFound
                    | Code::FailedPrecondition
                    | Code::AlreadyExists
                    | Code::Aborted
                    | Code::PermissionDenied
            ) =>
        {
            None
        }
        Err(status) => panic!("{op}: {status:?}"),
    }
}

impl Workload {
    fn pick_invitation(&self, rng: &mut StdRng) -> Option<(String, String, String)> {
        let known = self.known.lock().unwrap();
        (!known.invitations.is_empty())
            .then(|| known.invitations[rng.gen_range(0..known.invitations.len())].clone())
    }

    fn pick_member(&self, rng: &mut StdRng) -> Option<Uuid> {
        let known = self.known.lock().unwrap();
        (!known.members.is_empty()).then(|| known.members[rng.gen_range(0..known.members.len())])
    }

    fn remember_invitation(&self, invitation: Option<pb::Invitation>, token: String) {
        if let Some(i) = invitation {
            let mut known = self.known.lock().unwrap();
            known
                .invitations
                .retain(|(id, _, _)| *id != i.invitation_id);
            known.invitations.push((i.invitation_id, token, i.email));
        }
    }

    async fn step(&self, rng: &mut StdRng) {
        let channel = self.server.channel().await;
        let mut invitations = InvitationServiceClient::new(channel.clone());
        let mut members = self.server.members().await;
        let mut tenants = self.server.tenants().await;
        let tenant = &self.tenant;
        let owner = tenant.owner;
        match rng.gen_range(0..12) {
            0 => {
                let email = format!("{}@invited.example", user().simple());
                let request = pb::CreateInvitationRequest {
                    tenant_id: tenant.id.clone(),
                    email,
                    role: "member".into(),
                    ..Default::default()
                };
                let answer = invitations.create_invitation(as_user(request, owner)).await;
                if let Some(r) = tolerate("invite", answer) {
                    let r = r.into_inner();
                    self.remember_invitation(r.invitation, r.token);
                }
            }
            1 => {
                let request = pb::BulkCreateInvitationsRequest {
                    tenant_id: tenant.id.clone(),
                    emails: (0..3)
                        .map(|_| format!("{}@bulk.example", user().simple()))
                        .collect(),
                    role: "member".into(),
                    ttl: None,
                };
                let answer = invitations
                    .bulk_create_invitations(as_user(request, owner))
                    .await;
                if let Some(r) = tolerate("bulk invite", answer) {
                    for result in r.into_inner().results {
                        self.remember_invitation(result.invitation, result.token);
                    }
                }
            }
            2 => {
                let Some((_, token, email)) = self.pick_invitation(rng) else {
                    return;
                };
                let joiner = user();
                let request = pb::AcceptInvitationRequest {
                    token,
                    user_id: joiner.to_string(),
                    email,
                    display_name: "Ann Accepter".into(),
                };
                let answer = invitations
                    .accept_invitation(as_user(request, joiner))
                    .await;
                if tolerate("accept", answer).is_some() {
                    self.known.lock().unwrap().members.push(joiner);
                }
            }
            3 => {
                let Some((id, _, _)) = self.pick_invitation(rng) else {
                    return;
                };
                let request = pb::RevokeInvitationRequest {
                    tenant_id: tenant.id.clone(),
                    invitation_id: id,
                };
                tolerate(
                    "revoke",
                    invitations.revoke_invitation(as_user(request, owner)).await,
                );
            }
            4 => {
                if let Some((id, _, _)) = self.pick_invitation(rng) {
                    let id = self.server.uuid_literal(&id);
                    self.server.expire_invitations(&format!("id = {id}")).await;
                }
            }
            5 => {
                let Some((id, _, _)) = self.pick_invitation(rng) else {
                    return;
                };
                let request = pb::ResendInvitationRequest {
                    tenant_id: tenant.id.clone(),
                    invitation_id: id,
                    ttl: None,
                };
                let answer = invitations.resend_invitation(as_user(request, owner)).await;
                if let Some(r) = tolerate("resend", answer) {
                    let r = r.into_inner();
                    self.remember_invitation(r.invitation, r.token);
                }
            }
            6 => {
                let member = user();
                let answer = members
                    .create_membership(as_user(new_member(tenant, member, "member"), owner))
                    .await;
                if tolerate("create", answer).is_some() {
                    self.known.lock().unwrap().members.push(member);
                }
            }
            7 => {
                let Some(member) = self.pick_member(rng) else {
                    return;
                };
                let request = pb::DeleteMembershipRequest {
                    tenant_id: tenant.id.clone(),
                    user_id: member.to_string(),
                    ..Default::default()
                };
                tolerate(
                    "remove",
                    members.delete_membership(as_user(request, owner)).await,
                );
            }
            8 => {
                let Some(member) = self.pick_member(rng) else {
                    return;
                };
                let request = pb::LeaveTenantRequest {
                    tenant_id: tenant.id.clone(),
                };
                tolerate(
                    "leave",
                    members.leave_tenant(as_user(request, member)).await,
                );
            }
            9 => {
                let Some(member) = self.pick_member(rng) else {
                    return;
                };
                // Suspend, and now and then reactivate at once: both keep the seat.
                let request = pb::SuspendMembershipRequest {
                    tenant_id: tenant.id.clone(),
                    user_id: member.to_string(),
                    etag: String::new(),
                };
                let suspended = tolerate(
                    "suspend",
                    members.suspend_membership(as_user(request, owner)).await,
                );
                if suspended.is_some() && rng.gen_bool(0.5) {
                    let request = pb::ReactivateMembershipRequest {
                        tenant_id: tenant.id.clone(),
                        user_id: member.to_string(),
                        etag: String::new(),
                    };
                    tolerate(
                        "reactivate",
                        members.reactivate_membership(as_user(request, owner)).await,
                    );
                }
            }
            10 => {
                let joiner = user();
                let request = pb::AutoJoinRequest {
                    user_id: joiner.to_string(),
                    email: format!("{}@{}", joiner.simple(), self.domain),
                    display_name: "Sam Signup".into(),
                };
                let answer = members.auto_join(as_user(request, joiner)).await;
                if tolerate("auto-join", answer).is_some() {
                    self.known.lock().unwrap().members.push(joiner);
                }
            }
            _ => {
                let limit = rng.gen_range(8..30);
                let request = pb::UpdateTenantRequest {
                    tenant: Some(pb::Tenant {
                        tenant_id: tenant.id.clone(),
                        seat_limit: Some(limit),
                        ..Default::default()
                    }),
                    update_mask: Some(FieldMask {
                        paths: vec!["seat_limit".into()],
                    }),
                };
                tolerate(
                    "limit change",
                    tenants.update_tenant(as_user(request, owner)).await,
                );
            }
        }
    }

    /// The service's seat usage, and the same counted row by row: ACTIVE, SUSPENDED and
    /// INVITED entries of the member list, and the same again straight from the tables.
    async fn usage_and_recounts(&self) -> (i32, i64, i64) {
        let used = self
            .server
            .tenants()
            .await
            .get_seat_usage(as_user(
                pb::GetSeatUsageRequest {
                    tenant_id: self.tenant.id.clone(),
                },
                self.tenant.owner,
            ))
            .await
            .expect("seat usage")
            .into_inner()
            .used;
        let mut listed = 0;
        let mut page_token = String::new();
        loop {
            let page = self
                .server
                .members()
                .await
                .list_memberships(as_user(
                    pb::ListMembershipsRequest {
                        tenant_id: self.tenant.id.clone(),
                        page_size: 1000,
                        page_token,
                        ..Default::default()
                    },
                    self.tenant.owner,
                ))
                .await
                .expect("listing")
                .into_inner();
            listed += page
                .memberships
                .iter()
                .filter(|m| {
                    [
                        pb::MembershipStatus::Active,
                        pb::MembershipStatus::Suspended,
                        pb::MembershipStatus::Invited,
                    ]
                    .contains(&m.status())
                })
                .count() as i64;
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let now = chrono::Utc::now().timestamp_micros();
        let id = self.server.uuid_literal(&self.tenant.id);
        let counted = self
            .server
            .scalar(&format!(
                "SELECT (SELECT COUNT(*) FROM memberships WHERE tenant_id = {id} \
                 AND status IN ('active', 'suspended')) + (SELECT COUNT(*) FROM invitations \
                 WHERE tenant_id = {id} AND state = 'pending' AND expires_at > {now}) AS n"
            ))
            .await;
        (used, listed, counted)
    }

    /// The tenant's count of pending invitations (expired or not) and the rows it counts.
    async fn pending_counter_and_rows(&self) -> (i64, i64) {
        let id = self.server.uuid_literal(&self.tenant.id);
        let counter = self
            .server
            .scalar(&format!(
                "SELECT pending_invitations AS n FROM tenants WHERE id = {id}"
            ))
            .await;
        let rows = self
            .server
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM invitations WHERE tenant_id = {id} \
                 AND state = 'pending'"
            ))
            .await;
        (counter, rows)
    }
}

async fn verified_auto_join_domain(
    server: &TestServer,
    dns: &DnsServer,
    tenant: &Tenant,
) -> String {
    let name = format!("t{}.example", user().simple());
    let domain = server
        .tenants()
        .await
        .add_domain(as_user(
            pb::AddDomainRequest {
                tenant_id: tenant.id.clone(),
                domain: name.clone(),
                auto_join: true,
            },
            tenant.owner,
        ))
        .await
        .expect("adding the domain")
        .into_inner()
        .domain
        .unwrap();
    dns.set_txt(
        &domain.verification_record_name,
        &[domain.verification_record_value.as_str()],
    );
    server
        .tenants()
        .await
        .verify_domain(as_user(
            pb::VerifyDomainRequest {
                tenant_id: tenant.id.clone(),
                domain_id: domain.domain_id,
            },
            tenant.owner,
        ))
        .await
        .expect("verifying the domain");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seat_counters_equal_a_full_recount_under_concurrent_changes() {
    let dns = DnsServer::start().await;
    let server = Arc::new(
        TestServer::start_with(
            TestDatabase::create().await,
            ServeOptions {
                dns: DnsOptions {
                    nameserver: Some(dns.addr),
                    timeout: Duration::from_secs(2),
                },
                ..test_options()
            },
        )
        .await,
    );
    let seed: u64 = rand::random();
    println!("seed {seed}");
    // A seat-limited tenant, whose writes check and move the counters under its lock, and an
    // unlimited one, whose writes only move them.
    let mut workloads = Vec::new();
    for seat_limit in [Some(16), None] {
        let tenant = organization(&server, seat_limit).await;
        let domain = verified_auto_join_domain(&server, &dns, &tenant).await;
        workloads.push(Arc::new(Workload {
            server: server.clone(),
            tenant,
            domain,
            known: Mutex::new(Known::default()),
        }));
    }
    for round in 0..3 {
        let mut workers = tokio::task::JoinSet::new();
        for (w, workload) in workloads.iter().enumerate() {
            for worker in 0..6u64 {
                let workload = workload.clone();
                let mut rng =
                    StdRng::seed_from_u64(seed ^ (round * 1000 + w as u64 * 100 + worker));
                workers.spawn(async move {
                    for _ in 0..25 {
                        workload.step(&mut rng).await;
                    }
                });
            }
        }
        while let Some(worker) = workers.join_next().await {
            worker.expect("a worker panicked");
        }
        for workload in &workloads {
            let (used, listed, counted) = workload.usage_and_recounts().await;
            assert_eq!(
                i64::from(used),
                counted,
                "round {round}: the counters drifted from the tables (seed {seed})"
            );
            assert_eq!(
                listed, counted,
                "round {round}: the member list disagrees with the tables (seed {seed})"
            );
            let (counter, rows) = workload.pending_counter_and_rows().await;
            assert_eq!(
                counter, rows,
                "round {round}: the pending-invitations counter drifted (seed {seed})"
            );
        }
    }
    // The workload did what it claims: seats were taken and freed in every way it tries.
    for kind in [
        "membership.created",
        "membership.deleted",
        "membership.left",
        "membership.suspended",
        "membership.reactivated",
        "invitation.created",
        "invitation.revoked",
        "invitation.resent",
        "tenant.updated",
    ] {
        let happened = server
            .scalar(&format!(
                "SELECT COUNT(*) AS n FROM events WHERE event_type = '{kind}'"
            ))
            .await;
        assert!(happened > 0, "no {kind} in the workload (seed {seed})");
    }
}
