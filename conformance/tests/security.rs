//! Revocation, per-agent policy and the audit trail, end to end through a
//! real hub, real QUIC tunnels, real adapters and rmcp agents, on SQLite
//! and PostgreSQL hub stores alike.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{STEP, agent, call, text_of, tool_names, try_agent};
use ewii_conformance::client::{TestClient, enrol_client, start_client, start_client_at};
use ewii_conformance::db::Backend;
use ewii_conformance::hub::{start_hub, try_tunnel, wait_registered};
use ewii_conformance::sample::{count_query, shop_db, sqlite_config};
use ewii_conformance::site::{agent_credential, deploy};
use ewii_conformance::suite;
use ewii_conformance::svid::issue_svid;
use ewii_hub::Store;
use ewii_hub::audit::export::SinkConfig;
use ewii_hub::gateway::serve::RunningHub;
use ewii_hub::state::store::{RevocationReason, Verification};
use ewii_quic::KeyMaterial;
use serde_json::{Value, json};

suite!(
    revoke_closes_the_link_and_refuses_reconnects_fast,
    revoke_by_serial_from_the_cli_and_back_with_a_new_token,
    webhook_arrives_signed_after_the_receiver_was_down,
    each_policy_rule_allows_and_denies,
    read_only_is_enforced_by_each_fence_on_its_own,
    every_call_is_audited_and_verify_names_tampering,
    syslog_stream_reaches_a_tcp_listener,
    hub_killed_under_load_loses_no_released_record,
);

fn now() -> SystemTime {
    SystemTime::now()
}

/// A workspace `acme` with a deployment `eu` whose client runs with an
/// SVID the hub issued (recorded as enrolment does), serving a read-only
/// SQLite `shop`.
struct Site {
    hub: RunningHub,
    adapter: TestAdapter,
    keys: KeyMaterial,
    client: TestClient,
}

async fn site(
    store: &Store,
    deployment: &str,
    tweak: impl FnOnce(&mut ewii_hub::gateway::serve::ServeOptions),
) -> Site {
    if store.workspace("acme").await.is_err() {
        store.create_workspace("acme", None, now()).await.unwrap();
    }
    let hub = start_hub(store, tweak).await;
    let (adapter, keys, client) = connect(store, &hub, deployment).await;
    Site {
        hub,
        adapter,
        keys,
        client,
    }
}

/// Creates `deployment`, issues and records its SVID, and runs its client
/// until the hub has it registered.
async fn connect(
    store: &Store,
    hub: &RunningHub,
    deployment: &str,
) -> (TestAdapter, KeyMaterial, TestClient) {
    let adapter = TestAdapter::sqlite("shop").await;
    let d = deploy(store, hub, "acme", deployment, adapter).await;
    (d.adapter, d.keys, d.client)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

// -- revocation ---------------------------------------------------------------

async fn revoke_closes_the_link_and_refuses_reconnects_fast(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    let mut closed = Vec::new();
    let mut refused = Vec::new();
    const RUNS: usize = 50;
    for i in 0..RUNS {
        let name = format!("d{i}");
        let (_adapter, keys, client) = connect(store, &hub, &name).await;
        let live = hub.state.registry.find("acme", &name).unwrap();
        // What `ewii-hub revoke` does: one transaction in the store; the
        // serving hub learns of it by polling.
        let t0 = Instant::now();
        store
            .revoke_deployment("acme", &name, RevocationReason::Operator, now())
            .await
            .unwrap();
        tokio::time::timeout(STEP, live.tunnel.closed())
            .await
            .expect("the revoked tunnel stayed open");
        let t1 = t0.elapsed();
        // The hub closed it (as revoked; the client's side is covered in
        // client_tunnel.rs and tunnel/quic/tests/quic.rs).
        let reason = live.tunnel.close_reason().unwrap();
        assert_eq!(reason, ewii_quic::Closed::Locally, "{reason}");
        // Reconnecting with the same SVID is refused.
        let spiffe = live.spiffe_id.clone();
        let again = try_tunnel(&hub, &keys, &spiffe).await;
        let t2 = t0.elapsed();
        let err = again.err().expect("a revoked SVID connected again");
        assert!(
            err.to_string().to_lowercase().contains("revoked"),
            "refusal does not say revoked: {err}"
        );
        closed.push(t1);
        refused.push(t2);
        client.stop().await;
    }
    closed.sort();
    refused.sort();
    let p99_closed = percentile(&closed, 0.99);
    let p99_refused = percentile(&refused, 0.99);
    let store_kind = backend.url.split(':').next().unwrap_or("?");
    println!(
        "revocation ({store_kind} store) over {RUNS} runs: link closed p50 {:?} p99 {:?} max {:?}; reconnect refused \
         p50 {:?} p99 {:?} max {:?}",
        percentile(&closed, 0.5),
        p99_closed,
        closed[RUNS - 1],
        percentile(&refused, 0.5),
        p99_refused,
        refused[RUNS - 1]
    );
    // The property is sub-second (ARCHITECTURE, Revocation). The bounds
    // keep a margin for a loaded CI machine: the median must be within
    // four revocation polls (25 ms each), the slowest of 50 runs within
    // half a second. The measured figures are printed above.
    let p50_closed = percentile(&closed, 0.5);
    let p50_refused = percentile(&refused, 0.5);
    assert!(
        p50_closed < Duration::from_millis(100),
        "p50 {p50_closed:?}"
    );
    assert!(
        p50_refused < Duration::from_millis(100),
        "p50 {p50_refused:?}"
    );
    assert!(
        p99_closed < Duration::from_millis(500),
        "p99 {p99_closed:?}"
    );
    assert!(
        p99_refused < Duration::from_millis(500),
        "p99 {p99_refused:?}"
    );
    hub.shutdown().await;
}

async fn revoke_by_serial_from_the_cli_and_back_with_a_new_token(backend: &Backend) {
    let store = &backend.store;
    let s = site(store, "eu", |_| {}).await;
    let serial = ewii_wire::svid::serial_hex(&s.keys.chain[0]).unwrap();
    let live = s.hub.state.registry.find("acme", "eu").unwrap();
    // A serial with colons and capitals, as an operator may paste it.
    let pasted: String = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let out = backend.cli_json(&["--json", "revoke", "--svid", &pasted]);
    assert_eq!(out["serials"], json!([serial]));
    assert_eq!(out["deployment"], "eu");
    tokio::time::timeout(STEP, live.tunnel.closed())
        .await
        .expect("closed after revoke --svid");
    assert!(try_tunnel(&s.hub, &s.keys, &live.spiffe_id).await.is_err());
    // Revoking it again changes nothing and says so.
    let again = backend.cli(&["revoke", "--svid", &serial]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already revoked"));
    // Bad input: a clear error and nothing changes.
    let err = backend.cli_err(&["revoke", "--svid", "not-hex"]);
    assert!(err.contains("not an SVID serial"), "{err}");
    let err = backend.cli_err(&["revoke", "--workspace", "acme", "--deployment", "nope"]);
    assert!(err.contains("no deployment named"), "{err}");
    s.client.stop().await;

    // The whole deployment, by the CLI; then back with a new token.
    let (_a2, keys2, client2) = connect(store, &s.hub, "us").await;
    let live = s.hub.state.registry.find("acme", "us").unwrap();
    let text = String::from_utf8_lossy(
        &backend
            .cli(&["revoke", "--workspace", "acme", "--deployment", "us"])
            .stdout,
    )
    .into_owned();
    assert!(
        text.contains("deployment token --workspace acme us"),
        "{text}"
    );
    tokio::time::timeout(STEP, live.tunnel.closed())
        .await
        .expect("closed after revoke --deployment");
    assert!(try_tunnel(&s.hub, &keys2, &live.spiffe_id).await.is_err());
    client2.stop().await;
    let token = store
        .issue_enrolment_token("acme", "us", Duration::from_secs(600), now())
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let client3 = enrol_client(&s.hub, &s.adapter, state.path(), token.token.expose())
        .await
        .expect("a new token brings a revoked deployment back");
    wait_registered(&s.hub, "acme", "us").await;
    client3.stop().await;
    s.hub.shutdown().await;
}

async fn webhook_arrives_signed_after_the_receiver_was_down(backend: &Backend) {
    let store = &backend.store;
    let s = site(store, "eu", |_| {}).await;
    // Reserve a port, then leave it closed: the first attempts fail.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/ewii");
    let secret = ewii_hub::audit::webhook::generate_secret().unwrap();
    store
        .add_webhook("acme", None, &url, &secret, now())
        .await
        .unwrap();
    store
        .revoke_deployment("acme", "eu", RevocationReason::Operator, now())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pending = store.list_deliveries("acme", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].delivered_at.is_none());
    assert!(pending[0].attempts >= 1, "{pending:?}");
    assert!(pending[0].last_error.is_some());

    // The receiver comes up and the retry arrives.
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(http::HeaderMap, axum::body::Bytes)>();
    let app = axum::Router::new().route(
        "/ewii",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (headers, body) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the webhook never arrived")
        .unwrap();
    let signature = headers
        .get(ewii_hub::audit::webhook::SIGNATURE_HEADER)
        .unwrap()
        .to_str()
        .unwrap();
    let unix_now = now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ewii_hub::audit::webhook::verify(secret.as_bytes(), signature, &body, unix_now, 300)
        .expect("the signature verifies with the webhook's secret");
    // One changed byte, or another secret, does not.
    let mut tampered = body.to_vec();
    tampered[5] ^= 1;
    assert!(
        ewii_hub::audit::webhook::verify(secret.as_bytes(), signature, &tampered, unix_now, 300)
            .is_err()
    );
    assert!(
        ewii_hub::audit::webhook::verify(
            b"another-secret-entirely",
            signature,
            &body,
            unix_now,
            300
        )
        .is_err()
    );
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["event"], "deployment.revoked");
    assert_eq!(event["deployment"], "eu");
    assert_eq!(
        headers.get(ewii_hub::audit::webhook::EVENT_HEADER).unwrap(),
        "deployment.revoked"
    );
    // Delivery recorded.
    let deadline = Instant::now() + STEP;
    loop {
        let d = &store.list_deliveries("acme", 10).await.unwrap()[0];
        if let Some(_at) = d.delivered_at {
            assert!(d.attempts >= 2, "{d:?}");
            assert_eq!(d.last_status, Some(204));
            break;
        }
        assert!(Instant::now() < deadline, "delivery never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = backend.cli_json(&["--json", "webhook", "deliveries", "--workspace", "acme"]);
    assert!(listed[0]["delivered_at"].is_i64(), "{listed}");
    s.client.stop().await;
    s.hub.shutdown().await;
}

// -- policy -------------------------------------------------------------------

fn is_denied(r: &rmcp::model::CallToolResult, rule: &str) -> bool {
    r.is_error == Some(true) && text_of(r).contains(&format!("agent policy rule `{rule}`"))
}

async fn each_policy_rule_allows_and_denies(backend: &Backend) {
    let store = &backend.store;
    let s = site(store, "eu", |_| {}).await;
    let q = count_query();

    // deployments
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "only-us", Some("deployments = [\"us\"]")).await,
    )
    .await;
    assert!(
        tool_names(&a).await.is_empty(),
        "a forbidden deployment's tools are not listed"
    );
    assert!(is_denied(
        &call(&a, "eu_shop_query", q.clone()).await,
        "deployments"
    ));
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "only-eu", Some("deployments = [\"eu\"]")).await,
    )
    .await;
    assert!(call(&a, "eu_shop_query", q.clone()).await.is_error != Some(true));

    // databases
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "crm", Some("databases = [\"crm\"]")).await,
    )
    .await;
    assert!(is_denied(
        &call(&a, "eu_shop_query", q.clone()).await,
        "databases"
    ));
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "shop", Some("databases = [\"eu.shop\"]")).await,
    )
    .await;
    assert!(call(&a, "eu_shop_query", q.clone()).await.is_error != Some(true));

    // tools
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "lister", Some("tools = [\"list_tables\"]")).await,
    )
    .await;
    assert_eq!(
        tool_names(&a).await,
        vec!["eu_shop_list_tables".to_string()]
    );
    assert!(is_denied(
        &call(&a, "eu_shop_query", q.clone()).await,
        "tools"
    ));
    assert!(call(&a, "eu_shop_list_tables", json!({})).await.is_error != Some(true));

    // statements
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "reader", Some("statements = [\"read\"]")).await,
    )
    .await;
    assert!(call(&a, "eu_shop_query", q.clone()).await.is_error != Some(true));
    let r = call(
        &a,
        "eu_shop_query",
        json!({"sql": "CREATE TABLE t (x int)"}),
    )
    .await;
    assert!(is_denied(&r, "statements"), "{}", text_of(&r));
    assert!(
        text_of(&r).to_lowercase().contains("ddl"),
        "{}",
        text_of(&r)
    );

    // row_limit: a cap on what comes back.
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "capped", Some("row_limit = 3")).await,
    )
    .await;
    let r = call(
        &a,
        "eu_shop_query",
        json!({"sql": "SELECT id FROM customers ORDER BY id"}),
    )
    .await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    let rows = r.structured_content.as_ref().unwrap()["rows"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(rows, 3);
    let r = call(
        &a,
        "eu_shop_query",
        json!({"sql": "SELECT id FROM customers", "max_rows": 2}),
    )
    .await;
    assert_eq!(
        r.structured_content.as_ref().unwrap()["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // rate_limit
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(
            store,
            "acme",
            "slow",
            Some("rate_limit = { calls = 3, per_seconds = 60 }"),
        )
        .await,
    )
    .await;
    for _ in 0..3 {
        assert!(call(&a, "eu_shop_query", q.clone()).await.is_error != Some(true));
    }
    assert!(is_denied(
        &call(&a, "eu_shop_query", q.clone()).await,
        "rate_limit"
    ));

    // `policy set` from the CLI changes it for the next call; a bad file
    // changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "statements = [\"delete\"]\n").unwrap();
    let err = backend.cli_err(&[
        "policy",
        "set",
        "--workspace",
        "acme",
        "slow",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("bad.toml"), "{err}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "tools = [\"list_tables\"]\n").unwrap();
    backend.cli_json(&[
        "--json",
        "policy",
        "set",
        "--workspace",
        "acme",
        "slow",
        good.to_str().unwrap(),
    ]);
    assert!(is_denied(
        &call(&a, "eu_shop_query", q.clone()).await,
        "tools"
    ));

    // Denials are audited with their rule.
    let tail = store.audit_tail(100).await.unwrap();
    for rule in [
        "deployments",
        "databases",
        "tools",
        "statements",
        "rate_limit",
    ] {
        assert!(
            tail.iter()
                .any(|r| r.record["decision"] == "deny" && r.record["rule"] == rule),
            "no audited denial for {rule}"
        );
    }
    s.client.stop().await;
    s.hub.shutdown().await;
}

async fn read_only_is_enforced_by_each_fence_on_its_own(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    let hub = start_hub(store, |_| {}).await;
    // "rw": an adapter that allows writes. "ro": the default read-only one.
    store
        .create_deployment("acme", "rw", Duration::from_secs(600), now())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    shop_db(&path).await;
    let mut config = sqlite_config("shop", &path);
    config.read_only = false;
    let rw_adapter = TestAdapter::start(vec![config]).await;
    let rw_client = start_client(&hub, issue_svid(store, "acme", "rw").await, &rw_adapter);
    let (_ro_adapter, _, ro_client) = connect(store, &hub, "ro").await;
    wait_registered(&hub, "acme", "rw").await;

    let delete = json!({"sql": "DELETE FROM customers WHERE id = 1"});
    let count = |r: &rmcp::model::CallToolResult| {
        r.structured_content.as_ref().unwrap()["rows"][0][0]
            .as_i64()
            .unwrap()
    };

    // The hub's fence: a read-only agent's write is denied at the hub,
    // though this adapter would run it.
    let reader = agent(
        &hub.mcp_url(),
        &agent_credential(store, "acme", "reader", Some("statements = [\"read\"]")).await,
    )
    .await;
    let r = call(&reader, "rw_shop_query", delete.clone()).await;
    assert!(is_denied(&r, "statements"), "{}", text_of(&r));
    assert_eq!(
        count(&call(&reader, "rw_shop_query", count_query()).await),
        10,
        "the row is still there"
    );

    // The adapter's fence: the hub policy allows writes, the read-only
    // adapter refuses.
    let writer = agent(
        &hub.mcp_url(),
        &agent_credential(
            store,
            "acme",
            "writer",
            Some("statements = [\"read\", \"write\"]"),
        )
        .await,
    )
    .await;
    let r = call(&writer, "ro_shop_query", delete.clone()).await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        !text_of(&r).contains("agent policy rule"),
        "{}",
        text_of(&r)
    );
    assert!(
        text_of(&r).to_lowercase().contains("read-only"),
        "{}",
        text_of(&r)
    );
    assert_eq!(
        count(&call(&writer, "ro_shop_query", count_query()).await),
        10
    );

    // Both allow: the write runs (the fences are not simply always closed).
    let r = call(&writer, "rw_shop_query", delete).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    assert_eq!(
        count(&call(&writer, "rw_shop_query", count_query()).await),
        9
    );
    rw_client.stop().await;
    ro_client.stop().await;
    hub.shutdown().await;
}

// -- audit --------------------------------------------------------------------

fn verify_cli(backend: &Backend) -> (bool, String) {
    let out = backend.cli(&["audit", "verify"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn every_call_is_audited_and_verify_names_tampering(backend: &Backend) {
    let store = &backend.store;
    let s = site(store, "eu", |o| o.audit_redact = true).await;
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "auditor", Some("statements = [\"read\"]")).await,
    )
    .await;
    let r = call(&a, "eu_shop_query", json!({"sql": "SELECT name FROM customers WHERE id = $1 OR name = 'Customer 2'", "params": [1]})).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    let _ = call(&a, "eu_shop_query", json!({"sql": "DELETE FROM customers"})).await;
    let _ = a
        .call_tool(rmcp::model::CallToolRequestParams::new("nowhere_tool"))
        .await;
    let _ = call(&a, "eu_shop_list_tables", json!({})).await;

    let tail = store.audit_tail(10).await.unwrap();
    // A call sent to a deployment: its intent, then its outcome (the whole
    // record); any other call: one decision.
    let kinds: Vec<_> = tail.iter().map(|r| r.record["kind"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "intent", "outcome", "decision", "decision", "intent", "outcome"
        ],
        "{tail:?}"
    );
    let intent = &tail[0].record;
    assert_eq!(intent["decision"], "allow");
    assert_eq!(intent["statement_class"], "read");
    assert!(intent.get("outcome").is_none() && intent.get("rows").is_none());
    let first = &tail[1].record;
    assert_eq!(
        (&first["call_id"], &first["intent_seq"]),
        (&intent["call_id"], &json!(1))
    );
    assert_eq!(first["statement"], intent["statement"]);
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["workspace"], "acme");
    assert_eq!(first["deployment"], "eu");
    assert_eq!(first["database"], "shop");
    assert_eq!(first["agent"], "auditor");
    assert_eq!(first["tool"], "eu_shop_query");
    assert_eq!(first["statement_class"], "read");
    assert_eq!(first["rows"], 2);
    assert!(first["bytes_in"].as_u64().unwrap() > 0 && first["bytes_out"].as_u64().unwrap() > 0);
    assert!(first["duration_ms"].is_u64());
    assert_eq!(first["spiffe_id"], "spiffe://ewii.local/ws/acme/dep/eu");
    let serial = ewii_wire::svid::serial_hex(&s.keys.chain[0]).unwrap();
    assert_eq!(first["svid_serial"], serial.as_str());
    // Redacted: no literal, no params.
    let statement = first["statement"].as_str().unwrap();
    assert!(!statement.contains("Customer 2"), "{statement}");
    assert!(statement.contains("customers"), "{statement}");
    assert!(first.get("params").is_none());
    // The receipt: signed by the deployment's SVID key over both digests.
    let signature = base64_decode(first["response_signature"].as_str().unwrap());
    let mut signed = b"ewii-receipt/1\0".to_vec();
    signed.extend(hex_decode(first["request_digest"].as_str().unwrap()));
    signed.extend(hex_decode(first["response_digest"].as_str().unwrap()));
    let (_, cert) = x509_parser::parse_x509_certificate(&s.keys.chain[0]).unwrap();
    let spki = cert.public_key().subject_public_key.data.to_vec();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &spki)
        .verify(&signed, &signature)
        .expect("the receipt verifies against the client's SVID");
    let mut forged = signed.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &spki)
            .verify(&forged, &signature)
            .is_err()
    );
    assert_eq!(tail[2].record["decision"], "deny");
    assert_eq!(tail[2].record["rule"], "statements");
    // A denial records the class it refused.
    assert_eq!(tail[2].record["statement_class"], "write");
    assert_eq!(tail[3].record["outcome"], "unknown_tool");
    assert_eq!(tail[5].record["outcome"], "ok");

    // Intact, from the library and the CLI.
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { records: 6, .. }
    ));
    let (ok, text) = verify_cli(backend);
    assert!(ok && text.contains("intact"), "{text}");
    let tail_cli = backend.cli(&["audit", "tail", "--json", "-n", "2"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&tail_cli.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["seq"], 6);

    // One changed byte in record 3.
    let (rec, _, _) = backend.raw_audit_row(3).await;
    let changed = rec.replacen("statements", "statementz", 1);
    assert_ne!(changed, rec);
    backend
        .raw_exec(format!(
            "UPDATE audit_log SET record = '{}' WHERE seq = 3",
            changed.replace('\'', "''")
        ))
        .await;
    match store.verify_audit().await.unwrap() {
        Verification::Broken {
            seq,
            reason,
            verified,
        } => {
            assert_eq!((seq, verified), (3, 2), "{reason}");
            assert!(reason.contains("changed"), "{reason}");
        }
        v => panic!("tampering not detected: {v:?}"),
    }
    let (ok, text) = verify_cli(backend);
    assert!(!ok && text.contains("record 3"), "{text}");
    backend
        .raw_exec(format!(
            "UPDATE audit_log SET record = '{}' WHERE seq = 3",
            rec.replace('\'', "''")
        ))
        .await;
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Intact { .. }
    ));

    // A deleted record in the middle, and the last one.
    let (rec4, prev4, hash4) = backend.raw_audit_row(4).await;
    backend
        .raw_exec("DELETE FROM audit_log WHERE seq = 4".into())
        .await;
    match store.verify_audit().await.unwrap() {
        Verification::Broken { seq, .. } => assert_eq!(seq, 4),
        v => panic!("deletion not detected: {v:?}"),
    }
    let (ok, text) = verify_cli(backend);
    assert!(!ok && text.contains("record 4"), "{text}");
    backend.raw_exec(format!(
            "INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES (4, '{}', '{prev4}', '{hash4}')",
            rec4.replace('\'', "''")
        ),
    )
    .await;
    backend
        .raw_exec("DELETE FROM audit_log WHERE seq = 6".into())
        .await;
    match store.verify_audit().await.unwrap() {
        Verification::Broken { seq, .. } => assert_eq!(seq, 6),
        v => panic!("deletion of the last record not detected: {v:?}"),
    }
    s.client.stop().await;
    s.hub.shutdown().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn syslog_stream_reaches_a_tcp_listener(backend: &Backend) {
    use tokio::io::AsyncReadExt;
    let store = &backend.store;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = format!("syslog+tcp://{}", listener.local_addr().unwrap());
    let sink = SinkConfig::parse(&spec).unwrap();
    let s = site(store, "eu", |o| o.audit_export = vec![sink]).await;
    let a = agent(
        &s.hub.mcp_url(),
        &agent_credential(store, "acme", "siem", Some("statements = [\"read\"]")).await,
    )
    .await;
    assert!(call(&a, "eu_shop_query", count_query()).await.is_error != Some(true));
    let _ = call(&a, "eu_shop_query", json!({"sql": "DROP TABLE customers"})).await;

    let (mut conn, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = Vec::new();
    let mut messages = Vec::new();
    let deadline = Instant::now() + STEP;
    // The allowed call's intent and outcome, then the denial.
    while messages.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "syslog messages missing: {messages:?}"
        );
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(STEP, conn.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "syslog connection closed early");
        buf.extend_from_slice(&chunk[..n]);
        // RFC 6587 octet counting: "LEN SP MSG".
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            messages.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
    }
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG
    let allow = &messages[0];
    assert!(
        allow.starts_with("<110>1 "),
        "facility 13, informational: {allow}"
    );
    let fields: Vec<&str> = allow.splitn(8, ' ').collect();
    assert!(
        fields[1].ends_with('Z') && fields[1].contains('T'),
        "{allow}"
    );
    // The first record is the allowed call's intent; its outcome follows
    // as the call's one final record.
    assert_eq!(fields[5], "tool_call_intent");
    let outcome: Vec<&str> = messages[1].splitn(8, ' ').collect();
    assert_eq!(outcome[5], "tool_call", "{}", messages[1]);
    assert!(
        allow.contains("[ewii@32473 seq=\"1\" decision=\"allow\""),
        "{allow}"
    );
    let json_at =
        allow.find('\u{feff}').expect("BOM before the JSON message") + '\u{feff}'.len_utf8();
    let body: Value = serde_json::from_str(&allow[json_at..]).unwrap();
    assert_eq!(body["seq"], 1);
    assert_eq!(body["tool"], "eu_shop_query");
    assert_eq!(body["kind"], "intent");
    let deny = &messages[2];
    assert!(deny.starts_with("<109>1 "), "notice for a denial: {deny}");
    assert!(deny.contains("decision=\"deny\""), "{deny}");
    s.client.stop().await;
    s.hub.shutdown().await;
}

/// The hub as its own process (`ewii-hub serve`), killed with SIGKILL in
/// the middle of a stream of calls: every call whose result an agent
/// received has its audit record.
async fn hub_killed_under_load_loses_no_released_record(backend: &Backend) {
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    store
        .create_deployment("acme", "eu", Duration::from_secs(600), now())
        .await
        .unwrap();
    let keys = issue_svid(store, "acme", "eu").await;
    let credential = agent_credential(store, "acme", "load", None).await;
    let hub = backend.serve_process(&[]).await;
    let (mut process, quic, mcp_url) = (hub.process, hub.quic, hub.mcp_url);

    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client_at(quic, hub.hub_ca, keys, &adapter);
    let received = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicUsize::new(1));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (received, next, url, credential) = (
            received.clone(),
            next.clone(),
            mcp_url.clone(),
            credential.clone(),
        );
        workers.push(tokio::spawn(async move {
            let a = try_agent(&url, &credential).await.unwrap();
            // Wait for the deployment's tools.
            let deadline = Instant::now() + STEP;
            while !tool_names(&a).await.iter().any(|t| t == "eu_shop_query") {
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let mut args = serde_json::Map::new();
                args.insert("sql".into(), json!(format!("SELECT {n} AS n")));
                let r = a
                    .call_tool(
                        rmcp::model::CallToolRequestParams::new("eu_shop_query")
                            .with_arguments(args),
                    )
                    .await;
                match r {
                    Ok(r) if r.is_error != Some(true) => {
                        received.lock().unwrap().insert(n);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    // Let calls flow, then SIGKILL the hub mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "calls did not flow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    let got: BTreeSet<usize> = received.lock().unwrap().clone();
    for w in workers {
        let _ = tokio::time::timeout(STEP, w).await;
    }
    client.stop().await;

    let records = store.audit_after(0, 1_000_000).await.unwrap();
    // A released result needs its outcome, not only its intent.
    let audited: BTreeSet<usize> = records
        .iter()
        .filter(|r| r.record["kind"] == "outcome")
        .filter_map(|r| r.record["statement"].as_str())
        .filter_map(|s| {
            s.strip_prefix("SELECT ")?
                .strip_suffix(" AS n")?
                .parse()
                .ok()
        })
        .collect();
    let missing: Vec<_> = got.difference(&audited).collect();
    println!(
        "kill -9 under load ({} store): {} results received, {} records, none missing",
        backend.url.split(':').next().unwrap_or("?"),
        got.len(),
        records.len()
    );
    assert!(
        missing.is_empty(),
        "results released without a record: {missing:?}"
    );
    // Calls the kill cut between their two commits are intents without an
    // outcome: honest, and the chain verifies.
    match store.verify_audit().await.unwrap() {
        Verification::Intact { open_intents, .. } => {
            println!("intents left without an outcome: {}", open_intents.len())
        }
        v => panic!("{v:?}"),
    }
}
