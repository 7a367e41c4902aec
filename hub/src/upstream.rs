//! The hub as an MCP client of each deployment's adapter, through the
//! tunnel.
//!
//! rmcp's client runs over a sink/stream pair that this module pumps: each
//! outgoing JSON-RPC message goes on its own tunnel request stream (the
//! client forwards it to its adapter), the answers on that stream come
//! back in, and server-initiated messages (e.g.
//! `notifications/tools/list_changed`) arrive on the control stream. A
//! request the client refuses, or whose stream ends without an answer,
//! gets a JSON-RPC error, so no caller waits forever.

use std::sync::Arc;

use ewii_tunnel::net::{HubTunnel, Reply};
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use rmcp::model::{
    ClientCapabilities, ClientJsonRpcMessage, ErrorCode, ErrorData, Implementation, JsonRpcMessage,
    ProtocolVersion, ServerJsonRpcMessage,
};
use rmcp::service::{NotificationContext, RoleClient};
use tokio::sync::mpsc;

/// The rmcp client handler of one deployment session: reports catalog
/// changes.
#[derive(Clone)]
pub struct UpstreamHandler {
    changed: mpsc::Sender<()>,
}

impl UpstreamHandler {
    /// A handler that signals `changed` on `notifications/tools/list_changed`.
    pub fn new(changed: mpsc::Sender<()>) -> UpstreamHandler {
        UpstreamHandler { changed }
    }
}

impl rmcp::ClientHandler for UpstreamHandler {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        rmcp::model::ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("ewii-hub", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.try_send(());
    }
}

/// The sink/stream pair rmcp's client runs over, pumped through `tunnel`.
/// `lost` is signalled when the adapter no longer knows the MCP session
/// (it restarted behind a live tunnel), so the caller can start a new one.
pub fn transport(
    tunnel: Arc<HubTunnel>,
    lost: mpsc::Sender<()>,
) -> (
    UnboundedSender<ClientJsonRpcMessage>,
    UnboundedReceiver<ServerJsonRpcMessage>,
) {
    let (out_tx, mut out_rx) = unbounded::<ClientJsonRpcMessage>();
    let (in_tx, in_rx) = unbounded::<ServerJsonRpcMessage>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                out = out_rx.next() => match out {
                    Some(message) => {
                        tokio::spawn(exchange(tunnel.clone(), message, in_tx.clone(), lost.clone()));
                    }
                    None => break,
                },
                note = tunnel.next_notification() => match note {
                    Some(bytes) => match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
                        Ok(m) => {
                            if in_tx.unbounded_send(m).is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable message from the adapter ignored"),
                    },
                    // The tunnel closed: ending the stream ends the session.
                    None => break,
                },
            }
        }
    });
    (out_tx, in_rx)
}

/// Whether a message is a (successful or failed) response.
fn is_answer(m: &ServerJsonRpcMessage) -> bool {
    matches!(m, JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_))
}

/// Sends one message on its own request stream and relays the answers.
async fn exchange(
    tunnel: Arc<HubTunnel>,
    message: ClientJsonRpcMessage,
    in_tx: UnboundedSender<ServerJsonRpcMessage>,
    lost: mpsc::Sender<()>,
) {
    let id = match &message {
        JsonRpcMessage::Request(r) => Some(r.id.clone()),
        _ => None,
    };
    let fail = |why: String| {
        if let Some(id) = id.clone() {
            let _ = in_tx.unbounded_send(ServerJsonRpcMessage::error(
                ErrorData::new(ErrorCode::INTERNAL_ERROR, why, None),
                Some(id),
            ));
        }
    };
    let bytes = match serde_json::to_vec(&message) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot encode the request: {e}")),
    };
    let mut answers = match tunnel.request(None, &bytes).await {
        Ok(rx) => rx,
        Err(e) => return fail(format!("the deployment's tunnel failed: {e}")),
    };
    let mut answered = false;
    while let Some(answer) = answers.recv().await {
        match answer {
            Ok(Reply::Message(bytes)) => {
                match serde_json::from_slice::<ServerJsonRpcMessage>(&bytes) {
                    Ok(m) => {
                        answered |= is_answer(&m);
                        if in_tx.unbounded_send(m).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable answer from the adapter ignored")
                    }
                }
            }
            Ok(Reply::Refused(why)) => {
                answered = true;
                if why.starts_with(ewii_tunnel::forward::SESSION_LOST) {
                    // The adapter forgot the session: it restarted. The
                    // request never ran there; a new session is started.
                    let _ = lost.try_send(());
                    fail(
                        "the deployment's adapter restarted; its session is being \
                         re-established, retry the call"
                            .into(),
                    );
                } else {
                    fail(format!(
                        "the deployment's client did not forward the request: {why}"
                    ));
                }
            }
            Err(e) => {
                answered = true;
                fail(format!(
                    "the deployment's tunnel failed during the request: {e}"
                ));
            }
        }
    }
    if !answered {
        fail("the deployment's adapter closed the request without an answer".into());
    }
}
