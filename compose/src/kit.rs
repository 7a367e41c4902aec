//! The kit's parts, started in one process on loopback and stopped again:
//! the hub (operator side), the adapter and the client (customer side).
//!
//! [`Kit`] holds whatever has started so far, so that a failure half-way
//! still stops everything that runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use ewii_adapter::local_credential;
use ewii_adapter::serve::{self, HttpOptions};
use ewii_adapter::store::DatabaseEntry;
use ewii_adapter::{Adapter, AdapterHome, admin};
use ewii_client::client::{Client, ClientError, ClientSettings, Stopped};
use ewii_client::connlog::ConnectionLog;
use ewii_client::forward::{AdapterCredential, AllowList, Destination};
use ewii_client::identity::{IdentitySource, SvidInfo};
use ewii_driver_core::{Limits, SecretString};
use ewii_hub::gateway::serve::{RunningHub, ServeOptions};
use ewii_hub::{Location, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// The operator's customer.
pub const WORKSPACE: &str = "demo";
/// The customer's one deployment (client + adapter).
pub const DEPLOYMENT: &str = "eu";
/// The AI agent the operator lets in.
pub const AGENT: &str = "assistant";
/// The sample database's name in the adapter.
pub const DATABASE: &str = "shop";
/// The longest any one step may take.
pub const STEP: Duration = Duration::from_secs(20);
/// How long the enrolment token is valid.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The client's connection log, inside its state directory.
const CONNECTION_LOG: &str = "connections.jsonl";

/// What the operator hands out: the customer's enrolment token and the
/// agent's bearer credential.
pub struct Operator {
    /// Given to the customer: enrols the client, keys the adapter's store.
    pub enrolment_token: SecretString,
    /// Given to the AI agent.
    pub agent_credential: SecretString,
    /// The deployment's SPIFFE ID.
    pub spiffe_id: String,
}

struct AdapterTask {
    adapter: Arc<Adapter>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), serve::ServeError>>,
}

struct ClientTask {
    cancel: CancellationToken,
    task: JoinHandle<Result<Stopped, ClientError>>,
}

/// The parts of the kit started so far.
#[derive(Default)]
pub struct Kit {
    store: Option<Store>,
    hub: Option<RunningHub>,
    adapter: Option<AdapterTask>,
    adapter_addr: Option<SocketAddr>,
    /// The adapter's local credential file, which the client reads (in the
    /// compose bundle: the volume the two share).
    adapter_credential: Option<PathBuf>,
    client: Option<ClientTask>,
    connection_log: Option<Arc<ConnectionLog>>,
}

impl Kit {
    /// The operator's side, before anything serves: the hub's store with
    /// a workspace, a deployment (and its enrolment token) and an agent.
    pub async fn provision(&mut self, data: &Path) -> Result<Operator> {
        let store = Store::open(&Location::Data(data.to_owned()))
            .await
            .context("cannot open the hub's store")?;
        self.store = Some(store.clone());
        let now = SystemTime::now();
        store
            .create_workspace(WORKSPACE, None, now)
            .await
            .context("cannot create the demo workspace")?;
        let (deployment, token) = store
            .create_deployment(WORKSPACE, DEPLOYMENT, TOKEN_TTL, now)
            .await
            .context("cannot create the demo deployment")?;
        let (_, credential) = store
            .create_agent(WORKSPACE, AGENT, now)
            .await
            .context("cannot create the demo agent")?;
        Ok(Operator {
            enrolment_token: token.token,
            agent_credential: credential,
            spiffe_id: deployment.spiffe_id.to_string(),
        })
    }

    /// Starts the hub: QUIC on an ephemeral loopback port, the agents'
    /// HTTP endpoint on `http`.
    pub async fn start_hub(&mut self, http: SocketAddr) -> Result<&RunningHub> {
        let store = self
            .store
            .clone()
            .context("the hub's store is not provisioned")?;
        let options = ServeOptions {
            quic: SocketAddr::from(([127, 0, 0, 1], 0)),
            http,
            names: vec!["127.0.0.1".into()],
            ..ServeOptions::default()
        };
        let hub = ewii_hub::gateway::serve::start(store, options)
            .await
            .with_context(|| {
                format!(
                    "the hub did not start (for another HTTP address, use --listen; was {http})"
                )
            })?;
        Ok(self.hub.insert(hub))
    }

    /// The customer's adapter: a home whose credential store is keyed
    /// with the enrolment token, the sample database attached read-only,
    /// MCP on an ephemeral loopback port for callers holding the home's
    /// local credential. Returns its MCP URL.
    pub async fn start_adapter(
        &mut self,
        home: &AdapterHome,
        token: &SecretString,
        db_path: &Path,
    ) -> Result<String> {
        admin::init(home, WORKSPACE, token)?;
        let credential_file = home.local_credential_path();
        let credential = local_credential::load(&credential_file)?;
        let shop = DatabaseEntry {
            driver: "sqlite".into(),
            url: SecretString::new(format!("sqlite://{}", db_path.display())),
            read_only: true,
            limits: Limits {
                max_rows: 50,
                ..Limits::default()
            },
        };
        admin::add_database(home, token, DATABASE, shop.clone(), true).await?;
        // The demo holds the configuration it just stored: no need to
        // derive the store key a third time to read it back.
        let (adapter, change) = Adapter::new(vec![shop.to_config(DATABASE)]).await;
        if let Some((name, e)) = change.failed.first() {
            adapter.close().await;
            bail!("the sample database '{name}' did not open: {e}");
        }
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(l) => l,
            Err(e) => {
                adapter.close().await;
                return Err(e).context("the adapter cannot listen on 127.0.0.1");
            }
        };
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let options = HttpOptions {
            credential: Some(credential),
            ..HttpOptions::default()
        };
        let task = tokio::spawn({
            let (adapter, cancel) = (adapter.clone(), cancel.clone());
            async move { serve::serve_tcp(adapter, listener, &options, cancel).await }
        });
        self.adapter = Some(AdapterTask {
            adapter,
            cancel,
            task,
        });
        self.adapter_addr = Some(addr);
        self.adapter_credential = Some(credential_file);
        Ok(format!("http://{addr}/mcp"))
    }

    /// The customer's client: enrols with the token (a key made here, a
    /// CSR to the hub, the SVID saved in `state`), then keeps the tunnel
    /// up, forwarding only to the adapter. Returns the enrolled SVID.
    pub async fn start_client(&mut self, state: &Path, token: &SecretString) -> Result<SvidInfo> {
        let hub = self.hub.as_ref().context("the hub is not running")?;
        let adapter = self.adapter_addr.context("the adapter is not running")?;
        // As the bundle's client does: read the adapter's credential file.
        let credential_file = self
            .adapter_credential
            .as_deref()
            .context("the adapter is not running")?;
        let adapter_credential = AdapterCredential::from_file(credential_file)?;
        let hub_ca = hub.hub_ca.clone();
        let log = Arc::new(
            ConnectionLog::open(&state.join(CONNECTION_LOG))
                .context("cannot open the client's connection log")?,
        );
        self.connection_log = Some(log.clone());
        let settings = ClientSettings {
            hub: hub.quic_addr.to_string(),
            hub_name: "127.0.0.1".into(),
            hub_ca,
            tls_ca: None,
            allow: AllowList::new(vec![Destination::Tcp(adapter)])?,
            adapter_credential: Some(adapter_credential),
            log: Some(log),
        };
        let source = IdentitySource::Enrolled {
            state: state.to_owned(),
            token: Some(Zeroizing::new(token.expose().to_owned())),
        };
        let cancel = CancellationToken::new();
        let client =
            match tokio::time::timeout(STEP, Client::start(settings, source, &cancel)).await {
                Ok(client) => client.context("the client did not enrol")?,
                Err(_) => bail!(
                    "the client did not enrol within {} s (run with EWII_LOG=info to see why)",
                    STEP.as_secs()
                ),
            };
        let svid = client.svid();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { client.run(cancel).await }
        });
        self.client = Some(ClientTask { cancel, task });
        Ok(svid)
    }

    /// Waits until the hub has the deployment's tunnel up and its tools
    /// listed; returns how many tools it advertises.
    pub async fn wait_for_tunnel(&mut self) -> Result<usize> {
        let hub = self.hub.as_ref().context("the hub is not running")?;
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(live) = hub.state.registry.find(WORKSPACE, DEPLOYMENT) {
                return Ok(live.tools().len());
            }
            if self.client.as_ref().is_some_and(|c| c.task.is_finished()) {
                let why = match self.client.take().map(|c| c.task) {
                    Some(task) => match task.await {
                        Ok(Ok(_)) => "it stopped".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("its task failed: {e}"),
                    },
                    None => "it stopped".to_owned(),
                };
                bail!("the client's tunnel did not come up: {why}");
            }
            if Instant::now() >= deadline {
                bail!(
                    "the deployment did not connect to the hub within {} s (run with \
                     EWII_LOG=info to see the client's and the hub's logs)",
                    STEP.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the client's connection log says about forwards so far:
    /// (requests forwarded, bytes to the adapter, bytes from it).
    pub fn forwards(&self) -> Option<(usize, u64, u64)> {
        let log = self.connection_log.as_ref()?;
        let text = std::fs::read_to_string(log.path()).ok()?;
        let mut out = (0usize, 0u64, 0u64);
        for line in text.lines() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if record["event"] == "forward" {
                out.0 += 1;
                out.1 += record["bytes_out"].as_u64().unwrap_or(0);
                out.2 += record["bytes_in"].as_u64().unwrap_or(0);
            }
        }
        Some(out)
    }

    /// Stops everything that runs, in order: the client (the tunnel goes
    /// down cleanly), the hub, the adapter, the hub's store.
    pub async fn stop(&mut self) -> Result<()> {
        let mut failures: Vec<String> = Vec::new();
        if let Some(client) = self.client.take() {
            client.cancel.cancel();
            match tokio::time::timeout(Duration::from_secs(5), client.task).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => failures.push(format!("the client: {e}")),
                Ok(Err(e)) => failures.push(format!("the client's task: {e}")),
                Err(_) => failures.push("the client did not stop within 5 s".into()),
            }
        }
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
        if let Some(adapter) = self.adapter.take() {
            adapter.cancel.cancel();
            match tokio::time::timeout(Duration::from_secs(5), adapter.task).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => failures.push(format!("the adapter: {e}")),
                Ok(Err(e)) => failures.push(format!("the adapter's task: {e}")),
                Err(_) => failures.push("the adapter did not stop within 5 s".into()),
            }
            adapter.adapter.close().await;
        }
        if let Some(store) = self.store.take() {
            store.close().await;
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("stopping the kit: {}", failures.join("; "))
        }
    }
}
