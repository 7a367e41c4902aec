#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use super::*;
use crate::frame::{Frame, FrameDecoder};
use crate::session::StreamChannel;
use crate::testdata::{self, CLIENT_ID, HUB, NOW};

/// A judge of certificate chains for these sans-IO tests: a fixed table
/// from leaf certificate to identity, standing in for the SVID verifier
/// and the hub-name verifier of the QUIC binding (which `ewii-quic`'s tests
/// exercise for real, with the same handshakes).
struct KnownPeers(HashMap<Vec<u8>, String>);

impl KnownPeers {
    fn of(leaf: &Certificate, identity: &str) -> Arc<KnownPeers> {
        Arc::new(KnownPeers(HashMap::from([(
            leaf.to_vec(),
            identity.to_owned(),
        )])))
    }
}

impl PeerVerifier for KnownPeers {
    fn verify_peer(&self, chain: &[Certificate], _now: UnixTime) -> Result<String, Refusal> {
        self.0.get(chain[0].as_der()).cloned().ok_or(Refusal {
            reason: "untrusted_issuer",
            detail: "unknown certificate".into(),
        })
    }
}

fn credentials(name: &str) -> Credentials {
    Credentials {
        chain: vec![testdata::cert(name)],
        signer: testdata::signer(name),
    }
}

struct World {
    client: ClientConfig,
    hub: HubConfig,
}

fn world() -> World {
    let client = credentials("svid-p256");
    let hub = credentials("hub");
    World {
        client: ClientConfig {
            hub_verifier: KnownPeers::of(&hub.chain[0], HUB),
            credentials: client.clone(),
            identity: CLIENT_ID.into(),
            hub_name: HUB.into(),
        },
        hub: HubConfig {
            client_verifier: KnownPeers::of(&client.chain[0], CLIENT_ID),
            credentials: hub,
            name: HUB.into(),
        },
    }
}

fn entropy(tag: u8) -> Entropy {
    Entropy {
        random: [tag; 32],
        x25519: [tag.wrapping_add(1); 32],
    }
}

fn one_frame(bytes: &[u8]) -> Option<Frame> {
    let mut d = FrameDecoder::new(MAX_HANDSHAKE);
    let mut frames = d.push(bytes).ok()?;
    (frames.len() == 1 && d.is_empty()).then(|| frames.remove(0))
}

fn now() -> UnixTime {
    NOW
}

/// One end of a finished handshake: its session and the peer it proved.
type End = (Session, Peer);

/// Runs a whole handshake; `relay` sees (and may rewrite) each message:
/// 0 ClientHello, 1 ServerHello, 2 ClientFinish, 3 ServerFinish.
fn run(
    w: &World,
    mut relay: impl FnMut(usize, Vec<u8>) -> Vec<u8>,
) -> Result<(End, End), HandshakeError> {
    let stalled = || HandshakeError::Decode(DecodeError::Truncated("frame"));
    let (client, ch) = ClientHandshake::start(w.client.clone(), entropy(1))?;
    let ch = one_frame(&relay(0, ch)).ok_or_else(stalled)?;
    let (hub, sh) = hub_read_client_hello(&w.hub, &ch, entropy(2), now())?;
    let sh = one_frame(&relay(1, sh)).ok_or_else(stalled)?;
    let (client, cf) = client.read_server_hello(&sh, now())?;
    let cf = one_frame(&relay(2, cf)).ok_or_else(stalled)?;
    let (hub_session, hub_peer, sf) = hub.read_client_finish(&cf)?;
    let sf = one_frame(&relay(3, sf)).ok_or_else(stalled)?;
    let client = client.read_server_finish(&sf)?;
    Ok((client, (hub_session, hub_peer)))
}

fn control_pair(client: &mut Session, hub: &mut Session) -> (StreamChannel, StreamChannel) {
    (client.control().unwrap(), hub.control().unwrap())
}

#[test]
fn both_ends_agree_on_keys_and_identities() {
    let w = world();
    let ((mut cs, hub_peer), (mut hs, client_peer)) = run(&w, |_, m| m).unwrap();
    assert_eq!(hub_peer.identity, HUB);
    assert_eq!(client_peer.identity, CLIENT_ID);
    assert_eq!(cs.session_id(), hs.session_id());
    let (mut c, mut h) = control_pair(&mut cs, &mut hs);
    let m = c.seal(FrameType::Message, b"ping").unwrap();
    assert_eq!(h.open(&m).unwrap()[0].body, b"ping");
    let m = h.seal(FrameType::Message, b"pong").unwrap();
    assert_eq!(c.open(&m).unwrap()[0].body, b"pong");
}

#[test]
fn two_handshakes_never_share_keys() {
    let w = world();
    let ((a, _), _) = run(&w, |_, m| m).unwrap();
    let (client, ch) = ClientHandshake::start(w.client.clone(), entropy(9)).unwrap();
    let ch = one_frame(&ch).unwrap();
    let (hub, sh) = hub_read_client_hello(&w.hub, &ch, entropy(10), now()).unwrap();
    let (client, cf) = client
        .read_server_hello(&one_frame(&sh).unwrap(), now())
        .unwrap();
    let (_, _, sf) = hub.read_client_finish(&one_frame(&cf).unwrap()).unwrap();
    let (b, _) = client.read_server_finish(&one_frame(&sf).unwrap()).unwrap();
    assert_ne!(a.session_id(), b.session_id());
}

#[test]
fn flipping_any_bit_of_any_handshake_message_fails_the_handshake() {
    let w = world();
    let mut sizes = Vec::new();
    run(&w, |i, m| {
        sizes.push((i, m.len()));
        m
    })
    .unwrap();
    for (msg, len) in sizes {
        for byte in 0..len {
            let outcome = run(&w, |i, mut m| {
                // ECDSA signatures vary in length by a byte or two.
                if i == msg {
                    let at = byte.min(m.len() - 1);
                    m[at] ^= 0x04;
                }
                m
            });
            assert!(
                outcome.is_err(),
                "flipping byte {byte} of message {msg} went unnoticed"
            );
        }
    }
}

#[test]
fn a_relay_substituting_its_own_key_share_is_caught_by_the_signatures() {
    let w = world();
    let evil_share = x25519_public(&[0x66; 32]);
    // Share offset in both hellos: 5-byte frame header, version, random.
    let at = 5 + 2 + 32;
    for target in [0usize, 1] {
        let err = run(&w, |i, mut m| {
            if i == target {
                m[at..at + 32].copy_from_slice(&evil_share);
            }
            m
        })
        .map(|_| ())
        .unwrap_err();
        assert_eq!(
            err,
            HandshakeError::BadSignature,
            "substituted in message {target}"
        );
    }
}

#[test]
fn a_man_in_the_middle_replaying_the_clients_certificate_cannot_finish() {
    let w = world();
    // The relay forwards the client's genuine chain with its own share, so
    // the hub answers it; it then has to sign ClientFinish without the
    // client's key. It signs with its own.
    let forged_client = ClientConfig {
        credentials: Credentials {
            chain: w.client.credentials.chain.clone(),
            signer: testdata::signer("svid-other"),
        },
        ..w.client.clone()
    };
    let (client, ch) = ClientHandshake::start(forged_client, entropy(5)).unwrap();
    let (hub, sh) =
        hub_read_client_hello(&w.hub, &one_frame(&ch).unwrap(), entropy(2), now()).unwrap();
    assert_eq!(hub.claimed_peer().identity, CLIENT_ID);
    let (_, cf) = client
        .read_server_hello(&one_frame(&sh).unwrap(), now())
        .unwrap();
    let err = hub
        .read_client_finish(&one_frame(&cf).unwrap())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err, HandshakeError::BadSignature);
}

#[test]
fn a_refusal_reaches_the_client_as_an_alert_with_its_reason() {
    let w = world();
    // The same SPIFFE ID under a certificate the hub does not trust.
    let stranger = ClientConfig {
        credentials: credentials("svid-other"),
        ..w.client.clone()
    };
    let (client, ch) = ClientHandshake::start(stranger, entropy(1)).unwrap();
    let err = hub_read_client_hello(&w.hub, &one_frame(&ch).unwrap(), entropy(2), now())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), "untrusted_issuer");
    let alert = one_frame(&err.alert()).unwrap();
    match client
        .read_server_hello(&alert, now())
        .map(|_| ())
        .unwrap_err()
    {
        HandshakeError::Alert { code, detail } => {
            assert_eq!(code, "untrusted_issuer");
            assert!(detail.contains("unknown certificate"), "{detail}");
        }
        other => panic!("expected an alert, got {other}"),
    }
}

#[test]
fn a_low_order_key_share_is_refused() {
    let w = world();
    let err = run(&w, |i, mut m| {
        if i == 0 {
            m[39..71].copy_from_slice(&[0; 32]);
        }
        m
    })
    .map(|_| ())
    .unwrap_err();
    assert_eq!(err, HandshakeError::WeakShare);
}

#[test]
fn the_hub_must_present_the_name_that_was_dialled() {
    let w = world();
    let client = ClientConfig {
        hub_name: "hub.other".into(),
        ..w.client.clone()
    };
    let w2 = World {
        client,
        hub: w.hub.clone(),
    };
    let err = run(&w2, |_, m| m).map(|_| ()).unwrap_err();
    assert_eq!(err.reason(), "hub_name");
}

#[test]
fn garbage_handshake_messages_are_refused_without_panicking() {
    let w = world();
    for kind in [
        FrameType::ClientHello,
        FrameType::ServerHello,
        FrameType::ClientFinish,
        FrameType::ServerFinish,
    ] {
        for len in [0usize, 1, 2, 33, 70, 200] {
            let f = Frame {
                kind,
                body: (0..len).map(|i| (i * 7) as u8).collect(),
            };
            assert!(hub_read_client_hello(&w.hub, &f, entropy(2), now()).is_err());
            let (client, _) = ClientHandshake::start(w.client.clone(), entropy(1)).unwrap();
            assert!(client.read_server_hello(&f, now()).is_err());
        }
    }
}

proptest::proptest! {
    /// The decoder of every handshake message never panics on garbage and
    /// never accepts trailing bytes.
    #[test]
    fn handshake_decoder_never_panics(
        kind in 0usize..5,
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
    ) {
        let kinds = [
            FrameType::ClientHello,
            FrameType::ServerHello,
            FrameType::ClientFinish,
            FrameType::ServerFinish,
            FrameType::Alert,
        ];
        let mut f = Frame { kind: kinds[kind], body };
        if decode(&f).is_ok() {
            f.body.push(0);
            proptest::prop_assert!(decode(&f).is_err());
        }
    }
}

#[test]
fn an_honest_client_hello_decodes_to_its_parts() {
    let w = world();
    let (_, ch) = ClientHandshake::start(w.client.clone(), entropy(1)).unwrap();
    match decode(&one_frame(&ch).unwrap()).unwrap() {
        Message::ClientHello {
            random,
            share,
            chain,
        } => {
            assert_eq!(random, [1; 32]);
            assert_eq!(share, x25519_public(&[2; 32]));
            assert_eq!(chain, w.client.credentials.chain);
        }
        other => panic!("{other:?}"),
    }
}

/// The vectors of docs/protocol.md, "Handshake vectors": Ed25519 keys from
/// fixed seeds, the certificates the document lists (fixed serials and
/// dates), fixed entropy. Everything on the wire is then deterministic.
mod vectors {
    use super::*;

    const PROTOCOL_MD: &str = include_str!("../../../docs/protocol.md");

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Values the doc lists under "Handshake vectors", as `name: hex` lines.
    fn doc_values() -> HashMap<String, String> {
        let section = PROTOCOL_MD
            .split("## Handshake vectors")
            .nth(1)
            .expect("a Handshake vectors section");
        section
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, v)| {
                !k.contains(' ') && v.chars().all(|c| c.is_ascii_hexdigit()) && !v.is_empty()
            })
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn protocol_doc_handshake_vectors_match_byte_for_byte() {
        let doc = doc_values();
        let cert = |k: &str| Certificate::from_der(hex(&doc[k]));
        let (hub_cert, svid_cert) = (cert("hub-cert"), cert("svid-cert"));
        let w = World {
            client: ClientConfig {
                credentials: Credentials {
                    chain: vec![svid_cert.clone()],
                    signer: testdata::ed25519_from_seed(0x03),
                },
                identity: CLIENT_ID.into(),
                hub_name: HUB.into(),
                hub_verifier: KnownPeers::of(&hub_cert, HUB),
            },
            hub: HubConfig {
                credentials: Credentials {
                    chain: vec![hub_cert],
                    signer: testdata::ed25519_from_seed(0x02),
                },
                name: HUB.into(),
                client_verifier: KnownPeers::of(&svid_cert, CLIENT_ID),
            },
        };
        // The CA's key is the seed-01 key: its certificate verifies with it.
        let ca = cert("ca-cert");
        let (_, parsed) = x509_parser::parse_x509_certificate(&ca).unwrap();
        let ca_sig = testdata::ed25519_from_seed(0x01)
            .sign(parsed.tbs_certificate.as_ref())
            .unwrap();
        assert_eq!(ca_sig, parsed.signature_value.data.as_ref());

        let mut wire = Vec::new();
        let ((mut cs, _), (mut hs, _)) = run(&w, |_, m| {
            wire.push(m.clone());
            m
        })
        .unwrap();
        let (mut c, mut h) = control_pair(&mut cs, &mut hs);
        let c2s = c.seal(FrameType::Message, b"{}").unwrap();
        let s2c = h.seal(FrameType::Message, b"{}").unwrap();

        let got: Vec<(&str, String)> = vec![
            ("client-hello", to_hex(&wire[0])),
            ("server-hello", to_hex(&wire[1])),
            ("client-finish", to_hex(&wire[2])),
            ("server-finish", to_hex(&wire[3])),
            ("session-id", to_hex(cs.session_id())),
            ("control-c2s", to_hex(&c2s)),
            ("control-s2c", to_hex(&s2c)),
        ];
        for (k, v) in got {
            assert_eq!(
                doc.get(k),
                Some(&v),
                "docs/protocol.md vector `{k}` differs from the code"
            );
        }
    }
}
