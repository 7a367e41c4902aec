//! Several hub replicas as one service: the registry of live tunnels in
//! the store, and the channel that routes an agent's call from the replica
//! it reached to the replica holding the deployment's tunnel.
//!
//! - [`lease`]: each replica publishes the tunnels it holds in the store
//!   (`live_tunnels`, migration 0006) under leases its heartbeat renews
//!   every third of [`ReplicaOptions::lease`]; a replica that dies stops
//!   renewing and its rows are ignored once their lease has passed. A
//!   client that reconnects elsewhere claims its row there at once; the
//!   old holder notices at its next heartbeat and closes its stale tunnel.
//! - [`directory`]: each replica caches the other replicas' tunnels and
//!   catalogs from the store, so `tools/list` shows every deployment of the
//!   workspace, and the policy judges a remote call as a local one.
//! - [`channel`]: QUIC under mutual TLS ([`tls`]) between replicas. The
//!   replica an agent reached authorises and audits the call as for a
//!   local one, then sends it to the holder, which only relays it to its
//!   tunnel and returns the adapter's raw answer and the client's receipt.
//! - `list_changed` across replicas: a replica whose tunnels or catalogs
//!   change pushes a `changed` notice to every live peer, which reads the
//!   registry again and tells its agents; a poll every
//!   [`ReplicaOptions::poll`] is the fallback for a lost notice.
//!
//! On SQLite (one replica) all of this reduces to the local registry: the
//! replica still publishes its tunnels, and finds no peers.

pub mod channel;
pub mod directory;
pub mod lease;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::gateway::agents::HubState;
use crate::state::store::Store;
use channel::Channel;
use lease::{Publisher, now_ms};
use tls::ChannelTls;

/// How a replica joins the others.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// UDP address of the replica channel (`--replica-listen`); without
    /// it, this replica routes to others but nothing is routed to it.
    pub listen: Option<SocketAddr>,
    /// The address peers dial (`--replica-advertise`, `host:port`);
    /// defaults to the bound listen address unless that is unspecified.
    pub advertise: Option<String>,
    /// How long a lease on a tunnel lasts without a heartbeat.
    pub lease: Duration,
    /// How often the registry is read again without a change notice.
    pub poll: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            listen: None,
            advertise: None,
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(2),
        }
    }
}

/// Why a replica could not reach another.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The peer's address does not resolve.
    #[error("cannot resolve the replica address {0}: {1}")]
    Address(String, String),
    /// The link could not be set up (unreachable, or TLS refused).
    #[error("cannot connect to replica {id} at {addr}: {why}")]
    Connect {
        /// The replica dialled.
        id: String,
        /// Its address.
        addr: String,
        /// What failed.
        why: String,
    },
    /// The peer's certificate names another replica.
    #[error("the replica at {addr} is not {expected} (its certificate names '{found}')")]
    WrongPeer {
        /// The address dialled.
        addr: String,
        /// The replica expected there.
        expected: String,
        /// The replica its certificate names.
        found: String,
    },
    /// The link failed during the exchange.
    #[error("the replica link failed: {0}")]
    Link(String),
    /// A message was unreadable or out of bounds.
    #[error("replica protocol: {0}")]
    Protocol(String),
}

/// A started replica.
#[derive(Debug)]
pub struct Replica {
    /// Its id (random per start).
    pub id: String,
    /// The address its peers dial, if it serves the channel.
    pub peer_address: Option<String>,
    /// Where the channel listens, if it does.
    pub listen_addr: Option<SocketAddr>,
    /// Its background tasks.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Joins the replicas sharing `store`: binds the channel, registers this
/// replica and starts publishing, heartbeats and the directory.
pub async fn start(
    store: Store,
    state: Arc<HubState>,
    options: &ReplicaOptions,
    cancel: CancellationToken,
) -> Result<Replica, Error> {
    let id = crate::state::tokens::random_id()?;
    let ca = store.replica_ca(SystemTime::now()).await?;
    let channel = Arc::new(Channel::bind(options.listen, ChannelTls::issue(&ca, &id)?)?);
    let listen_addr = channel.local_addr();
    let peer_address = match (&options.advertise, listen_addr) {
        (Some(_), None) => {
            return Err(Error::Serve(
                "--replica-advertise needs --replica-listen".into(),
            ));
        }
        (Some(a), Some(_)) => Some(a.clone()),
        (None, Some(addr)) if addr.ip().is_unspecified() => {
            return Err(Error::Serve(format!(
                "--replica-listen {addr} is no address peers can dial: give --replica-advertise \
                 HOST:PORT"
            )));
        }
        (None, Some(addr)) => Some(addr.to_string()),
        (None, None) => None,
    };
    store
        .register_replica(&id, peer_address.as_deref(), now_ms())
        .await?;
    state.remote.attach(id.clone(), channel.clone());
    let changed = Arc::new(Notify::new());
    if let Err(e) = sync_directory(&store, &state).await {
        tracing::warn!(error = %e, "cannot read the registry of live tunnels yet");
    }

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(channel.clone().serve(
        state.registry.clone(),
        changed.clone(),
        cancel.clone(),
    )));
    let publisher = Publisher::new(
        id.clone(),
        peer_address.clone(),
        store.clone(),
        state.registry.clone(),
        options.lease,
    );
    tasks.push(tokio::spawn(publish(
        publisher,
        channel.clone(),
        options.lease,
        cancel.clone(),
    )));
    tasks.push(tokio::spawn(follow(
        store,
        state,
        changed,
        options.poll,
        cancel,
    )));
    tracing::info!(replica = %id, peer_address = ?peer_address, "replica joined");
    Ok(Replica {
        id,
        peer_address,
        listen_addr,
        tasks,
    })
}

/// Publishes local changes and heartbeats until `cancel`; then retires.
async fn publish(
    mut publisher: Publisher,
    channel: Arc<Channel>,
    lease: Duration,
    cancel: CancellationToken,
) {
    let mut changes = publisher.registry.subscribe();
    let every = lease / 3;
    let mut next_beat = tokio::time::Instant::now();
    loop {
        let changed = tokio::select! {
            change = changes.recv() => match change {
                Ok(ws) => publisher.publish(Some(&ws)).await,
                Err(broadcast::error::RecvError::Lagged(_)) => publisher.publish(None).await,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::time::sleep_until(next_beat) => {
                next_beat = tokio::time::Instant::now() + every;
                publisher.heartbeat().await
            }
            _ = cancel.cancelled() => break,
        };
        if !changed.is_empty() {
            tell_peers(&publisher, &channel, changed.into_iter().collect(), lease).await;
        }
    }
    publisher.retire().await;
    channel.close();
}

/// Pushes a change notice to every live peer, each in its own task.
async fn tell_peers(
    publisher: &Publisher,
    channel: &Arc<Channel>,
    workspaces: Vec<String>,
    lease: Duration,
) {
    let since = now_ms().saturating_sub(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let peers = match publisher.store.live_replicas(since).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the replicas to tell of a change");
            return;
        }
    };
    for peer in peers {
        let Some(addr) = peer.peer_address else {
            continue;
        };
        if peer.id == publisher.me {
            continue;
        }
        let channel = channel.clone();
        let workspaces = workspaces.clone();
        tokio::spawn(async move {
            if let Err(e) = channel.changed(&peer.id, &addr, workspaces).await {
                tracing::debug!(replica = %peer.id, error = %e, "change notice not delivered; the peer's poll catches up");
            }
        });
    }
}

/// Keeps the directory of remote deployments current: on a peer's notice
/// and every `poll`.
async fn follow(
    store: Store,
    state: Arc<HubState>,
    changed: Arc<Notify>,
    poll: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(e) = sync_directory(&store, &state).await {
            tracing::warn!(error = %e, "cannot read the registry of live tunnels; keeping the last one");
        }
    }
}

async fn sync_directory(store: &Store, state: &HubState) -> Result<(), Error> {
    let changed = state.remote.sync(store, now_ms()).await?;
    for workspace in changed {
        state.tools_changed(&workspace).await;
    }
    Ok(())
}
