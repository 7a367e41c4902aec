//! Several hub replicas as one service (issue #19): three `ewii-hub serve`
//! processes on loopback sharing one PostgreSQL store, deployments
//! connected to replicas 2 and 3, an agent on replica 1.
//!
//! - The agent lists both deployments' tools and calls them: each call is
//!   authorised and audited on replica 1 (receipt from the deployment's
//!   client and all) and relayed by the replica holding the tunnel.
//! - A deployment connecting to replica 3 later reaches the agent's
//!   session on replica 1 as `tools/list_changed`.
//! - A peer whose certificate is not from the replicas' CA gets nothing
//!   from the replica channel.
//!
//! Skipped (with `SKIPPED:`) without `EWII_TEST_POSTGRES_ADMIN_URL`,
//! except under `CI`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ewii_conformance::adapter::TestAdapter;
use ewii_conformance::agent::{agent, call, text_of, tool_names, wait_for_tools};
use ewii_conformance::client::{TestClient, start_client_at};
use ewii_conformance::db::{Backend, ServerDatabase, server_url};
use ewii_conformance::process::{HubProcess, free_loopback_port};
use ewii_conformance::sample::count_query;
use ewii_conformance::site::agent_credential;
use ewii_conformance::svid::{issue_svid, record_svid};
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ewii_hub::replica::channel::Channel;
use ewii_hub::replica::tls::ChannelTls;
use ewii_hub::replica::wire::ForwardedCall;
use ewii_hub::state::ca::ReplicaCa;
use ewii_hub::state::store::Verification;
use serde_json::json;

const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Starts replica `n` of the store with a replica channel on a loopback
/// port.
async fn replica(b: &Backend) -> HubProcess {
    let port = free_loopback_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    b.serve_process(&["--replica-listen", &listen]).await
}

/// Creates deployment `name` of `acme`, records its SVID and runs its
/// client (serving a fresh sample shop) against `hub`.
async fn deploy_at(b: &Backend, hub: &HubProcess, name: &str) -> (TestAdapter, TestClient) {
    b.store
        .create_deployment("acme", name, TOKEN_TTL, SystemTime::now())
        .await
        .unwrap();
    let keys = issue_svid(&b.store, "acme", name).await;
    record_svid(&b.store, "acme", name, &keys).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let client = start_client_at(hub.quic, hub.hub_ca.clone(), keys, &adapter);
    (adapter, client)
}

/// The replica (id, peer address) registered with `address`.
async fn replica_id_at(b: &Backend, address: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let replicas = b.store.live_replicas(0).await.unwrap();
        if let Some(r) = replicas
            .iter()
            .find(|r| r.peer_address.as_deref() == Some(address))
        {
            return r.id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no replica at {address}: {replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_on_one_replica_lists_and_calls_deployments_on_the_others() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    b.store
        .create_workspace("acme", None, SystemTime::now())
        .await
        .unwrap();
    let bearer = agent_credential(&b.store, "acme", "bot", None).await;
    let r1 = replica(&b).await;
    let r2 = replica(&b).await;
    let r3 = replica(&b).await;
    let (_eu_adapter, eu) = deploy_at(&b, &r2, "eu").await;
    let (_us_adapter, us) = deploy_at(&b, &r3, "us").await;

    // Count list_changed notices on replica 1's session.
    let notices = Arc::new(AtomicUsize::new(0));
    let _listener = agent_with_notices(&r1.mcp_url, &bearer, notices.clone()).await;
    let bot = agent(&r1.mcp_url, &bearer).await;
    let names = wait_for_tools(&bot, |n| {
        n.contains(&"eu_shop_query".to_string()) && n.contains(&"us_shop_query".to_string())
    })
    .await;
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("eu_") || n.starts_with("us_")),
        "{names:?}"
    );

    // Calls through replica 1 to the tunnels on replicas 2 and 3.
    for tool in ["eu_shop_query", "us_shop_query"] {
        let r = call(&bot, tool, count_query()).await;
        assert!(r.is_error != Some(true), "{tool}: {}", text_of(&r));
        assert_eq!(
            r.structured_content.unwrap()["rows"],
            json!([[10]]),
            "{tool}: the shop's ten customers"
        );
    }
    let r = call(
        &bot,
        "us_shop_query",
        json!({"sql": "SELECT name FROM customers WHERE id = ?", "params": [3]}),
    )
    .await;
    assert_eq!(
        r.structured_content.unwrap()["rows"],
        json!([["Customer 3"]])
    );

    // Audited on replica 1 as local calls are: the deployment's SPIFFE ID,
    // the client's receipt; the chain verifies.
    let records = b.store.audit_tail(20).await.unwrap();
    let outcomes: Vec<_> = records
        .iter()
        .map(|r| &r.record)
        .filter(|r| r["kind"] == "outcome" && r["outcome"] == "ok")
        .collect();
    assert_eq!(outcomes.len(), 3, "{records:#?}");
    for r in &outcomes {
        let dep = r["deployment"].as_str().unwrap();
        assert_eq!(
            r["spiffe_id"],
            format!("spiffe://ewii.local/ws/acme/dep/{dep}"),
            "{r}"
        );
        assert!(
            r["response_digest"].as_str().is_some_and(|d| d.len() == 64),
            "{r}"
        );
        assert!(
            r["response_signature"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{r}"
        );
    }
    match b.store.verify_audit().await.unwrap() {
        Verification::Intact { open_intents, .. } => assert!(open_intents.is_empty()),
        v => panic!("the chain should verify: {v:?}"),
    }

    // A deployment connecting to replica 3 now reaches replica 1's agent
    // session as list_changed.
    let before = notices.load(Ordering::SeqCst);
    let (_ap_adapter, ap) = deploy_at(&b, &r3, "ap").await;
    let names = wait_for_tools(&bot, |n| n.contains(&"ap_shop_query".to_string())).await;
    assert!(names.contains(&"eu_shop_query".to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while notices.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < deadline, "no list_changed on replica 1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A deployment that goes away leaves every replica's list.
    eu.stop().await;
    wait_for_tools(&bot, |n| !n.iter().any(|t| t.starts_with("eu_"))).await;
    let r = call(&bot, "us_shop_query", count_query()).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    us.stop().await;
    ap.stop().await;
    drop((r1, r2, r3));
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_peer_with_a_certificate_from_another_ca_gets_nothing() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    b.store
        .create_workspace("acme", None, SystemTime::now())
        .await
        .unwrap();
    let bearer = agent_credential(&b.store, "acme", "bot", None).await;
    let r1 = replica(&b).await;
    let r2 = replica(&b).await;
    let (_adapter, client) = deploy_at(&b, &r2, "eu").await;
    let bot = agent(&r1.mcp_url, &bearer).await;
    wait_for_tools(&bot, |n| n.contains(&"eu_shop_query".to_string())).await;
    let held = b
        .store
        .held_tunnels(0)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.deployment == "eu")
        .unwrap();
    let address = held.peer_address.clone().unwrap();
    assert_eq!(replica_id_at(&b, &address).await, held.replica_id);
    let audited = b.store.audit_tail(100).await.unwrap().len();

    // A peer trusting the real replica CA (its certificate is public), so
    // the handshake reaches the replica's own check, but holding a
    // certificate for a replica id from a CA of its own.
    let real_ca = b.store.replica_ca(SystemTime::now()).await.unwrap();
    let forged_ca = ReplicaCa::generate(SystemTime::now()).unwrap();
    let forged_cert = forged_ca
        .issue_replica_cert("forger", SystemTime::now())
        .unwrap();
    let forged = Channel::bind(
        None,
        ChannelTls::new(real_ca.certificate(), &forged_cert).unwrap(),
    )
    .unwrap();
    let call = || ForwardedCall {
        workspace: "acme".into(),
        deployment: "eu".into(),
        spiffe_id: held.spiffe_id.clone(),
        connection: held.connection,
        tool: "shop_query".into(),
        arguments: count_query().as_object().cloned(),
        meta: Default::default(),
    };
    let refused = forged.call(&held.replica_id, &address, call()).await;
    let err = refused.expect_err("a forged peer must get no answer");
    println!("forged peer refused: {err}");
    let notice = forged
        .changed(&held.replica_id, &address, vec!["acme".into()])
        .await;
    assert!(notice.is_err(), "a forged change notice was taken");
    forged.close();

    // Nothing ran there: no record; the real route still works.
    assert_eq!(b.store.audit_tail(100).await.unwrap().len(), audited);
    let names = tool_names(&bot).await;
    assert!(names.contains(&"eu_shop_query".to_string()));
    let r = ewii_conformance::agent::call(&bot, "eu_shop_query", count_query()).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    client.stop().await;
    drop((r1, r2));
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_call_given_up_on_is_cancelled_in_the_engine() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    let Some(admin) = server_url("EWII_TEST_POSTGRES_ADMIN_URL", true) else {
        return;
    };
    let user_url = server_url("EWII_TEST_POSTGRES_URL", true).unwrap();
    let database = ServerDatabase::create(&user_url, "ewii_replica_cancel")
        .await
        .unwrap();
    b.store
        .create_workspace("acme", None, SystemTime::now())
        .await
        .unwrap();
    let bearer = agent_credential(&b.store, "acme", "bot", None).await;
    // Replica 1 gives up on a call after 1 s.
    let port = free_loopback_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let r1 = b
        .serve_process(&["--replica-listen", &listen, "--call-timeout", "1s"])
        .await;
    let r2 = replica(&b).await;
    b.store
        .create_deployment("acme", "site", TOKEN_TTL, SystemTime::now())
        .await
        .unwrap();
    let keys = issue_svid(&b.store, "acme", "site").await;
    record_svid(&b.store, "acme", "site", &keys).await;
    let adapter = TestAdapter::start(vec![DatabaseConfig {
        name: "pg".into(),
        driver: "postgres".into(),
        url: SecretString::new(database.url().to_owned()),
        read_only: true,
        limits: Limits::default(),
    }])
    .await;
    let client = start_client_at(r2.quic, r2.hub_ca.clone(), keys, &adapter);
    let bot = agent(&r1.mcp_url, &bearer).await;
    wait_for_tools(&bot, |n| n.contains(&"site_pg_query".to_string())).await;

    let marker = format!("replica_cancel_{}", std::process::id());
    let sql = format!("SELECT pg_sleep(30) /* {marker} */");
    let started = Instant::now();
    let r = call(&bot, "site_pg_query", json!({"sql": sql, "params": []})).await;
    assert_eq!(r.is_error, Some(true), "{}", text_of(&r));
    assert!(
        text_of(&r).contains("did not answer within 1 s"),
        "{}",
        text_of(&r)
    );
    // Replica 1 dropped the call: replica 2 cancels it at the adapter,
    // which cancels the statement in PostgreSQL.
    while running(&admin, &marker).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the statement still runs 4 s after replica 1 gave up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "statement gone {} ms after the call started (1 s call timeout)",
        started.elapsed().as_millis()
    );
    client.stop().await;
    drop((r1, r2, adapter, database));
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_that_reconnects_to_another_replica_is_routed_there() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    b.store
        .create_workspace("acme", None, SystemTime::now())
        .await
        .unwrap();
    let bearer = agent_credential(&b.store, "acme", "bot", None).await;
    let r1 = replica(&b).await;
    let r2 = replica(&b).await;
    let r3 = replica(&b).await;
    b.store
        .create_deployment("acme", "eu", TOKEN_TTL, SystemTime::now())
        .await
        .unwrap();
    let keys = issue_svid(&b.store, "acme", "eu").await;
    record_svid(&b.store, "acme", "eu", &keys).await;
    let adapter = TestAdapter::sqlite("shop").await;
    let first = start_client_at(r2.quic, r2.hub_ca.clone(), keys.clone(), &adapter);
    let bot = agent(&r1.mcp_url, &bearer).await;
    wait_for_tools(&bot, |n| n.contains(&"eu_shop_query".to_string())).await;
    let r = call(&bot, "eu_shop_query", count_query()).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    let holder = || async {
        b.store
            .held_tunnels(0)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.deployment == "eu")
            .map(|t| (t.replica_id, t.peer_address))
    };
    let (on_r2, _) = holder().await.unwrap();

    // The client dies without a goodbye and comes back on replica 3, as a
    // failover brings it; replica 2 may not have noticed yet.
    first.task.abort();
    let moved = Instant::now();
    let second = start_client_at(r3.quic, r3.hub_ca.clone(), keys, &adapter);
    loop {
        if let Some((id, _)) = holder().await
            && id != on_r2
        {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(10),
            "replica 3 never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken = moved.elapsed();
    // Calls from replica 1 reach the deployment through replica 3 (one
    // that raced the change notice to replica 1 went to replica 2's dead
    // tunnel and failed when that link timed out).
    let args = count_query().as_object().cloned().unwrap();
    loop {
        let r = bot
            .call_tool(
                rmcp::model::CallToolRequestParams::new("eu_shop_query")
                    .with_arguments(args.clone()),
            )
            .await;
        if let Ok(r) = &r
            && r.is_error != Some(true)
        {
            assert_eq!(
                r.structured_content.as_ref().unwrap()["rows"],
                json!([[10]])
            );
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(10),
            "no call succeeded within 10 s of the move: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "lease taken by replica 3 {} ms after the client moved; calls through replica 1 \
         answered again after {} ms",
        taken.as_millis(),
        moved.elapsed().as_millis()
    );
    // The lease stays with replica 3 past replica 2's next heartbeats.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (holder_now, _) = holder().await.unwrap();
    assert_ne!(holder_now, on_r2, "replica 2 took the lease back");
    let r = call(&bot, "eu_shop_query", count_query()).await;
    assert!(r.is_error != Some(true), "{}", text_of(&r));
    second.stop().await;
    drop((r1, r2, r3));
    b.finish().await;
}

/// Statements carrying `marker` that are running now.
async fn running(admin: &str, marker: &str) -> i64 {
    use sqlx::Connection as _;
    let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE state = 'active' AND pid <> pg_backend_pid() AND position($1 in query) > 0",
    )
    .bind(marker)
    .fetch_one(&mut c)
    .await
    .unwrap();
    c.close().await.ok();
    n
}

/// An agent session on `url` that counts the `tools/list_changed`
/// notifications it gets.
async fn agent_with_notices(
    url: &str,
    bearer: &str,
    notices: Arc<AtomicUsize>,
) -> rmcp::service::RunningService<rmcp::RoleClient, Counting> {
    use rmcp::ServiceExt as _;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    ewii_conformance::agent::install_crypto_provider();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(bearer),
    );
    tokio::time::timeout(Duration::from_secs(20), Counting(notices).serve(transport))
        .await
        .unwrap()
        .unwrap()
}

/// A client handler counting `tools/list_changed`.
#[derive(Clone)]
struct Counting(Arc<AtomicUsize>);

impl rmcp::ClientHandler for Counting {
    async fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
