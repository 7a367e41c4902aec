//! The replica-to-replica channel: QUIC under mutual TLS ([`super::tls`]),
//! one bidirectional stream per request, one JSON message each way
//! ([`super::wire`]).
//!
//! - A replica serves its channel on `--replica-listen` and dials its
//!   peers from the same endpoint (or from an ephemeral one when it has
//!   no listener: it then routes to others, but nothing is routed to it).
//! - One link per peer, kept open and reused; a closed link is dialled
//!   again on the next request.
//! - Cancellation: the caller dropping a forwarded call drops its stream,
//!   which sends `STOP_SENDING`; the holding replica sees its reply stream
//!   stopped, drops the relayed call, and the tunnel sends
//!   `notifications/cancelled` to the adapter, which cancels the statement
//!   in the engine. A lost link does the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ReplicaError;
use super::tls::{ChannelTls, peer_replica_id, server_name};
use super::wire::{ForwardedCall, MAX_REPLY, MAX_REQUEST, PeerReply, PeerRequest};
use crate::Error;
use crate::gateway::registry::Registry;
use crate::gateway::upstream::{RawRouted, UpstreamError};

/// The longest a replica waits for a peer's handshake.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One replica's end of the channel.
pub struct Channel {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    links: Mutex<HashMap<String, quinn::Connection>>,
    serving: bool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").finish_non_exhaustive()
    }
}

impl Channel {
    /// Binds the channel: serving on `listen` when given, else dialling
    /// only, from an ephemeral port.
    pub fn bind(listen: Option<SocketAddr>, tls: ChannelTls) -> Result<Channel, Error> {
        let (endpoint, serving) = match listen {
            Some(addr) => (
                quinn::Endpoint::server(tls.server, addr).map_err(|e| {
                    Error::Serve(format!(
                        "cannot listen on UDP {addr} for replicas: {e} (choose another with \
                         --replica-listen)"
                    ))
                })?,
                true,
            ),
            None => {
                let any = SocketAddr::from(([0, 0, 0, 0], 0));
                (
                    quinn::Endpoint::client(any).map_err(|e| {
                        Error::Serve(format!("cannot open a UDP port to dial replicas: {e}"))
                    })?,
                    false,
                )
            }
        };
        Ok(Channel {
            endpoint,
            client: tls.client,
            links: Mutex::new(HashMap::new()),
            serving,
        })
    }

    /// Where it listens, when it serves.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        if !self.serving {
            return None;
        }
        self.endpoint.local_addr().ok()
    }

    /// Closes every link and the endpoint.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"replica stopping");
    }

    /// The open link to replica `id` at `addr`, dialled if needed; the
    /// peer must prove it is that replica.
    async fn link(&self, id: &str, addr: &str) -> Result<quinn::Connection, ReplicaError> {
        if let Some(c) = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let target = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| ReplicaError::Address(addr.to_owned(), e.to_string()))?
            .next()
            .ok_or_else(|| ReplicaError::Address(addr.to_owned(), "no address".into()))?;
        let connect = |why: String| ReplicaError::Connect {
            id: id.to_owned(),
            addr: addr.to_owned(),
            why,
        };
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), target, server_name())
            .map_err(|e| connect(e.to_string()))?;
        // A dead replica's lease outlives it by up to a lease: give up on
        // it quickly rather than hold the agent's call for the idle timeout.
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect(e.to_string()))?;
        match peer_replica_id(&connection) {
            Some(found) if found == id => {}
            found => {
                connection.close(1u32.into(), b"not the replica dialled");
                return Err(ReplicaError::WrongPeer {
                    addr: addr.to_owned(),
                    expected: id.to_owned(),
                    found: found.unwrap_or_default(),
                });
            }
        }
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), connection.clone());
        Ok(connection)
    }

    /// Sends `request` to replica `id` at `addr`; its reply. Errors before
    /// the request left are [`ReplicaError`]s that say nothing was sent.
    async fn exchange(
        &self,
        id: &str,
        addr: &str,
        request: &PeerRequest,
    ) -> Result<Result<PeerReply, ReplicaError>, ReplicaError> {
        let bytes =
            serde_json::to_vec(request).map_err(|e| ReplicaError::Protocol(e.to_string()))?;
        if bytes.len() > MAX_REQUEST {
            return Err(ReplicaError::Protocol(format!(
                "the request is {} bytes, more than the {MAX_REQUEST} a replica takes",
                bytes.len()
            )));
        }
        let link = self.link(id, addr).await?;
        let (mut send, mut recv) = link
            .open_bi()
            .await
            .map_err(|e| ReplicaError::Link(e.to_string()))?;
        // Past this point the peer may have started on the request.
        let sent = async {
            send.write_all(&bytes)
                .await
                .map_err(|e| ReplicaError::Link(e.to_string()))?;
            send.finish()
                .map_err(|e| ReplicaError::Link(e.to_string()))?;
            let answer = recv
                .read_to_end(MAX_REPLY)
                .await
                .map_err(|e| ReplicaError::Link(e.to_string()))?;
            serde_json::from_slice::<PeerReply>(&answer)
                .map_err(|e| ReplicaError::Protocol(e.to_string()))
        };
        Ok(sent.await)
    }

    /// Relays an authorised, audited call to replica `id` at `addr`, which
    /// holds the tunnel.
    pub async fn call(
        &self,
        id: &str,
        addr: &str,
        call: ForwardedCall,
    ) -> Result<RawRouted, UpstreamError> {
        let reply = self
            .exchange(id, addr, &PeerRequest::Call(Box::new(call)))
            .await
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?
            .map_err(|e| UpstreamError::Tunnel(format!("replica channel: {e}")))?;
        match reply {
            PeerReply::Answer {
                result,
                receipt,
                bytes,
            } => Ok(RawRouted {
                result: result.get().to_owned(),
                receipt,
                bytes,
            }),
            PeerReply::Failed(f) => Err(f.into()),
            PeerReply::NotHeld => Err(UpstreamError::Unreachable(format!(
                "replica {id} no longer holds the deployment's tunnel"
            ))),
            PeerReply::Ack => Err(UpstreamError::Malformed(
                "the replica acknowledged a call instead of answering it".into(),
            )),
        }
    }

    /// Tells replica `id` at `addr` that `workspaces` changed here.
    pub async fn changed(
        &self,
        id: &str,
        addr: &str,
        workspaces: Vec<String>,
    ) -> Result<(), ReplicaError> {
        match self
            .exchange(id, addr, &PeerRequest::Changed { workspaces })
            .await??
        {
            PeerReply::Ack => Ok(()),
            other => Err(ReplicaError::Protocol(format!(
                "unexpected answer to a change notice: {other:?}"
            ))),
        }
    }

    /// Serves peers until `cancel` fires: each request on its own stream;
    /// calls go to the tunnels of `registry`, change notices wake
    /// `changed`.
    pub async fn serve(
        self: Arc<Self>,
        registry: Arc<Registry>,
        changed: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        if !self.serving {
            return;
        }
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => i,
                _ = cancel.cancelled() => return,
            };
            let Some(incoming) = incoming else { return };
            let registry = registry.clone();
            let changed = changed.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let connection = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        // A peer without a certificate from the replica CA
                        // ends here.
                        tracing::warn!(%remote, error = %e, "replica peer refused");
                        return;
                    }
                };
                let Some(peer) = peer_replica_id(&connection) else {
                    tracing::warn!(%remote, "replica peer refused: its certificate names no replica");
                    connection.close(1u32.into(), b"no replica identity");
                    return;
                };
                tracing::debug!(%remote, %peer, "replica peer connected");
                serve_link(connection, registry, changed, cancel).await;
            });
        }
    }
}

/// One peer's link: its requests, each on a stream of its own.
async fn serve_link(
    connection: quinn::Connection,
    registry: Arc<Registry>,
    changed: Arc<Notify>,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            s = connection.accept_bi() => s,
            _ = cancel.cancelled() => return,
        };
        let Ok((send, recv)) = stream else { return };
        let registry = registry.clone();
        let changed = changed.clone();
        tokio::spawn(async move { serve_request(send, recv, &registry, &changed).await });
    }
}

async fn serve_request(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    registry: &Registry,
    changed: &Notify,
) {
    let Ok(bytes) = recv.read_to_end(MAX_REQUEST).await else {
        return;
    };
    let request: PeerRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable request from a replica peer");
            let _ = send.reset(1u32.into());
            return;
        }
    };
    let reply = match request {
        PeerRequest::Changed { .. } => {
            changed.notify_one();
            PeerReply::Ack
        }
        PeerRequest::Call(call) => {
            let call = *call;
            let held = registry
                .find(&call.workspace, &call.deployment)
                .filter(|d| d.spiffe_id == call.spiffe_id && d.connection == call.connection);
            match held {
                None => PeerReply::NotHeld,
                Some(live) => {
                    let upstream = live.upstream();
                    let relayed = upstream.call_tool_raw(
                        &call.tool,
                        call.arguments.as_ref(),
                        call.meta,
                        None,
                    );
                    tokio::select! {
                        outcome = relayed => PeerReply::of(outcome),
                        // The caller gave up (cancelled, timed out, gone):
                        // dropping the relayed call cancels it at the
                        // adapter.
                        _ = send.stopped() => return,
                    }
                }
            }
        }
    };
    match serde_json::to_vec(&reply) {
        Ok(bytes) => {
            if send.write_all(&bytes).await.is_ok() {
                let _ = send.finish();
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode a reply to a replica peer"),
    }
}
