//! Serving one tunnel: each request the hub opens is forwarded to its
//! allow-listed adapter (refused with a typed code otherwise) and answered
//! with receipts; the adapters' server-initiated messages go back on the
//! control stream.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use ewii_quic::{ClientTunnel, Closed, IncomingRequest, NetError};
use ewii_wire::refusal::{RefusalCode, Refused};
use tokio_util::sync::CancellationToken;

use super::{Client, GOODBYE_TIMEOUT, TunnelEnd};
use crate::connlog::ConnectionRecord;
use crate::forward::{AdapterLink, Destination};

impl Client {
    /// Serves one tunnel until it closes; returns how it ended.
    pub(super) async fn serve(
        self: Arc<Self>,
        tunnel: ClientTunnel,
        cancel: &CancellationToken,
    ) -> TunnelEnd {
        let tunnel = Arc::new(tunnel);
        // A new hub session starts new MCP sessions with the adapters.
        let links: Arc<HashMap<Destination, Arc<AdapterLink>>> = Arc::new(
            self.settings
                .allow
                .iter()
                .map(|d| {
                    let credential = self.settings.adapter_credential.clone();
                    (d.clone(), Arc::new(AdapterLink::new(d.clone(), credential)))
                })
                .collect(),
        );
        let session_cancel = cancel.child_token();
        if self.renews() {
            tokio::spawn(
                self.clone()
                    .keep_renewing(tunnel.clone(), session_cancel.clone()),
            );
        }
        let listening = Arc::new(Mutex::new(HashSet::new()));
        let reason = loop {
            tokio::select! {
                next = tunnel.next_request() => match next {
                    Some(Ok(request)) => {
                        let this = self.clone();
                        let links = links.clone();
                        let tunnel = tunnel.clone();
                        let listening = listening.clone();
                        let session_cancel = session_cancel.clone();
                        tokio::spawn(async move {
                            this.forward(request, &links, &tunnel, &listening, &session_cancel).await;
                        });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "request stream refused");
                        if matches!(e, NetError::Session(_) | NetError::Stream(_)) {
                            tunnel.close_protocol_violation();
                        }
                    }
                    None => match tunnel.close_reason() {
                        Some(Closed::Revoked(how)) => break TunnelEnd::Revoked(how),
                        closed => {
                            break TunnelEnd::Lost(
                                closed.map(|r| r.to_string()).unwrap_or_else(|| "closed".into()),
                            );
                        }
                    },
                },
                _ = cancel.cancelled() => {
                    if !self.says_goodbye() {
                        tunnel.close("client stopping");
                        break TunnelEnd::Stopped(None);
                    }
                    // The renewal task stops with `cancel` (its token is a
                    // child), so the control stream is free for the goodbye.
                    let said = tunnel.goodbye(GOODBYE_TIMEOUT).await.map_err(|e| {
                        tunnel.close("client stopping");
                        e.to_string()
                    });
                    break TunnelEnd::Stopped(Some(said));
                }
            }
        };
        session_cancel.cancel();
        for link in links.values() {
            link.close().await;
        }
        reason
    }

    /// Forwards one request stream to its adapter and streams the answers
    /// back; refuses anything outside the allow-list before dialling.
    async fn forward(
        &self,
        mut request: IncomingRequest,
        links: &HashMap<Destination, Arc<AdapterLink>>,
        tunnel: &Arc<ClientTunnel>,
        listening: &Arc<Mutex<HashSet<Destination>>>,
        session_cancel: &CancellationToken,
    ) {
        let started = Instant::now();
        let req = match request.read().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "request stream refused");
                if matches!(e, NetError::Stream(_) | NetError::Session(_)) {
                    tunnel.close_protocol_violation();
                }
                return;
            }
        };
        let mut record = ConnectionRecord::now(&self.identity, "forward");
        record.bytes_out = req.message.len() as u64;
        let destination = match &req.route {
            None => Ok(self.settings.allow.default_destination().clone()),
            Some(route) => route.parse::<Destination>(),
        };
        record.destination = Some(
            req.route
                .clone()
                .unwrap_or_else(|| self.settings.allow.default_destination().to_string()),
        );
        let link = destination
            .and_then(|d| self.settings.allow.check(&d).map(|()| d))
            .map(|d| links.get(&d).cloned());
        let link = match link {
            Ok(Some(link)) => link,
            Ok(None) | Err(_) => {
                let refused = match link {
                    Err(e) => e.refused(),
                    _ => Refused::new(
                        RefusalCode::DestinationNotAllowed,
                        "destination not in the allow-list",
                    ),
                };
                tracing::warn!(route = ?req.route, reason = %refused, "request refused");
                record.event = "refused";
                record.outcome = refused.to_string();
                let _ = request.refuse(&refused).await;
                let _ = request.finish().await;
                record.duration_ms = started.elapsed().as_millis() as u64;
                self.log(record);
                return;
            }
        };
        let outcome = match link.send(req.message.clone()).await {
            Ok(mut answers) => {
                let mut outcome = Ok(());
                while let Some(answer) = answers.recv().await {
                    match answer {
                        Ok(message) => {
                            record.bytes_in += message.len() as u64;
                            if let Err(e) = request.reply(&message).await {
                                outcome = Err(e.to_string());
                                break;
                            }
                        }
                        Err(e) => {
                            let refused = e.refused();
                            let _ = request.refuse(&refused).await;
                            outcome = Err(refused.to_string());
                            break;
                        }
                    }
                }
                outcome
            }
            Err(e) => {
                let refused = e.refused();
                let _ = request.refuse(&refused).await;
                Err(refused.to_string())
            }
        };
        let _ = request.finish().await;
        record.duration_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = outcome {
            record.outcome = e;
        }
        self.log(record);
        self.ensure_listening(&link, tunnel, listening, session_cancel);
    }

    /// Once the adapter session exists, relay its server-initiated messages
    /// (e.g. `tools/list_changed`) to the hub on the control stream.
    fn ensure_listening(
        &self,
        link: &Arc<AdapterLink>,
        tunnel: &Arc<ClientTunnel>,
        listening: &Arc<Mutex<HashSet<Destination>>>,
        session_cancel: &CancellationToken,
    ) {
        if link.session_id().is_none() {
            return;
        }
        {
            let mut set = listening.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(link.destination().clone()) {
                return;
            }
        }
        let link = link.clone();
        let tunnel = tunnel.clone();
        let listening = listening.clone();
        let cancel = session_cancel.clone();
        tokio::spawn(async move {
            match link.listen().await {
                Ok(mut rx) => loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(message) => {
                                let message: Bytes = message;
                                if tunnel.notify(&message).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                        _ = cancel.cancelled() => break,
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "no server-initiated stream from the adapter")
                }
            }
            listening
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(link.destination());
        });
    }
}
