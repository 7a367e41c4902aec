//! Tenants stay apart end to end, with the real hub in-process, real
//! QUIC tunnels and clients, real adapters and rmcp agents: workspace A's
//! agent neither sees nor calls B's tools nor uses B's MCP sessions; a
//! client of A cannot pose as a deployment of B (an SVID forged with its
//! own SVID as issuer, a tampered one, one from an unknown CA, A's SVID
//! claiming B's identity); an SVID from an imported SPIRE CA is accepted,
//! the same from another CA is not. On SQLite and PostgreSQL hub stores
//! alike.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{
    STEP, agent, call, http_get, mcp_post, text_of, tool_names, wait_for_tools,
};
use ewii_conformance::client::start_client;
use ewii_conformance::db::Backend;
use ewii_conformance::hub::{start_hub, try_tunnel};
use ewii_conformance::pki::rcgen::{
    self, CertificateParams, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ewii_conformance::pki::{SpireCa, key_material};
use ewii_conformance::sample::count_query;
use ewii_conformance::site::workspace_with_agent;
use ewii_conformance::suite;
use ewii_conformance::svid::issue_svid;
use ewii_quic::KeyMaterial;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

suite!(
    workspaces_are_isolated,
    forged_tampered_and_foreign_svids_are_refused,
    svid_from_an_imported_spire_ca_is_accepted,
);

fn now() -> SystemTime {
    SystemTime::now()
}

async fn workspaces_are_isolated(backend: &Backend) {
    let store = &backend.store;
    let acme = workspace_with_agent(store, "acme", "eu").await;
    let globex = workspace_with_agent(store, "globex", "us").await;
    let hub = start_hub(store, |_| {}).await;
    let (a_adapter, b_adapter) = (
        TestAdapter::sqlite("shop").await,
        TestAdapter::sqlite("crm").await,
    );
    let a = start_client(&hub, issue_svid(store, "acme", "eu").await, &a_adapter);
    let b = start_client(&hub, issue_svid(store, "globex", "us").await, &b_adapter);

    let acme_agent = agent(&hub.mcp_url(), &acme).await;
    let globex_agent = agent(&hub.mcp_url(), &globex).await;
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
    let opened = mcp_post(hub.http_addr, Some(&acme), None, &init).await;
    assert_eq!(opened.status, 200);
    let session = opened.session().expect("a session id").to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let body = mcp_post(hub.http_addr, Some(&globex), Some(&session), &list)
        .await
        .body;
    // Refused at the edge exactly as an unknown session (edges.rs).
    assert!(body.contains("Not Found: Session not found"), "{body}");
    assert!(!body.contains("eu_shop_query"), "{body}");
    let body = mcp_post(hub.http_addr, Some(&acme), Some(&session), &list)
        .await
        .body;
    assert!(body.contains("eu_shop_query"), "{body}");

    a.stop().await;
    b.stop().await;
    hub.shutdown().await;
}

async fn forged_tampered_and_foreign_svids_are_refused(backend: &Backend) {
    let store = &backend.store;
    workspace_with_agent(store, "acme", "eu").await;
    let globex = workspace_with_agent(store, "globex", "us").await;
    let hub = start_hub(store, |_| {}).await;
    let a_keys = issue_svid(store, "acme", "eu").await;
    let b_id = "spiffe://ewii.local/ws/globex/dep/us";

    // 1. A's client signs itself a B SVID with its own SVID as issuer.
    let forged = {
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
    let foreign = key_material(&SpireCa::new("somebody").svid(b_id));
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
    let b_agent = agent(&hub.mcp_url(), &globex).await;
    assert!(tool_names(&b_agent).await.is_empty());
    assert!(hub.state.registry.is_empty());
    let metrics = http_get(hub.http_addr, "/metrics").await.body;
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
    let spire = SpireCa::new("SPIRE root");
    store
        .import_bundle("acme", std::slice::from_ref(&spire.cert), now())
        .await
        .unwrap();
    let hub = start_hub(store, |_| {}).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let svid = key_material(&spire.svid("spiffe://example.org/ws/acme/dep/legacy"));
    let client = start_client(&hub, svid, &adapter);
    let agent = agent(&hub.mcp_url(), credential.expose()).await;
    wait_for_tools(&agent, |n| n.contains(&"legacy_shop_query".to_string())).await;
    let result = call(&agent, "legacy_shop_query", count_query()).await;
    assert_eq!(result.structured_content.unwrap()["rows"], json!([[10]]));
    // The same SVID from an unrelated CA is refused.
    let other =
        key_material(&SpireCa::new("SPIRE root").svid("spiffe://example.org/ws/acme/dep/legacy"));
    assert!(
        try_tunnel(&hub, &other, "spiffe://example.org/ws/acme/dep/legacy")
            .await
            .is_err()
    );
    client.stop().await;
    hub.shutdown().await;
}
