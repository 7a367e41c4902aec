//! The client runtime through the tunnel over real QUIC on loopback: a
//! test hub built from `ewii-quic`'s listener exactly as the hub is, the
//! real `ewii-client` binary or its library, and a real MCP adapter
//! in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../quic/tests/common/mod.rs"]
mod common;
#[path = "forward_support/mod.rs"]
mod forward_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::hub::{DEPLOYMENT, HUB_NAME, Pki, STEP, TestHub, connect_with, keys};
use common::pki::{Leaf, TestCa};
use ewii_client::client::{Client, ClientError, ClientOptions};
use ewii_client::connlog::ConnectionLog;
use ewii_client::forward::{AllowList, Destination};
use ewii_quic::quinn;
use ewii_quic::{
    ClientQuicConfig, Closed, Dialer, HubCertVerifier, HubTunnel, InMemoryTrust, NetError,
    SvidVerifier, TlsBinding,
};
use ewii_wire::receipt::Reply;
use ewii_wire::refusal::RefusalCode;
use forward_support::{
    CREDENTIAL, TestAdapter, call_through, client_credential, credential_file, exchange,
    initialize, initialized, request,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn mcp_session_through(tunnel: &HubTunnel) {
    let init = call_through(tunnel, &initialize(1)).await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "ewii-adapter",
        "{init}"
    );
    assert!(exchange(tunnel, None, &initialized()).await.is_empty());
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

fn client_binary(pki: &Pki, svid: &Leaf, hub: SocketAddr, state: &Path, allow: &[String]) -> Child {
    let dir = state.join("pem");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = svid.write_pem(&dir, "svid");
    let hub_ca = dir.join("hub-ca.pem");
    std::fs::write(&hub_ca, &pki.hub_ca.cert_pem).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ewii-client"));
    cmd.args(["run", "--hub", &format!("{HUB_NAME}:{}", hub.port())])
        .arg("--hub-ca")
        .arg(&hub_ca)
        .arg("--state")
        .arg(state)
        .arg("--svid")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--adapter-credential-file")
        .arg(credential_file(&dir))
        .env_remove("EWII_ADAPTER_CREDENTIAL")
        .env("EWII_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for a in allow {
        cmd.args(["--allow", a]);
    }
    cmd.spawn().unwrap()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_for_log(path: &Path, what: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let records = log_records(path);
        if what(&records) {
            return records;
        }
        assert!(Instant::now() < deadline, "log never matched: {records:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test hub and the real `ewii-client` binary allowed to reach `allow`,
/// with the tunnel between them up.
struct BinaryKit {
    tunnel: HubTunnel,
    state: tempfile::TempDir,
    _client: Killed,
    _hub: TestHub,
}

impl BinaryKit {
    async fn start(allow: &Destination) -> BinaryKit {
        let pki = Pki::new();
        let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
        let state = tempfile::tempdir().unwrap();
        let svid = pki.workspace.svid(DEPLOYMENT);
        let client = Killed(client_binary(
            &pki,
            &svid,
            hub.addr,
            state.path(),
            &[allow.to_string()],
        ));
        let tunnel = hub.next_tunnel().await.unwrap();
        BinaryKit {
            tunnel,
            state,
            _client: client,
            _hub: hub,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_reaches_a_real_adapter_through_ewii_client_and_back() {
    let adapter = TestAdapter::start().await;
    let kit = BinaryKit::start(&adapter.tcp).await;
    let (tunnel, state) = (&kit.tunnel, &kit.state);
    assert_eq!(tunnel.peer().identity, DEPLOYMENT);
    mcp_session_through(tunnel).await;

    // A server-initiated notification travels back on the control stream.
    adapter.attach_sales().await;
    let note = tokio::time::timeout(STEP, tunnel.next_notification())
        .await
        .expect("list_changed in time")
        .unwrap();
    let note: Value = serde_json::from_slice(&note).unwrap();
    assert_eq!(note["method"], "notifications/tools/list_changed");

    // The client's connection log: who, where, how much.
    let log = state.path().join("connections.jsonl");
    let records = wait_for_log(&log, |r| {
        r.iter().filter(|r| r["event"] == "forward").count() >= 4
    })
    .await;
    let up = records.iter().find(|r| r["event"] == "tunnel_up").unwrap();
    assert_eq!(up["spiffe_id"], DEPLOYMENT);
    let fwd: Vec<&Value> = records.iter().filter(|r| r["event"] == "forward").collect();
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
    let adapter = TestAdapter::start().await;
    let kit = BinaryKit::start(&adapter.unix).await;
    let (tunnel, state) = (&kit.tunnel, &kit.state);

    // Something the hub would like to reach, listening on loopback.
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
    let records = wait_for_log(&log, |r| {
        r.iter().filter(|r| r["event"] == "refused").count() >= 4
    })
    .await;
    let refused: Vec<&Value> = records.iter().filter(|r| r["event"] == "refused").collect();
    assert_eq!(refused[0]["destination"], bait_route);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_refusing_the_clients_credential_is_a_clear_refusal_and_nothing_leaks() {
    // The adapter holds another credential than the one ewii-client was given.
    let theirs = ewii_adapter::local_credential::LocalCredential::generate().unwrap();
    let adapter = TestAdapter::start_with(Some(theirs.clone())).await;
    let kit = BinaryKit::start(&adapter.tcp).await;
    let (tunnel, state) = (&kit.tunnel, &kit.state);

    let replies = exchange(tunnel, None, &initialize(1)).await;
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
    let records = wait_for_log(&log, |r| r.iter().any(|r| r["event"] == "forward")).await;
    let forward = records.iter().find(|r| r["event"] == "forward").unwrap();
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

/// A UDP forwarder between client and hub that can be cut, for loss tests
/// and for the TLS-terminating relay.
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

fn in_process_client(
    pki: &Pki,
    svid: &Leaf,
    hub: SocketAddr,
    allow: Destination,
    log: &Path,
) -> Client {
    Client::new(ClientOptions {
        hub: hub.to_string(),
        hub_name: HUB_NAME.into(),
        hub_ca: vec![pki.hub_ca.cert.clone()],
        tls_ca: None,
        keys: keys(svid),
        allow: AllowList::new(vec![allow]).unwrap(),
        adapter_credential: Some(client_credential()),
        log: Some(Arc::new(ConnectionLog::open(log).unwrap())),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_link_is_noticed_within_3_s_and_the_client_reconnects_with_backoff() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let proxy = udp_proxy(hub.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("connections.jsonl");
    let client = in_process_client(
        &pki,
        &pki.workspace.svid(DEPLOYMENT),
        proxy.addr,
        adapter.tcp.clone(),
        &log,
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));

    let tunnel = hub.next_tunnel().await.unwrap();
    mcp_session_through(&tunnel).await;

    // Cut the path silently: no close frame, nothing. Keep-alives stop.
    proxy.cut.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
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
    let again = hub.next_tunnel().await.unwrap();
    assert_eq!(again.peer().identity, DEPLOYMENT);
    mcp_session_through(&again).await;

    let records = log_records(&log);
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "connect_failed")
        .collect();
    assert!(failed.len() >= 2, "{records:#?}");
    let attempts: Vec<(&str, &Value)> = failed
        .iter()
        .map(|r| (r["time"].as_str().unwrap(), &r["duration_ms"]))
        .collect();
    eprintln!("MEASURED failed attempts while cut (time, duration ms): {attempts:?}");
    assert_eq!(
        records.iter().filter(|r| r["event"] == "tunnel_up").count(),
        2
    );
    cancel.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_hub_makes_the_client_come_back_to_its_successor() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let addr = hub.addr;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("connections.jsonl");
    let client = in_process_client(
        &pki,
        &pki.workspace.svid(DEPLOYMENT),
        addr,
        adapter.tcp.clone(),
        &log,
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));
    let mut hub = hub;
    let tunnel = hub.next_tunnel().await.unwrap();
    wait_for_log(&log, |r| r.iter().any(|r| r["event"] == "tunnel_up")).await;
    drop(tunnel);

    // The hub process dies: its socket is gone.
    hub.listener.close("").await;
    drop(hub);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut successor = pki.start_hub(addr, TlsBinding::Strict);
    let tunnel = successor.next_tunnel().await.unwrap();
    mcp_session_through(&tunnel).await;

    let records = log_records(&log);
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
}

/// A TLS-terminating man in the middle: it holds a certificate the client's
/// TLS layer accepts and its own valid SVID toward the hub, and relays every
/// stream both ways while recording what it sees after TLS.
async fn tls_terminating_relay(
    pki: &Pki,
    mitm_ca: &TestCa,
    hub: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
) -> SocketAddr {
    let front_cert = mitm_ca.server(HUB_NAME);
    // The client side of the relay accepts any SVID from the workspace.
    let trust = InMemoryTrust::new().with_bundle("spiffe://example.org", pki.workspace.bundle());
    let verifier = Arc::new(SvidVerifier::new(Arc::new(trust)));
    let server = ewii_quic::config::hub_config(&keys(&front_cert), verifier, false).unwrap();
    let front = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = front.local_addr().unwrap();
    let relay_svid = pki.workspace.svid("spiffe://example.org/ws/acme/dep/relay");
    let back_cfg = pki.quic_client(&relay_svid).into_quinn();
    tokio::spawn(async move {
        while let Some(incoming) = front.accept().await {
            let back_cfg = back_cfg.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(down) = incoming.await else { return };
                let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                let Ok(connecting) = ep.connect_with(back_cfg, hub, HUB_NAME) else {
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
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mitm_ca = TestCa::new("tls inspection ca");
    let svid = pki.workspace.svid(DEPLOYMENT);

    for binding in [TlsBinding::Relayed, TlsBinding::Strict] {
        let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), binding);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let relay = tls_terminating_relay(&pki, &mitm_ca, hub.addr, seen.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        // The client's TLS layer trusts the inspection CA (as behind a
        // corporate TLS proxy); its app layer still requires the hub CA.
        let client = Client::new(ClientOptions {
            hub: relay.to_string(),
            hub_name: HUB_NAME.into(),
            hub_ca: vec![pki.hub_ca.cert.clone()],
            tls_ca: Some(vec![mitm_ca.cert.clone()]),
            keys: keys(&svid),
            allow: AllowList::new(vec![adapter.tcp.clone()]).unwrap(),
            adapter_credential: Some(client_credential()),
            log: Some(Arc::new(
                ConnectionLog::open(&dir.path().join("c.jsonl")).unwrap(),
            )),
        })
        .unwrap();
        let cancel = CancellationToken::new();
        let running = tokio::spawn(client.run(cancel.clone()));
        let outcome = hub.next_tunnel().await;
        match binding {
            TlsBinding::Relayed => {
                // The app layer names the deployment, not the relay's TLS cert.
                let tunnel = outcome.unwrap();
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
                let err = outcome.map(|_| ()).unwrap_err();
                assert_eq!(err, "identity_mismatch", "{err}");
            }
        }
        cancel.cancel();
        running.await.unwrap().unwrap();
    }

    // The relay cannot answer the app handshake itself: its certificate is
    // not from the hub CA (checked end to end by the client).
    let mitm_as_hub = start_hub_with_cert(&pki, &mitm_ca);
    let err = connect_via(&pki, &mitm_ca, &svid, mitm_as_hub.addr).await;
    assert_eq!(err.reason(), "untrusted_issuer", "{err}");
}

/// A "hub" whose TLS and app-layer certificate come from `ca`.
fn start_hub_with_cert(pki: &Pki, ca: &TestCa) -> TestHub {
    let trust = InMemoryTrust::new().with_bundle("spiffe://example.org", pki.workspace.bundle());
    pki.start_hub_with(
        "127.0.0.1:0".parse().unwrap(),
        TlsBinding::Strict,
        &ca.server(HUB_NAME),
        Arc::new(trust),
    )
}

/// Connects with TLS trusting `tls_ca` and the app layer trusting the hub CA.
async fn connect_via(pki: &Pki, tls_ca: &TestCa, svid: &Leaf, addr: SocketAddr) -> NetError {
    let v = HubCertVerifier::new(std::slice::from_ref(&tls_ca.cert), HUB_NAME).unwrap();
    let quic = ClientQuicConfig::tunnel(&keys(svid), &v).unwrap();
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    dialer
        .connect(&quic, addr, pki.client_config(svid))
        .await
        .map(|_| ())
        .unwrap_err()
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
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let dir = tempfile::tempdir().unwrap();
    let svid = pki.workspace.svid(DEPLOYMENT);
    let client = in_process_client(
        &pki,
        &svid,
        hub.addr,
        adapter.tcp.clone(),
        &dir.path().join("c.jsonl"),
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));
    let tunnel = hub.next_tunnel().await.unwrap();

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
    let other = pki.workspace.svid(DEPLOYMENT);
    let err = receipt
        .verify(&ewii_quic::keys::wire_certificate(&other.chain[0]))
        .unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(rx.recv().await.is_none(), "one reply, then the stream ends");

    cancel.cancel();
    assert_eq!(
        running.await.unwrap().unwrap(),
        ewii_client::client::Stopped::Kept
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_closing_as_revoked_stops_the_client_instead_of_reconnecting() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("connections.jsonl");
    let client = in_process_client(
        &pki,
        &pki.workspace.svid(DEPLOYMENT),
        hub.addr,
        adapter.tcp.clone(),
        &log,
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(client.run(cancel.clone()));

    // Any other close code: the client comes back.
    let tunnel = hub.next_tunnel().await.unwrap();
    wait_for_log(&log, |r| r.iter().any(|r| r["event"] == "tunnel_up")).await;
    tunnel.close_expired();
    let tunnel = hub.next_tunnel().await.unwrap();
    mcp_session_through(&tunnel).await;

    // REVOKED: it stops, says why, and does not come back.
    tunnel.close_revoked();
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
    assert!(
        tokio::time::timeout(Duration::from_secs(2), hub.tunnels.recv())
            .await
            .is_err(),
        "the client reconnected after a revocation"
    );
    let records = log_records(&log);
    let revoked: Vec<&Value> = records.iter().filter(|r| r["event"] == "revoked").collect();
    assert_eq!(revoked.len(), 1, "{records:#?}");
    assert_eq!(
        records.iter().filter(|r| r["event"] == "tunnel_up").count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_refused_in_tls_as_revoked_stops_at_the_first_refusal() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);
    hub.trust.revoke(&svid.serial);

    // The client runtime stops at the first refusal instead of retrying.
    let dir = tempfile::tempdir().unwrap();
    let client = in_process_client(
        &pki,
        &svid,
        hub.addr,
        adapter.tcp.clone(),
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
    assert!(hub.next_tunnel().await.is_err(), "one attempt");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), hub.tunnels.recv())
            .await
            .is_err(),
        "no retry"
    );
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&1));
    // A tunnel attempt through the binding alone is refused the same way.
    let err = connect_with(&pki, &hub, &svid)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, NetError::Revoked(_)), "{err}");
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&2));
}
