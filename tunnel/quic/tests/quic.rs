//! The QUIC binding over real QUIC on loopback: the hub's listener against
//! the client's dialer, no client runtime and no adapter (those are
//! judged end to end with the real hub in `conformance/tests/`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ewii_quic::quinn;
use ewii_quic::{
    Accepted, ClientQuicConfig, Closed, Dialer, HubCertVerifier, HubListener, HubTunnel,
    InMemoryTrust, KeyMaterial, ListenerConfig, ListenerEvent, ListenerEvents, NetError,
    SvidVerifier, TlsBinding, TrustBundle, close_code,
};
use ewii_test_pki::{Leaf, TestCa, set_validity};
use ewii_wire::enrol::Control;
use ewii_wire::handshake::ClientConfig;
use tokio::sync::mpsc;

// -- the listener under test, and the PKI around it ---------------------------

const HUB_NAME: &str = "localhost";
const DEPLOYMENT: &str = "spiffe://example.org/ws/acme/dep/eu";
const STEP: Duration = Duration::from_secs(15);

/// The chain and key of `leaf`.
fn keys(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}

/// What the listener hands out: a tunnel, or why a connection failed.
type Outcome = Result<HubTunnel, String>;

/// Forwards the listener's failures to the test, next to the tunnels.
struct Failures(mpsc::Sender<Outcome>);

impl ListenerEvents for Failures {
    fn record(&self, event: ListenerEvent) {
        let why = match event {
            ListenerEvent::TlsHandshakeFailed => "tls".to_owned(),
            ListenerEvent::HandshakeFailed(reason) => reason.to_owned(),
            ListenerEvent::HandshakeDeadline => "deadline".to_owned(),
            ListenerEvent::TooManyHandshakes => "too_many".to_owned(),
        };
        let _ = self.0.try_send(Err(why));
    }
}

/// The accepting side: a listener with the SVID verifier and the app-layer
/// handshake, handing out live tunnels and the failures in between.
struct Listening {
    addr: SocketAddr,
    verifier: Arc<SvidVerifier>,
    /// What the verifier trusts; revoke serials here.
    trust: Arc<InMemoryTrust>,
    tunnels: mpsc::Receiver<Outcome>,
}

impl Listening {
    /// The next tunnel, or the reason the next attempt failed.
    async fn next_tunnel(&mut self) -> Outcome {
        tokio::time::timeout(STEP, self.tunnels.recv())
            .await
            .expect("a connection attempt reaches the listener in time")
            .expect("the accept loop is running")
    }
}

struct Pki {
    hub_ca: TestCa,
    workspace: TestCa,
    hub: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let hub_ca = TestCa::new("hub ca");
        let hub = hub_ca.server(HUB_NAME);
        Pki {
            workspace: TestCa::new("workspace acme"),
            hub,
            hub_ca,
        }
    }

    /// A listener trusting the workspace CA for `spiffe://example.org/ws/acme`.
    fn start_hub(&self, at: SocketAddr, binding: TlsBinding) -> Listening {
        let bundle = TrustBundle::from_der(self.workspace.certificates()).unwrap();
        let trust =
            Arc::new(InMemoryTrust::new().with_bundle("spiffe://example.org/ws/acme", bundle));
        let verifier = Arc::new(SvidVerifier::new(trust.clone()));
        let (tx, tunnels) = mpsc::channel(64);
        let mut config =
            ListenerConfig::new(keys(&self.hub), vec![HUB_NAME.into()], verifier.clone());
        config.binding = binding;
        config.events = Some(Arc::new(Failures(tx.clone())));
        let listener = Arc::new(HubListener::bind(at, config).unwrap());
        let addr = listener.local_addr();
        tokio::spawn(async move {
            while let Some(accepted) = listener.accept().await {
                if let Accepted::Tunnel(t) = accepted
                    && tx.send(Ok(t)).await.is_err()
                {
                    return;
                }
            }
        });
        Listening {
            addr,
            verifier,
            trust,
            tunnels,
        }
    }

    /// The client's app-layer configuration with `svid`.
    fn client_config(&self, svid: &Leaf) -> ClientConfig {
        ClientConfig {
            credentials: keys(svid).credentials().unwrap(),
            identity: DEPLOYMENT.into(),
            hub_name: HUB_NAME.into(),
            hub_verifier: Arc::new(self.hub_verifier()),
        }
    }

    /// The client's judge of the hub: the hub CA, the hub's name.
    fn hub_verifier(&self) -> HubCertVerifier {
        HubCertVerifier::new(std::slice::from_ref(&self.hub_ca.cert), HUB_NAME).unwrap()
    }

    /// The client's QUIC configuration with `svid`.
    fn quic_client(&self, svid: &Leaf) -> ClientQuicConfig {
        ClientQuicConfig::tunnel(&keys(svid), &self.hub_verifier()).unwrap()
    }
}

/// One tunnel attempt with `svid`, dialled from a fresh endpoint.
async fn connect_with(
    pki: &Pki,
    hub: &Listening,
    svid: &Leaf,
) -> Result<ewii_quic::ClientTunnel, NetError> {
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    dialer
        .connect(&pki.quic_client(svid), hub.addr, pki.client_config(svid))
        .await
}

// -----------------------------------------------------------------------------

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
                set_validity(p, past - Duration::from_secs(86400), past);
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
    let quic = ClientQuicConfig::tunnel(&keys(&svid), &v).unwrap();
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = dialer
        .connect(&quic, hub.addr, pki.client_config(&svid))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("issuer"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_goodbye_reaches_the_hub_verified_and_forged_ones_are_refused() {
    let pki = Pki::new();
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);
    let client = connect_with(&pki, &hub, &svid).await.unwrap();
    let tunnel = hub.next_tunnel().await.unwrap();
    let own_key = keys(&svid).credentials().unwrap().signer;
    let other_key = keys(&pki.workspace.svid(DEPLOYMENT))
        .credentials()
        .unwrap()
        .signer;

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
                ewii_wire::receipt::sign_goodbye(&*other_key, DEPLOYMENT, at).unwrap(),
            ),
            (
                at - 301,
                ewii_wire::receipt::sign_goodbye(&*own_key, DEPLOYMENT, at - 301).unwrap(),
            ),
            (at, "%%%".to_owned()),
        ];
        for (when, sig) in forged {
            let err = tunnel.verify_goodbye(when, &sig).unwrap_err();
            assert_eq!(err.reason(), "bad_goodbye", "{err}");
        }
        // The right key at a fresh time verifies: the hub checks what the
        // client signs, nothing else.
        let fresh = ewii_wire::receipt::sign_goodbye(&*own_key, DEPLOYMENT, now).unwrap();
        tunnel.verify_goodbye(now, &fresh).unwrap();

        tunnel.send_control(&Control::GoodbyeAck {}).await.unwrap();
        let closed = tokio::time::timeout(STEP, tunnel.closed()).await.unwrap();
        assert!(matches!(closed, Closed::Revoked(_)), "{closed}");
    });

    client.goodbye(Duration::from_secs(3)).await.unwrap();
    assert_eq!(client.close_reason(), Some(Closed::Locally));
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
        tunnel.close_revoked();
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
    assert!(client.close_reason().is_none());
    assert!(matches!(
        tunnel.next_control().await,
        Some(Ok(Control::Goodbye { .. }))
    ));
    client.close("test over");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_svid_revoked_at_the_hub_is_refused_in_tls_and_the_client_knows_it_is_revoked() {
    let pki = Pki::new();
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
        set_validity(p, past - Duration::from_secs(86400), past);
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
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_closes_a_tunnel_as_revoked_and_the_client_reads_it_so() {
    let pki = Pki::new();
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    let svid = pki.workspace.svid(DEPLOYMENT);
    let client = connect_with(&pki, &hub, &svid).await.unwrap();
    let tunnel = hub.next_tunnel().await.unwrap();
    assert_eq!(tunnel.remote_address().ip().to_string(), "127.0.0.1");
    tunnel.close_revoked();
    assert_eq!(tunnel.closed().await, Closed::Locally);
    // The client sees the close once it tries the link again.
    let deadline = Instant::now() + STEP;
    while client.close_reason().is_none() {
        assert!(Instant::now() < deadline, "the close never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match client.close_reason() {
        Some(Closed::Revoked(how)) => assert!(how.contains("revoked at the hub"), "{how}"),
        other => panic!("expected a revoked close, got {other:?}"),
    }

    // Any other close is not a revocation.
    let client = connect_with(&pki, &hub, &svid).await.unwrap();
    let tunnel = hub.next_tunnel().await.unwrap();
    tunnel.close_expired();
    let deadline = Instant::now() + STEP;
    while client.close_reason().is_none() {
        assert!(Instant::now() < deadline, "the close never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(client.close_reason(), Some(Closed::Other(_))),
        "{:?}",
        client.close_reason()
    );
}

/// Counts the listener's events for a test.
#[derive(Default)]
struct Counted(std::sync::Mutex<Vec<ListenerEvent>>);

impl ListenerEvents for Counted {
    fn record(&self, event: ListenerEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Counted {
    fn count(&self, event: &ListenerEvent) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == event)
            .count()
    }
}

/// Completes TLS with the listener as an enrolling client would (no client
/// certificate), then says nothing.
async fn silent_connection(
    pki: &Pki,
    endpoint: &quinn::Endpoint,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let quic = ClientQuicConfig::enrolment(&pki.hub_verifier())
        .unwrap()
        .into_quinn();
    endpoint.connect_with(quic, addr, HUB_NAME).unwrap().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_caps_handshakes_closes_the_late_and_says_so() {
    let pki = Pki::new();
    let events = Arc::new(Counted::default());
    let verifier = Arc::new(ewii_quic::SvidVerifier::new(Arc::new(
        ewii_quic::InMemoryTrust::new(),
    )));
    let mut config = ListenerConfig::new(keys(&pki.hub), vec![HUB_NAME.into()], verifier);
    config.enrolment = true;
    config.max_handshakes = 2;
    config.handshake_timeout = Duration::from_millis(800);
    config.events = Some(events.clone());
    let listener = HubListener::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();

    let a = silent_connection(&pki, &endpoint, listener.local_addr())
        .await
        .unwrap();
    let b = silent_connection(&pki, &endpoint, listener.local_addr())
        .await
        .unwrap();
    // A third at once is refused before TLS.
    match silent_connection(&pki, &endpoint, listener.local_addr()).await {
        Err(quinn::ConnectionError::ConnectionClosed(c)) => {
            assert_eq!(c.error_code, quinn::TransportErrorCode::CONNECTION_REFUSED);
        }
        other => panic!("a third handshake at once was not refused: {other:?}"),
    }
    assert_eq!(events.count(&ListenerEvent::TooManyHandshakes), 1);
    // The silent ones are closed at their deadline, with the handshake code.
    for conn in [a, b] {
        match tokio::time::timeout(STEP, conn.closed()).await.unwrap() {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(c.error_code, quinn::VarInt::from_u32(close_code::HANDSHAKE));
            }
            other => panic!("closed for another reason: {other}"),
        }
    }
    assert_eq!(events.count(&ListenerEvent::HandshakeDeadline), 2);
    // Room again.
    let c = silent_connection(&pki, &endpoint, listener.local_addr())
        .await
        .unwrap();
    c.close(0u32.into(), b"done");
    listener.close("test over").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_app_layer_handshake_is_an_event_with_its_reason() {
    let pki = Pki::new();
    let mut hub = pki.start_hub("127.0.0.1:0".parse().unwrap(), TlsBinding::Strict);
    // TLS carries this SVID; the app layer claims another deployment's.
    let svid = pki.workspace.svid(DEPLOYMENT);
    let other = pki.workspace.svid("spiffe://example.org/ws/acme/dep/us");
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut config = pki.client_config(&other);
    config.identity = "spiffe://example.org/ws/acme/dep/us".into();
    let err = dialer
        .connect(&pki.quic_client(&svid), hub.addr, config)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), "peer_alert", "{err}");
    assert_eq!(
        hub.next_tunnel().await.map(|_| ()).unwrap_err(),
        "identity_mismatch"
    );
}
