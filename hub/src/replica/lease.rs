//! This replica's entries in the registry of live tunnels: what it
//! publishes of its local registry, and the heartbeat that renews its
//! leases and notices tunnels taken over by another replica.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::gateway::registry::{LiveDeployment, Registry};
use crate::state::store::Store;
use crate::state::store::replicas::TunnelClaim;

/// Unix milliseconds of now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What this replica last wrote for one tunnel.
struct Published {
    workspace: String,
    connection: u64,
    catalog: String,
}

/// A tunnel's catalog as published: the tools (JSON) and their SHA-256.
fn catalog_of(d: &LiveDeployment) -> (String, String) {
    let tools = serde_json::to_string(&d.tools()).unwrap_or_else(|_| "[]".into());
    let digest = ring::digest::digest(&ring::digest::SHA256, tools.as_bytes());
    let hex = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    (tools, hex)
}

fn connected_ms(d: &LiveDeployment) -> i64 {
    d.connected_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Publishes the local registry into the store and keeps its leases.
pub(crate) struct Publisher {
    pub(crate) me: String,
    pub(crate) address: Option<String>,
    pub(crate) store: Store,
    pub(crate) registry: Arc<Registry>,
    pub(crate) lease: Duration,
    published: HashMap<String, Published>,
}

impl Publisher {
    /// A publisher that has written nothing yet.
    pub(crate) fn new(
        me: String,
        address: Option<String>,
        store: Store,
        registry: Arc<Registry>,
        lease: Duration,
    ) -> Publisher {
        Publisher {
            me,
            address,
            store,
            registry,
            lease,
            published: HashMap::new(),
        }
    }

    /// Brings the store in line with the local registry: new connections
    /// claimed, changed catalogs of `workspace` (every workspace when
    /// `None`) rewritten, closed tunnels released. The workspaces that
    /// changed.
    pub(crate) async fn publish(&mut self, workspace: Option<&str>) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        let lease_until = now_ms().saturating_add(ms(self.lease));
        let live = self.registry.snapshot();
        let mut seen = HashSet::new();
        for d in &live {
            seen.insert(d.spiffe_id.clone());
            let known = self.published.get(&d.spiffe_id);
            let same_connection = known.is_some_and(|p| p.connection == d.connection);
            let look_at_catalog = workspace.is_none_or(|w| w == d.workspace);
            if same_connection && !look_at_catalog {
                continue;
            }
            let (tools, catalog) = catalog_of(d);
            if same_connection && known.is_some_and(|p| p.catalog == catalog) {
                continue;
            }
            let claim = TunnelClaim {
                spiffe_id: &d.spiffe_id,
                connection: d.connection,
                session_serial: &d.session_serial,
                catalog: &catalog,
                tools: &tools,
                connected_at: connected_ms(d),
            };
            let written = if same_connection {
                self.store.update_tunnel_catalog(&self.me, &claim).await
            } else {
                self.store.claim_tunnel(&self.me, &claim, lease_until).await
            };
            match written {
                Ok(_) => {
                    self.published.insert(
                        d.spiffe_id.clone(),
                        Published {
                            workspace: d.workspace.clone(),
                            connection: d.connection,
                            catalog,
                        },
                    );
                    changed.insert(d.workspace.clone());
                }
                Err(e) => tracing::warn!(
                    workspace = %d.workspace, deployment = %d.name, error = %e,
                    "cannot publish a tunnel in the registry of live tunnels; retrying"
                ),
            }
        }
        let gone: Vec<(String, u64, String)> = self
            .published
            .iter()
            .filter(|(spiffe_id, _)| !seen.contains(*spiffe_id))
            .map(|(s, p)| (s.clone(), p.connection, p.workspace.clone()))
            .collect();
        for (spiffe_id, connection, ws) in gone {
            match self
                .store
                .release_tunnel(&self.me, &spiffe_id, connection)
                .await
            {
                Ok(()) => {
                    self.published.remove(&spiffe_id);
                    changed.insert(ws);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release a closed tunnel's lease; retrying")
                }
            }
        }
        changed
    }

    /// One heartbeat: the replica's row and leases renewed; a tunnel whose
    /// row another replica holds now (its client reconnected there) is
    /// closed here, one whose row vanished is claimed again.
    pub(crate) async fn heartbeat(&mut self) -> BTreeSet<String> {
        let mut changed = self.publish(None).await;
        let now = now_ms();
        let lease_until = now.saturating_add(ms(self.lease));
        let held = match self
            .store
            .replica_heartbeat(&self.me, self.address.as_deref(), now, lease_until)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "replica heartbeat failed: other replicas stop routing here once the lease runs out");
                return changed;
            }
        };
        for d in self.registry.snapshot() {
            let published = self
                .published
                .get(&d.spiffe_id)
                .is_some_and(|p| p.connection == d.connection);
            if !published || held.contains(&(d.spiffe_id.clone(), d.connection)) {
                continue;
            }
            let (tools, catalog) = catalog_of(&d);
            let claim = TunnelClaim {
                spiffe_id: &d.spiffe_id,
                connection: d.connection,
                session_serial: &d.session_serial,
                catalog: &catalog,
                tools: &tools,
                connected_at: connected_ms(&d),
            };
            match self
                .store
                .reclaim_tunnel(&self.me, &claim, now, lease_until)
                .await
            {
                Ok(true) => {
                    changed.insert(d.workspace.clone());
                }
                Ok(false) => {
                    tracing::warn!(
                        workspace = %d.workspace, deployment = %d.name,
                        "the deployment reconnected to another replica: closing its stale tunnel here"
                    );
                    self.published.remove(&d.spiffe_id);
                    d.tunnel.close_replaced();
                }
                Err(e) => tracing::warn!(error = %e, "cannot re-claim a tunnel's lease"),
            }
        }
        changed
    }

    /// The replica stops: its leases and row go.
    pub(crate) async fn retire(&self) {
        if let Err(e) = self.store.retire_replica(&self.me).await {
            tracing::warn!(error = %e, "cannot retire this replica from the registry; its leases run out by themselves");
        }
    }
}
