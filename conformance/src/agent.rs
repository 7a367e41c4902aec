//! An MCP agent for tests: an rmcp streamable-HTTP client that presents a
//! bearer credential, as the operator's agents do, plus raw HTTP requests
//! for tests that need the exact status, headers and body.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, Implementation, ProtocolVersion, Tool,
};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one agent step may take before the test gives up.
pub const STEP: Duration = Duration::from_secs(20);

/// How long a raw `/mcp` POST reads its answer: an SSE answer may keep the
/// stream open, and what arrived by then is the answer.
const MCP_READ: Duration = Duration::from_secs(3);

/// An agent session.
pub type Agent = RunningService<RoleClient, ClientConfig>;

/// Installs the process-wide rustls provider the agents' HTTP clients use
/// (a no-op when one is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens an agent session with the MCP endpoint at `url`, presenting
/// `bearer`. The error is the server's refusal, for tests that expect one.
pub async fn try_agent(url: &str, bearer: &str) -> Result<Agent, ClientInitializeError> {
    install_crypto_provider();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(bearer),
    );
    ClientConfig::new(
        Default::default(),
        Implementation::new("ewii-test-agent", "0"),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    .serve(transport)
    .await
}

/// [`try_agent`] that must succeed within [`STEP`].
pub async fn agent(url: &str, bearer: &str) -> Agent {
    tokio::time::timeout(STEP, try_agent(url, bearer))
        .await
        .expect("agent initialize timed out")
        .unwrap_or_else(|e| panic!("agent initialize failed: {e}"))
}

/// The names of every tool the agent sees (all pages), sorted.
pub async fn tool_names(agent: &Agent) -> Vec<String> {
    let tools: Vec<Tool> = tokio::time::timeout(STEP, agent.list_all_tools())
        .await
        .expect("tools/list timed out")
        .unwrap_or_else(|e| panic!("tools/list failed: {e}"));
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

/// Polls the agent's `tools/list` until `pred` holds, for at most [`STEP`].
pub async fn wait_for_tools(agent: &Agent, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + STEP;
    loop {
        let names = tool_names(agent).await;
        if pred(&names) {
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "tools never matched; last seen {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Calls `tool` with `arguments` (a JSON object).
pub async fn call(agent: &Agent, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(map) = arguments else {
        panic!("arguments must be an object")
    };
    tokio::time::timeout(
        STEP,
        agent.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(map)),
    )
    .await
    .expect("tools/call timed out")
    .unwrap_or_else(|e| panic!("tools/call {tool} failed: {e}"))
}

/// The text content of a tool result, joined by spaces.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An HTTP answer as it came: status, headers, body (not de-chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code (0 when no status line arrived).
    pub status: u16,
    /// The header fields, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line.
    pub body: String,
}

impl HttpAnswer {
    /// Reads an answer from its raw text.
    pub fn parse(raw: &str) -> HttpAnswer {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        HttpAnswer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// The first header field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The MCP session the answer set, if any.
    pub fn session(&self) -> Option<&str> {
        self.header("mcp-session-id")
    }
}

/// Sends the raw HTTP `request` to `addr` and reads the answer until the
/// server closes the connection or `read_for` passes (what arrived by then
/// is the answer).
pub async fn http_exchange(addr: SocketAddr, request: String, read_for: Duration) -> HttpAnswer {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("send to {addr}: {e}"));
    let mut out = Vec::new();
    let _ = tokio::time::timeout(read_for, s.read_to_end(&mut out)).await;
    HttpAnswer::parse(&String::from_utf8_lossy(&out))
}

/// `GET path` on `addr` (HTTP/1.1, `Connection: close`).
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpAnswer {
    let host = addr.ip();
    http_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        STEP,
    )
    .await
}

/// `POST /mcp` of one JSON-RPC message to `addr`, with an optional bearer
/// and session, as a streamable-HTTP client sends it.
pub async fn mcp_post(
    addr: SocketAddr,
    bearer: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> HttpAnswer {
    let host = addr.ip();
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(b) = bearer {
        req.push_str(&format!("Authorization: Bearer {b}\r\n"));
    }
    if let Some(sid) = session {
        req.push_str(&format!("Mcp-Session-Id: {sid}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    http_exchange(addr, req, MCP_READ).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_status_headers_and_body() {
        let a = HttpAnswer::parse(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nmcp-session-id: s1\r\n\r\n{\"x\":1}",
        );
        assert_eq!(a.status, 401);
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        assert_eq!(a.session(), Some("s1"));
        assert_eq!(a.body, "{\"x\":1}");
        let nothing = HttpAnswer::parse("");
        assert_eq!((nothing.status, nothing.body.as_str()), (0, ""));
    }
}
