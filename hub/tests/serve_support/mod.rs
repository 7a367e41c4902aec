//! The whole path in one process where it can be, real parts throughout:
//! a hub (`ewii_hub::serve::start`) on a real store, real adapters
//! (`ewii_adapter::serve::serve_tcp`) over SQLite or PostgreSQL databases,
//! real clients (`ewii_tunnel::client::Client`) over QUIC on loopback, and
//! agents as rmcp streamable-HTTP clients with bearer credentials.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ewii_adapter::serve::{HttpOptions, serve_tcp};
use ewii_adapter::server::Adapter;
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ewii_hub::Store;
use ewii_hub::serve::{RunningHub, ServeOptions};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, Implementation, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use tokio_util::sync::CancellationToken;

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
    ewii_hub::serve::start(store.clone(), options)
        .await
        .unwrap()
}

/// A real adapter in-process over TCP loopback.
pub struct TestAdapter {
    pub adapter: Arc<Adapter>,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    cancel: CancellationToken,
}

impl TestAdapter {
    pub async fn start(databases: Vec<DatabaseConfig>) -> TestAdapter {
        let dir = tempfile::tempdir().unwrap();
        let (adapter, change) = Adapter::new(databases).await;
        assert!(change.failed.is_empty(), "{:?}", change.failed);
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn({
            let (adapter, cancel) = (adapter.clone(), cancel.clone());
            async move {
                serve_tcp(adapter, listener, &HttpOptions::default(), cancel)
                    .await
                    .unwrap()
            }
        });
        TestAdapter {
            adapter,
            addr,
            dir,
            cancel,
        }
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
    let mut c = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    c.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL)",
    )
    .await
    .unwrap();
    for i in 1..=10 {
        let country = if i % 2 == 0 { "DE" } else { "FR" };
        sqlx::query("INSERT INTO customers VALUES (?, ?, ?)")
            .bind(i)
            .bind(format!("Customer {i}"))
            .bind(country)
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

/// The hub CA as the client loads it.
pub fn hub_ca(hub: &RunningHub) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(hub.hub_ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// An agent session against the hub.
pub type Agent = RunningService<RoleClient, ClientConfig>;

pub async fn try_agent(
    hub: &RunningHub,
    credential: &str,
) -> Result<Agent, rmcp::service::ClientInitializeError> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(hub.mcp_url()).auth_header(credential),
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
