//! The hub as an MCP client of each deployment's adapter, through the
//! tunnel.
//!
//! rmcp's client runs over a sink/stream pair that this module pumps: each
//! outgoing JSON-RPC message goes on its own tunnel request stream (the
//! client forwards it to its adapter), the answers on that stream come
//! back in, and server-initiated messages (e.g.
//! `notifications/tools/list_changed`) arrive on the control stream. A
//! request the client refuses, or whose stream ends without an answer,
//! gets a JSON-RPC error, so no caller waits forever. What a refusal means
//! is read from its typed code alone (`adapter_session_lost` starts a new
//! session), never from its text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ewii_quic::HubTunnel;
use ewii_wire::receipt::Reply;
use ewii_wire::refusal::RefusalCode;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use rmcp::model::{
    ClientCapabilities, ClientJsonRpcMessage, ErrorCode, ErrorData, Implementation, JsonRpcMessage,
    ProtocolVersion, ServerJsonRpcMessage,
};
use rmcp::service::{NotificationContext, RoleClient};
use tokio::sync::mpsc;

/// The `_meta` key that marks a routed `tools/call` so its receipt can be
/// handed back to the agent-side call that sent it.
pub const TICKET_META: &str = "dev.ewii/ticket";

/// A fresh ticket for [`TICKET_META`].
pub fn new_ticket() -> String {
    crate::state::tokens::random_id().unwrap_or_else(|_| {
        // The system random generator failing leaves only uniqueness to
        // care about: a process-wide counter gives that.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        format!(
            "n{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    })
}

/// The client's receipt of one routed call, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptInfo {
    /// SHA-256 (hex) of the request the client forwarded.
    pub request_digest: String,
    /// SHA-256 (hex) of the adapter's response.
    pub response_digest: String,
    /// The client's signature over both (base64).
    pub signature: String,
    /// Its TLS signature scheme.
    pub scheme: u16,
}

/// Receipts of a deployment's calls in flight, by ticket.
#[derive(Debug, Default)]
pub struct Receipts(Mutex<HashMap<String, ReceiptInfo>>);

impl Receipts {
    /// Files a receipt.
    pub fn put(&self, ticket: String, receipt: ReceiptInfo) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: a ticket nobody takes (a call abandoned at the wrong
        // moment) must not accumulate.
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(ticket, receipt);
    }

    /// Takes the receipt of `ticket`.
    pub fn take(&self, ticket: &str) -> Option<ReceiptInfo> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(ticket)
    }
}

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
    receipts: Arc<Receipts>,
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
                        tokio::spawn(exchange(
                            tunnel.clone(),
                            message,
                            in_tx.clone(),
                            lost.clone(),
                            receipts.clone(),
                        ));
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

/// The audit ticket of a routed `tools/call`, if it carries one.
fn ticket_of(message: &ClientJsonRpcMessage) -> Option<String> {
    let JsonRpcMessage::Request(r) = message else {
        return None;
    };
    let rmcp::model::ClientRequest::CallToolRequest(call) = &r.request else {
        return None;
    };
    call.params
        .meta
        .as_ref()?
        .get(TICKET_META)?
        .as_str()
        .map(str::to_owned)
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
    receipts: Arc<Receipts>,
) {
    let id = match &message {
        JsonRpcMessage::Request(r) => Some(r.id.clone()),
        _ => None,
    };
    let ticket = ticket_of(&message);
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
            Ok(Reply::Message { message, receipt }) => {
                match serde_json::from_slice::<ServerJsonRpcMessage>(&message) {
                    Ok(m) => {
                        if is_answer(&m)
                            && let Some(ticket) = &ticket
                        {
                            // Filed before the answer reaches the caller.
                            receipts.put(
                                ticket.clone(),
                                ReceiptInfo {
                                    request_digest: receipt.request_digest_hex(),
                                    response_digest: receipt.response_digest_hex(),
                                    signature: receipt.signature_b64(),
                                    scheme: receipt.scheme,
                                },
                            );
                        }
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
            Ok(Reply::Refused(refused)) => {
                answered = true;
                if refused.code == RefusalCode::AdapterSessionLost {
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
                        "the deployment's client did not forward the request: {refused}"
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
