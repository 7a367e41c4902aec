//! MCP as raw JSON-RPC messages, for tests that judge the bytes a hub's
//! messages become on their way to the adapter: the messages
//! ([`initialize`], [`initialized`], [`request`]), relayed through a
//! client's adapter link ([`relay`], [`call`]) or sent on the hub's side of
//! a tunnel ([`exchange`], [`call_through`], [`open_adapter_session`]).

use std::time::Duration;

use bytes::Bytes;
use ewii_client::forward::{AdapterLink, ForwardError};
use ewii_quic::HubTunnel;
use ewii_wire::receipt::Reply;
use serde_json::{Value, json};

/// How long one exchange with an adapter, or one reply through a tunnel,
/// may take.
pub const REPLY_WAIT: Duration = Duration::from_secs(15);

/// `initialize` with request id `id`, at protocol version 2025-06-18.
pub fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "ewii-hub-test", "version": "1"}}})
}

/// The `notifications/initialized` notification.
pub fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

/// Request `method` with `params` and id `id`.
pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// What a relay of one message produced, with the bytes that travelled.
pub struct Relayed {
    /// The messages that came back, in order.
    pub messages: Vec<Value>,
    /// Bytes sent (the message).
    pub sent: usize,
    /// Bytes received (the messages, without framing).
    pub received: usize,
}

/// Sends `message` through `link` and collects every reply until the
/// response ends.
pub async fn relay(link: &AdapterLink, message: &Value) -> Result<Relayed, ForwardError> {
    let body = Bytes::from(serde_json::to_vec(message).expect("JSON serializes"));
    let sent = body.len();
    let mut rx = tokio::time::timeout(REPLY_WAIT, link.send(body))
        .await
        .expect("the adapter answers in time")?;
    let mut messages = Vec::new();
    let mut received = 0;
    loop {
        match tokio::time::timeout(REPLY_WAIT, rx.recv())
            .await
            .expect("the response ends in time")
        {
            None => break,
            Some(Ok(m)) => {
                received += m.len();
                messages.push(serde_json::from_slice(&m).expect("a JSON message"));
            }
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(Relayed {
        messages,
        sent,
        received,
    })
}

/// The only reply to a request sent through `link`, asserted to answer its
/// id.
pub async fn call(link: &AdapterLink, message: &Value) -> Value {
    let relayed = relay(link, message)
        .await
        .unwrap_or_else(|e| panic!("relay {message}: {e}"));
    assert_eq!(relayed.messages.len(), 1, "{:?}", relayed.messages);
    let reply = relayed.messages.into_iter().next().expect("one reply");
    assert_eq!(reply["id"], message["id"], "{reply}");
    reply
}

/// Sends `message` on the hub's side of `tunnel` (to `route`, if any) and
/// collects the replies.
pub async fn exchange(tunnel: &HubTunnel, route: Option<&str>, message: &Value) -> Vec<Reply> {
    let mut rx = tunnel
        .request(
            route,
            &serde_json::to_vec(message).expect("JSON serializes"),
        )
        .await
        .unwrap_or_else(|e| panic!("open a request through the tunnel: {e}"));
    let mut out = Vec::new();
    while let Some(r) = tokio::time::timeout(REPLY_WAIT, rx.recv())
        .await
        .expect("reply in time")
    {
        out.push(r.unwrap_or_else(|e| panic!("a reply through the tunnel: {e}")));
    }
    out
}

/// One request through `tunnel`, whose single reply is returned as JSON.
pub async fn call_through(tunnel: &HubTunnel, message: &Value) -> Value {
    let replies = exchange(tunnel, None, message).await;
    match replies.as_slice() {
        [Reply::Message { message: m, .. }] => {
            serde_json::from_slice(m).expect("the reply is JSON")
        }
        other => panic!("expected one message, got {other:?}"),
    }
}

/// Opens an MCP session with the adapter behind `tunnel`, as the hub does
/// (`initialize`, asserted to be answered by `ewii-adapter`, then
/// `notifications/initialized`, which has no reply).
pub async fn open_adapter_session(tunnel: &HubTunnel) {
    let init = call_through(tunnel, &initialize(1)).await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "ewii-adapter",
        "{init}"
    );
    assert!(exchange(tunnel, None, &initialized()).await.is_empty());
}
