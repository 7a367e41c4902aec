//! The client runtime through the tunnel over real QUIC on loopback, with
//! the real hub in-process: the real `ewii-client` binary or its library
//! with an SVID issued by the hub's workspace CA, and the test adapter.
//!
//! Where a test plays the hub's part by hand (a raw MCP session, a route
//! no real hub sends, a receipt read off the wire, a close with a chosen
//! code), it does so on the live tunnel the real hub registered. The one
//! party here that is not the hub poses as it: a TLS-terminating relay's
//! own listener, a [`StandInListener`] with the relay's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use ewii_client::client::{Client, ClientError, ClientOptions, Stopped};
use ewii_client::connlog::ConnectionLog;
use ewii_client::forward::{AllowList, Destination};
use ewii_conformance::adapter::{CREDENTIAL, TestAdapter, client_credential, credential_file};
use ewii_conformance::agent::STEP;
use ewii_conformance::client::{
    client_binary, connection_log, events, settings, static_client, wait_for_log,
};
use ewii_conformance::db::Backend;
use ewii_conformance::hub::{HUB_NAMES, metric, next_connection, start_hub, try_tunnel};
use ewii_conformance::pki::{Leaf, TestCa, key_material};
use ewii_conformance::process::RunningProcess;
use ewii_conformance::raw_mcp::{
    call_through, exchange, initialize, open_adapter_session, request,
};
use ewii_conformance::stand_in::StandInListener;
use ewii_conformance::svid;
use ewii_hub::Store;
use ewii_hub::gateway::registry::LiveDeployment;
use ewii_hub::gateway::serve::{RunningHub, ServeOptions};
use ewii_hub::state::store::RevocationReason;
use ewii_quic::quinn;
use ewii_quic::{
    ClientQuicConfig, Closed, Dialer, HubCertVerifier, HubTunnel, InMemoryTrust, NetError,
    SvidVerifier, TlsBinding,
};
use ewii_wire::handshake::ClientConfig as TunnelConfig;
use ewii_wire::receipt::Reply;
use ewii_wire::refusal::RefusalCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEPLOYMENT: &str = "spiffe://ewii.local/ws/acme/dep/eu";

fn now() -> SystemTime {
    SystemTime::now()
}

/// A store with workspace `acme` and its deployment `eu`.
async fn acme() -> Backend {
    let backend = Backend::sqlite().await;
    let store = &backend.store;
    store.create_workspace("acme", None, now()).await.unwrap();
    store
        .create_deployment("acme", "eu", Duration::from_secs(600), now())
        .await
        .unwrap();
    backend
}

/// `eu`'s registration on `hub`, on another connection than `after`.
async fn eu(hub: &RunningHub, after: Option<u64>) -> Arc<LiveDeployment> {
    next_connection(hub, "acme", "eu", after).await
}

async fn mcp_session_through(tunnel: &HubTunnel) {
    open_adapter_session(tunnel).await;
    let tools = call_through(tunnel, &request(2, "tools/list", json!({}))).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"shop_query"), "{names:?}");
    let rows = call_through(
        tunnel,
        &request(
            3,
            "tools/call",
            json!({"name": "shop_query", "arguments": {
                "sql": "SELECT name FROM customers WHERE country = ? ORDER BY id LIMIT 2",
                "params": ["DE"]}}),
        ),
    )
    .await;
    assert_eq!(
        rows["result"]["structuredContent"]["rows"],
        json!([["Customer 2"], ["Customer 4"]]),
        "{rows}"
    );
}

/// The real hub and the real `ewii-client` binary (with an SVID the hub
/// issued, in PEM files) allowed to reach `allow`, the tunnel between them
/// registered.
struct BinaryKit {
    tunnel: Arc<HubTunnel>,
    state: tempfile::TempDir,
    _client: RunningProcess,
    hub: RunningHub,
    _backend: Backend,
}

impl BinaryKit {
    async fn start(allow: &[&Destination]) -> BinaryKit {
        let backend = acme().await;
        let hub = start_hub(&backend.store, |_| {}).await;
        let state = tempfile::tempdir().unwrap();
        let pem = state.path().join("pem");
        std::fs::create_dir_all(&pem).unwrap();
        let (cert, key) = svid::issue(&backend.store, "acme", "eu")
            .await
            .write_pem(&pem, "svid");
        let mut launch = client_binary(&hub, state.path())
            .arg("--svid")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--adapter-credential-file")
            .arg(credential_file(&pem));
        for a in allow {
            launch = launch.args(["--allow", &a.to_string()]);
        }
        let client = launch.spawn().unwrap();
        let tunnel = eu(&hub, None).await.tunnel.clone();
        BinaryKit {
            tunnel,
            state,
            _client: client,
            hub,
            _backend: backend,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_reaches_a_real_adapter_through_ewii_client_and_back() {
    let mut adapter = TestAdapter::sqlite("shop").await;
    let kit = BinaryKit::start(&[&adapter.tcp]).await;
    let (tunnel, state) = (&kit.tunnel, &kit.state);
    assert_eq!(tunnel.peer().identity, DEPLOYMENT);
    mcp_session_through(tunnel).await;

    // A server-initiated notification travels back on the control stream:
    // the hub hears it and lists the new database's tools.
    adapter.attach_sqlite("sales").await;
    let live = eu(&kit.hub, None).await;
    let deadline = std::time::Instant::now() + STEP;
    while !live.tools().iter().any(|t| t.name == "sales_query") {
        assert!(
            std::time::Instant::now() < deadline,
            "list_changed never reached the hub"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The client's connection log: who, where, how much.
    let log = state.path().join("connections.jsonl");
    let records = wait_for_log(&log, |r| events(r, "forward").len() >= 4).await;
    let up = records.iter().find(|r| r["event"] == "tunnel_up").unwrap();
    assert_eq!(up["spiffe_id"], DEPLOYMENT);
    let fwd = events(&records, "forward");
    for r in &fwd {
        assert_eq!(r["spiffe_id"], DEPLOYMENT);
        assert_eq!(r["destination"], adapter.tcp.to_string());
        assert_eq!(r["outcome"], "ok", "{r}");
        assert!(r["bytes_out"].as_u64().unwrap() > 0);
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }
    assert!(fwd.iter().any(|r| r["bytes_in"].as_u64().unwrap() > 100));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_refuses_every_destination_outside_its_allow_list() {
    let adapter = TestAdapter::sqlite("shop").await;
    let kit = BinaryKit::start(&[&adapter.unix]).await;
    let (tunnel, state) = (&kit.tunnel, &kit.state);

    // Something a (compromised) hub would like to reach, listening on
    // loopback.
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bait_route = format!("tcp:{}", bait.local_addr().unwrap());
    for route in [
        bait_route.as_str(),
        "unix:/run/other.sock",
        adapter.tcp.to_string().as_str(),
        "http://example.com",
    ] {
        let replies = exchange(tunnel, Some(route), &initialize(1)).await;
        match replies.as_slice() {
            [Reply::Refused(refused)] => {
                let why = &refused.message;
                assert!(
                    why.contains("allow-list") || why.contains("invalid destination"),
                    "{route}: {why}"
                );
                assert!(
                    matches!(
                        refused.code,
                        RefusalCode::DestinationNotAllowed | RefusalCode::BadRequest
                    ),
                    "{route}: {refused}"
                );
            }
            other => panic!("{route}: expected a refusal, got {other:?}"),
        }
    }
    // Nothing was dialled.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bait.accept())
            .await
            .is_err(),
        "the client dialled a destination outside its allow-list"
    );
    // The allowed one still works, by name or by default.
    let ok = exchange(tunnel, Some(&adapter.unix.to_string()), &initialize(1)).await;
    assert!(matches!(ok.as_slice(), [Reply::Message { .. }]), "{ok:?}");

    let log = state.path().join("connections.jsonl");
    let records = wait_for_log(&log, |r| events(r, "refused").len() >= 4).await;
    let refused = events(&records, "refused");
    assert_eq!(refused[0]["destination"], bait_route);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_refusing_the_clients_credential_is_a_clear_refusal_and_nothing_leaks() {
    // The hub's own MCP session goes to the first adapter, which holds the
    // credential ewii-client was given; the second holds another one.
    let ours = TestAdapter::sqlite("shop").await;
    let theirs = ewii_adapter::local_credential::LocalCredential::generate().unwrap();
    let adapter = TestAdapter::sqlite_with("shop", Some(theirs.clone())).await;
    let kit = BinaryKit::start(&[&ours.unix, &adapter.tcp]).await;
    let (tunnel, state) = (&kit.tunnel, &kit.state);

    let route = adapter.tcp.to_string();
    let replies = exchange(tunnel, Some(&route), &initialize(1)).await;
    let refused = match replies.as_slice() {
        [Reply::Refused(refused)] => refused.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // The hub gets the code to match on; the message is for people.
    assert_eq!(refused.code, RefusalCode::AdapterUnauthorized, "{refused}");
    let why = refused.message;
    assert!(why.contains("--adapter-credential-file"), "{why}");
    // Neither credential reaches the hub.
    assert!(
        !why.contains(CREDENTIAL) && !why.contains(theirs.expose()),
        "{why}"
    );

    let log = state.path().join("connections.jsonl");
    let to_theirs = |r: &Value| r["event"] == "forward" && r["destination"] == route.as_str();
    let records = wait_for_log(&log, |r| r.iter().any(to_theirs)).await;
    let forward = records.iter().find(|r| to_theirs(r)).unwrap();
    assert!(
        forward["outcome"]
            .as_str()
            .unwrap()
            .starts_with(RefusalCode::AdapterUnauthorized.as_str()),
        "{forward}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(CREDENTIAL),
        "the credential is in the connection log"
    );
}

/// A UDP forwarder between client and hub that can be cut, for loss tests.
struct UdpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

async fn udp_proxy(target: SocketAddr) -> UdpProxy {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(target).await.unwrap();
    let addr = front.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let peer: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    {
        let (front, back, cut, peer) = (front.clone(), back.clone(), cut.clone(), peer.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *peer.lock().unwrap() = Some(from);
                if !cut.load(Ordering::SeqCst) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = back.recv(&mut buf).await {
                let to = *peer.lock().unwrap();
                if let (Some(to), false) = (to, cut.load(Ordering::SeqCst)) {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
    }
    UdpProxy { addr, cut }
}

/// A client of the hub at `quic` presenting `keys`, serving `adapter`,
/// logging to `log`.
fn in_process_client(
    hub: &RunningHub,
    quic: SocketAddr,
    keys: ewii_quic::KeyMaterial,
    adapter: &TestAdapter,
    log: &Path,
) -> Client {
    let mut settings = settings(hub, adapter);
    settings.hub = quic.to_string();
    settings.log = Some(Arc::new(ConnectionLog::open(log).unwrap()));
    static_client(settings, keys)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_link_is_noticed_within_3_s_and_the_client_reconnects_with_backoff() {
    let backend = acme().await;
    let adapter = TestAdapter::sqlite("shop").await;
    let hub = start_hub(&backend.store, |_| {}).await;
    let proxy = udp_proxy(hub.quic_addr).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("connections.jsonl");
    let keys = svid::issue_svid(&backend.store, "acme", "eu").await;
    let client = in_process_client(&hub, proxy.addr, keys, &adapter, &log);
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));

    let first = eu(&hub, None).await;
    let tunnel = first.tunnel.clone();
    mcp_session_through(&tunnel).await;

    // Cut the path silently: no close frame, nothing. Keep-alives stop.
    proxy.cut.store(true, Ordering::SeqCst);
    let cut_at = std::time::Instant::now();
    let hub_err = tokio::time::timeout(STEP, tunnel.closed()).await.unwrap();
    let hub_noticed = cut_at.elapsed();
    assert_eq!(hub_err, Closed::TimedOut, "{hub_err}");
    wait_for_log(&log, |r| r.iter().any(|r| r["event"] == "tunnel_down")).await;
    let client_noticed = cut_at.elapsed();
    eprintln!("MEASURED loss noticed: hub {hub_noticed:?}, client {client_noticed:?}");
    assert!(
        hub_noticed < Duration::from_secs(3),
        "hub took {hub_noticed:?}"
    );
    assert!(
        client_noticed < Duration::from_secs(3),
        "client took {client_noticed:?}"
    );

    // While the path is down, attempts fail and back off.
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.cut.store(false, Ordering::SeqCst);
    let again = eu(&hub, Some(first.connection)).await;
    assert_eq!(again.tunnel.peer().identity, DEPLOYMENT);
    mcp_session_through(&again.tunnel).await;

    let records = connection_log(&log);
    let failed = events(&records, "connect_failed");
    assert!(failed.len() >= 2, "{records:#?}");
    let attempts: Vec<(&str, &Value)> = failed
        .iter()
        .map(|r| (r["time"].as_str().unwrap(), &r["duration_ms"]))
        .collect();
    eprintln!("MEASURED failed attempts while cut (time, duration ms): {attempts:?}");
    assert_eq!(events(&records, "tunnel_up").len(), 2);
    cancel.cancel();
    running.await.unwrap().unwrap();
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_hub_makes_the_client_come_back_to_its_successor() {
    let backend = acme().await;
    let adapter = TestAdapter::sqlite("shop").await;
    let hub = start_hub(&backend.store, |_| {}).await;
    let addr = hub.quic_addr;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("connections.jsonl");
    let keys = svid::issue_svid(&backend.store, "acme", "eu").await;
    let client = in_process_client(&hub, addr, keys, &adapter, &log);
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));
    eu(&hub, None).await;
    wait_for_log(&log, |r| r.iter().any(|r| r["event"] == "tunnel_up")).await;

    // The hub goes away: its socket is gone.
    hub.shutdown().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let successor = start_hub(&backend.store, |o| o.quic = addr).await;
    let tunnel = eu(&successor, None).await.tunnel.clone();
    mcp_session_through(&tunnel).await;

    let records = connection_log(&log);
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"tunnel_down"), "{events:?}");
    assert!(
        events.iter().filter(|e| **e == "connect_failed").count() >= 1,
        "{events:?}"
    );
    cancel.cancel();
    running.await.unwrap().unwrap();
    successor.shutdown().await;
}

/// A TLS-terminating man in the middle: it holds a certificate the client's
/// TLS layer accepts and its own valid SVID toward the hub, and relays every
/// stream both ways while recording what it sees after TLS.
async fn tls_terminating_relay(
    workspace: &Arc<InMemoryTrust>,
    mitm_ca: &TestCa,
    relay_svid: &Leaf,
    hub: &RunningHub,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
) -> SocketAddr {
    let front_cert = mitm_ca.server(HUB_NAMES[1]);
    // The client side of the relay accepts any SVID from the workspace.
    let verifier = Arc::new(SvidVerifier::new(workspace.clone()));
    let server =
        ewii_quic::config::hub_config(&key_material(&front_cert), verifier, false).unwrap();
    let front = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = front.local_addr().unwrap();
    let hub_verifier = HubCertVerifier::new(&hub.hub_ca, HUB_NAMES[1]).unwrap();
    let back_cfg = ClientQuicConfig::tunnel(&key_material(relay_svid), &hub_verifier)
        .unwrap()
        .into_quinn();
    let hub = hub.quic_addr;
    tokio::spawn(async move {
        while let Some(incoming) = front.accept().await {
            let back_cfg = back_cfg.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(down) = incoming.await else { return };
                let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                let Ok(connecting) = ep.connect_with(back_cfg, hub, HUB_NAMES[1]) else {
                    return;
                };
                let Ok(up) = connecting.await else { return };
                let pipe = |mut from: quinn::RecvStream,
                            mut to: quinn::SendStream,
                            seen: Arc<std::sync::Mutex<Vec<u8>>>| async move {
                    while let Ok(Some(chunk)) = from.read_chunk(65536, true).await {
                        seen.lock().unwrap().extend_from_slice(&chunk.bytes);
                        if to.write_all(&chunk.bytes).await.is_err() {
                            return;
                        }
                    }
                    let _ = to.finish();
                };
                loop {
                    tokio::select! {
                        s = down.accept_bi() => {
                            let Ok((ds, dr)) = s else { break };
                            let Ok((us, ur)) = up.open_bi().await else { break };
                            tokio::spawn(pipe(dr, us, seen.clone()));
                            tokio::spawn(pipe(ur, ds, seen.clone()));
                        }
                        s = up.accept_bi() => {
                            let Ok((us, ur)) = s else { break };
                            let Ok((ds, dr)) = down.open_bi().await else { break };
                            tokio::spawn(pipe(ur, ds, seen.clone()));
                            tokio::spawn(pipe(dr, us, seen.clone()));
                        }
                    }
                }
                down.close(0u32.into(), b"");
                up.close(0u32.into(), b"");
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_terminating_relay_sees_only_ciphertext_and_cannot_pose_as_the_deployment() {
    let backend = acme().await;
    let store = &backend.store;
    store
        .create_deployment("acme", "relay", Duration::from_secs(600), now())
        .await
        .unwrap();
    let adapter = TestAdapter::sqlite("shop").await;
    let mitm_ca = TestCa::new("tls inspection ca");
    let svid = svid::issue(store, "acme", "eu").await;
    let relay_svid = svid::issue(store, "acme", "relay").await;
    let workspace = svid::workspace_trust(store, "acme").await;
    let mut hub_ca = Vec::new();

    for binding in [TlsBinding::Relayed, TlsBinding::Strict] {
        let hub = start_hub(store, |o: &mut ServeOptions| o.binding = binding).await;
        hub_ca.clone_from(&hub.hub_ca);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let relay =
            tls_terminating_relay(&workspace, &mitm_ca, &relay_svid, &hub, seen.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        // The client's TLS layer trusts the inspection CA (as behind a
        // corporate TLS proxy); its app layer still requires the hub CA.
        let client = Client::new(ClientOptions {
            hub: relay.to_string(),
            hub_name: HUB_NAMES[1].into(),
            hub_ca: hub.hub_ca.clone(),
            tls_ca: Some(vec![mitm_ca.cert.clone()]),
            keys: key_material(&svid),
            allow: AllowList::new(vec![adapter.tcp.clone()]).unwrap(),
            adapter_credential: Some(client_credential()),
            log: Some(Arc::new(
                ConnectionLog::open(&dir.path().join("c.jsonl")).unwrap(),
            )),
        })
        .unwrap();
        let cancel = CancellationToken::new();
        let running = tokio::spawn(client.run(cancel.clone()));
        match binding {
            TlsBinding::Relayed => {
                // The app layer names the deployment, not the relay's TLS cert.
                let tunnel = eu(&hub, None).await.tunnel.clone();
                assert_eq!(tunnel.peer().identity, DEPLOYMENT);
                mcp_session_through(&tunnel).await;
                let seen = seen.lock().unwrap().clone();
                assert!(seen.len() > 2000, "the relay carried the traffic");
                for secret in [
                    "Customer 2",
                    "SELECT name",
                    "tools/call",
                    "shop_query",
                    "serverInfo",
                ] {
                    assert!(
                        !seen.windows(secret.len()).any(|w| w == secret.as_bytes()),
                        "the relay read {secret:?}"
                    );
                }
            }
            TlsBinding::Strict => {
                // The relay's TLS identity is not the deployment it carries.
                let mismatch =
                    "ewii_hub_handshake_failures_total{layer=\"app\",reason=\"identity_mismatch\"}";
                let deadline = std::time::Instant::now() + STEP;
                while metric(&hub, mismatch) < 1.0 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no identity_mismatch refusal: {}",
                        hub.state.metrics.render()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(hub.state.registry.is_empty());
            }
        }
        cancel.cancel();
        running.await.unwrap().unwrap();
        hub.shutdown().await;
    }

    // The relay cannot answer the app handshake itself: its certificate is
    // not from the hub CA (checked end to end by the client).
    let mitm_as_hub =
        StandInListener::start(&mitm_ca.server(HUB_NAMES[1]), &[HUB_NAMES[1]], workspace);
    let v = HubCertVerifier::new(std::slice::from_ref(&mitm_ca.cert), HUB_NAMES[1]).unwrap();
    let keys = key_material(&svid);
    let quic = ClientQuicConfig::tunnel(&keys, &v).unwrap();
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = TunnelConfig {
        credentials: keys.credentials().unwrap(),
        identity: DEPLOYMENT.into(),
        hub_name: HUB_NAMES[1].into(),
        hub_verifier: Arc::new(HubCertVerifier::new(&hub_ca, HUB_NAMES[1]).unwrap()),
    };
    let err = dialer
        .connect(&quic, mitm_as_hub.addr, config)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), "untrusted_issuer", "{err}");
}

// ------------------------------------------------- receipts and revocation

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_reply_carries_a_receipt_that_verifies_with_the_clients_leaf() {
    let backend = acme().await;
    let store = &backend.store;
    let adapter = TestAdapter::sqlite("shop").await;
    let hub = start_hub(store, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let svid = svid::issue(store, "acme", "eu").await;
    let client = in_process_client(
        &hub,
        hub.quic_addr,
        key_material(&svid),
        &adapter,
        &dir.path().join("c.jsonl"),
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));
    let tunnel = eu(&hub, None).await.tunnel.clone();

    let request_bytes = serde_json::to_vec(&initialize(1)).unwrap();
    let mut rx = tunnel.request(None, &request_bytes).await.unwrap();
    let reply = tokio::time::timeout(STEP, rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Reply::Message { message, receipt } = reply else {
        panic!("expected a message, got {reply:?}");
    };
    let init: Value = serde_json::from_slice(&message).unwrap();
    assert_eq!(init["result"]["serverInfo"]["name"], "ewii-adapter");

    // The receipt is for exactly this request and this reply …
    assert_eq!(receipt.request_digest, sha256(&request_bytes));
    assert_eq!(receipt.response_digest, sha256(&message));
    assert_eq!(receipt.request_digest_hex().len(), 64);
    assert!(!receipt.signature_b64().is_empty());
    // … signed by the key of the leaf the session was established with:
    // checked here with ring directly over the certificate's public key.
    let leaf = &tunnel.peer().chain[0];
    assert_eq!(leaf.as_der(), svid.chain[0].as_ref());
    receipt.verify(leaf).unwrap();
    assert_eq!(
        receipt.scheme,
        u16::from(rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
    );
    assert_eq!(
        receipt.scheme,
        ewii_wire::pki::SignatureScheme::EcdsaP256Sha256.code()
    );
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let signed = [
        b"ewii-receipt/1\0".as_slice(),
        &receipt.request_digest,
        &receipt.response_digest,
    ]
    .concat();
    assert_eq!(signed, receipt.signed_bytes());
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        cert.public_key().subject_public_key.data.as_ref(),
    )
    .verify(&signed, &receipt.signature)
    .unwrap();
    // Another SVID of the same deployment (another key) does not verify it.
    let other = svid::issue(store, "acme", "eu").await;
    let err = receipt
        .verify(&ewii_quic::keys::wire_certificate(&other.chain[0]))
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(rx.recv().await.is_none(), "one reply, then the stream ends");

    cancel.cancel();
    assert_eq!(running.await.unwrap().unwrap(), Stopped::Kept);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_closing_as_revoked_stops_the_client_instead_of_reconnecting() {
    let backend = acme().await;
    let adapter = TestAdapter::sqlite("shop").await;
    let hub = start_hub(&backend.store, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("connections.jsonl");
    let keys = svid::issue_svid(&backend.store, "acme", "eu").await;
    let client = in_process_client(&hub, hub.quic_addr, keys, &adapter, &log);
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));

    // Any other close code: the client comes back.
    let first = eu(&hub, None).await;
    wait_for_log(&log, |r| r.iter().any(|r| r["event"] == "tunnel_up")).await;
    first.tunnel.close_expired();
    let second = eu(&hub, Some(first.connection)).await;
    mcp_session_through(&second.tunnel).await;

    // REVOKED: it stops, says why, and does not come back.
    second.tunnel.close_revoked();
    let outcome = tokio::time::timeout(STEP, running)
        .await
        .expect("the client stops")
        .unwrap();
    match outcome {
        Err(ClientError::Revoked {
            spiffe_id,
            how,
            next_step,
        }) => {
            assert_eq!(spiffe_id, DEPLOYMENT);
            assert!(how.contains("revoked at the hub"), "{how}");
            assert!(next_step.contains("--svid/--key"), "{next_step}");
        }
        other => panic!("expected a revocation, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        hub.state
            .registry
            .find("acme", "eu")
            .is_none_or(|live| live.connection == second.connection),
        "the client reconnected after a revocation"
    );
    let records = connection_log(&log);
    let revoked = events(&records, "revoked");
    assert_eq!(revoked.len(), 1, "{records:#?}");
    assert_eq!(events(&records, "tunnel_up").len(), 2);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_refused_in_tls_as_revoked_stops_at_the_first_refusal() {
    let backend = acme().await;
    let store: &Store = &backend.store;
    let adapter = TestAdapter::sqlite("shop").await;
    let keys = svid::issue_svid(store, "acme", "eu").await;
    svid::record_svid(store, "acme", "eu", &keys).await;
    let serial = ewii_wire::svid::serial_hex(&keys.chain[0]).unwrap();
    store
        .revoke_serial(&serial, RevocationReason::Operator, now())
        .await
        .unwrap();
    // The hub starts knowing the revocation.
    let hub = start_hub(store, |_| {}).await;

    // The client runtime stops at the first refusal instead of retrying.
    let dir = tempfile::tempdir().unwrap();
    let client = in_process_client(
        &hub,
        hub.quic_addr,
        keys.clone(),
        &adapter,
        &dir.path().join("c.jsonl"),
    );
    let outcome = tokio::time::timeout(STEP, client.run(CancellationToken::new()))
        .await
        .expect("the client stops");
    match outcome {
        Err(ClientError::Revoked { how, .. }) => {
            assert!(how.contains("certificate_revoked"), "{how}")
        }
        other => panic!("expected a revocation, got {other:?}"),
    }
    // One attempt, and no retry.
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hub.state.registry.is_empty());
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&1));
    // A tunnel attempt through the binding alone is refused the same way.
    let err = try_tunnel(&hub, &keys, DEPLOYMENT)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, NetError::Revoked(_)), "{err}");
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&2));
    hub.shutdown().await;
}
