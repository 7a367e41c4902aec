//! The app-layer handshake of `ewii-wire` judged by this crate's real
//! verifiers: the hub CA and name on the client's side
//! ([`HubCertVerifier`]), the SVID rules, trust bundles and revocation on
//! the hub's ([`SvidVerifier`]). No network: the state machines are driven
//! in one thread.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use ewii_quic::keys::now;
use ewii_quic::{HubCertVerifier, InMemoryTrust, KeyMaterial, SvidVerifier, TrustBundle};
use ewii_test_pki::{Leaf, TestCa};
use ewii_wire::frame::{Frame, FrameDecoder, MAX_HANDSHAKE};
use ewii_wire::handshake::{
    ClientConfig, ClientHandshake, Entropy, HandshakeError, HubConfig, hub_read_client_hello,
};

const HUB: &str = "hub.test";
const DEPLOYMENT: &str = "spiffe://example.org/ws/acme/dep/eu";

/// The chain and key of `leaf`.
fn keys(leaf: &Leaf) -> KeyMaterial {
    KeyMaterial {
        chain: leaf.chain.clone(),
        key: leaf.key(),
    }
}

fn entropy(tag: u8) -> Entropy {
    Entropy {
        random: [tag; 32],
        x25519: [tag.wrapping_add(1); 32],
    }
}

fn one_frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::new(MAX_HANDSHAKE);
    let mut frames = d.push(bytes).unwrap();
    assert!(frames.len() == 1 && d.is_empty());
    frames.remove(0)
}

struct World {
    hub_ca: TestCa,
    workspace: TestCa,
    trust: Arc<InMemoryTrust>,
    client: ClientConfig,
    hub: HubConfig,
}

fn world() -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hub_ca = TestCa::new("hub ca");
    let workspace = TestCa::new("workspace ca");
    let trust = Arc::new(InMemoryTrust::new().with_bundle(
        "spiffe://example.org",
        TrustBundle::from_der(workspace.certificates()).unwrap(),
    ));
    let svid = workspace.svid(DEPLOYMENT);
    World {
        client: ClientConfig {
            credentials: keys(&svid).credentials().unwrap(),
            identity: DEPLOYMENT.into(),
            hub_name: HUB.into(),
            hub_verifier: Arc::new(
                HubCertVerifier::new(std::slice::from_ref(&hub_ca.cert), HUB).unwrap(),
            ),
        },
        hub: HubConfig {
            credentials: keys(&hub_ca.server(HUB)).credentials().unwrap(),
            name: HUB.into(),
            client_verifier: Arc::new(SvidVerifier::new(trust.clone())),
        },
        hub_ca,
        workspace,
        trust,
    }
}

/// The client's verdict on the ServerHello `hub` answers with.
fn client_reads_hello_of(w: &World, hub: &HubConfig) -> Result<(), HandshakeError> {
    let (client, ch) = ClientHandshake::start(w.client.clone(), entropy(1)).unwrap();
    let (_, sh) = hub_read_client_hello(hub, &one_frame(&ch), entropy(3), now()).unwrap();
    client.read_server_hello(&one_frame(&sh), now()).map(|_| ())
}

#[test]
fn a_handshake_between_real_verifiers_proves_both_identities() {
    let w = world();
    let (client, ch) = ClientHandshake::start(w.client.clone(), entropy(1)).unwrap();
    let (hub, sh) = hub_read_client_hello(&w.hub, &one_frame(&ch), entropy(2), now()).unwrap();
    let (client, cf) = client.read_server_hello(&one_frame(&sh), now()).unwrap();
    let (hub_session, client_peer, sf) = hub.read_client_finish(&one_frame(&cf)).unwrap();
    let (client_session, hub_peer) = client.read_server_finish(&one_frame(&sf)).unwrap();
    assert_eq!(client_peer.identity, DEPLOYMENT);
    assert_eq!(hub_peer.identity, HUB);
    assert_eq!(client_session.session_id(), hub_session.session_id());
}

#[test]
fn a_man_in_the_middle_with_its_own_certificate_cannot_pose_as_the_hub() {
    let w = world();
    // A terminator with a valid-looking certificate for the hub's name from
    // a CA the client does not hold for the hub, answering with its own
    // ServerHello.
    let mitm_ca = TestCa::new("inspection ca");
    let mitm = HubConfig {
        credentials: keys(&mitm_ca.server(HUB)).credentials().unwrap(),
        ..w.hub.clone()
    };
    let err = client_reads_hello_of(&w, &mitm).unwrap_err();
    assert_eq!(err.reason(), "untrusted_issuer", "{err}");

    // The hub CA's certificate for another host does not help either.
    let other = HubConfig {
        credentials: keys(&w.hub_ca.server("other.test")).credentials().unwrap(),
        ..w.hub.clone()
    };
    let err = client_reads_hello_of(&w, &other).unwrap_err();
    assert_eq!(err.reason(), "wrong_name", "{err}");
}

#[test]
fn the_hubs_app_layer_holds_clients_to_the_svid_rules_and_revocation() {
    let w = world();
    // Another workspace's CA: untrusted.
    let stranger = ClientConfig {
        credentials: keys(&TestCa::new("elsewhere").svid(DEPLOYMENT))
            .credentials()
            .unwrap(),
        ..w.client.clone()
    };
    let (_, ch) = ClientHandshake::start(stranger, entropy(1)).unwrap();
    let err = hub_read_client_hello(&w.hub, &one_frame(&ch), entropy(2), now())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), "untrusted_issuer", "{err}");

    // A revoked serial: the reason a client behind a TLS-terminating relay
    // reads as its revocation.
    let svid = w.workspace.svid(DEPLOYMENT);
    w.trust.revoke(&svid.serial);
    let revoked = ClientConfig {
        credentials: keys(&svid).credentials().unwrap(),
        ..w.client.clone()
    };
    let (_, ch) = ClientHandshake::start(revoked, entropy(1)).unwrap();
    let err = hub_read_client_hello(&w.hub, &one_frame(&ch), entropy(2), now())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), "revoked", "{err}");
}
