//! A test hub on loopback built from `ewii-quic`'s listener exactly as the
//! real hub is, and the PKI around it: a hub CA and server certificate, a
//! workspace CA whose SVIDs the hub trusts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ewii_quic::{
    Accepted, ClientQuicConfig, Dialer, HubCertVerifier, HubListener, HubTunnel, InMemoryTrust,
    KeyMaterial, ListenerConfig, ListenerEvent, ListenerEvents, NetError, SvidVerifier, TlsBinding,
};
use ewii_wire::handshake::ClientConfig;
use tokio::sync::mpsc;

use super::pki::{Leaf, TestCa, install_crypto_provider};

pub const HUB_NAME: &str = "localhost";
pub const DEPLOYMENT: &str = "spiffe://example.org/ws/acme/dep/eu";
pub const STEP: Duration = Duration::from_secs(15);

/// The chain and key of `leaf`.
pub fn keys(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}

/// What the test hub hands out: a tunnel, or why a connection failed.
pub type Outcome = Result<HubTunnel, String>;

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
pub struct TestHub {
    pub listener: Arc<HubListener>,
    pub addr: SocketAddr,
    pub verifier: Arc<SvidVerifier>,
    /// What the verifier trusts; revoke serials here.
    pub trust: Arc<InMemoryTrust>,
    pub tunnels: mpsc::Receiver<Outcome>,
}

impl TestHub {
    /// The next tunnel, or the reason the next attempt failed.
    pub async fn next_tunnel(&mut self) -> Outcome {
        tokio::time::timeout(STEP, self.tunnels.recv())
            .await
            .expect("a connection attempt reaches the hub in time")
            .expect("the accept loop is running")
    }
}

pub struct Pki {
    pub hub_ca: TestCa,
    pub workspace: TestCa,
    pub hub: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        install_crypto_provider();
        let hub_ca = TestCa::new("hub ca");
        let hub = hub_ca.server(HUB_NAME);
        Pki {
            workspace: TestCa::new("workspace acme"),
            hub,
            hub_ca,
        }
    }

    /// A hub trusting the workspace CA for `spiffe://example.org/ws/acme`.
    pub fn start_hub(&self, at: SocketAddr, binding: TlsBinding) -> TestHub {
        let trust = Arc::new(
            InMemoryTrust::new()
                .with_bundle("spiffe://example.org/ws/acme", self.workspace.bundle()),
        );
        self.start_hub_with(at, binding, &self.hub, trust)
    }

    /// A hub presenting `cert` and trusting `trust`.
    pub fn start_hub_with(
        &self,
        at: SocketAddr,
        binding: TlsBinding,
        cert: &Leaf,
        trust: Arc<InMemoryTrust>,
    ) -> TestHub {
        let verifier = Arc::new(SvidVerifier::new(trust.clone()));
        let (tx, tunnels) = mpsc::channel(64);
        let mut config = ListenerConfig::new(keys(cert), vec![HUB_NAME.into()], verifier.clone());
        config.binding = binding;
        config.events = Some(Arc::new(Failures(tx.clone())));
        let listener = Arc::new(HubListener::bind(at, config).unwrap());
        let addr = listener.local_addr();
        let accepting = listener.clone();
        tokio::spawn(async move {
            while let Some(accepted) = accepting.accept().await {
                if let Accepted::Tunnel(t) = accepted
                    && tx.send(Ok(t)).await.is_err()
                {
                    return;
                }
            }
        });
        TestHub {
            listener,
            addr,
            verifier,
            trust,
            tunnels,
        }
    }

    /// The client's app-layer configuration with `svid`.
    pub fn client_config(&self, svid: &Leaf) -> ClientConfig {
        ClientConfig {
            credentials: keys(svid).credentials().unwrap(),
            identity: DEPLOYMENT.into(),
            hub_name: HUB_NAME.into(),
            hub_verifier: Arc::new(self.hub_verifier()),
        }
    }

    /// The client's judge of the hub: the hub CA, the hub's name.
    pub fn hub_verifier(&self) -> HubCertVerifier {
        HubCertVerifier::new(std::slice::from_ref(&self.hub_ca.cert), HUB_NAME).unwrap()
    }

    /// The client's QUIC configuration with `svid`.
    pub fn quic_client(&self, svid: &Leaf) -> ClientQuicConfig {
        ClientQuicConfig::tunnel(&keys(svid), &self.hub_verifier()).unwrap()
    }
}

/// One tunnel attempt with `svid`, dialled from a fresh endpoint.
pub async fn connect_with(
    pki: &Pki,
    hub: &TestHub,
    svid: &Leaf,
) -> Result<ewii_quic::ClientTunnel, NetError> {
    let dialer = Dialer::bind_to("127.0.0.1:0".parse().unwrap()).unwrap();
    dialer
        .connect(&pki.quic_client(svid), hub.addr, pki.client_config(svid))
        .await
}
