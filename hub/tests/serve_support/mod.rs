//! The whole path in one process where it can be, real parts throughout:
//! a hub (`ewii_hub::gateway::serve::start`) on a real store, real adapters
//! (`ewii_adapter::serve::serve_tcp`) over SQLite or PostgreSQL databases,
//! real clients (`ewii_client::client::Client`) over QUIC on loopback, and
//! agents as rmcp streamable-HTTP clients with bearer credentials.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ewii_adapter::local_credential::LocalCredential;
use ewii_adapter::serve::{HttpOptions, serve_tcp};
use ewii_adapter::server::Adapter;
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ewii_hub::Store;
use ewii_hub::gateway::serve::{RunningHub, ServeOptions};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, Implementation, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use ewii_client::client::{Client, ClientError, ClientOptions, ClientSettings};
use ewii_client::forward::{AdapterCredential, AllowList, Destination};
use ewii_client::identity::IdentitySource;
use ewii_quic::KeyMaterial;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use ewii_driver_postgres as _;
use ewii_driver_sqlite as _;

/// How long a step may take before the test gives up.
pub const STEP: Duration = Duration::from_secs(20);

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts a hub on loopback ephemeral ports.
pub async fn start_hub(store: &Store, tweak: impl FnOnce(&mut ServeOptions)) -> RunningHub {
    install_crypto();
    let mut options = ServeOptions {
        quic: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        names: vec!["127.0.0.1".into(), "localhost".into()],
        trust_refresh: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    tweak(&mut options);
    ewii_hub::gateway::serve::start(store.clone(), options)
        .await
        .unwrap()
}

/// A real adapter in-process over TCP loopback, requiring its own random
/// local credential (the clients started here present it).
pub struct TestAdapter {
    pub adapter: Arc<Adapter>,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub credential: LocalCredential,
    configs: Vec<DatabaseConfig>,
    cancel: CancellationToken,
}

impl TestAdapter {
    pub async fn start(databases: Vec<DatabaseConfig>) -> TestAdapter {
        let dir = tempfile::tempdir().unwrap();
        let configs = databases.clone();
        let credential = LocalCredential::generate().unwrap();
        let (adapter, change) = Adapter::new(databases).await;
        assert!(change.failed.is_empty(), "{:?}", change.failed);
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn({
            let (adapter, cancel) = (adapter.clone(), cancel.clone());
            let options = http_options(&credential);
            async move {
                serve_tcp(adapter, listener, &options, cancel)
                    .await
                    .unwrap()
            }
        });
        TestAdapter {
            adapter,
            addr,
            dir,
            credential,
            configs,
            cancel,
        }
    }

    /// Stops this adapter and starts a fresh one (new process state, no
    /// MCP sessions) on the same address, as an upgrade would.
    pub async fn restart(&mut self) {
        self.cancel.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (adapter, change) = Adapter::new(self.configs.clone()).await;
        assert!(change.failed.is_empty(), "{:?}", change.failed);
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let cancel = CancellationToken::new();
        tokio::spawn({
            let (adapter, cancel) = (adapter.clone(), cancel.clone());
            let options = http_options(&self.credential);
            async move {
                serve_tcp(adapter, listener, &options, cancel)
                    .await
                    .unwrap()
            }
        });
        self.adapter = adapter;
        self.cancel = cancel;
    }

    /// An adapter with one SQLite database `name` (customers table).
    pub async fn sqlite(name: &str) -> TestAdapter {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.db"));
        make_shop_db(&path).await;
        let mut a = TestAdapter::start(vec![sqlite_config(name, &path)]).await;
        a.dir = dir;
        a
    }

    pub fn allow(&self) -> String {
        format!("tcp:{}", self.addr)
    }

    /// The credential as this adapter's client holds it.
    pub fn client_credential(&self) -> AdapterCredential {
        AdapterCredential::new(self.credential.expose()).unwrap()
    }
}

fn http_options(credential: &LocalCredential) -> HttpOptions {
    HttpOptions {
        credential: Some(credential.clone()),
        ..HttpOptions::default()
    }
}

impl Drop for TestAdapter {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn sqlite_config(name: &str, path: &Path) -> DatabaseConfig {
    DatabaseConfig {
        name: name.into(),
        driver: "sqlite".into(),
        url: SecretString::new(format!("sqlite://{}", path.display())),
        read_only: true,
        limits: Limits::default(),
    }
}

pub async fn make_shop_db(path: &Path) {
    ewii_driver_sqlite::testdata::customers_db(path)
        .await
        .unwrap();
}

/// The hub CA as the client loads it.
pub fn hub_ca(hub: &RunningHub) -> Vec<CertificateDer<'static>> {
    hub.hub_ca.clone()
}

/// An agent session against the hub.
pub type Agent = RunningService<RoleClient, ClientConfig>;

pub async fn try_agent(
    hub: &RunningHub,
    credential: &str,
) -> Result<Agent, rmcp::service::ClientInitializeError> {
    try_agent_at(&hub.mcp_url(), credential).await
}

/// An rmcp agent session with the hub at `url` (a hub in another process).
pub async fn try_agent_at(
    url: &str,
    credential: &str,
) -> Result<Agent, rmcp::service::ClientInitializeError> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(credential),
    );
    ClientConfig::new(
        Default::default(),
        Implementation::new("ewii-test-agent", "0"),
    )
    .with_protocol_version(rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE)
    .serve(transport)
    .await
}

pub async fn agent(hub: &RunningHub, credential: &str) -> Agent {
    tokio::time::timeout(STEP, try_agent(hub, credential))
        .await
        .expect("agent initialize timed out")
        .expect("agent initialize failed")
}

pub async fn tool_names(agent: &Agent) -> Vec<String> {
    let tools: Vec<Tool> = tokio::time::timeout(STEP, agent.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

/// Polls the agent's tools/list until `pred` holds.
pub async fn wait_for_tools(agent: &Agent, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + STEP;
    loop {
        let names = tool_names(agent).await;
        if pred(&names) {
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "tools never matched; last seen {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn call(agent: &Agent, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(map) = arguments else {
        panic!("arguments must be an object")
    };
    tokio::time::timeout(
        STEP,
        agent.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(map)),
    )
    .await
    .expect("tools/call timed out")
    .expect("tools/call failed")
}

pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn count_query() -> Value {
    json!({ "sql": "SELECT count(*) AS n FROM customers", "params": [] })
}

pub fn now() -> SystemTime {
    SystemTime::now()
}

/// A CA made outside Ewii (e.g. an existing SPIRE server): P-256, and
/// SVIDs with only a URI SAN, as SPIRE issues them.
pub struct ForeignCa {
    pub cert: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl ForeignCa {
    pub fn new(cn: &str) -> ForeignCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "SPIRE");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        ForeignCa {
            cert: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// An SVID for `id` with its key, SPIRE's profile.
    pub fn svid(&self, id: &str) -> KeyMaterial {
        use rcgen::{
            CertificateParams, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "SPIRE");
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        KeyMaterial {
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
            ),
        }
    }
}

/// One tunnel attempt with `keys` claiming `identity`; the hub's verdict.
pub async fn try_tunnel(
    hub: &RunningHub,
    keys: &KeyMaterial,
    identity: &str,
) -> Result<ewii_quic::ClientTunnel, ewii_quic::NetError> {
    use ewii_quic::{ClientQuicConfig, Dialer, HubCertVerifier};
    use ewii_wire::handshake::ClientConfig as TunnelConfig;
    let verifier = Arc::new(HubCertVerifier::new(&hub_ca(hub), "127.0.0.1").unwrap());
    let quic = ClientQuicConfig::tunnel(keys, &verifier).unwrap();
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = TunnelConfig {
        credentials: keys.credentials().unwrap(),
        identity: identity.into(),
        hub_name: "127.0.0.1".into(),
        hub_verifier: verifier,
    };
    tokio::time::timeout(STEP, dialer.connect(&quic, hub.quic_addr, config))
        .await
        .expect("tunnel attempt timed out")
}

/// GET on the hub's HTTP side: status and body.
pub async fn http_get(hub: &RunningHub, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(hub.http_addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// POST of a JSON-RPC message to `/mcp` with optional bearer and session.
pub async fn mcp_post(
    hub: &RunningHub,
    bearer: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> (u16, String, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(hub.http_addr).await.unwrap();
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(b) = bearer {
        req.push_str(&format!("Authorization: Bearer {b}\r\n"));
    }
    if let Some(sid) = session {
        req.push_str(&format!("Mcp-Session-Id: {sid}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let session = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("mcp-session-id")
            .then(|| v.trim().to_owned())
    });
    (status, text, session)
}

// -- deployments' clients ----------------------------------------------------

/// A deployment's SVID issued straight from its workspace CA (what
/// enrolment does, without the token).
pub async fn issue_svid(store: &Store, workspace: &str, deployment: &str) -> KeyMaterial {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let dep = store
        .list_deployments(workspace)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == deployment)
        .unwrap();
    let cert = store
        .workspace_ca(workspace)
        .await
        .unwrap()
        .issue_svid(csr.der(), &dep.spiffe_id, Duration::from_secs(3600), now())
        .unwrap();
    KeyMaterial {
        chain: vec![cert],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// A running client; stops when dropped.
pub struct TestClient {
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(STEP, self.task).await;
    }
}

pub fn start_client(hub: &RunningHub, keys: KeyMaterial, adapter: &TestAdapter) -> TestClient {
    start_client_at(hub.quic_addr, hub_ca(hub), keys, adapter)
}

/// A client of the hub at `quic` (a hub in another process) whose CA is
/// `hub_ca`.
pub fn start_client_at(
    quic: std::net::SocketAddr,
    hub_ca: Vec<CertificateDer<'static>>,
    keys: KeyMaterial,
    adapter: &TestAdapter,
) -> TestClient {
    let allow = AllowList::new(vec![adapter.allow().parse::<Destination>().unwrap()]).unwrap();
    let client = Client::new(ClientOptions {
        hub: quic.to_string(),
        hub_name: "127.0.0.1".into(),
        hub_ca,
        tls_ca: None,
        keys,
        allow,
        adapter_credential: Some(adapter.client_credential()),
        log: None,
    })
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let _ = client.run(cancel).await;
        }
    });
    TestClient { cancel, task }
}

pub fn settings(hub: &RunningHub, adapter: &TestAdapter) -> ClientSettings {
    ClientSettings {
        hub: hub.quic_addr.to_string(),
        hub_name: "127.0.0.1".into(),
        hub_ca: hub_ca(hub),
        tls_ca: None,
        allow: AllowList::new(vec![adapter.allow().parse::<Destination>().unwrap()]).unwrap(),
        adapter_credential: Some(adapter.client_credential()),
        log: None,
    }
}

/// Enrols with `token` into `state`, then runs the client.
pub async fn enrol_client(
    hub: &RunningHub,
    adapter: &TestAdapter,
    state: &std::path::Path,
    token: &str,
) -> Result<TestClient, ClientError> {
    let cancel = CancellationToken::new();
    let source = IdentitySource::Enrolled {
        state: state.to_owned(),
        token: Some(zeroize::Zeroizing::new(token.to_owned())),
    };
    let client = tokio::time::timeout(STEP, Client::start(settings(hub, adapter), source, &cancel))
        .await
        .expect("enrolment timed out")?;
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let _ = client.run(cancel).await;
        }
    });
    Ok(TestClient { cancel, task })
}
