//! Real MCP sessions against `ewii-adapter serve`: rmcp's client over
//! streamable HTTP, raw HTTP for DNS-rebinding protection, a unix socket
//! and stdio.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestHome, install_crypto_provider};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

#[derive(Clone, Default)]
struct Agent {
    list_changed: Arc<Notify>,
}

impl ClientHandler for Agent {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default().with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed.notify_one();
    }
}

async fn connect(url: &str, credential: &str) -> (RunningService<RoleClient, Agent>, Agent) {
    install_crypto_provider();
    let agent = Agent::default();
    let client = agent
        .clone()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(credential),
        ))
        .await
        .expect("MCP initialize");
    (client, agent)
}

async fn call(
    client: &RunningService<RoleClient, Agent>,
    tool: &str,
    args: Value,
) -> CallToolResult {
    try_call(client, tool, args)
        .await
        .expect("tools/call answered")
}

async fn try_call(
    client: &RunningService<RoleClient, Agent>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    client.call_tool(params).await
}

/// The JSON-RPC error of a call that must be a protocol error: a name no
/// tool has is -32602 (invalid params), as MCP specifies and the hub answers.
async fn unknown_tool_error(
    client: &RunningService<RoleClient, Agent>,
    tool: &str,
) -> rmcp::model::ErrorData {
    match try_call(client, tool, json!({"sql": "SELECT 1"})).await {
        Err(rmcp::ServiceError::McpError(e)) => e,
        other => panic!("{tool}: expected a JSON-RPC error, got {other:?}"),
    }
}

fn error_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected isError: {r:?}");
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn lists_tools_and_runs_a_parameterised_query() {
    let t = TestHome::new();
    t.init();
    t.attach_shop("shop").await;
    let (_server, url) = t.serve(&[]);
    let (client, _) = connect(&url, &t.credential()).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("ewii-adapter")
    );

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "shop_describe_table",
            "shop_explain",
            "shop_list_schemas",
            "shop_list_tables",
            "shop_query"
        ]
    );
    for tool in &tools {
        assert!(
            tool.title.is_some() && tool.description.is_some(),
            "{}",
            tool.name
        );
        assert!(
            tool.output_schema.is_some(),
            "{} has no outputSchema",
            tool.name
        );
        let ann = tool.annotations.as_ref().expect("annotations");
        assert_eq!(
            ann.read_only_hint,
            Some(true),
            "{} on a read-only database",
            tool.name
        );
        assert_eq!(ann.destructive_hint, Some(false));
    }

    let r = call(
        &client,
        "shop_query",
        json!({"sql": "SELECT id, name FROM customers WHERE country = ? AND id > ? ORDER BY id", "params": ["DE", 4]}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let s = r.structured_content.expect("structuredContent");
    assert_eq!(
        s["rows"],
        json!([[6, "Customer 6"], [8, "Customer 8"], [10, "Customer 10"]])
    );
    assert_eq!(s["columns"][0]["name"], "id");

    let r = call(
        &client,
        "shop_describe_table",
        json!({"table": "customers"}),
    )
    .await;
    assert_eq!(r.structured_content.unwrap()["primary_key"], json!(["id"]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn failures_are_is_error_results_and_the_adapter_keeps_serving() {
    let t = TestHome::new();
    t.init();
    t.attach_shop("shop").await;
    let (_server, url) = t.serve(&[]);
    let (client, _) = connect(&url, &t.credential()).await;

    let cases = [
        ("shop_query", json!({}), "missing field `sql`"),
        ("shop_query", json!({"sql": 42}), "invalid type"),
        (
            "shop_query",
            json!({"sql": "SELECT 1", "params": [{"a": 1}]}),
            "arrays and objects cannot be bound",
        ),
        (
            "shop_query",
            json!({"sql": "SELEC * FROM customers"}),
            "syntax",
        ),
        (
            "shop_query",
            json!({"sql": "SELECT * FROM nowhere"}),
            "no such table: nowhere",
        ),
        (
            "shop_query",
            json!({"sql": "DELETE FROM customers"}),
            "read-only",
        ),
        (
            "shop_query",
            json!({"sql": "SELECT 1; DROP TABLE customers"}),
            "exactly one statement",
        ),
        (
            "shop_query",
            json!({"sql": "SELECT ?", "params": []}),
            "placeholder",
        ),
        (
            "shop_describe_table",
            json!({"table": "nowhere"}),
            "does not exist",
        ),
    ];
    let unknown = unknown_tool_error(&client, "shop_nope").await;
    assert_eq!(unknown.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    assert!(
        unknown.message.contains("unknown tool 'shop_nope'"),
        "{unknown:?}"
    );
    for (tool, args, want) in cases {
        let r = call(&client, tool, args.clone()).await;
        let text = error_text(&r);
        assert!(
            text.contains(want),
            "{tool} {args}: expected '{want}' in '{text}'"
        );
    }
    let r = call(
        &client,
        "shop_query",
        json!({"sql": "SELECT count(*) FROM customers"}),
    )
    .await;
    assert_eq!(r.structured_content.unwrap()["rows"], json!([[10]]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn catalog_changes_live_and_clients_hear_list_changed() {
    let t = TestHome::new();
    t.init();
    t.attach_shop("shop").await;
    let (_server, url) = t.serve(&[]);
    let (client, agent) = connect(&url, &t.credential()).await;
    assert_eq!(client.list_all_tools().await.unwrap().len(), 5);

    // The admin attaches a second database while the adapter serves.
    let notified = agent.list_changed.notified();
    t.attach_shop("sales").await;
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("notifications/tools/list_changed within 5 s of add-database");
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"sales_query".to_owned()), "{names:?}");
    let r = call(
        &client,
        "sales_query",
        json!({"sql": "SELECT count(*) FROM customers"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false));

    let notified = agent.list_changed.notified();
    t.ok(&["remove-database", "shop"]);
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("notifications/tools/list_changed within 5 s of remove-database");
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("shop_")), "{names:?}");
    let gone = unknown_tool_error(&client, "shop_query").await;
    assert!(gone.message.contains("unknown tool"), "{gone:?}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn foreign_host_and_origin_are_refused() {
    let t = TestHome::new();
    t.init();
    let (_server, url) = t.serve(&["--allowed-origin", "http://localhost:6274"]);
    install_crypto_provider();
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let post = |host: Option<&str>, origin: Option<&str>| {
        let mut req = http
            .post(&url)
            .bearer_auth(t.credential())
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .json(&init);
        if let Some(h) = host {
            req = req.header("Host", h);
        }
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        req.send()
    };
    assert_eq!(
        post(Some("evil.example"), None).await.unwrap().status(),
        403,
        "rebound Host accepted"
    );
    assert_eq!(
        post(None, Some("http://evil.example"))
            .await
            .unwrap()
            .status(),
        403,
        "foreign Origin accepted"
    );
    // Loopback is no exception: only the listed origin, exactly.
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    assert_eq!(
        post(None, Some(&format!("http://localhost:{port}")))
            .await
            .unwrap()
            .status(),
        403,
        "an unlisted loopback origin accepted"
    );
    let ok = post(None, Some("http://localhost:6274")).await.unwrap();
    assert!(
        ok.status().is_success(),
        "the listed origin refused: {}",
        ok.status()
    );
}

#[tokio::test]
async fn serves_over_a_unix_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestHome::new();
    t.init();
    t.attach_shop("shop").await;
    let socket = t.dir.path().join("adapter.sock");
    let (_server, _) = t.serve(&["--unix", socket.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        t.credential(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("ewii-adapter"), "{resp}");
}

#[tokio::test]
async fn serves_over_stdio() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let t = TestHome::new();
    t.init();
    t.attach_shop("shop").await;
    let mut child = tokio::process::Command::from(t.command())
        .args(["serve", "--stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let send = |v: Value| format!("{v}\n");
    stdin.write_all(send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).as_bytes()).await.unwrap();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["result"]["serverInfo"]["name"], "ewii-adapter");
    stdin
        .write_all(
            send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).as_bytes(),
        )
        .await
        .unwrap();
    stdin.write_all(send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "shop_query", "arguments": {"sql": "SELECT name FROM customers WHERE id = ?", "params": [3]}}})).as_bytes()).await.unwrap();
    let second: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        second["result"]["structuredContent"]["rows"],
        json!([["Customer 3"]]),
        "{second}"
    );
}
