//! The deployments other replicas hold: a cache of the store's registry of
//! live tunnels, with their catalogs, so this replica lists their tools
//! and authorises calls to them exactly as for its own.
//!
//! [`Directory::sync`] reads the registry again (a light query; catalogs
//! only for rows whose catalog digest changed) and says which workspaces
//! changed, whose agents then get `notifications/tools/list_changed`. It
//! runs when a peer pushes a change notice and on a short poll, the
//! fallback for a lost notice.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rmcp::model::{RequestMetaObject, Tool};

use super::channel::Channel;
use super::wire::ForwardedCall;
use crate::Error;
use crate::gateway::registry::LiveDeployment;
use crate::gateway::upstream::{RawRouted, UpstreamError};
use crate::state::store::Store;
use crate::state::store::replicas::HeldTunnel;

/// A deployment whose tunnel another replica holds.
#[derive(Debug)]
pub struct RemoteDeployment {
    /// Where it is, as the registry says.
    pub held: HeldTunnel,
    /// Its adapter's tools.
    pub tools: Vec<Tool>,
}

/// A deployment an agent can reach from this replica: through its own
/// tunnel here, or through the replica that holds it.
#[derive(Debug, Clone)]
pub enum Held {
    /// Connected to this replica.
    Local(Arc<LiveDeployment>),
    /// Connected to another replica.
    Remote(Arc<RemoteDeployment>),
}

impl Held {
    /// The deployment's name.
    pub fn name(&self) -> &str {
        match self {
            Held::Local(d) => &d.name,
            Held::Remote(d) => &d.held.deployment,
        }
    }

    /// Its SPIFFE ID.
    pub fn spiffe_id(&self) -> &str {
        match self {
            Held::Local(d) => &d.spiffe_id,
            Held::Remote(d) => &d.held.spiffe_id,
        }
    }

    /// Serial of the SVID its tunnel was opened with.
    pub fn session_serial(&self) -> &str {
        match self {
            Held::Local(d) => &d.session_serial,
            Held::Remote(d) => &d.held.session_serial,
        }
    }

    /// Its adapter's tools.
    pub fn tools(&self) -> Vec<Tool> {
        match self {
            Held::Local(d) => d.tools(),
            Held::Remote(d) => d.tools.clone(),
        }
    }
}

/// The cache of deployments other replicas hold, and the channel to them.
#[derive(Debug, Default)]
pub struct Directory {
    me: OnceLock<String>,
    channel: OnceLock<Arc<Channel>>,
    remote: RwLock<HashMap<(String, String), Arc<RemoteDeployment>>>,
}

impl Directory {
    /// Sets this replica's id and channel (once, at start).
    pub fn attach(&self, me: String, channel: Arc<Channel>) {
        let _ = self.me.set(me);
        let _ = self.channel.set(channel);
    }

    /// The deployments of `workspace` other replicas hold.
    pub fn in_workspace(&self, workspace: &str) -> Vec<Arc<RemoteDeployment>> {
        self.remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|d| d.held.workspace == workspace)
            .cloned()
            .collect()
    }

    /// Deployment `name` of `workspace`, if another replica holds it.
    pub fn find(&self, workspace: &str, name: &str) -> Option<Arc<RemoteDeployment>> {
        self.remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(workspace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Reads the registry of live tunnels again at `now` (Unix ms); the
    /// workspaces whose remote deployments or catalogs changed.
    pub async fn sync(&self, store: &Store, now: i64) -> Result<BTreeSet<String>, Error> {
        let Some(me) = self.me.get() else {
            return Ok(BTreeSet::new());
        };
        let rows = store.held_tunnels(now).await?;
        let old = self
            .remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut fresh = HashMap::new();
        for held in rows {
            // Our own tunnels are in the local registry; a replica without
            // a channel cannot be routed to.
            if held.replica_id == *me || held.peer_address.is_none() {
                continue;
            }
            let key = (held.workspace.clone(), held.deployment.clone());
            if let Some(known) = old.get(&key)
                && known.held == held
            {
                fresh.insert(key, known.clone());
                continue;
            }
            let Some(tools) = store.tunnel_tools(&held).await? else {
                continue; // changed under us: the next sync sees it
            };
            let tools: Vec<Tool> = match serde_json::from_str(&tools) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(
                        workspace = %held.workspace, deployment = %held.deployment, error = %e,
                        "unreadable catalog in the registry of live tunnels; deployment left out"
                    );
                    continue;
                }
            };
            fresh.insert(key, Arc::new(RemoteDeployment { held, tools }));
        }
        let mut changed = BTreeSet::new();
        for (key, d) in &fresh {
            if old.get(key).is_none_or(|o| o.held != d.held) {
                changed.insert(key.0.clone());
            }
        }
        for key in old.keys() {
            if !fresh.contains_key(key) {
                changed.insert(key.0.clone());
            }
        }
        *self.remote.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(changed)
    }

    /// Relays an authorised, audited call to the replica holding `d`.
    pub async fn call(
        &self,
        d: &RemoteDeployment,
        tool: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        meta: RequestMetaObject,
    ) -> Result<RawRouted, UpstreamError> {
        let channel = self
            .channel
            .get()
            .ok_or_else(|| UpstreamError::Unreachable("this hub has no replica channel".into()))?;
        let addr = d
            .held
            .peer_address
            .as_deref()
            .ok_or_else(|| UpstreamError::Unreachable("the replica has no address".into()))?;
        channel
            .call(
                &d.held.replica_id,
                addr,
                ForwardedCall {
                    workspace: d.held.workspace.clone(),
                    deployment: d.held.deployment.clone(),
                    spiffe_id: d.held.spiffe_id.clone(),
                    connection: d.held.connection,
                    tool: tool.to_owned(),
                    arguments: arguments.cloned(),
                    meta,
                },
            )
            .await
    }
}
