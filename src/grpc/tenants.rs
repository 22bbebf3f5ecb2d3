//! `membership.v1.TenantService`.

use tonic::{Request, Response, Status};

use super::pb::tenant_service_server::TenantService;
use super::pb::*;
use super::{caller, convert, respond};
use crate::domain::DomainError;
use crate::domain::email_domain;
use crate::domain::validate::{MAX_NAME_CHARS, Validator};
use crate::service::Services;
use crate::service::tenants::{CreateTenant, TenantPatch};

pub struct TenantApi {
    pub services: Services,
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        request: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
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
            let (tenant, owner, cursor) = self
                .services
                .create_tenant(
                    caller,
                    CreateTenant {
                        name,
                        kind,
                        role_preset,
                        seat_limit,
                        owner_user_id,
                        owner_email,
                        owner_display_name,
                        request_id,
                    },
                )
                .await?;
            Ok(CreateTenantResponse {
                tenant: Some(convert::tenant(&tenant)),
                owner: Some(convert::membership(&owner)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            v.finish()?;
            let tenant = self.services.get_tenant(caller, tenant_id).await?;
            Ok(GetTenantResponse {
                tenant: Some(convert::tenant(&tenant)),
            })
        }
        .await;
        respond(result)
    }

    async fn update_tenant(
        &self,
        request: Request<UpdateTenantRequest>,
    ) -> Result<Response<UpdateTenantResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
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
                    "name" => {
                        patch.name = Some(v.text("tenant.name", &t.name, MAX_NAME_CHARS, true))
                    }
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
            let (tenant, cursor) = self
                .services
                .update_tenant(caller, tenant_id, t.etag, patch)
                .await?;
            Ok(UpdateTenantResponse {
                tenant: Some(convert::tenant(&tenant)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn dissolve_tenant(
        &self,
        request: Request<DissolveTenantRequest>,
    ) -> Result<Response<DissolveTenantResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            v.finish()?;
            let (tenant, cursor) = self
                .services
                .dissolve_tenant(caller, tenant_id, r.etag, r.validate_only)
                .await?;
            Ok(DissolveTenantResponse {
                tenant: Some(convert::tenant(&tenant)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn get_seat_usage(
        &self,
        request: Request<GetSeatUsageRequest>,
    ) -> Result<Response<GetSeatUsageResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            v.finish()?;
            let usage = self.services.seat_usage(caller, tenant_id).await?;
            Ok(GetSeatUsageResponse {
                used: clamp(usage.used),
                limit: usage.limit.map(clamp),
                available: usage.available().map(clamp),
                display: usage.display(),
            })
        }
        .await;
        respond(result)
    }

    async fn add_domain(
        &self,
        request: Request<AddDomainRequest>,
    ) -> Result<Response<AddDomainResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
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
            let (domain, cursor) = self
                .services
                .add_domain(caller, tenant_id, domain, r.auto_join)
                .await?;
            Ok(AddDomainResponse {
                domain: Some(convert::domain(&domain)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn verify_domain(
        &self,
        request: Request<VerifyDomainRequest>,
    ) -> Result<Response<VerifyDomainResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let domain_id = v.uuid("domain_id", &r.domain_id);
            v.finish()?;
            let (domain, cursor) = self
                .services
                .verify_domain(caller, tenant_id, domain_id)
                .await?;
            Ok(VerifyDomainResponse {
                domain: Some(convert::domain(&domain)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn list_domains(
        &self,
        request: Request<ListDomainsRequest>,
    ) -> Result<Response<ListDomainsResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            v.finish()?;
            let domains = self.services.list_domains(caller, tenant_id).await?;
            Ok(ListDomainsResponse {
                domains: domains.iter().map(convert::domain).collect(),
            })
        }
        .await;
        respond(result)
    }

    async fn update_domain(
        &self,
        request: Request<UpdateDomainRequest>,
    ) -> Result<Response<UpdateDomainResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let Some(d) = r.domain else {
                return Err(DomainError::invalid("domain", "is required"));
            };
            let tenant_id = v.uuid("domain.tenant_id", &d.tenant_id);
            let domain_id = v.uuid("domain.domain_id", &d.domain_id);
            let paths = convert::mask_paths(&mut v, r.update_mask.as_ref(), &["auto_join"]);
            v.finish()?;
            let auto_join = paths
                .iter()
                .any(|p| p == "auto_join")
                .then_some(d.auto_join);
            let (domain, cursor) = self
                .services
                .update_domain(caller, tenant_id, domain_id, d.etag, auto_join)
                .await?;
            Ok(UpdateDomainResponse {
                domain: Some(convert::domain(&domain)),
                cursor,
            })
        }
        .await;
        respond(result)
    }

    async fn remove_domain(
        &self,
        request: Request<RemoveDomainRequest>,
    ) -> Result<Response<RemoveDomainResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = async {
            let mut v = Validator::new();
            let tenant_id = v.uuid("tenant_id", &r.tenant_id);
            let domain_id = v.uuid("domain_id", &r.domain_id);
            v.finish()?;
            let cursor = self
                .services
                .remove_domain(caller, tenant_id, domain_id)
                .await?;
            Ok(RemoveDomainResponse { cursor })
        }
        .await;
        respond(result)
    }
}

fn clamp(value: i64) -> i32 {
    value.clamp(0, i32::MAX as i64) as i32
}
