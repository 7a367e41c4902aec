//! The client: the real `ewii-client` runtime in-process
//! ([`ewii_client::client::Client`]) or its binary, against the in-process
//! hub and a [`TestAdapter`].
//!
//! - with an SVID the test holds: [`start_client`] (or [`static_client`]
//!   for a test that runs it itself);
//! - enrolled with a token against the real hub: [`start_enrolled`] in a
//!   [`ClientHome`], or [`enrol_client`] to enrol and run;
//! - the binary: [`client_binary`], `ewii-client run` aimed at the hub;
//! - its connection log: [`connection_log`], [`wait_for_log`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ewii_client::client::{Client, ClientError, ClientOptions, ClientSettings};
use ewii_client::connlog::ConnectionLog;
use ewii_client::identity::IdentitySource;
use ewii_hub::gateway::serve::RunningHub;
use ewii_quic::KeyMaterial;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::adapter::{TestAdapter, client_credential};
use crate::agent::STEP;
use crate::hub::HUB_NAMES;
use crate::process::Launch;

/// A client runtime running in a task; [`TestClient::stop`] ends it.
pub struct TestClient {
    /// Cancels the run (a graceful stop).
    pub cancel: CancellationToken,
    /// The run.
    pub task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    /// Runs `client` until stopped.
    pub fn run(client: Client) -> TestClient {
        TestClient::run_with(client, CancellationToken::new())
    }

    /// Runs `client` until `cancel` fires.
    pub fn run_with(client: Client, cancel: CancellationToken) -> TestClient {
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                let _ = client.run(cancel).await;
            }
        });
        TestClient { cancel, task }
    }

    /// Stops it and waits (at most [`STEP`]) for the run to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(STEP, self.task).await;
    }
}

/// The settings of a client of the hub at `quic` whose CA is `hub_ca`,
/// allowed to reach `adapter` over TCP with its credential; no log.
pub fn settings_at(
    quic: SocketAddr,
    hub_ca: Vec<CertificateDer<'static>>,
    adapter: &TestAdapter,
) -> ClientSettings {
    ClientSettings {
        hub: quic.to_string(),
        hub_name: HUB_NAMES[0].into(),
        hub_ca,
        tls_ca: None,
        allow: adapter.allow_list(),
        adapter_credential: Some(client_credential()),
        log: None,
    }
}

/// [`settings_at`] the in-process `hub`.
pub fn settings(hub: &RunningHub, adapter: &TestAdapter) -> ClientSettings {
    settings_at(hub.quic_addr, hub.hub_ca.clone(), adapter)
}

/// A client with `settings` presenting `keys` (never renewed), not yet
/// running.
pub fn static_client(settings: ClientSettings, keys: KeyMaterial) -> Client {
    Client::new(ClientOptions {
        hub: settings.hub,
        hub_name: settings.hub_name,
        hub_ca: settings.hub_ca,
        tls_ca: settings.tls_ca,
        keys,
        allow: settings.allow,
        adapter_credential: settings.adapter_credential,
        log: settings.log,
    })
    .unwrap_or_else(|e| panic!("a client with these keys: {e}"))
}

/// Runs a client of `hub` presenting `keys`, serving `adapter`.
pub fn start_client(hub: &RunningHub, keys: KeyMaterial, adapter: &TestAdapter) -> TestClient {
    start_client_at(hub.quic_addr, hub.hub_ca.clone(), keys, adapter)
}

/// Runs a client of the hub at `quic` (a hub in another process) whose CA
/// is `hub_ca`, presenting `keys`, serving `adapter`.
pub fn start_client_at(
    quic: SocketAddr,
    hub_ca: Vec<CertificateDer<'static>>,
    keys: KeyMaterial,
    adapter: &TestAdapter,
) -> TestClient {
    TestClient::run(static_client(settings_at(quic, hub_ca, adapter), keys))
}

/// Where one enrolled client keeps its state (`state`, not created yet)
/// and its connection log (`log`); removed on drop.
pub struct ClientHome {
    /// The directory holding both.
    pub dir: tempfile::TempDir,
    /// The client's state directory (`--state`).
    pub state: PathBuf,
    /// Its connection log.
    pub log: PathBuf,
}

impl ClientHome {
    /// A fresh home.
    pub fn new() -> ClientHome {
        let dir = tempfile::tempdir().expect("a temporary directory");
        ClientHome {
            state: dir.path().join("state"),
            log: dir.path().join("connections.jsonl"),
            dir,
        }
    }
}

impl Default for ClientHome {
    fn default() -> Self {
        ClientHome::new()
    }
}

/// The identity kept in `state`, enrolling with `token` first if there is
/// none (or an expired one).
pub fn enrolled(state: &Path, token: Option<&str>) -> IdentitySource {
    IdentitySource::Enrolled {
        state: state.to_owned(),
        token: token.map(|t| Zeroizing::new(t.to_owned())),
    }
}

/// `Client::start` for an enrolled client of `hub` living in `state` and
/// logging to `log` (enrolling with `token`, if any, when it has no
/// identity), serving `adapter`: the enrolment, not yet the tunnel.
pub async fn start_enrolled(
    hub: &RunningHub,
    adapter: &TestAdapter,
    state: &Path,
    log: &Path,
    token: Option<&str>,
    cancel: &CancellationToken,
) -> Result<Client, ClientError> {
    let mut settings = settings(hub, adapter);
    settings.log = Some(Arc::new(
        ConnectionLog::open(log).unwrap_or_else(|e| panic!("open {}: {e}", log.display())),
    ));
    tokio::time::timeout(
        STEP,
        Client::start(settings, enrolled(state, token), cancel),
    )
    .await
    .expect("enrolment timed out")
}

/// Enrols with `token` into `state`, then runs the client (no log).
pub async fn enrol_client(
    hub: &RunningHub,
    adapter: &TestAdapter,
    state: &Path,
    token: &str,
) -> Result<TestClient, ClientError> {
    let cancel = CancellationToken::new();
    let source = enrolled(state, Some(token));
    let client = tokio::time::timeout(STEP, Client::start(settings(hub, adapter), source, &cancel))
        .await
        .expect("enrolment timed out")?;
    Ok(TestClient::run_with(client, cancel))
}

/// The real `ewii-client run` aimed at `hub` as an operator would aim it:
/// `--hub localhost:PORT`, `--hub-ca` (the hub CA, written into the
/// process's private home), `--state state` (its parent directory made),
/// `EWII_LOG=info`; ready for `--allow` and the identity's arguments.
pub fn client_binary(hub: &RunningHub, state: &Path) -> Launch {
    if let Some(parent) = state.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    let launch = Launch::binary("ewii-client").unwrap_or_else(|e| panic!("{e}"));
    let hub_ca = launch.home().join("hub-ca.pem");
    std::fs::write(&hub_ca, &hub.hub_ca_pem)
        .unwrap_or_else(|e| panic!("write {}: {e}", hub_ca.display()));
    launch
        .args([
            "run",
            "--hub",
            &format!("localhost:{}", hub.quic_addr.port()),
        ])
        .arg("--hub-ca")
        .arg(&hub_ca)
        .arg("--state")
        .arg(state)
        .env("EWII_LOG", "info")
}

/// The records of the connection log at `path` (none if it is missing).
pub fn connection_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a connection log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The records of `event` among `records`.
pub fn events<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

/// Polls the connection log at `path` until `what` holds, for at most
/// [`STEP`]; the records then.
pub async fn wait_for_log(path: &Path, what: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let records = connection_log(path);
        if what(&records) {
            return records;
        }
        assert!(Instant::now() < deadline, "log never matched: {records:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
