//! `notifications/tools/list_changed` to everyone who should hear it.
//!
//! Two kinds of client listen: session clients (≤ 2025-11-25) get the
//! notification on their session's stream, through the peer registered at
//! `notifications/initialized`; 2026-07-28 clients have no session and
//! hold a `subscriptions/listen` request open instead. Both are grouped
//! (the hub by workspace, the adapter in one group), so a change to one
//! group's tools reaches only that group.

use std::sync::{Mutex, PoisonError};

use rmcp::model::ErrorData;
use rmcp::service::{Peer, RoleServer, SubscriptionContext};
use tokio::sync::broadcast;

/// How many changes a slow `listen` subscriber may fall behind before it
/// is told "something changed" once for all of them.
const BACKLOG: usize = 64;

/// The clients to tell when tools change, by group.
pub struct ListChanged {
    /// Session clients, with their group.
    peers: Mutex<Vec<(String, Peer<RoleServer>)>>,
    /// Changes for `listen` subscribers: the group, or `None` for all.
    changes: broadcast::Sender<Option<String>>,
}

impl std::fmt::Debug for ListChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListChanged").finish_non_exhaustive()
    }
}

impl Default for ListChanged {
    fn default() -> Self {
        ListChanged::new()
    }
}

impl ListChanged {
    /// No clients yet.
    pub fn new() -> ListChanged {
        ListChanged {
            peers: Mutex::new(Vec::new()),
            changes: broadcast::channel(BACKLOG).0,
        }
    }

    /// Remembers a session client of `group` (closed ones are dropped as
    /// new ones come).
    pub fn register(&self, group: &str, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.retain(|(_, peer)| !peer.is_transport_closed());
        peers.push((group.to_owned(), peer));
    }

    /// Tells the clients of `group` (`None`: of every group) that the tool
    /// list changed.
    pub async fn notify(&self, group: Option<&str>) {
        // No subscriber is no error: nobody is listening right now.
        let _ = self.changes.send(group.map(str::to_owned));
        let peers: Vec<Peer<RoleServer>> = {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            peers.retain(|(_, peer)| !peer.is_transport_closed());
            peers
                .iter()
                .filter(|(g, _)| group.is_none_or(|wanted| wanted == g))
                .map(|(_, peer)| peer.clone())
                .collect()
        };
        for peer in peers {
            if let Err(e) = peer.notify_tool_list_changed().await {
                tracing::debug!(error = %e, "could not notify a client of the tool list change");
            }
        }
    }

    /// Serves one 2026-07-28 `subscriptions/listen` of a `group` client
    /// until it is cancelled or its stream closes.
    pub async fn listen(
        &self,
        group: &str,
        context: &SubscriptionContext,
    ) -> Result<(), ErrorData> {
        let mut changes = self.changes.subscribe();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                change = changes.recv() => match change {
                    Ok(Some(changed)) if changed != group => {}
                    // Missed some: they may have been this group's.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if context.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}
