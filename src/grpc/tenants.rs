//! `membership.v1.TenantService`: tenants, their seats and their verified domains.

use super::convert;
use super::pb::tenant_service_server::TenantService;
use super::pb::*;
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

api_service! {
    impl TenantService for TenantApi {
        create_tenant(CreateTenantRequest) -> CreateTenantResponse;
        get_tenant(GetTenantRequest) -> GetTenantResponse;
        update_tenant(UpdateTenantRequest) -> UpdateTenantResponse;
        dissolve_tenant(DissolveTenantRequest) -> DissolveTenantResponse;
        get_seat_usage(GetSeatUsageRequest) -> GetSeatUsageResponse => seat_usage;
        add_domain(AddDomainRequest) -> AddDomainResponse;
        verify_domain(VerifyDomainRequest) -> VerifyDomainResponse;
        list_domains(ListDomainsRequest) -> ListDomainsResponse;
        update_domain(UpdateDomainRequest) -> UpdateDomainResponse;
        remove_domain(RemoveDomainRequest) -> RemoveDomainResponse;
    }
}

// Requests, converted: every bad field is reported at once.

tenant_requests!(GetTenantRequest, GetSeatUsageRequest, ListDomainsRequest);

impl TryFrom<CreateTenantRequest> for CreateTenant {
    type Error = DomainError;

    fn try_from(r: CreateTenantRequest) -> Result<Self, DomainError> {
        Validator::check(|v| CreateTenant {
            name: v.text("name", &r.name, MAX_NAME_CHARS, true),
            kind: convert::required_enum(v, "kind", r.kind),
            role_preset: convert::required_enum(v, "role_preset", r.role_preset),
            seat_limit: convert::seat_limit(v, "seat_limit", r.seat_limit),
            owner_user_id: v.uuid("owner_user_id", &r.owner_user_id),
            owner_email: v.email("owner_email", &r.owner_email),
            owner_display_name: v.text(
                "owner_display_name",
                &r.owner_display_name,
                MAX_NAME_CHARS,
                false,
            ),
            request_id: v.request_id("request_id", &r.request_id),
        })
    }
}

impl TryFrom<UpdateTenantRequest> for UpdateTenant {
    type Error = DomainError;

    fn try_from(r: UpdateTenantRequest) -> Result<Self, DomainError> {
        let Some(t) = r.tenant else {
            return Err(DomainError::invalid("tenant", "is required"));
        };
        Validator::check(|v| {
            let tenant_id = v.uuid("tenant.tenant_id", &t.tenant_id);
            let mut patch = TenantPatch::default();
            let allowed = ["name", "kind", "seat_limit"];
            for path in convert::mask_paths(v, r.update_mask.as_ref(), &allowed) {
                match path.as_str() {
                    "name" => {
                        patch.name = Some(v.text("tenant.name", &t.name, MAX_NAME_CHARS, true))
                    }
                    "kind" => patch.kind = Some(convert::required_enum(v, "tenant.kind", t.kind)),
                    "seat_limit" => {
                        patch.seat_limit =
                            Some(convert::seat_limit(v, "tenant.seat_limit", t.seat_limit))
                    }
                    _ => {}
                }
            }
            UpdateTenant {
                tenant_id,
                etag: t.etag,
                patch,
            }
        })
    }
}

impl TryFrom<DissolveTenantRequest> for DissolveTenant {
    type Error = DomainError;

    fn try_from(r: DissolveTenantRequest) -> Result<Self, DomainError> {
        Validator::check(|v| DissolveTenant {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            etag: r.etag,
            validate_only: r.validate_only,
        })
    }
}

impl TryFrom<AddDomainRequest> for AddDomain {
    type Error = DomainError;

    fn try_from(r: AddDomainRequest) -> Result<Self, DomainError> {
        Validator::check(|v| AddDomain {
            tenant_id: v.uuid("tenant_id", &r.tenant_id),
            domain: email_domain::normalize(&r.domain).unwrap_or_else(|description| {
                v.violation("domain", description);
                String::new()
            }),
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
        Validator::check(|v| domain_ref(v, "", &r.tenant_id, &r.domain_id))
    }
}

impl TryFrom<RemoveDomainRequest> for DomainRef {
    type Error = DomainError;

    fn try_from(r: RemoveDomainRequest) -> Result<Self, DomainError> {
        Validator::check(|v| domain_ref(v, "", &r.tenant_id, &r.domain_id))
    }
}

impl TryFrom<UpdateDomainRequest> for UpdateDomain {
    type Error = DomainError;

    fn try_from(r: UpdateDomainRequest) -> Result<Self, DomainError> {
        let Some(d) = r.domain else {
            return Err(DomainError::invalid("domain", "is required"));
        };
        Validator::check(|v| {
            let DomainRef {
                tenant_id,
                domain_id,
            } = domain_ref(v, "domain.", &d.tenant_id, &d.domain_id);
            let paths = convert::mask_paths(v, r.update_mask.as_ref(), &["auto_join"]);
            UpdateDomain {
                tenant_id,
                domain_id,
                etag: d.etag,
                auto_join: paths
                    .iter()
                    .any(|p| p == "auto_join")
                    .then_some(d.auto_join),
            }
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
