//! The tunnel over real QUIC on loopback: a test hub (the accepting side,
//! built from the library exactly as the hub will be), the real
//! `ewii-client` binary or its library, and a real MCP adapter in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
#[path = "forward_support/mod.rs"]
mod forward_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pki::{Leaf, TestCa, install_crypto_provider};
use ewii_tunnel::client::{Client, ClientError, ClientOptions};
use ewii_tunnel::connlog::ConnectionLog;
use ewii_tunnel::enrol::Control;
use ewii_tunnel::forward::{AllowList, Destination};
use ewii_tunnel::handshake::{ClientConfig, HubCertVerifier, HubConfig};
use ewii_tunnel::net::{self, ClientTunnel, HubTunnel, KeyMaterial, NetError, Reply, TlsBinding};
use ewii_tunnel::svid::{InMemoryTrust, SvidVerifier};
use forward_support::{
    CREDENTIAL, TestAdapter, call_through, client_credential, credential_file, exchange,
    initialize, initialized, request,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const HUB_NAME: &str = "localhost";
const DEPLOYMENT: &str = "spiffe://example.org/ws/acme/dep/eu";
const STEP: Duration = Duration::from_secs(15);

fn keys(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}

/// The accepting side: a quinn endpoint with the SVID verifier and the
/// app-layer handshake, handing out live tunnels.
struct TestHub {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    verifier: Arc<SvidVerifier>,
    /// What the verifier trusts; revoke serials here.
    trust: Arc<InMemoryTrust>,
    tunnels: mpsc::Receiver<Result<HubTunnel, NetError>>,
}

struct Pki {
    hub_ca: TestCa,
    workspace: TestCa,
    hub: Leaf,
}

impl Pki {
    fn new() -> Pki {
        install_crypto_provider();
        let hub_ca = TestCa::new("hub ca");
        let hub = hub_ca.server(HUB_NAME);
        Pki {
            workspace: TestCa::new("workspace acme"),
            hub,
            hub_ca,
        }
    }

    fn hub_config(&self, verifier: Arc<SvidVerifier>) -> HubConfig {
        HubConfig {
            credentials: keys(&self.hub).credentials().unwrap(),
            name: HUB_NAME.into(),
            client_verifier: verifier,
        }
    }

    fn start_hub(&self, at: SocketAddr, binding: TlsBinding) -> TestHub {
        let trust = Arc::new(
            InMemoryTrust::new()
                .with_bundle("spiffe://example.org/ws/acme", self.workspace.bundle()),
        );
        let verifier = Arc::new(SvidVerifier::new(trust.clone()));
        let server = net::hub_config(&keys(&self.hub), verifier.clone()).unwrap();
        let endpoint = quinn::Endpoint::server(server, at).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let config = Arc::new(self.hub_config(verifier.clone()));
        let (tx, tunnels) = mpsc::channel(16);
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let (tx, config) = (tx.clone(), config.clone());
                tokio::spawn(async move {
                    let _ = tx
                        .send(HubTunnel::accept(incoming, &config, binding).await)
                        .await;
                });
            }
        });
        TestHub {
            endpoint,
            addr,
            verifier,
            trust,
            tunnels,
        }
    }

    fn client_config(&self, svid: &Leaf) -> ClientConfig {
        ClientConfig {
            credentials: keys(svid).credentials().unwrap(),
            identity: DEPLOYMENT.into(),
            hub_name: HUB_NAME.into(),
            hub_verifier: Arc::new(
                HubCertVerifier::new(std::slice::from_ref(&self.hub_ca.cert), HUB_NAME).unwrap(),
            ),
        }
    }

    fn quic_client(&self, svid: &Leaf) -> quinn::ClientConfig {
        let v = HubCertVerifier::new(std::slice::from_ref(&self.hub_ca.cert), HUB_NAME).unwrap();
        net::client_config(&keys(svid), v.tls()).unwrap()
    }
}

impl TestHub {
    async fn next_tunnel(&mut self) -> Result<HubTunnel, NetError> {
        tokio::time::timeout(STEP, self.tunnels.recv())
            .await
            .expect("a connection attempt reaches the hub in time")
            .expect("the accept loop is running")
    }
}

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
            [Reply::Refused(why)] => assert!(
                why.contains("allow-list") || why.contains("invalid destination"),
                "{route}: {why}"
            ),
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
    let why = match replies.as_slice() {
        [Reply::Refused(why)] => why.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(
        why.starts_with(ewii_tunnel::forward::ADAPTER_UNAUTHORIZED)
            && why.contains("--adapter-credential-file"),
        "{why}"
    );
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
            .starts_with(ewii_tunnel::forward::ADAPTER_UNAUTHORIZED),
        "{forward}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(CREDENTIAL),
        "the credential is in the connection log"
    );
}

async fn connect_with(pki: &Pki, hub: &TestHub, svid: &Leaf) -> Result<ClientTunnel, NetError> {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ClientTunnel::connect(
        &endpoint,
        pki.quic_client(svid),
        hub.addr,
        pki.client_config(svid),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_refuses_bad_svids_in_tls_with_distinct_logged_reasons() {
    let pki = Pki::new();
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let cases: Vec<(&str, Leaf)> = vec![
        (
            "untrusted_issuer",
            TestCa::new("another workspace").svid(DEPLOYMENT),
        ),
        (
            "expired",
            pki.workspace.svid_with(DEPLOYMENT, |p| {
                let past = std::time::SystemTime::now() - Duration::from_secs(7 * 86400);
                common::pki::set_validity(p, past - Duration::from_secs(86400), past);
            }),
        ),
        (
            "ca_as_leaf",
            pki.workspace.svid_with(DEPLOYMENT, |p| {
                p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            }),
        ),
    ];
    for (reason, svid) in cases {
        let before = hub.verifier.refusals().get(reason).copied().unwrap_or(0);
        let outcome = connect_with(&pki, &hub, &svid).await;
        assert!(outcome.is_err(), "{reason}: the hub accepted the SVID");
        // The hub side fails too, and counts the reason.
        let _ = hub
            .next_tunnel()
            .await
            .map(|_| panic!("{reason}: a tunnel was established"));
        let after = hub.verifier.refusals().get(reason).copied().unwrap_or(0);
        assert_eq!(after, before + 1, "{reason}: {:?}", hub.verifier.refusals());
    }
    // And a good one passes.
    let good = pki.workspace.svid(DEPLOYMENT);
    let tunnel = connect_with(&pki, &hub, &good).await.unwrap();
    assert_eq!(tunnel.peer().identity, HUB_NAME);
    assert_eq!(hub.next_tunnel().await.unwrap().peer().identity, DEPLOYMENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_holding_the_wrong_hub_ca_refuses_the_hub() {
    let pki = Pki::new();
    let hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);
    let other = TestCa::new("not the hub ca");
    let v = HubCertVerifier::new(std::slice::from_ref(&other.cert), HUB_NAME).unwrap();
    let quic = net::client_config(&keys(&svid), v.tls()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = ClientTunnel::connect(&endpoint, quic, hub.addr, pki.client_config(&svid))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("issuer"),
        "{err}"
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
    let hub_err = tokio::time::timeout(STEP, tunnel.connection().closed())
        .await
        .unwrap();
    let hub_noticed = cut_at.elapsed();
    assert!(
        matches!(hub_err, quinn::ConnectionError::TimedOut),
        "{hub_err}"
    );
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
    hub.endpoint.close(0u32.into(), b"");
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
    let server = net::hub_config(&keys(&front_cert), verifier).unwrap();
    let front = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = front.local_addr().unwrap();
    let relay_svid = pki.workspace.svid("spiffe://example.org/ws/acme/dep/relay");
    let back_cfg = pki.quic_client(&relay_svid);
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
                assert_eq!(err.reason(), "identity_mismatch", "{err}");
            }
        }
        cancel.cancel();
        running.await.unwrap().unwrap();
    }

    // The relay cannot answer the app handshake itself: its certificate is
    // not from the hub CA (checked end to end by the client).
    let mitm_as_hub = pki.start_hub_with_cert(&mitm_ca);
    let err = connect_via(&pki, &mitm_ca, &svid, mitm_as_hub).await;
    assert_eq!(err.reason(), "untrusted_issuer", "{err}");
}

impl Pki {
    /// A "hub" whose TLS and app-layer certificate come from `ca`.
    fn start_hub_with_cert(&self, ca: &TestCa) -> SocketAddr {
        let cert = ca.server(HUB_NAME);
        let trust =
            InMemoryTrust::new().with_bundle("spiffe://example.org", self.workspace.bundle());
        let verifier = Arc::new(SvidVerifier::new(Arc::new(trust)));
        let server = net::hub_config(&keys(&cert), verifier.clone()).unwrap();
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let config = Arc::new(HubConfig {
            credentials: keys(&cert).credentials().unwrap(),
            name: HUB_NAME.into(),
            client_verifier: verifier,
        });
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let config = config.clone();
                tokio::spawn(async move {
                    let _ = HubTunnel::accept(incoming, &config, TlsBinding::Strict).await;
                });
            }
        });
        addr
    }
}

/// Connects with TLS trusting `tls_ca` and the app layer trusting the hub CA.
async fn connect_via(pki: &Pki, tls_ca: &TestCa, svid: &Leaf, addr: SocketAddr) -> NetError {
    let v = HubCertVerifier::new(std::slice::from_ref(&tls_ca.cert), HUB_NAME).unwrap();
    let quic = net::client_config(&keys(svid), v.tls()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ClientTunnel::connect(&endpoint, quic, addr, pki.client_config(svid))
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

fn revoked_close(reason: &quinn::ConnectionError) -> bool {
    matches!(reason, quinn::ConnectionError::ApplicationClosed(c)
        if c.error_code == quinn::VarInt::from_u32(net::close_code::REVOKED))
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
    assert_eq!(leaf, &svid.chain[0]);
    receipt.verify(leaf).unwrap();
    assert_eq!(
        receipt.scheme,
        u16::from(rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
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
    let err = receipt.verify(&other.chain[0]).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(rx.recv().await.is_none(), "one reply, then the stream ends");

    cancel.cancel();
    assert_eq!(
        running.await.unwrap().unwrap(),
        ewii_tunnel::client::Stopped::Kept
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_goodbye_reaches_the_hub_verified_and_forged_ones_are_refused() {
    let pki = Pki::new();
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);
    let client = connect_with(&pki, &hub, &svid).await.unwrap();
    let tunnel = hub.next_tunnel().await.unwrap();
    let own_key = keys(&svid).credentials().unwrap().key;
    let other_key = keys(&pki.workspace.svid(DEPLOYMENT))
        .credentials()
        .unwrap()
        .key;

    let hub_side = tokio::spawn(async move {
        let control = tokio::time::timeout(STEP, tunnel.next_control())
            .await
            .unwrap();
        let Some(Ok(Control::Goodbye { at, signature })) = control else {
            panic!("expected a goodbye, got {control:?}");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - at).abs() <= 2, "{at} vs {now}");
        tunnel.verify_goodbye(at, &signature).unwrap();

        // The time altered; signed by another key of the same deployment;
        // too old (signed with the right key); not base64.
        let forged = [
            (at + 1, signature.clone()),
            (
                at,
                ewii_tunnel::receipt::sign_goodbye(&*other_key, DEPLOYMENT, at).unwrap(),
            ),
            (
                at - 301,
                ewii_tunnel::receipt::sign_goodbye(&*own_key, DEPLOYMENT, at - 301).unwrap(),
            ),
            (at, "%%%".to_owned()),
        ];
        for (when, sig) in forged {
            let err = tunnel.verify_goodbye(when, &sig).unwrap_err();
            assert_eq!(err.reason(), "bad_goodbye", "{err}");
        }
        // The right key at a fresh time verifies: the hub checks what the
        // client signs, nothing else.
        let fresh = ewii_tunnel::receipt::sign_goodbye(&*own_key, DEPLOYMENT, now).unwrap();
        tunnel.verify_goodbye(now, &fresh).unwrap();

        tunnel.send_control(&Control::GoodbyeAck {}).await.unwrap();
        let closed = tokio::time::timeout(STEP, tunnel.connection().closed())
            .await
            .unwrap();
        assert!(revoked_close(&closed), "{closed}");
    });

    client.goodbye(Duration::from_secs(3)).await.unwrap();
    assert!(matches!(
        client.connection().close_reason(),
        Some(quinn::ConnectionError::LocallyClosed)
    ));
    hub_side.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_goodbye_takes_the_hubs_revoked_close_as_its_ack_and_times_out_on_silence() {
    let pki = Pki::new();
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);

    // The hub revokes and closes at once: the ack may be lost with the
    // close, and the close itself acknowledges.
    let client = connect_with(&pki, &hub, &svid).await.unwrap();
    let tunnel = hub.next_tunnel().await.unwrap();
    let hub_side = tokio::spawn(async move {
        let Some(Ok(Control::Goodbye { at, signature })) = tunnel.next_control().await else {
            panic!("expected a goodbye");
        };
        tunnel.verify_goodbye(at, &signature).unwrap();
        tunnel
            .connection()
            .close(net::close_code::REVOKED.into(), b"revoked");
    });
    client.goodbye(Duration::from_secs(3)).await.unwrap();
    hub_side.await.unwrap();

    // A hub that never answers: the goodbye gives up in time and leaves the
    // tunnel to the caller.
    let client = connect_with(&pki, &hub, &svid).await.unwrap();
    let tunnel = hub.next_tunnel().await.unwrap();
    let started = Instant::now();
    let err = client
        .goodbye(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "timeout", "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(client.connection().close_reason().is_none());
    assert!(matches!(
        tunnel.next_control().await,
        Some(Ok(Control::Goodbye { .. }))
    ));
    client.close("test over");
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
    tunnel
        .connection()
        .close(net::close_code::IDENTITY.into(), b"svid expired");
    let tunnel = hub.next_tunnel().await.unwrap();
    mcp_session_through(&tunnel).await;

    // REVOKED: it stops, says why, and does not come back.
    tunnel
        .connection()
        .close(net::close_code::REVOKED.into(), b"revoked by the operator");
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
            assert!(how.contains("revoked by the operator"), "{how}");
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
async fn an_svid_revoked_at_the_hub_is_refused_in_tls_and_the_client_knows_it_is_revoked() {
    let pki = Pki::new();
    let adapter = TestAdapter::start().await;
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);
    hub.trust.revoke(&svid.serial);

    // The hub's TLS layer refuses it with certificate_revoked: QUIC crypto
    // error 0x100 + 44, on a connection whose handshake the client had
    // completed.
    let err = connect_with(&pki, &hub, &svid)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), "revoked", "{err}");
    match &err {
        NetError::Revoked(how) => assert!(how.contains("certificate_revoked"), "{how}"),
        other => panic!("expected a revocation, got {other:?}"),
    }
    assert!(hub.next_tunnel().await.is_err());
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&1));

    // Other TLS refusals are not revocations: they are retried.
    let expired = pki.workspace.svid_with(DEPLOYMENT, |p| {
        let past = std::time::SystemTime::now() - Duration::from_secs(7 * 86400);
        common::pki::set_validity(p, past - Duration::from_secs(86400), past);
    });
    let untrusted = TestCa::new("another workspace").svid(DEPLOYMENT);
    for leaf in [&expired, &untrusted] {
        let err = connect_with(&pki, &hub, leaf)
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(!matches!(err, NetError::Revoked(_)), "{err}");
        assert_ne!(err.reason(), "revoked", "{err}");
        assert!(hub.next_tunnel().await.is_err());
    }

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
    assert_eq!(hub.verifier.refusals().get("revoked"), Some(&2));
}
