//! Caller authentication: each mode accepts valid credentials and refuses missing, wrong,
//! expired or misdirected ones with UNAUTHENTICATED; a valid principal asking for what it may
//! not do (acting for another user, acting without a user) gets PERMISSION_DENIED.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use membership_service::app::ServeOptions;
use membership_service::auth::{ApiKey, Authenticator, JwtOptions, JwtVerifier, hash_key};
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request};
use uuid::Uuid;

const ISSUER: &str = "https://login.example";
const AUDIENCE: &str = "membership";
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";
const SYSTEM_KEY: &str = "system-key-0123456789";
const DELEGATE_KEY: &str = "delegate-key-0123456789";

async fn start(authenticator: Authenticator) -> TestServer {
    TestServer::start_with(
        TestDatabase::create().await,
        ServeOptions {
            authenticator: Arc::new(authenticator),
            ..test_options()
        },
    )
    .await
}

fn api_keys() -> Authenticator {
    Authenticator::api_keys(vec![
        format!("provisioning:system:{}", hash_key(SYSTEM_KEY))
            .parse::<ApiKey>()
            .unwrap(),
        format!("web-backend:delegate:{}", hash_key(DELEGATE_KEY))
            .parse::<ApiKey>()
            .unwrap(),
    ])
    .unwrap()
}

fn jwt(rs256_public_key_pem: Option<Vec<u8>>) -> Authenticator {
    Authenticator::Jwt(Box::new(
        JwtVerifier::new(JwtOptions {
            issuer: ISSUER.to_string(),
            audience: AUDIENCE.to_string(),
            hs256_secret: Some(SECRET.as_bytes().to_vec()),
            rs256_public_key_pem,
            system_scope: "membership.system".to_string(),
            leeway: Duration::from_secs(5),
        })
        .unwrap(),
    ))
}

/// A request with `authorization: Bearer <credential>` and, optionally, `x-actor-id`.
fn with<T>(message: T, credential: Option<&str>, actor: Option<Uuid>) -> Request<T> {
    let mut request = req(message, actor);
    if let Some(credential) = credential {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
    }
    request
}

fn list(tenant_id: &str) -> pb::ListMembershipsRequest {
    pb::ListMembershipsRequest {
        tenant_id: tenant_id.to_string(),
        ..Default::default()
    }
}

async fn clients(
    server: &TestServer,
) -> (
    TenantServiceClient<Channel>,
    MembershipServiceClient<Channel>,
) {
    (server.tenants().await, server.members().await)
}

/// Creates a tenant owned by a new user, with `credential` as a system caller.
async fn tenant_as(server: &TestServer, credential: &str) -> (String, Uuid) {
    let owner = user();
    let tenant = server
        .tenants()
        .await
        .create_tenant(with(new_tenant(owner), Some(credential), None))
        .await
        .expect("a system caller creates a tenant")
        .into_inner()
        .tenant
        .unwrap();
    (tenant.tenant_id, owner)
}

#[tokio::test]
async fn api_keys_name_system_and_delegate_principals() {
    let server = start(api_keys()).await;
    let (mut tenants, mut members) = clients(&server).await;

    // A system key acts as the system, or for any user it names.
    let (tenant_id, owner) = tenant_as(&server, SYSTEM_KEY).await;
    members
        .list_memberships(with(list(&tenant_id), Some(SYSTEM_KEY), Some(owner)))
        .await
        .expect("a system key acting for the owner");

    // A delegate key acts only for the user it names, with that user's rights.
    let listed = members
        .list_memberships(with(list(&tenant_id), Some(DELEGATE_KEY), Some(owner)))
        .await
        .expect("a delegate key acting for the owner")
        .into_inner();
    assert_eq!(listed.memberships.len(), 1);
    let stranger = user();
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), Some(DELEGATE_KEY), Some(stranger)))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    let status = assert_refused(
        tenants
            .create_tenant(with(new_tenant(user()), Some(DELEGATE_KEY), None))
            .await,
        Code::PermissionDenied,
        "DELEGATE_ACTOR_REQUIRED",
    );
    assert!(status.message().contains("web-backend"), "{status:?}");

    // The key may also come in x-api-key.
    let mut request = req(list(&tenant_id), Some(owner));
    request
        .metadata_mut()
        .insert("x-api-key", DELEGATE_KEY.parse().unwrap());
    members
        .list_memberships(request)
        .await
        .expect("a key in x-api-key");
}

#[tokio::test]
async fn api_keys_refuse_missing_wrong_and_malformed_credentials() {
    let server = start(api_keys()).await;
    let (mut tenants, mut members) = clients(&server).await;
    let (tenant_id, owner) = tenant_as(&server, SYSTEM_KEY).await;
    let events_before = server.event_count().await;

    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), None, None))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    // Naming a user is no credential.
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), None, Some(owner)))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), Some("not-a-key"), Some(owner)))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    // Keys are compared exactly, not case-insensitively or by prefix.
    assert_refused(
        tenants
            .create_tenant(with(
                new_tenant(user()),
                Some(&SYSTEM_KEY.to_uppercase()),
                None,
            ))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    assert_refused(
        tenants
            .create_tenant(with(new_tenant(user()), Some(&SYSTEM_KEY[..10]), None))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    let mut basic = req(new_tenant(user()), None);
    basic.metadata_mut().insert(
        "authorization",
        format!("Basic {SYSTEM_KEY}").parse().unwrap(),
    );
    assert_refused(
        tenants.create_tenant(basic).await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    // Nothing refused was written.
    assert_eq!(server.event_count().await, events_before);

    // Health needs no credentials (load balancers and the container's check have none), nor
    // does reflection, which describes only the public API.
    let channel = server.channel().await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without credentials")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection without credentials")
        .into_inner();
    let answer = answers
        .message()
        .await
        .unwrap()
        .expect("a reflection answer");
    assert!(format!("{answer:?}").contains("membership.v1.TenantService"));
}

struct Tokens {
    rs256_private_pem: String,
}

impl Tokens {
    fn claims(sub: &str, expires_in: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": chrono::Utc::now().timestamp(),
            "exp": chrono::Utc::now().timestamp() + expires_in,
        })
    }

    fn hs256(claims: &serde_json::Value) -> String {
        Self::hs256_with(claims, SECRET)
    }

    fn hs256_with(claims: &serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn rs256(&self, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_pem(self.rs256_private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

/// An RSA key pair made now: the private key's PEM and the public key's.
fn rsa_key_pair() -> (String, String) {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let public = rsa::RsaPublicKey::from(&private);
    (
        private
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string(),
        public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
    )
}

#[tokio::test]
async fn jwt_subjects_act_as_themselves_and_system_tokens_as_the_system() {
    let (private_pem, public_pem) = rsa_key_pair();
    let tokens = Tokens {
        rs256_private_pem: private_pem,
    };
    let server = start(jwt(Some(public_pem.into_bytes()))).await;
    let (mut tenants, mut members) = clients(&server).await;

    // A token with the system scope is a trusted system caller (its sub names a service).
    let mut system = Tokens::claims("provisioning-service", 300);
    system["scope"] = "openid membership.system".into();
    let (tenant_id, owner) = tenant_as(&server, &Tokens::hs256(&system)).await;

    // A user's token acts as that user, signed either way.
    for token in [
        Tokens::hs256(&Tokens::claims(&owner.to_string(), 300)),
        tokens.rs256(&Tokens::claims(&owner.to_string(), 300)),
    ] {
        let listed = members
            .list_memberships(with(list(&tenant_id), Some(&token), None))
            .await
            .expect("the owner's token")
            .into_inner();
        assert_eq!(listed.memberships.len(), 1);
        // Naming oneself in x-actor-id is allowed.
        members
            .list_memberships(with(list(&tenant_id), Some(&token), Some(owner)))
            .await
            .expect("the owner naming themselves");
    }

    // A valid user without the right gets PERMISSION_DENIED, not UNAUTHENTICATED.
    let stranger = user();
    let stranger_token = Tokens::hs256(&Tokens::claims(&stranger.to_string(), 300));
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), Some(&stranger_token), None))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    // A user cannot act as someone else by naming them.
    let status = assert_refused(
        members
            .list_memberships(with(list(&tenant_id), Some(&stranger_token), Some(owner)))
            .await,
        Code::PermissionDenied,
        "ACTOR_NOT_ALLOWED",
    );
    assert!(
        status.message().contains(&stranger.to_string()),
        "{status:?}"
    );
    // A user may create a tenant for themselves, not for someone else.
    tenants
        .create_tenant(with(new_tenant(stranger), Some(&stranger_token), None))
        .await
        .expect("a user creating their own tenant");
    assert_refused(
        tenants
            .create_tenant(with(new_tenant(user()), Some(&stranger_token), None))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // The system token may act for a user, who then has only that user's rights.
    let system_token = Tokens::hs256(&system);
    members
        .list_memberships(with(list(&tenant_id), Some(&system_token), Some(owner)))
        .await
        .expect("a system token acting for the owner");
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), Some(&system_token), Some(stranger)))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
}

#[tokio::test]
async fn jwt_refuses_expired_misdirected_forged_and_missing_tokens() {
    let (private_pem, _) = rsa_key_pair();
    let other_issuer_key = Tokens {
        rs256_private_pem: private_pem,
    };
    let (_, public_pem) = rsa_key_pair();
    let server = start(jwt(Some(public_pem.into_bytes()))).await;
    let (_, mut members) = clients(&server).await;
    let mut system = Tokens::claims("provisioning-service", 300);
    system["scp"] = serde_json::json!(["membership.system"]);
    let (tenant_id, owner) = tenant_as(&server, &Tokens::hs256(&system)).await;
    let sub = owner.to_string();

    let refused = |claims: serde_json::Value| {
        let token = Tokens::hs256(&claims);
        let mut members = members.clone();
        let tenant_id = tenant_id.clone();
        async move {
            members
                .list_memberships(with(list(&tenant_id), Some(&token), None))
                .await
        }
    };
    // Expired beyond the leeway.
    assert_refused(
        refused(Tokens::claims(&sub, -60)).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    let mut claims = Tokens::claims(&sub, 300);
    claims["aud"] = "billing".into();
    assert_refused(
        refused(claims).await,
        Code::Unauthenticated,
        "TOKEN_WRONG_AUDIENCE",
    );
    let mut claims = Tokens::claims(&sub, 300);
    claims["iss"] = "https://elsewhere.example".into();
    assert_refused(
        refused(claims).await,
        Code::Unauthenticated,
        "TOKEN_WRONG_ISSUER",
    );
    let mut claims = Tokens::claims(&sub, 300);
    claims["nbf"] = (chrono::Utc::now().timestamp() + 600).into();
    assert_refused(
        refused(claims).await,
        Code::Unauthenticated,
        "TOKEN_NOT_YET_VALID",
    );
    let mut claims = Tokens::claims(&sub, 300);
    claims.as_object_mut().unwrap().remove("exp");
    assert_refused(
        refused(claims).await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    // A subject that is not a user, without the system scope.
    assert_refused(
        refused(Tokens::claims("provisioning-service", 300)).await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );

    // Signed with another secret, or with a key that is not the configured one.
    let forged = Tokens::hs256_with(
        &Tokens::claims(&sub, 300),
        "another-secret-of-at-least-32-bytes!!",
    );
    let foreign = other_issuer_key.rs256(&Tokens::claims(&sub, 300));
    for token in [forged, foreign, "not.a.jwt".to_string()] {
        assert_refused(
            members
                .list_memberships(with(list(&tenant_id), Some(&token), None))
                .await,
            Code::Unauthenticated,
            "CREDENTIALS_INVALID",
        );
    }
    // An unsigned token ("alg": "none") is never accepted.
    let unsigned = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(Tokens::claims(&sub, 300).to_string())
        )
    };
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), Some(&unsigned), None))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    assert_refused(
        members
            .list_memberships(with(list(&tenant_id), None, Some(owner)))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_MISSING",
    );
}

/// What the binary makes of its authentication settings.
#[tokio::test]
async fn the_binary_reads_auth_settings_and_refuses_unsafe_ones() {
    let database = TestDatabase::create().await;
    let run = |args: Vec<String>| {
        let url = database.url.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
                .args(["--database-url", &url, "--metrics-listen", "off"])
                .args(args)
                .output()
                .await
                .expect("running the binary")
        }
    };
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    // Mode none serves only on loopback unless told otherwise.
    let output = run(strings(&["--listen", "0.0.0.0:0"])).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--allow-unauthenticated-remote"),
        "{stderr}"
    );
    // Modes that need settings say which.
    let output = run(strings(&["--auth", "api-key"])).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--api-key"));
    let output = run(strings(&["--auth", "jwt", "--jwt-issuer", ISSUER])).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--jwt-audience"));
    let output = run(strings(&[
        "--auth",
        "api-key",
        "--api-key",
        "billing:root:00",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("system or delegate"));

    // new-api-key prints a key and the entry that accepts it.
    let output = run(strings(&[
        "new-api-key",
        "--name",
        "billing",
        "--grant",
        "system",
    ]))
    .await;
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let key = stdout
        .lines()
        .find_map(|l| l.split("it is not stored): ").nth(1))
        .expect("a key")
        .to_string();
    let entry = stdout
        .lines()
        .find_map(|l| l.split("MEMBERSHIP_API_KEYS): ").nth(1))
        .expect("an entry")
        .to_string();
    assert_eq!(entry, format!("billing:system:{}", hash_key(&key)));

    // The binary with that entry (from the environment) accepts the key and refuses others.
    let server = ServerProcess::spawn_with_env(
        &database.url,
        &["--auth", "api-key"],
        &[("MEMBERSHIP_API_KEYS", &entry)],
    )
    .await;
    let mut tenants = TenantServiceClient::new(server.channel().await);
    tenants
        .create_tenant(with(new_tenant(user()), Some(&key), None))
        .await
        .expect("the new key is accepted");
    assert_refused(
        tenants
            .create_tenant(with(new_tenant(user()), Some("wrong"), None))
            .await,
        Code::Unauthenticated,
        "CREDENTIALS_INVALID",
    );
    assert!(server.terminate().await.success());

    // And with --allow-unauthenticated-remote, mode none serves on every interface, warning.
    let server = ServerProcess::spawn(
        &database.url,
        &["--listen", "0.0.0.0:0", "--allow-unauthenticated-remote"],
    )
    .await;
    let warned = server
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains("WARN") && line.contains("authentication is off"));
    assert!(warned, "no warning about --auth none");
    assert!(server.terminate().await.success());
}

/// A watch is authorized when it opens; it must not outlive the token it was opened with.
#[tokio::test]
async fn a_watch_ends_when_its_token_expires() {
    let server = start(Authenticator::Jwt(Box::new(
        JwtVerifier::new(JwtOptions {
            issuer: ISSUER.to_string(),
            audience: AUDIENCE.to_string(),
            hs256_secret: Some(SECRET.as_bytes().to_vec()),
            rs256_public_key_pem: None,
            system_scope: "membership.system".to_string(),
            leeway: Duration::ZERO,
        })
        .unwrap(),
    )))
    .await;
    let mut members = server.members().await;
    let token = |expires_in: i64| {
        let mut claims = Tokens::claims("event-consumer", expires_in);
        claims["scope"] = "membership.system".into();
        Tokens::hs256(&claims)
    };
    let watch = |token: String| {
        let mut members = members.clone();
        async move {
            members
                .watch_membership_events(with(
                    pb::WatchMembershipEventsRequest::default(),
                    Some(&token),
                    None,
                ))
                .await
                .expect("a watch with a valid token")
                .into_inner()
        }
    };
    let opened = std::time::Instant::now();
    let mut short = watch(token(2)).await;
    let mut long = watch(token(300)).await;

    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match short.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the watch ended when its token expired");
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "{:?}",
        opened.elapsed()
    );
    assert_refused::<()>(Err(ended), Code::Unauthenticated, "TOKEN_EXPIRED");

    // The other watch goes on; its next message still arrives.
    tokio::time::timeout(WAIT, long.message())
        .await
        .expect("the other watch still streams")
        .expect("no error on the other watch")
        .expect("a message");
    // And the expired token opens nothing new.
    assert_refused(
        members
            .watch_membership_events(with(
                pb::WatchMembershipEventsRequest::default(),
                Some(&token(-1)),
                None,
            ))
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

/// A ListMemberships request carrying `base` headers (each once) and `header` twice, with
/// `values` in that order.
fn repeated(
    tenant_id: &str,
    base: &[(&'static str, String)],
    header: &'static str,
    values: [&str; 2],
) -> Request<pb::ListMembershipsRequest> {
    let mut request = Request::new(list(tenant_id));
    for (name, value) in base {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    for value in values {
        request
            .metadata_mut()
            .append(header, value.parse().unwrap());
    }
    request
}

/// `header` sent twice is refused in both orders of `values`, whoever either value names.
async fn assert_repeat_refused(
    members: &mut MembershipServiceClient<Channel>,
    tenant_id: &str,
    base: &[(&'static str, String)],
    header: &'static str,
    values: [&str; 2],
) {
    let [first, second] = values;
    for order in [[first, second], [second, first]] {
        let status = assert_refused(
            members
                .list_memberships(repeated(tenant_id, base, header, order))
                .await,
            Code::Unauthenticated,
            "DUPLICATE_CREDENTIAL",
        );
        assert!(status.message().contains(header), "{status:?}");
    }
}

/// A caller that forwards its client's identity headers and appends its own must not let the
/// client choose which one counts: two values of one identity header are refused in any order.
#[tokio::test]
async fn a_repeated_identity_header_is_refused_in_either_order() {
    // Mode none: only x-actor-id identifies anyone.
    let server = TestServer::start().await;
    let tenant = organization(&server, None).await;
    let member = add_member(&server, &tenant, "member").await;
    let mut members = server.members().await;
    let (owner, member) = (tenant.owner.to_string(), member.to_string());
    members
        .list_memberships(as_user(list(&tenant.id), tenant.owner))
        .await
        .expect("the owner, named once");
    assert_repeat_refused(
        &mut members,
        &tenant.id,
        &[],
        "x-actor-id",
        [&owner, &member],
    )
    .await;
    assert_repeat_refused(
        &mut members,
        &tenant.id,
        &[],
        "x-actor-id",
        [&owner, &owner],
    )
    .await;

    // API keys: the key (in either header) and the actor.
    let server = start(api_keys()).await;
    let mut members = server.members().await;
    let (tenant_id, owner) = tenant_as(&server, SYSTEM_KEY).await;
    let tenant = Tenant {
        id: tenant_id.clone(),
        owner,
    };
    let member = user();
    members
        .create_membership(with(
            new_member(&tenant, member, "member"),
            Some(SYSTEM_KEY),
            None,
        ))
        .await
        .expect("adding a member");
    let (owner, member) = (owner.to_string(), member.to_string());
    let system = ("authorization", format!("Bearer {SYSTEM_KEY}"));
    let as_owner = ("x-actor-id", owner.clone());
    assert_repeat_refused(
        &mut members,
        &tenant_id,
        std::slice::from_ref(&system),
        "x-actor-id",
        [&owner, &member],
    )
    .await;
    assert_repeat_refused(
        &mut members,
        &tenant_id,
        std::slice::from_ref(&as_owner),
        "authorization",
        [
            &format!("Bearer {SYSTEM_KEY}"),
            &format!("Bearer {DELEGATE_KEY}"),
        ],
    )
    .await;
    assert_repeat_refused(
        &mut members,
        &tenant_id,
        std::slice::from_ref(&as_owner),
        "x-api-key",
        [SYSTEM_KEY, DELEGATE_KEY],
    )
    .await;
    assert_repeat_refused(
        &mut members,
        &tenant_id,
        std::slice::from_ref(&as_owner),
        "x-api-key",
        [SYSTEM_KEY, SYSTEM_KEY],
    )
    .await;
    members
        .list_memberships(with(list(&tenant_id), Some(SYSTEM_KEY), Some(tenant.owner)))
        .await
        .expect("a key and an actor, each sent once");

    // JWT: the token and the actor.
    let server = start(jwt(None)).await;
    let mut members = server.members().await;
    let mut system_claims = Tokens::claims("provisioning-service", 300);
    system_claims["scope"] = "membership.system".into();
    let system_token = Tokens::hs256(&system_claims);
    let (tenant_id, owner) = tenant_as(&server, &system_token).await;
    let tenant = Tenant {
        id: tenant_id.clone(),
        owner,
    };
    let member = user();
    members
        .create_membership(with(
            new_member(&tenant, member, "member"),
            Some(&system_token),
            None,
        ))
        .await
        .expect("adding a member");
    let owner_token = Tokens::hs256(&Tokens::claims(&owner.to_string(), 300));
    let member_token = Tokens::hs256(&Tokens::claims(&member.to_string(), 300));
    members
        .list_memberships(with(list(&tenant_id), Some(&owner_token), None))
        .await
        .expect("the owner's token, sent once");
    assert_repeat_refused(
        &mut members,
        &tenant_id,
        &[],
        "authorization",
        [
            &format!("Bearer {owner_token}"),
            &format!("Bearer {member_token}"),
        ],
    )
    .await;
    assert_repeat_refused(
        &mut members,
        &tenant_id,
        &[("authorization", format!("Bearer {system_token}"))],
        "x-actor-id",
        [&owner.to_string(), &member.to_string()],
    )
    .await;
}
