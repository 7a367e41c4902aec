//! The hub's side of each deployment's MCP session: JSON-RPC relayed
//! through the tunnel, one request stream per message.
//!
//! The hub does not run an MCP client stack towards the adapter. It opens
//! the session once per tunnel (`initialize`, `notifications/initialized`,
//! `tools/list`), then sends each authorised call as the bytes of one
//! `tools/call` request with an id of its own (agents' ids never cross a
//! tunnel, so two agents' ids cannot collide on the adapter's session), and
//! reads the answer on the same stream: the adapter's JSON-RPC response,
//! with the client's verified receipt for exactly those bytes. The receipt
//! and the answer's size come straight from the wire.
//!
//! - A request the client refuses, or whose stream ends without an answer,
//!   is an [`UpstreamError`], so no caller waits forever. What a refusal
//!   means is read from its typed code alone (`adapter_session_lost` starts
//!   a new session), never from its text.
//! - An agent that asked for progress (`_meta.progressToken`) gets the
//!   adapter's `notifications/progress` for its call, relayed under its own
//!   token.
//! - A call dropped before its answer (the agent sent
//!   `notifications/cancelled`, the hub's time limit passed, the agent went
//!   away) sends `notifications/cancelled` for it to the adapter, which
//!   cancels the statement in the engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ewii_quic::HubTunnel;
use ewii_wire::receipt::Reply;
use ewii_wire::refusal::RefusalCode;
use rmcp::model::{
    CallToolResult, ErrorData, ProgressNotificationParam, ProgressToken, RequestMetaObject, Tool,
};
use rmcp::service::{Peer, RoleServer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// The `_meta` key carrying the audit `call_id` of a routed `tools/call`,
/// so the request the client signs a receipt for names the audit records
/// of its call.
pub const TICKET_META: &str = "dev.ewii/ticket";

/// A fresh audit call id.
pub fn new_ticket() -> String {
    crate::state::tokens::random_id().unwrap_or_else(|_| {
        // The system random generator failing leaves only uniqueness to
        // care about: a process-wide counter gives that.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        format!("n{}", NEXT.fetch_add(1, Ordering::Relaxed))
    })
}

/// The client's receipt of one routed call, as the audit trail keeps it
/// (and as a replica hands it back over the replica channel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

impl From<&ewii_wire::receipt::Receipt> for ReceiptInfo {
    fn from(r: &ewii_wire::receipt::Receipt) -> ReceiptInfo {
        ReceiptInfo {
            request_digest: r.request_digest_hex(),
            response_digest: r.response_digest_hex(),
            signature: r.signature_b64(),
            scheme: r.scheme,
        }
    }
}

/// Why a relayed request got no answer from the adapter.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The adapter no longer knows the session (it restarted behind a live
    /// tunnel); the request never ran there, and a new session is being
    /// started.
    #[error(
        "the deployment's adapter restarted; its session is being re-established, retry the call"
    )]
    SessionLost,
    /// The client refused to forward the request.
    #[error("the deployment's client did not forward the request: {0}")]
    Refused(String),
    /// The tunnel failed before or during the request.
    #[error("the deployment's tunnel failed: {0}")]
    Tunnel(String),
    /// The request's stream ended without an answer.
    #[error("the deployment's adapter closed the request without an answer")]
    NoAnswer,
    /// The adapter's answer is not a JSON-RPC answer of the expected shape.
    #[error("the deployment's adapter sent an unreadable answer: {0}")]
    Malformed(String),
    /// The adapter answered with a JSON-RPC error.
    #[error("{}", .0.message)]
    Rpc(ErrorData),
    /// The replica holding the deployment's tunnel could not be reached,
    /// or no longer holds it; the request was not sent.
    #[error(
        "the hub replica holding the deployment's tunnel cannot take the call ({0}); it was not sent"
    )]
    Unreachable(String),
}

/// The answer to a relayed `tools/call`, its result as the adapter wrote
/// it (what a replica relays for another).
#[derive(Debug)]
pub struct RawRouted {
    /// The tool's result, raw JSON.
    pub result: String,
    /// The client's receipt for the request and this answer.
    pub receipt: ReceiptInfo,
    /// The answer's size as it crossed the tunnel.
    pub bytes: u64,
}

impl RawRouted {
    /// The result parsed.
    pub fn parse(self) -> Result<Routed, UpstreamError> {
        let result: CallToolResult = serde_json::from_str(&self.result)
            .map_err(|e| UpstreamError::Malformed(format!("tools/call result: {e}")))?;
        Ok(Routed {
            result,
            receipt: self.receipt,
            bytes: self.bytes,
        })
    }
}

/// The answer to a relayed `tools/call`.
#[derive(Debug)]
pub struct Routed {
    /// The tool's result.
    pub result: CallToolResult,
    /// The client's receipt for the request and this answer.
    pub receipt: ReceiptInfo,
    /// The answer's size as it crossed the tunnel.
    pub bytes: u64,
}

/// An outgoing JSON-RPC request.
#[derive(Serialize)]
struct Request<'a, P: Serialize> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: P,
}

/// An outgoing JSON-RPC notification.
#[derive(Serialize)]
struct Notification<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'a str,
    params: P,
}

/// An incoming JSON-RPC message, as far as the relay reads it.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorData>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// A `tools/call`'s parameters as the adapter receives them.
#[derive(Serialize)]
struct CallParams<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "_meta")]
    meta: &'a RequestMetaObject,
}

/// Where an agent's progress notifications go: its session and its token.
pub struct ProgressSink {
    /// The agent's session.
    pub peer: Peer<RoleServer>,
    /// The token the agent sent.
    pub token: ProgressToken,
}

/// One deployment's MCP session with its adapter, over its tunnel.
pub struct Upstream {
    tunnel: Arc<HubTunnel>,
    next_id: AtomicU64,
    lost: mpsc::Sender<()>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// The protocol revision the hub opens adapter sessions with.
const PROTOCOL_VERSION: &str = "2025-11-25";

impl Upstream {
    /// Opens the session (`initialize`, then `notifications/initialized`)
    /// and reads the adapter's tools. `lost` is signalled when the adapter
    /// no longer knows the session, so the caller can open a new one.
    pub async fn open(
        tunnel: Arc<HubTunnel>,
        lost: mpsc::Sender<()>,
    ) -> Result<(Arc<Upstream>, Vec<Tool>), UpstreamError> {
        let upstream = Arc::new(Upstream {
            tunnel,
            next_id: AtomicU64::new(1),
            lost,
        });
        let init = serde_json::json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "ewii-hub", "version": env!("CARGO_PKG_VERSION")},
        });
        upstream.request("initialize", &init, None).await?;
        upstream
            .notify("notifications/initialized", &serde_json::json!({}))
            .await?;
        let tools = upstream.list_tools().await?;
        Ok((upstream, tools))
    }

    /// Every tool the adapter advertises, all pages.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, UpstreamError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            tools: Vec<Tool>,
            #[serde(default)]
            next_cursor: Option<String>,
        }
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        // Bounded: an adapter cannot keep the hub paging forever.
        for _ in 0..1_000 {
            let params = match &cursor {
                Some(c) => serde_json::json!({ "cursor": c }),
                None => serde_json::json!({}),
            };
            let (raw, _) = self.request("tools/list", &params, None).await?;
            let page: Page =
                serde_json::from_str(&raw).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(tools),
            }
        }
        Err(UpstreamError::Malformed(
            "tools/list did not end after 1000 pages".into(),
        ))
    }

    /// Relays one `tools/call`. `meta` is what the adapter must see in the
    /// request's `_meta` (statement classes, the audit ticket); `progress`
    /// is the agent's, if it asked for progress.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        meta: RequestMetaObject,
        progress: Option<ProgressSink>,
    ) -> Result<Routed, UpstreamError> {
        self.call_tool_raw(name, arguments, meta, progress)
            .await?
            .parse()
    }

    /// [`Upstream::call_tool`], the result left as the adapter wrote it.
    pub async fn call_tool_raw(
        &self,
        name: &str,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        meta: RequestMetaObject,
        progress: Option<ProgressSink>,
    ) -> Result<RawRouted, UpstreamError> {
        let mut meta = meta;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if progress.is_some() {
            // The adapter's progress comes back under the hub's own token
            // (the request id), never under the agent's.
            meta.set_progress_token(ProgressToken(rmcp::model::NumberOrString::Number(
                i64::try_from(id).unwrap_or(i64::MAX),
            )));
        }
        let params = CallParams {
            name,
            arguments,
            meta: &meta,
        };
        // Until the answer arrives, dropping this future cancels the call
        // at the adapter.
        let mut guard = CancelOnDrop {
            tunnel: Some(self.tunnel.clone()),
            id,
        };
        let outcome = self
            .exchange(id, "tools/call", &params, progress.as_ref())
            .await;
        guard.tunnel = None;
        let (result, receipt, bytes) = outcome?;
        Ok(RawRouted {
            result,
            receipt,
            bytes,
        })
    }

    /// One request with a fresh id: its result (raw JSON) and receipt.
    async fn request<P: Serialize>(
        &self,
        method: &str,
        params: &P,
        progress: Option<&ProgressSink>,
    ) -> Result<(String, ReceiptInfo), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (raw, receipt, _) = self.exchange(id, method, params, progress).await?;
        Ok((raw, receipt))
    }

    /// Sends request `id` on its own stream and reads its answer.
    async fn exchange<P: Serialize>(
        &self,
        id: u64,
        method: &str,
        params: &P,
        progress: Option<&ProgressSink>,
    ) -> Result<(String, ReceiptInfo, u64), UpstreamError> {
        let bytes = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
        .map_err(|e| UpstreamError::Malformed(format!("cannot encode the request: {e}")))?;
        let mut answers = self
            .tunnel
            .request(None, &bytes)
            .await
            .map_err(|e| UpstreamError::Tunnel(e.to_string()))?;
        while let Some(answer) = answers.recv().await {
            match answer {
                Ok(Reply::Message { message, receipt }) => {
                    let m: Incoming<'_> = match serde_json::from_slice(&message) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable message from the adapter ignored");
                            continue;
                        }
                    };
                    if m.method.is_some() {
                        if m.id.is_none()
                            && m.method.as_deref() == Some("notifications/progress")
                            && let (Some(sink), Some(params)) = (progress, m.params)
                        {
                            relay_progress(sink, params).await;
                        }
                        continue;
                    }
                    if m.id != Some(serde_json::Value::from(id)) {
                        tracing::warn!("an answer to another request ignored");
                        continue;
                    }
                    let size = message.len() as u64;
                    let receipt = ReceiptInfo::from(&receipt);
                    if let Some(error) = m.error {
                        return Err(UpstreamError::Rpc(error));
                    }
                    let result = m.result.ok_or_else(|| {
                        UpstreamError::Malformed("an answer with neither result nor error".into())
                    })?;
                    return Ok((result.get().to_owned(), receipt, size));
                }
                Ok(Reply::Refused(refused)) => {
                    if refused.code == RefusalCode::AdapterSessionLost {
                        // The adapter forgot the session: it restarted. The
                        // request never ran there; a new session is started.
                        let _ = self.lost.try_send(());
                        return Err(UpstreamError::SessionLost);
                    }
                    return Err(UpstreamError::Refused(refused.to_string()));
                }
                Err(e) => return Err(UpstreamError::Tunnel(e.to_string())),
            }
        }
        Err(UpstreamError::NoAnswer)
    }

    /// Sends a notification on its own stream and waits for the client to
    /// finish forwarding it.
    async fn notify<P: Serialize>(&self, method: &str, params: &P) -> Result<(), UpstreamError> {
        notify(&self.tunnel, method, params).await
    }
}

/// Sends a notification through `tunnel`; the stream carries no answer.
async fn notify<P: Serialize>(
    tunnel: &HubTunnel,
    method: &str,
    params: &P,
) -> Result<(), UpstreamError> {
    let bytes = serde_json::to_vec(&Notification {
        jsonrpc: "2.0",
        method,
        params,
    })
    .map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    let mut answers = tunnel
        .request(None, &bytes)
        .await
        .map_err(|e| UpstreamError::Tunnel(e.to_string()))?;
    while let Some(answer) = answers.recv().await {
        match answer {
            Ok(Reply::Message { .. }) => {}
            Ok(Reply::Refused(r)) => return Err(UpstreamError::Refused(r.to_string())),
            Err(e) => return Err(UpstreamError::Tunnel(e.to_string())),
        }
    }
    Ok(())
}

/// Relays one adapter progress notification to the agent, under the
/// agent's token.
async fn relay_progress(sink: &ProgressSink, params: &RawValue) {
    let Ok(p) = serde_json::from_str::<ProgressNotificationParam>(params.get()) else {
        return;
    };
    let mut note = ProgressNotificationParam::new(sink.token.clone(), p.progress);
    note.total = p.total;
    note.message = p.message;
    if let Err(e) = sink.peer.notify_progress(note).await {
        tracing::debug!(error = %e, "progress notification not relayed");
    }
}

/// Sends `notifications/cancelled` for request `id` when dropped while
/// armed (the call was abandoned before its answer).
struct CancelOnDrop {
    tunnel: Option<Arc<HubTunnel>>,
    id: u64,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(tunnel) = self.tunnel.take() else {
            return;
        };
        let id = self.id;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let params = serde_json::json!({
                "requestId": id,
                "reason": "cancelled at the hub",
            });
            if let Err(e) = notify(&tunnel, "notifications/cancelled", &params).await {
                tracing::debug!(error = %e, "cancellation not delivered to the adapter");
            }
        });
    }
}

/// The method of a server-initiated message from the adapter (e.g.
/// `notifications/tools/list_changed`), if it is readable.
pub fn method_of(message: &[u8]) -> Option<String> {
    serde_json::from_slice::<Incoming<'_>>(message)
        .ok()?
        .method
        .map(std::borrow::Cow::into_owned)
}
