//! `ewii-hub serve` end to end: agent → hub → QUIC tunnel → client →
//! adapter → database, on SQLite and PostgreSQL hub stores alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;
#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use ewii_client::client::ClientError;
use ewii_hub::Store;
use ewii_quic::KeyMaterial;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use serve_support::*;
use support::Backend;

suite!(
    agent_lists_and_calls_through_the_hub,
    workspaces_are_isolated,
    forged_tampered_and_foreign_svids_are_refused,
    svid_from_an_imported_spire_ca_is_accepted,
    list_changed_reaches_the_workspace_agents,
    hub_restart_clients_reconnect_and_tools_reappear,
    health_metrics_and_bearer_auth,
    enrolment_token_works_exactly_once_with_clear_refusals,
    svids_rotate_under_load_without_a_failed_call,
    an_adapter_restart_behind_a_live_tunnel_gets_a_new_session,
);

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

    let agent = agent(&hub, credential.expose()).await;
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

async fn setup_workspace(store: &Store, ws: &str, dep: &str) -> String {
    store.create_workspace(ws, None, now()).await.unwrap();
    store
        .create_deployment(ws, dep, Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent(ws, "bot", now()).await.unwrap();
    credential.expose().to_owned()
}

async fn workspaces_are_isolated(backend: &Backend) {
    let store = &backend.store;
    let acme = setup_workspace(store, "acme", "eu").await;
    let globex = setup_workspace(store, "globex", "us").await;
    let hub = start_hub(store, |_| {}).await;
    let (a_adapter, b_adapter) = (
        TestAdapter::sqlite("shop").await,
        TestAdapter::sqlite("crm").await,
    );
    let a = start_client(&hub, issue_svid(store, "acme", "eu").await, &a_adapter);
    let b = start_client(&hub, issue_svid(store, "globex", "us").await, &b_adapter);

    let acme_agent = agent(&hub, &acme).await;
    let globex_agent = agent(&hub, &globex).await;
    let a_names = wait_for_tools(&acme_agent, |n| !n.is_empty()).await;
    let b_names = wait_for_tools(&globex_agent, |n| !n.is_empty()).await;
    assert!(
        a_names.iter().all(|n| n.starts_with("eu_shop_")),
        "{a_names:?}"
    );
    assert!(
        b_names.iter().all(|n| n.starts_with("us_crm_")),
        "{b_names:?}"
    );

    // B's agent cannot call A's tool by name: it does not exist for B.
    let err = tokio::time::timeout(
        STEP,
        globex_agent.call_tool(
            rmcp::model::CallToolRequestParams::new("eu_shop_query")
                .with_arguments(count_query().as_object().unwrap().clone()),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("unknown tool"), "{err}");
    // Its own works.
    let own = call(&globex_agent, "us_crm_query", count_query()).await;
    assert_ne!(own.is_error, Some(true), "{}", text_of(&own));

    // An MCP session opened by A's agent cannot be used with B's credential.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let (status, _, session) = mcp_post(&hub, Some(&acme), None, &init).await;
    assert_eq!(status, 200);
    let session = session.expect("a session id");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let (_, body, _) = mcp_post(&hub, Some(&globex), Some(&session), &list).await;
    // Refused at the edge exactly as an unknown session (hub/tests/edges.rs).
    assert!(body.contains("Not Found: Session not found"), "{body}");
    assert!(!body.contains("eu_shop_query"), "{body}");
    let (_, body, _) = mcp_post(&hub, Some(&acme), Some(&session), &list).await;
    assert!(body.contains("eu_shop_query"), "{body}");

    a.stop().await;
    b.stop().await;
    hub.shutdown().await;
}

async fn forged_tampered_and_foreign_svids_are_refused(backend: &Backend) {
    let store = &backend.store;
    setup_workspace(store, "acme", "eu").await;
    let globex = setup_workspace(store, "globex", "us").await;
    let hub = start_hub(store, |_| {}).await;
    let a_keys = issue_svid(store, "acme", "eu").await;
    let b_id = "spiffe://ewii.local/ws/globex/dep/us";

    // 1. A's client signs itself a B SVID with its own SVID as issuer.
    let forged = {
        use rcgen::{CertificateParams, Issuer, KeyPair, KeyUsagePurpose, SanType};
        let a_key = KeyPair::try_from(a_keys.key.secret_der()).unwrap();
        let issuer = Issuer::from_ca_cert_der(&a_keys.chain[0], a_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(b_id.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer).unwrap();
        KeyMaterial {
            chain: vec![cert.der().clone(), a_keys.chain[0].clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    };
    // 2. A's SVID with one signature byte flipped.
    let tampered = {
        let mut der = a_keys.chain[0].to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        KeyMaterial {
            chain: vec![der.into()],
            key: a_keys.key.clone_key(),
        }
    };
    // 3. A B SVID from a CA the hub never heard of.
    let foreign = ForeignCa::new("somebody").svid(b_id);
    // 4. A's valid SVID, claiming B's identity in the app layer.
    for (case, keys, identity) in [
        ("forged from A's SVID", &forged, b_id),
        ("tampered", &tampered, "spiffe://ewii.local/ws/acme/dep/eu"),
        ("foreign CA", &foreign, b_id),
        ("A's SVID claiming B", &a_keys, b_id),
    ] {
        let refused = try_tunnel(&hub, keys, identity).await;
        assert!(refused.is_err(), "{case}: the hub accepted it");
    }
    let refusals = hub.verifier.refusals();
    assert!(refusals.values().sum::<u64>() >= 3, "{refusals:?}");
    // Nothing registered: B's agent sees no tools, and no deployment is live.
    let b_agent = agent(&hub, &globex).await;
    assert!(tool_names(&b_agent).await.is_empty());
    assert!(hub.state.registry.is_empty());
    let (_, metrics) = http_get(&hub, "/metrics").await;
    assert!(
        metrics.contains("ewii_hub_handshake_failures_total{layer=\"svid\""),
        "{metrics}"
    );
    hub.shutdown().await;
}

async fn svid_from_an_imported_spire_ca_is_accepted(backend: &Backend) {
    let store = &backend.store;
    store
        .create_workspace("acme", Some("example.org"), now())
        .await
        .unwrap();
    store
        .create_deployment("acme", "legacy", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let spire = ForeignCa::new("SPIRE root");
    store
        .import_bundle("acme", std::slice::from_ref(&spire.cert), now())
        .await
        .unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let svid = spire.svid("spiffe://example.org/ws/acme/dep/legacy");
    let client = start_client(&hub, svid, &adapter);
    let agent = agent(&hub, credential.expose()).await;
    wait_for_tools(&agent, |n| n.contains(&"legacy_shop_query".to_string())).await;
    let result = call(&agent, "legacy_shop_query", count_query()).await;
    assert_eq!(result.structured_content.unwrap()["rows"], json!([[10]]));
    // The same SVID from an unrelated CA is refused.
    let other = ForeignCa::new("SPIRE root").svid("spiffe://example.org/ws/acme/dep/legacy");
    assert!(
        try_tunnel(&hub, &other, "spiffe://example.org/ws/acme/dep/legacy")
            .await
            .is_err()
    );
    client.stop().await;
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
    let acme = setup_workspace(store, "acme", "eu").await;
    let globex = setup_workspace(store, "globex", "us").await;
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
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);

    // Connect → notified; the tools are there.
    tokio::time::timeout(STEP, acme_changes.notified())
        .await
        .expect("no list_changed when the deployment connected");
    let names = acme_agent.list_all_tools().await.unwrap();
    assert!(names.iter().any(|t| t.name == "eu_shop_query"));

    // The customer attaches a database → notified; the new tools are there.
    let sales = adapter.dir.path().join("sales.db");
    make_shop_db(&sales).await;
    let shop = adapter.dir.path().join("shop.db");
    adapter
        .adapter
        .apply(vec![
            sqlite_config("shop", &shop),
            sqlite_config("sales", &sales),
        ])
        .await;
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
    let acme = setup_workspace(store, "acme", "eu").await;
    let hub = start_hub(store, |_| {}).await;
    let quic = hub.quic_addr;
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let first = agent(&hub, &acme).await;
    wait_for_tools(&first, |n| !n.is_empty()).await;

    hub.shutdown().await;
    // A successor on the same QUIC address, same store (hence same CA).
    let hub = start_hub(store, |o| o.quic = quic).await;
    let second = agent(&hub, &acme).await;
    wait_for_tools(&second, |n| n.contains(&"eu_shop_query".to_string())).await;
    let result = call(&second, "eu_shop_query", count_query()).await;
    assert_eq!(result.structured_content.unwrap()["rows"], json!([[10]]));
    client.stop().await;
    hub.shutdown().await;
}

async fn health_metrics_and_bearer_auth(backend: &Backend) {
    let store = &backend.store;
    let acme = setup_workspace(store, "acme", "eu").await;
    let hub = start_hub(store, |_| {}).await;
    let (status, body) = http_get(&hub, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"connected_deployments\":0"), "{body}");

    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let agent = agent(&hub, &acme).await;
    wait_for_tools(&agent, |n| !n.is_empty()).await;
    call(&agent, "eu_shop_query", count_query()).await;
    let (_, body) = http_get(&hub, "/healthz").await;
    assert!(body.contains("\"connected_deployments\":1"), "{body}");
    let (status, metrics) = http_get(&hub, "/metrics").await;
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
        let (status, body, session) = mcp_post(&hub, bearer, None, &init).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("WWW-Authenticate") || body.contains("www-authenticate"));
        assert!(body.contains("ewii-hub agent create"), "{body}");
        assert!(session.is_none());
    }
    client.stop().await;
    hub.shutdown().await;
}

async fn enrolment_token_works_exactly_once_with_clear_refusals(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let (_, token) = store
        .create_deployment("acme", "eu", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, short) = store
        .create_deployment("acme", "us", Duration::from_secs(1), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let dir = tempfile::tempdir().unwrap();

    // A malformed CSR is refused before the token is spent.
    {
        use ewii_quic::{ClientQuicConfig, Dialer, HubCertVerifier};
        use ewii_wire::enrol::{EnrolRequest, EnrolResponse};
        let verifier = HubCertVerifier::new(&hub_ca(&hub), "127.0.0.1").unwrap();
        let quic = ClientQuicConfig::enrolment(&verifier).unwrap();
        let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
        let request = EnrolRequest {
            token: zeroize::Zeroizing::new(token.token.expose().to_owned()),
            csr: "bm90IGEgQ1NS".into(),
        };
        let answer = dialer
            .enrol(&quic, hub.quic_addr, "127.0.0.1", &request)
            .await
            .unwrap();
        match answer {
            EnrolResponse::Refused(r) => assert_eq!(r.reason, "bad_csr", "{r:?}"),
            other => panic!("a garbage CSR was accepted: {other:?}"),
        }
    }

    // The token enrols once: the client comes up as the deployment.
    let first = enrol_client(&hub, &adapter, &dir.path().join("a"), token.token.expose())
        .await
        .unwrap();
    let agent = agent(&hub, credential.expose()).await;
    wait_for_tools(&agent, |n| n.contains(&"eu_shop_query".to_string())).await;

    // Used, expired and unknown tokens are refused, each saying why.
    let used = enrol_client(&hub, &adapter, &dir.path().join("b"), token.token.expose()).await;
    match used {
        Err(ClientError::Refused { reason, message }) => {
            assert_eq!(reason, "token_already_used");
            assert!(message.contains("already been used"), "{message}");
            assert!(message.contains("ewii-hub deployment token"), "{message}");
        }
        other => panic!("a used token was not refused: {:?}", other.err()),
    }
    assert!(!dir.path().join("b").join("svid.pem").exists());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    match enrol_client(&hub, &adapter, &dir.path().join("c"), short.token.expose()).await {
        Err(ClientError::Refused { reason, message }) => {
            assert_eq!(reason, "token_expired");
            assert!(message.contains("expired"), "{message}");
        }
        other => panic!("an expired token was not refused: {:?}", other.err()),
    }
    match enrol_client(&hub, &adapter, &dir.path().join("d"), "not-a-token").await {
        Err(ClientError::Refused { reason, .. }) => assert_eq!(reason, "unknown_token"),
        other => panic!("an unknown token was not refused: {:?}", other.err()),
    }
    // Only the first enrolment exists: one live deployment.
    assert_eq!(hub.state.registry.len(), 1);
    first.stop().await;
    hub.shutdown().await;
}

async fn svids_rotate_under_load_without_a_failed_call(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let (_, token) = store
        .create_deployment("acme", "eu", Duration::from_secs(3600), now())
        .await
        .unwrap();
    let (_, credential) = store.create_agent("acme", "bot", now()).await.unwrap();
    let hub = start_hub(store, |o| o.svid_ttl = Duration::from_secs(4)).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let dir = tempfile::tempdir().unwrap();
    let client = enrol_client(&hub, &adapter, dir.path(), token.token.expose())
        .await
        .unwrap();
    let agent = agent(&hub, credential.expose()).await;
    wait_for_tools(&agent, |n| n.contains(&"eu_shop_query".to_string())).await;
    let live = hub.state.registry.find("acme", "eu").unwrap();
    let mut serials = std::collections::BTreeSet::from([live.serial()]);

    // 13 s of calls, three SVID lifetimes: every call must succeed.
    let deadline = std::time::Instant::now() + Duration::from_secs(13);
    let mut calls = 0;
    while std::time::Instant::now() < deadline {
        let result = call(&agent, "eu_shop_query", count_query()).await;
        assert_ne!(
            result.is_error,
            Some(true),
            "call {calls} failed: {}",
            text_of(&result)
        );
        assert_eq!(result.structured_content.unwrap()["rows"], json!([[10]]));
        calls += 1;
        serials.insert(live.serial());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The same connection carried it all, under several SVIDs.
    let now_live = hub.state.registry.find("acme", "eu").unwrap();
    assert_eq!(
        now_live.connection, live.connection,
        "the tunnel was re-established"
    );
    assert!(
        serials.len() >= 4,
        "only {} SVIDs over 13 s: {serials:?}",
        serials.len()
    );
    let (_, metrics) = http_get(&hub, "/metrics").await;
    assert!(
        metrics.contains("ewii_hub_svids_issued_total{kind=\"renewal\"}"),
        "{metrics}"
    );
    println!("{calls} calls, {} SVIDs", serials.len());
    client.stop().await;
    hub.shutdown().await;
}

async fn an_adapter_restart_behind_a_live_tunnel_gets_a_new_session(backend: &Backend) {
    let store = &backend.store;
    let acme = setup_workspace(store, "acme", "eu").await;
    let hub = start_hub(store, |_| {}).await;
    let mut adapter = TestAdapter::sqlite("shop").await;
    let client = start_client(&hub, issue_svid(store, "acme", "eu").await, &adapter);
    let agent = agent(&hub, &acme).await;
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
