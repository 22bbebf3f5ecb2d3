//! TLS and mutual TLS, with certificates made at run time: a client must trust the server's CA,
//! and when the server has a client CA, present a certificate that CA signed.

use crate::common::*;
use membership_service::app::ServeOptions;
use membership_service::grpc::pb;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

/// A certificate authority made for one test.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate and its key.
struct Leaf {
    cert: String,
    key: String,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Authority { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn server(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(params)
    }

    fn client(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(params)
    }

    fn leaf(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

async fn start(tls: ServerTlsConfig) -> TestServer {
    TestServer::start_with(
        TestDatabase::create().await,
        ServeOptions {
            tls: Some(tls),
            ..test_options()
        },
    )
    .await
}

fn server_tls(ca: &Authority, client_ca: Option<&Authority>) -> ServerTlsConfig {
    let leaf = ca.server();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(leaf.cert, leaf.key));
    match client_ca {
        Some(client_ca) => tls.client_ca_root(Certificate::from_pem(client_ca.pem())),
        None => tls,
    }
}

/// Connects over TLS trusting `ca`, presenting `identity` if given, and makes one call.
async fn call(
    server: &TestServer,
    ca: &Authority,
    identity: Option<&Leaf>,
) -> Result<pb::CreateTenantResponse, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    let channel = Endpoint::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    create(channel).await
}

async fn create(channel: Channel) -> Result<pb::CreateTenantResponse, String> {
    let owner = user();
    TenantServiceClient::new(channel)
        .create_tenant(as_system(new_tenant(owner)))
        .await
        .map(|r| r.into_inner())
        .map_err(|status| format!("call: {status:?}"))
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_refuses_plaintext() {
    let ca = Authority::new("membership test CA");
    let server = start(server_tls(&ca, None)).await;

    let created = call(&server, &ca, None).await.expect("a TLS client");
    assert!(created.tenant.is_some());

    // A client that trusts another CA refuses the server's certificate.
    let stranger_ca = Authority::new("another CA");
    assert!(call(&server, &stranger_ca, None).await.is_err());

    // Plaintext gRPC gets no answer from a TLS port.
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        create(channel).await
    };
    let refused = tokio::time::timeout(WAIT, plaintext)
        .await
        .expect("the plaintext attempt ended");
    assert!(refused.is_err(), "plaintext succeeded: {refused:?}");
    assert_eq!(server.event_count().await, 2, "only the TLS call wrote");
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_its_client_ca() {
    let server_ca = Authority::new("server CA");
    let client_ca = Authority::new("client CA");
    let server = start(server_tls(&server_ca, Some(&client_ca))).await;

    let billing = client_ca.client("billing-service");
    let created = call(&server, &server_ca, Some(&billing))
        .await
        .expect("a client with a certificate from the client CA");
    assert!(created.tenant.is_some());
    let events = server.event_count().await;

    // No certificate at all: the handshake fails, or the first call does.
    let refused = call(&server, &server_ca, None).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    // A certificate signed by another CA (here, the server's own).
    let impostor = server_ca.client("impostor");
    let refused = call(&server, &server_ca, Some(&impostor)).await;
    assert!(
        refused.is_err(),
        "a foreign client certificate: {refused:?}"
    );
    // A self-signed client certificate.
    let own = Authority::new("self-signed").client("self-signed");
    let refused = call(&server, &server_ca, Some(&own)).await;
    assert!(
        refused.is_err(),
        "a self-signed client certificate: {refused:?}"
    );
    assert_eq!(server.event_count().await, events, "no refused call wrote");

    // The server still serves good clients afterwards.
    call(&server, &server_ca, Some(&billing))
        .await
        .expect("a good client after the refusals");
}

/// The binary's TLS settings, and its `healthcheck` over mutual TLS.
#[tokio::test]
async fn the_binary_serves_mutual_tls_and_its_healthcheck_presents_a_certificate() {
    let server_ca = Authority::new("server CA");
    let client_ca = Authority::new("client CA");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let leaf = server_ca.server();
    let cert = write("server.pem", &leaf.cert);
    let key = write("server.key", &leaf.key);
    let client_ca_file = write("client-ca.pem", &client_ca.pem());
    let server_ca_file = write("server-ca.pem", &server_ca.pem());
    let probe = client_ca.client("healthcheck");
    let probe_cert = write("probe.pem", &probe.cert);
    let probe_key = write("probe.key", &probe.key);

    let database = TestDatabase::create().await;
    // A key without its certificate is refused at start-up.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
        .args(["--database-url", &database.url, "--tls-key", &key])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key needs --tls-cert"));
    // So is a certificate file that does not exist.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
        .args(["--database-url", &database.url])
        .args(["--tls-cert", "/nonexistent.pem", "--tls-key", &key])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent.pem"));

    let server = ServerProcess::spawn(
        &database.url,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca_file,
        ],
    )
    .await;
    let healthcheck = |args: Vec<String>| {
        let addr = server.addr.to_string();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_membership-service"))
                .args(["--listen", &addr, "healthcheck"])
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .unwrap()
                .success()
        }
    };
    let with_ca = vec!["--ca".to_string(), server_ca_file.clone()];
    let mut with_cert = with_ca.clone();
    with_cert.extend([
        "--cert".to_string(),
        probe_cert,
        "--key".to_string(),
        probe_key,
    ]);
    assert!(
        healthcheck(with_cert).await,
        "healthcheck with a client certificate"
    );
    assert!(
        !healthcheck(with_ca).await,
        "healthcheck without a client certificate"
    );
    assert!(!healthcheck(Vec::new()).await, "plaintext healthcheck");
    assert!(server.terminate().await.success());
}
