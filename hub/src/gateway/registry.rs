//! The registry of live deployments: who is connected, with which SVID,
//! and which tools their adapters advertise.
//!
//! Only a cache of live connections: everything durable is in the store.
//! Every change (a deployment connected, disconnected or changed its
//! catalog) is broadcast with the workspace's name, so agent sessions of
//! that workspace — and only those — get `notifications/tools/list_changed`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use ewii_driver_core::{DIALECT_META, SqlDialect};
use ewii_quic::HubTunnel;
use rmcp::model::Tool;
use tokio::sync::broadcast;

use crate::gateway::metrics::Metrics;
use crate::gateway::upstream::Upstream;

/// One connected deployment.
pub struct LiveDeployment {
    /// Its workspace.
    pub workspace: String,
    /// Its name.
    pub name: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// When this tunnel came up.
    pub connected_at: SystemTime,
    /// A number unique to this connection (a reconnect gets a new one).
    pub connection: u64,
    /// The tunnel.
    pub tunnel: Arc<HubTunnel>,
    /// Serial of the SVID the tunnel was opened with: its key signs the
    /// session's receipts, and revoking it closes the session.
    pub session_serial: String,
    upstream: RwLock<Arc<Upstream>>,
    serial: Mutex<String>,
    expires_at: AtomicI64,
    tools: RwLock<Vec<Tool>>,
}

impl std::fmt::Debug for LiveDeployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDeployment")
            .field("workspace", &self.workspace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a new [`LiveDeployment`] is made of.
pub struct Connected {
    /// Workspace name.
    pub workspace: String,
    /// Deployment name.
    pub name: String,
    /// SPIFFE ID.
    pub spiffe_id: String,
    /// Serial of the SVID the tunnel was opened with.
    pub serial: String,
    /// Its notAfter, Unix seconds.
    pub expires_at: i64,
    /// Connection number.
    pub connection: u64,
    /// The tunnel.
    pub tunnel: Arc<HubTunnel>,
    /// The adapter session.
    pub upstream: Arc<Upstream>,
    /// The adapter's tools.
    pub tools: Vec<Tool>,
}

impl LiveDeployment {
    /// Builds the entry.
    pub fn new(c: Connected) -> LiveDeployment {
        LiveDeployment {
            workspace: c.workspace,
            name: c.name,
            spiffe_id: c.spiffe_id,
            connected_at: SystemTime::now(),
            connection: c.connection,
            tunnel: c.tunnel,
            session_serial: c.serial.clone(),
            upstream: RwLock::new(c.upstream),
            serial: Mutex::new(c.serial),
            expires_at: AtomicI64::new(c.expires_at),
            tools: RwLock::new(c.tools),
        }
    }

    /// The MCP session with the deployment's adapter.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.upstream
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the adapter session (after the adapter restarted).
    pub fn set_upstream(&self, peer: Arc<Upstream>) {
        *self
            .upstream
            .write()
            .unwrap_or_else(PoisonError::into_inner) = peer;
    }

    /// The adapter's tools, as it names them.
    pub fn tools(&self) -> Vec<Tool> {
        self.tools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the tool list; whether it changed.
    pub fn set_tools(&self, tools: Vec<Tool>) -> bool {
        let mut t = self.tools.write().unwrap_or_else(PoisonError::into_inner);
        if *t == tools {
            return false;
        }
        *t = tools;
        true
    }

    /// The serial of the newest SVID this session holds.
    pub fn serial(&self) -> String {
        self.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When the session's newest SVID expires (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        self.expires_at.load(Ordering::SeqCst)
    }

    /// Records a renewal: the session lives on under the new SVID.
    pub fn renewed(&self, serial: String, expires_at: i64) {
        *self.serial.lock().unwrap_or_else(PoisonError::into_inner) = serial;
        self.expires_at.store(expires_at, Ordering::SeqCst);
    }
}

/// The classifier dialect a deployment's adapter advertises for `tool`
/// (`_meta["ewii/dialect"]`); `None` when absent or unknown, which the
/// policy treats as `other`.
pub fn dialect_of(tool: &Tool) -> Option<SqlDialect> {
    tool.meta
        .as_ref()?
        .get(DIALECT_META)?
        .as_str()
        .and_then(SqlDialect::from_name)
}

/// Whether `tool`'s input schema has a `max_bytes` property (adapters
/// from before the policy's `max_bytes` refuse unknown arguments).
pub fn accepts_max_bytes(tool: &Tool) -> bool {
    tool.input_schema
        .get("properties")
        .and_then(|p| p.get("max_bytes"))
        .is_some()
}

/// The live deployments of every workspace.
pub struct Registry {
    live: RwLock<HashMap<String, Arc<LiveDeployment>>>,
    changes: broadcast::Sender<String>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new(metrics: Arc<Metrics>) -> Registry {
        let (changes, _) = broadcast::channel(256);
        Registry {
            live: RwLock::new(HashMap::new()),
            changes,
            metrics,
        }
    }

    /// Adds a connected deployment; returns the connection it replaces
    /// (the same SPIFFE ID connected again before the old link was noticed
    /// dead), which the caller closes.
    pub fn insert(&self, d: Arc<LiveDeployment>) -> Option<Arc<LiveDeployment>> {
        let workspace = d.workspace.clone();
        let old = {
            let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
            let old = live.insert(d.spiffe_id.clone(), d);
            self.metrics.set_connected(live.len());
            old
        };
        self.changed(&workspace);
        old
    }

    /// Removes connection `connection` of `spiffe_id`, unless a newer one
    /// has replaced it.
    pub fn remove(&self, spiffe_id: &str, connection: u64) {
        let removed = {
            let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
            let removed = match live.get(spiffe_id) {
                Some(d) if d.connection == connection => live.remove(spiffe_id),
                _ => None,
            };
            self.metrics.set_connected(live.len());
            removed
        };
        if let Some(d) = removed {
            self.changed(&d.workspace);
        }
    }

    /// The live deployments of `workspace`, by name.
    pub fn in_workspace(&self, workspace: &str) -> Vec<Arc<LiveDeployment>> {
        let mut out: Vec<_> = self
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|d| d.workspace == workspace)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every live deployment.
    pub fn snapshot(&self) -> Vec<Arc<LiveDeployment>> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Deployment `name` of `workspace`, if connected.
    pub fn find(&self, workspace: &str, name: &str) -> Option<Arc<LiveDeployment>> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|d| d.workspace == workspace && d.name == name)
            .cloned()
    }

    /// Number of live deployments.
    pub fn len(&self) -> usize {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no deployment is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Announces that `workspace`'s tools changed.
    pub fn changed(&self, workspace: &str) {
        let _ = self.changes.send(workspace.to_owned());
    }

    /// Workspace names as their tools change.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}
