//! The test adapter: the real `ewii-adapter` in-process
//! (`ewii_adapter::serve`), on a TCP loopback port and a unix socket at
//! once, serving SQLite, PostgreSQL or MariaDB databases to callers that
//! present its local credential ([`CREDENTIAL`] unless the test says
//! otherwise). It can attach a database while running and be restarted on
//! the same addresses, as an upgrade would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ewii_adapter::local_credential::LocalCredential;
use ewii_adapter::serve::{HttpOptions, bind_unix, serve_tcp, serve_unix};
use ewii_adapter::server::Adapter;
use ewii_client::forward::{AdapterCredential, AdapterLink, AllowList, Destination};
use ewii_driver_core::DatabaseConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sample::{shop_db, sqlite_config};

/// The local credential every test adapter requires unless started with
/// [`TestAdapter::start_with`], and every test client presents.
pub const CREDENTIAL: &str = "ewii_local_TestCredentialOfEveryTunnelTestAdapter00000";

/// How long a stopping adapter may take to let go of its listeners.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// [`CREDENTIAL`] as an adapter holds it.
pub fn adapter_credential() -> LocalCredential {
    LocalCredential::parse(CREDENTIAL, Path::new("CREDENTIAL")).expect("a valid local credential")
}

/// [`CREDENTIAL`] as a client holds it.
pub fn client_credential() -> AdapterCredential {
    AdapterCredential::new(CREDENTIAL).expect("a valid adapter credential")
}

/// A link to `destination` presenting [`CREDENTIAL`].
pub fn link(destination: Destination) -> AdapterLink {
    AdapterLink::new(destination, Some(client_credential()))
}

/// Writes [`CREDENTIAL`] to `dir/local-credential` (mode 0600) for an
/// `ewii-client` binary's `--adapter-credential-file`.
pub fn credential_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("local-credential");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    std::io::Write::write_all(&mut f, format!("{CREDENTIAL}\n").as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A real adapter, in-process, on TCP and on a unix socket; stopped when
/// dropped.
pub struct TestAdapter {
    /// The adapter (to `apply` a new catalog).
    pub adapter: Arc<Adapter>,
    /// Its TCP address.
    pub addr: SocketAddr,
    /// Its TCP address as a client's destination.
    pub tcp: Destination,
    /// Its unix socket as a client's destination.
    pub unix: Destination,
    /// A directory living as long as the adapter (its socket, its SQLite
    /// databases).
    pub dir: tempfile::TempDir,
    /// The credential it requires (`None`: it serves no HTTP caller).
    pub credential: Option<LocalCredential>,
    configs: Vec<DatabaseConfig>,
    cancel: CancellationToken,
    serving: Vec<JoinHandle<()>>,
}

impl TestAdapter {
    /// Serves `databases` to callers presenting [`CREDENTIAL`].
    pub async fn start(databases: Vec<DatabaseConfig>) -> TestAdapter {
        TestAdapter::start_with(databases, Some(adapter_credential())).await
    }

    /// Serves `databases` to callers presenting `credential` (`None`: to
    /// no HTTP caller).
    pub async fn start_with(
        databases: Vec<DatabaseConfig>,
        credential: Option<LocalCredential>,
    ) -> TestAdapter {
        let dir = tempfile::tempdir().expect("a temporary directory");
        TestAdapter::start_in(dir, databases, credential).await
    }

    /// [`TestAdapter::start_with`] whose socket (and whatever the caller
    /// put there) lives in `dir`.
    async fn start_in(
        dir: tempfile::TempDir,
        databases: Vec<DatabaseConfig>,
        credential: Option<LocalCredential>,
    ) -> TestAdapter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let unix = dir.path().join("adapter.sock");
        let mut adapter = TestAdapter {
            adapter: new_adapter(databases.clone()).await,
            addr,
            tcp: Destination::Tcp(addr),
            unix: Destination::Unix(unix),
            dir,
            credential,
            configs: databases,
            cancel: CancellationToken::new(),
            serving: Vec::new(),
        };
        adapter.serve(listener);
        adapter
    }

    /// An adapter with one read-only SQLite shop named `name` (the sample
    /// shop, [`crate::sample`]), requiring [`CREDENTIAL`].
    pub async fn sqlite(name: &str) -> TestAdapter {
        TestAdapter::sqlite_with(name, Some(adapter_credential())).await
    }

    /// [`TestAdapter::sqlite`] requiring `credential` instead (`None`: it
    /// serves no HTTP caller).
    pub async fn sqlite_with(name: &str, credential: Option<LocalCredential>) -> TestAdapter {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(format!("{name}.db"));
        shop_db(&path).await;
        let databases = vec![sqlite_config(name, &path)];
        TestAdapter::start_in(dir, databases, credential).await
    }

    /// Attaches one more read-only SQLite shop, `name`, next to the
    /// databases it serves; panics unless its tools changed.
    pub async fn attach_sqlite(&mut self, name: &str) {
        let path = self.dir.path().join(format!("{name}.db"));
        shop_db(&path).await;
        self.configs.push(sqlite_config(name, &path));
        let change = self.adapter.apply(self.configs.clone()).await;
        assert!(change.tools_changed(), "{change:?}");
    }

    /// Stops this adapter and starts a fresh one (new process state, no
    /// MCP sessions) on the same address and socket, as an upgrade would.
    pub async fn restart(&mut self) {
        self.cancel.cancel();
        for mut task in self.serving.drain(..) {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        self.adapter = new_adapter(self.configs.clone()).await;
        self.cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("bind {} again: {e}", self.addr));
        self.serve(listener);
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let options = HttpOptions {
            credential: self.credential.clone(),
            ..HttpOptions::default()
        };
        let Destination::Unix(socket) = self.unix.clone() else {
            unreachable!("the unix destination is a socket path")
        };
        let unix = bind_unix(&socket).unwrap_or_else(|e| panic!("bind {}: {e}", socket.display()));
        let (adapter, cancel, tcp_options) =
            (self.adapter.clone(), self.cancel.clone(), options.clone());
        self.serving.push(tokio::spawn(async move {
            serve_tcp(adapter, listener, &tcp_options, cancel)
                .await
                .expect("serve the adapter on TCP");
        }));
        let (adapter, cancel) = (self.adapter.clone(), self.cancel.clone());
        self.serving.push(tokio::spawn(async move {
            serve_unix(adapter, unix, &socket, &options, cancel)
                .await
                .expect("serve the adapter on a unix socket");
        }));
    }

    /// The TCP destination as an `--allow` value.
    pub fn allow(&self) -> String {
        self.tcp.to_string()
    }

    /// An allow-list of its TCP destination alone.
    pub fn allow_list(&self) -> AllowList {
        AllowList::new(vec![self.tcp.clone()]).expect("one destination is an allow-list")
    }
}

async fn new_adapter(databases: Vec<DatabaseConfig>) -> Arc<Adapter> {
    let (adapter, change) = Adapter::new(databases).await;
    assert!(change.failed.is_empty(), "{:?}", change.failed);
    adapter
}

impl Drop for TestAdapter {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
