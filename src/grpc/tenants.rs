//! `membership.v1.TenantService`: tenants, their seats and their verified domains.

use tonic::{Request, Response, Status};

use super::pb::tenant_service_server::TenantService;
use super::pb::*;
use super::{convert, handle};
use crate::domain::DomainError;
use crate::domain::email_domain::{self, TenantDomain};
use crate::domain::events::EventCursor;
use crate::domain::membership::Membership;
use crate::domain::tenant::{SeatUsage, Tenant};
use crate::domain::validate::{MAX_NAME_CHARS, Validator};
use crate::service::Services;
use crate::service::domains::{AddDomain, DomainRef, UpdateDomain};
use crate::service::tenants::{CreateTenant, DissolveTenant, TenantPatch, UpdateTenant};

pub struct TenantApi {
    pub services: Services,
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        request: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        handle(request, |caller, command| {
            self.services.create_tenant(caller, command)
        })
        .await
    }

    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        handle(request, |caller, tenant_id| {
            self.services.get_tenant(caller, tenant_id)
        })
        .await
    }

    async fn update_tenant(
        &self,
        request: Request<UpdateTenantRequest>,
    ) -> Result<Response<UpdateTenantResponse>, Status> {
        handle(request, |caller, u| self.services.update_tenant(caller, u)).await
    }

    async fn dissolve_tenant(
        &self,
        request: Request<DissolveTenantRequest>,
    ) -> Result<Response<DissolveTenantResponse>, Status> {
        handle(request, |caller, d| {
            self.services.dissolve_tenant(caller, d)
        })
        .await
    }

    async fn get_seat_usage(
        &self,
        request: Request<GetSeatUsageRequest>,
    ) -> Result<Response<GetSeatUsageResponse>, Status> {
        handle(request, |caller, tenant_id| {
            self.services.seat_usage(caller, tenant_id)
        })
        .await
    }

    async fn add_domain(
        &self,
        request: Request<AddDomainRequest>,
    ) -> Result<Response<AddDomainResponse>, Status> {
        handle(request, |caller, a| self.services.add_domain(caller, a)).await
    }

    async fn verify_domain(
        &self,
        request: Request<VerifyDomainRequest>,
    ) -> Result<Response<VerifyDomainResponse>, Status> {
        handle(request, |caller, d| self.services.verify_domain(caller, d)).await
    }

    async fn list_domains(
        &self,
        request: Request<ListDomainsRequest>,
    ) -> Result<Response<ListDomainsResponse>, Status> {
        handle(request, |caller, tenant_id| {
            self.services.list_domains(caller, tenant_id)
        })
        .await
    }

    async fn update_domain(
        &self,
        request: Request<UpdateDomainRequest>,
    ) -> Result<Response<UpdateDomainResponse>, Status> {
        handle(request, |caller, u| self.services.update_domain(caller, u)).await
    }

    async fn remove_domain(
        &self,
        request: Request<RemoveDomainRequest>,
    ) -> Result<Response<RemoveDomainResponse>, Status> {
        handle(request, |caller, d| self.services.remove_domain(caller, d)).await
    }
}

// Requests, converted: every bad field is reported at once.

tenant_requests!(GetTenantRequest, GetSeatUsageRequest, ListDomainsRequest);

impl TryFrom<CreateTenantRequest> for CreateTenant {
    type Error = DomainError;

    fn try_from(r: CreateTenantRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let name = v.text("name", &r.name, MAX_NAME_CHARS, true);
        let kind = convert::tenant_kind(&mut v, "kind", r.kind);
        let kind = convert::required(&mut v, "kind", kind, r.kind);
        let preset = convert::role_preset(&mut v, "role_preset", r.role_preset);
        let preset = convert::required(&mut v, "role_preset", preset, r.role_preset);
        let seat_limit = convert::seat_limit(&mut v, "seat_limit", r.seat_limit);
        let owner_user_id = v.uuid("owner_user_id", &r.owner_user_id);
        let owner_email = v.email("owner_email", &r.owner_email);
        let owner_display_name = v.text(
            "owner_display_name",
            &r.owner_display_name,
            MAX_NAME_CHARS,
            false,
        );
        let request_id = v.request_id("request_id", &r.request_id);
        v.finish()?;
        let (Some(kind), Some(role_preset)) = (kind, preset) else {
            return Err(DomainError::Internal("validated enums missing".into()));
        };
        Ok(CreateTenant {
            name,
            kind,
            role_preset,
            seat_limit,
            owner_user_id,
            owner_email,
            owner_display_name,
            request_id,
        })
    }
}

impl TryFrom<UpdateTenantRequest> for UpdateTenant {
    type Error = DomainError;

    fn try_from(r: UpdateTenantRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let Some(t) = r.tenant else {
            return Err(DomainError::invalid("tenant", "is required"));
        };
        let tenant_id = v.uuid("tenant.tenant_id", &t.tenant_id);
        let paths = convert::mask_paths(
            &mut v,
            r.update_mask.as_ref(),
            &["name", "kind", "seat_limit"],
        );
        let mut patch = TenantPatch::default();
        for path in &paths {
            match path.as_str() {
                "name" => patch.name = Some(v.text("tenant.name", &t.name, MAX_NAME_CHARS, true)),
                "kind" => {
                    let kind = convert::tenant_kind(&mut v, "tenant.kind", t.kind);
                    patch.kind = convert::required(&mut v, "tenant.kind", kind, t.kind);
                }
                "seat_limit" => {
                    patch.seat_limit = Some(convert::seat_limit(
                        &mut v,
                        "tenant.seat_limit",
                        t.seat_limit,
                    ))
                }
                _ => {}
            }
        }
        v.finish()?;
        Ok(UpdateTenant {
            tenant_id,
            etag: t.etag,
            patch,
        })
    }
}

impl TryFrom<DissolveTenantRequest> for DissolveTenant {
    type Error = DomainError;

    fn try_from(r: DissolveTenantRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        v.finish()?;
        Ok(DissolveTenant {
            tenant_id,
            etag: r.etag,
            validate_only: r.validate_only,
        })
    }
}

impl TryFrom<AddDomainRequest> for AddDomain {
    type Error = DomainError;

    fn try_from(r: AddDomainRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let tenant_id = v.uuid("tenant_id", &r.tenant_id);
        let domain = match email_domain::normalize(&r.domain) {
            Ok(domain) => domain,
            Err(description) => {
                v.violation("domain", description);
                String::new()
            }
        };
        v.finish()?;
        Ok(AddDomain {
            tenant_id,
            domain,
            auto_join: r.auto_join,
        })
    }
}

/// The domain a request names; `prefix` is where its fields are (`domain.` in an update).
fn domain_ref(v: &mut Validator, prefix: &str, tenant_id: &str, domain_id: &str) -> DomainRef {
    DomainRef {
        tenant_id: v.uuid(&format!("{prefix}tenant_id"), tenant_id),
        domain_id: v.uuid(&format!("{prefix}domain_id"), domain_id),
    }
}

impl TryFrom<VerifyDomainRequest> for DomainRef {
    type Error = DomainError;

    fn try_from(r: VerifyDomainRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let domain = domain_ref(&mut v, "", &r.tenant_id, &r.domain_id);
        v.finish()?;
        Ok(domain)
    }
}

impl TryFrom<RemoveDomainRequest> for DomainRef {
    type Error = DomainError;

    fn try_from(r: RemoveDomainRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let domain = domain_ref(&mut v, "", &r.tenant_id, &r.domain_id);
        v.finish()?;
        Ok(domain)
    }
}

impl TryFrom<UpdateDomainRequest> for UpdateDomain {
    type Error = DomainError;

    fn try_from(r: UpdateDomainRequest) -> Result<Self, DomainError> {
        let mut v = Validator::new();
        let Some(d) = r.domain else {
            return Err(DomainError::invalid("domain", "is required"));
        };
        let DomainRef {
            tenant_id,
            domain_id,
        } = domain_ref(&mut v, "domain.", &d.tenant_id, &d.domain_id);
        let paths = convert::mask_paths(&mut v, r.update_mask.as_ref(), &["auto_join"]);
        v.finish()?;
        let auto_join = paths
            .iter()
            .any(|p| p == "auto_join")
            .then_some(d.auto_join);
        Ok(UpdateDomain {
            tenant_id,
            domain_id,
            etag: d.etag,
            auto_join,
        })
    }
}

// Results, converted.

impl From<(Tenant, Membership, EventCursor)> for CreateTenantResponse {
    fn from((tenant, owner, cursor): (Tenant, Membership, EventCursor)) -> Self {
        CreateTenantResponse {
            tenant: Some(convert::tenant(&tenant)),
            owner: Some(convert::membership(&owner)),
            cursor: cursor.into(),
        }
    }
}

impl From<Tenant> for GetTenantResponse {
    fn from(tenant: Tenant) -> Self {
        GetTenantResponse {
            tenant: Some(convert::tenant(&tenant)),
        }
    }
}

changed_responses!(tenant: Tenant => convert::tenant; UpdateTenantResponse, DissolveTenantResponse);
changed_responses!(domain: TenantDomain => convert::domain;
    AddDomainResponse,
    VerifyDomainResponse,
    UpdateDomainResponse,
);
cursor_responses!(RemoveDomainResponse);

impl From<SeatUsage> for GetSeatUsageResponse {
    fn from(usage: SeatUsage) -> Self {
        GetSeatUsageResponse {
            used: clamp(usage.used),
            limit: usage.limit.map(clamp),
            available: usage.available().map(clamp),
            display: usage.display(),
        }
    }
}

impl From<Vec<TenantDomain>> for ListDomainsResponse {
    fn from(domains: Vec<TenantDomain>) -> Self {
        ListDomainsResponse {
            domains: domains.iter().map(convert::domain).collect(),
        }
    }
}

fn clamp(value: i64) -> i32 {
    value.clamp(0, i32::MAX as i64) as i32
}
