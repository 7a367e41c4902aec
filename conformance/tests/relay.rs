//! Agent → hub → QUIC tunnel → client → adapter → database, with the
//! real hub in-process, real clients and adapters, and rmcp agents: the
//! hub relays an agent's calls to the deployment's adapter, names tools by
//! deployment, tells the workspace's agents when they change, comes back
//! after a restart, reports health and metrics, asks for a bearer, and
//! starts a new MCP session when the adapter restarts behind a live
//! tunnel. On SQLite and PostgreSQL hub stores alike.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{STEP, agent, call, http_get, mcp_post, text_of, wait_for_tools};
use ewii_conformance::client::start_client;
use ewii_conformance::db::Backend;
use ewii_conformance::hub::start_hub;
use ewii_conformance::sample::count_query;
use ewii_conformance::site::workspace_with_agent;
use ewii_conformance::suite;
use ewii_conformance::svid::issue_svid;
use serde_json::json;

suite!(
    agent_lists_and_calls_through_the_hub,
    list_changed_reaches_the_workspace_agents,
    hub_restart_clients_reconnect_and_tools_reappear,
    health_metrics_and_bearer_auth,
    an_adapter_restart_behind_a_live_tunnel_gets_a_new_session,
);

fn now() -> SystemTime {
    SystemTime::now()
}

async fn agent_lists_and_calls_through_the_hub(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    store
        .create_deployment("acme", "eu", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);

    let agent = agent(&hub.mcp_url(), credential.expose()).await;
    let names = wait_for_tools(&agent, |n| !n.is_empty()).await;
    assert!(names.contains(&"eu_shop_query".to_string()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("eu_shop_")), "{names:?}");

    let result = call(&agent, "eu_shop_query", count_query()).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    let data = result.structured_content.unwrap();
    assert_eq!(data["rows"], json!([[10]]));

    client.stop().await;
    // The deployment went away: its tools go too, and a call by name says
    // it is offline rather than hanging.
    wait_for_tools(&agent, |n| n.is_empty()).await;
    let offline = call(&agent, "eu_shop_query", count_query()).await;
    assert_eq!(offline.is_error, Some(true));
    assert!(
        text_of(&offline).contains("offline"),
        "{}",
        text_of(&offline)
    );
    agent.cancel().await.ok();
    hub.shutdown().await;
}

/// An agent that counts `notifications/tools/list_changed`.
#[derive(Clone)]
struct Listening {
    changes: Arc<tokio::sync::Notify>,
}

impl rmcp::ClientHandler for Listening {
    async fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.changes.notify_one();
    }
}

async fn list_changed_reaches_the_workspace_agents(backend: &Backend) {
    use rmcp::ServiceExt as _;
    let store = &backend.store;
    let acme = workspace_with_agent(store, "acme", "eu").await;
    let globex = workspace_with_agent(store, "globex", "us").await;
    let hub = start_hub(store, |_| {}).await;
    let listen = |credential: String| {
        let url = hub.mcp_url();
        async move {
            let handler = Listening {
                changes: Arc::new(tokio::sync::Notify::new()),
            };
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url)
                    .auth_header(credential),
            );
            let service = handler.clone().serve(transport).await.unwrap();
            (handler.changes, service)
        }
    };
    let (acme_changes, acme_agent) = listen(acme).await;
    let (globex_changes, _globex_agent) = listen(globex).await;
    let mut adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);

    // Connect → notified; the tools are there.
    tokio::time::timeout(STEP, acme_changes.notified())
        .await
        .expect("no list_changed when the deployment connected");
    let names = acme_agent.list_all_tools().await.unwrap();
    assert!(names.iter().any(|t| t.name == "eu_shop_query"));

    // The customer attaches a database → notified; the new tools are there.
    adapter.attach_sqlite("sales").await;
    tokio::time::timeout(STEP, acme_changes.notified())
        .await
        .expect("no list_changed when the catalog changed");
    let names = acme_agent.list_all_tools().await.unwrap();
    assert!(
        names.iter().any(|t| t.name == "eu_sales_query"),
        "{names:?}"
    );

    // Disconnect → notified; the tools are gone.
    client.stop().await;
    tokio::time::timeout(STEP, acme_changes.notified())
        .await
        .expect("no list_changed when the deployment disconnected");
    assert!(acme_agent.list_all_tools().await.unwrap().is_empty());

    // The other workspace heard none of it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), globex_changes.notified())
            .await
            .is_err(),
        "globex was told about acme's deployment"
    );
    hub.shutdown().await;
}

async fn hub_restart_clients_reconnect_and_tools_reappear(backend: &Backend) {
    let store = &backend.store;
    let acme = workspace_with_agent(store, "acme", "eu").await;
    let hub = start_hub(store, |_| {}).await;
    let quic = hub.quic_addr;
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let first = agent(&hub.mcp_url(), &acme).await;
    wait_for_tools(&first, |n| !n.is_empty()).await;

    hub.shutdown().await;
    // A successor on the same QUIC address, same store (hence same CA).
    let hub = start_hub(store, |o| o.quic = quic).await;
    let second = agent(&hub.mcp_url(), &acme).await;
    wait_for_tools(&second, |n| n.contains(&"eu_shop_query".to_string())).await;
    let result = call(&second, "eu_shop_query", count_query()).await;
    assert_eq!(result.structured_content.unwrap()["rows"], json!([[10]]));
    client.stop().await;
    hub.shutdown().await;
}

async fn health_metrics_and_bearer_auth(backend: &Backend) {
    let store = &backend.store;
    let acme = workspace_with_agent(store, "acme", "eu").await;
    let hub = start_hub(store, |_| {}).await;
    let health = http_get(hub.http_addr, "/healthz").await;
    let (status, body) = (health.status, health.body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"connected_deployments\":0"), "{body}");

    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let agent = agent(&hub.mcp_url(), &acme).await;
    wait_for_tools(&agent, |n| !n.is_empty()).await;
    call(&agent, "eu_shop_query", count_query()).await;
    let body = http_get(hub.http_addr, "/healthz").await.body;
    assert!(body.contains("\"connected_deployments\":1"), "{body}");
    let scrape = http_get(hub.http_addr, "/metrics").await;
    let (status, metrics) = (scrape.status, scrape.body);
    assert_eq!(status, 200);
    for needle in [
        "ewii_hub_connected_deployments 1",
        "ewii_hub_tool_calls_total{outcome=\"ok\"} 1",
        "ewii_hub_tool_call_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }

    // No credential, a wrong one: 401 with a hint, and no MCP session.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    for bearer in [None, Some("ewii_agent_wrong")] {
        let answer = mcp_post(hub.http_addr, bearer, None, &init).await;
        let body = &answer.body;
        assert_eq!(answer.status, 401, "{body}");
        assert!(answer.header("www-authenticate").is_some(), "{answer:?}");
        assert!(body.contains("ewii-hub agent create"), "{body}");
        assert!(answer.session().is_none());
    }
    client.stop().await;
    hub.shutdown().await;
}

async fn an_adapter_restart_behind_a_live_tunnel_gets_a_new_session(backend: &Backend) {
    let store = &backend.store;
    let acme = workspace_with_agent(store, "acme", "eu").await;
    let hub = start_hub(store, |_| {}).await;
    let mut adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let agent = agent(&hub.mcp_url(), &acme).await;
    wait_for_tools(&agent, |n| !n.is_empty()).await;
    let before = hub.state.registry.find("acme", "eu").unwrap().connection;
    assert_ne!(
        call(&agent, "eu_shop_query", count_query()).await.is_error,
        Some(true)
    );

    adapter.restart().await;
    // At most the first call learns of the restart (and says to retry);
    // then calls work again on the same tunnel.
    let deadline = std::time::Instant::now() + STEP;
    let mut failures = 0;
    loop {
        let r = tokio::time::timeout(
            STEP,
            agent.call_tool(
                rmcp::model::CallToolRequestParams::new("eu_shop_query")
                    .with_arguments(count_query().as_object().unwrap().clone()),
            ),
        )
        .await
        .unwrap();
        match r {
            Ok(r) if r.is_error != Some(true) => break,
            Ok(r) => panic!("unexpected tool error: {}", text_of(&r)),
            Err(e) => {
                assert!(e.to_string().contains("restarted"), "{e}");
                failures += 1;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "calls never worked again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failures <= 1, "{failures} calls failed after the restart");
    assert_eq!(
        hub.state.registry.find("acme", "eu").unwrap().connection,
        before
    );
    client.stop().await;
    hub.shutdown().await;
}
