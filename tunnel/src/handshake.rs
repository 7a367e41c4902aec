//! The app-layer handshake, end to end between client and hub.
//!
//! TLS already authenticates both ends of each hop. This handshake runs
//! *inside* TLS so that the two real endpoints agree on keys that no relay
//! or TLS terminator in the middle holds (SIGMA-style, like TLS 1.3's own):
//!
//! ```text
//! client                                              hub
//! ClientHello  random, X25519 share, SVID chain  ──▶
//!              ◀── ServerHello  random, X25519 share, hub name, chain,
//!                               signature over the transcript so far
//! ClientFinish signature over the transcript    ──▶
//!              ◀── ServerFinish HMAC(finished key, transcript hash)
//! ```
//!
//! - Each side signs the transcript (both shares and both chains) with its
//!   certificate key, so a man in the middle can neither substitute its own
//!   share nor present itself under the other's identity.
//! - Keys come from HKDF-SHA256: the salt binds both verified identities
//!   (client SPIFFE ID, hub name) and the info binds the transcript hash.
//!   One traffic secret per direction, a session id, and a finished key.
//! - ServerFinish tells the client the hub accepted it; without it the
//!   client sends nothing.
//!
//! Pure functions over bytes: randomness comes in as [`Entropy`], time as
//! `now`. Wire formats and vectors are in `docs/protocol.md`.

use std::sync::Arc;

use ring::{digest, hkdf, hmac};
use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::sign::SigningKey;
use zeroize::Zeroize;

use crate::codec::{DecodeError, Reader, put_vec16};
use crate::frame::{self, FrameType, MAX_HANDSHAKE};
use crate::session::{Role, Session, SessionSecrets};

/// Handshake protocol version.
pub const PROTOCOL_VERSION: u16 = 1;
/// Most certificates in a chain (leaf and intermediates).
pub const MAX_CHAIN: usize = 4;
/// Largest certificate accepted.
pub const MAX_CERT: usize = 16 << 10;
/// Longest identity string (a hub name, a SPIFFE ID).
pub const MAX_IDENTITY: usize = 2048;
/// Longest signature accepted.
pub const MAX_SIGNATURE: usize = 1024;

/// Signature schemes a handshake may use: the TLS 1.3 ones rustls verifies
/// with ring. SPIRE issues EC P-256 keys; Ed25519 keeps the vectors
/// deterministic.
pub const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
];

const HUB_CONTEXT: &[u8] = b"ewii/1 hub handshake\0";
const CLIENT_CONTEXT: &[u8] = b"ewii/1 client handshake\0";

/// Why a handshake failed. [`HandshakeError::reason`] gives a stable code
/// for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A handshake message could not be decoded.
    #[error("malformed handshake message: {0}")]
    Decode(#[from] DecodeError),
    /// A message arrived out of order.
    #[error("expected a {expected:?} message, got {got:?}")]
    Unexpected {
        /// What the state machine waits for.
        expected: FrameType,
        /// What arrived.
        got: FrameType,
    },
    /// The peer speaks another protocol version.
    #[error("the peer speaks tunnel protocol version {0}; this build speaks {PROTOCOL_VERSION}")]
    Version(u16),
    /// The peer's certificate chain was refused.
    #[error("the peer's certificate was refused ({}): {}", .0.reason, .0.detail)]
    Certificate(Refusal),
    /// The hub presented a different name than the one dialled.
    #[error("the hub calls itself {got:?} but {expected:?} was dialled")]
    HubName {
        /// The configured hub name.
        expected: String,
        /// The name in the ServerHello.
        got: String,
    },
    /// The peer's transcript signature does not verify: a forged identity or
    /// an altered transcript (a man in the middle).
    #[error(
        "the peer's handshake signature does not verify (forged identity or altered transcript)"
    )]
    BadSignature,
    /// A signature scheme outside [`SCHEMES`].
    #[error("signature scheme 0x{0:04x} is not allowed")]
    Scheme(u16),
    /// Our own key supports none of [`SCHEMES`].
    #[error("the local key supports none of the allowed signature schemes")]
    NoSigningScheme,
    /// Signing failed.
    #[error("signing the transcript failed: {0}")]
    Signing(String),
    /// The X25519 exchange produced an all-zero secret (a low-order share).
    #[error("the peer's X25519 share is invalid (low order)")]
    WeakShare,
    /// ServerFinish does not match: the hub derived other keys.
    #[error("the hub's key confirmation does not match")]
    KeyConfirmation,
    /// The peer refused the handshake and said why.
    #[error("the peer refused the handshake ({code}): {detail}")]
    Alert {
        /// Its reason code.
        code: String,
        /// Its explanation.
        detail: String,
    },
    /// The system random source failed.
    #[error("no randomness available")]
    Randomness,
}

impl HandshakeError {
    /// A stable code: the certificate refusal's own reason, or the kind of
    /// failure.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Decode(_) => "malformed",
            HandshakeError::Unexpected { .. } => "unexpected_message",
            HandshakeError::Version(_) => "version",
            HandshakeError::Certificate(r) => r.reason,
            HandshakeError::HubName { .. } => "hub_name",
            HandshakeError::BadSignature => "bad_signature",
            HandshakeError::Scheme(_) => "signature_scheme",
            HandshakeError::NoSigningScheme => "no_signing_scheme",
            HandshakeError::Signing(_) => "signing",
            HandshakeError::WeakShare => "weak_share",
            HandshakeError::KeyConfirmation => "key_confirmation",
            HandshakeError::Alert { .. } => "peer_alert",
            HandshakeError::Randomness => "randomness",
        }
    }

    /// The Alert frame that tells the peer why we stop.
    pub fn alert(&self) -> Vec<u8> {
        alert(self.reason(), &self.to_string())
    }
}

/// A certificate refused by a [`PeerVerifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code, e.g. `untrusted_issuer`, `expired`, `revoked`.
    pub reason: &'static str,
    /// A sentence for the log.
    pub detail: String,
}

/// Judges the peer's certificate chain and names the identity it proves.
pub trait PeerVerifier: Send + Sync {
    /// Verifies `chain` (leaf first) at `now`; returns the identity (a
    /// SPIFFE ID for clients, the hub name for hubs).
    fn verify_peer(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<String, Refusal>;
}

/// One side's certificate chain and key.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: Arc<dyn SigningKey>,
}

/// The randomness one handshake consumes, handed in so that tests and
/// vectors are deterministic.
pub struct Entropy {
    /// The hello random.
    pub random: [u8; 32],
    /// The X25519 ephemeral secret.
    pub x25519: [u8; 32],
}

impl Drop for Entropy {
    fn drop(&mut self) {
        self.x25519.zeroize();
    }
}

impl Entropy {
    /// Fresh randomness from the operating system.
    pub fn from_system() -> Result<Entropy, HandshakeError> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut e = Entropy {
            random: [0; 32],
            x25519: [0; 32],
        };
        rng.fill(&mut e.random)
            .and_then(|()| rng.fill(&mut e.x25519))
            .map_err(|_| HandshakeError::Randomness)?;
        Ok(e)
    }
}

/// The Alert frame: a reason code and a sentence.
pub fn alert(code: &str, detail: &str) -> Vec<u8> {
    let mut body = Vec::new();
    let code = truncate(code, 64);
    let detail = truncate(detail, 1024);
    // Both fit a vec16 by construction.
    let _ = put_vec16(&mut body, "alert code", code.as_bytes());
    let _ = put_vec16(&mut body, "alert detail", detail.as_bytes());
    frame::encode(FrameType::Alert, &body, MAX_HANDSHAKE).unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_chain(out: &mut Vec<u8>, chain: &[CertificateDer<'_>]) -> Result<(), HandshakeError> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(HandshakeError::Decode(DecodeError::Invalid {
            field: "certificate chain",
            why: "must hold 1 to 4 certificates",
        }));
    }
    out.push(chain.len() as u8);
    for c in chain {
        if c.len() > MAX_CERT {
            return Err(HandshakeError::Decode(DecodeError::TooLong {
                field: "certificate",
                len: c.len(),
                max: MAX_CERT,
            }));
        }
        put_vec16(out, "certificate", c)?;
    }
    Ok(())
}

fn read_chain(r: &mut Reader<'_>) -> Result<Vec<CertificateDer<'static>>, HandshakeError> {
    let n = usize::from(r.u8("certificate count")?);
    if n == 0 || n > MAX_CHAIN {
        return Err(DecodeError::Invalid {
            field: "certificate count",
            why: "must be 1 to 4",
        }
        .into());
    }
    (0..n)
        .map(|_| {
            Ok(CertificateDer::from(
                r.vec16("certificate", MAX_CERT)?.to_vec(),
            ))
        })
        .collect()
}

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The signer of `key` for the first scheme of [`SCHEMES`] it supports.
pub(crate) fn signer(
    key: &dyn SigningKey,
) -> Result<Box<dyn rustls::sign::Signer>, HandshakeError> {
    key.choose_scheme(SCHEMES)
        .ok_or(HandshakeError::NoSigningScheme)
}

/// Signs `context || message` with `signer`: the one signing path of the
/// tree (handshake transcripts, response receipts, goodbyes).
pub(crate) fn sign(
    signer: &dyn rustls::sign::Signer,
    context: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    signer
        .sign(&[context, message].concat())
        .map_err(|e| HandshakeError::Signing(e.to_string()))
}

/// Verifies a signature over `context || message` with the public key of
/// `leaf`, using the algorithms of the ring provider (the one crypto
/// provider of the tree): the one verification path for handshake
/// transcripts, response receipts and goodbyes.
pub(crate) fn verify_signature(
    leaf: &CertificateDer<'_>,
    scheme: u16,
    context: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), HandshakeError> {
    let scheme = SignatureScheme::from(scheme);
    if !SCHEMES.contains(&scheme) {
        return Err(HandshakeError::Scheme(u16::from(scheme)));
    }
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let alg = algs
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .and_then(|(_, algs)| algs.first())
        .ok_or(HandshakeError::Scheme(u16::from(scheme)))?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|_| HandshakeError::BadSignature)?;
    let msg = [context, message].concat();
    cert.verify_signature(*alg, &msg, signature)
        .map_err(|_| HandshakeError::BadSignature)
}

fn x25519(secret: &[u8; 32], peer: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    let secret = x25519_dalek::StaticSecret::from(*secret);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
    // A low-order share would make the "shared" secret a constant the
    // attacker knows (RFC 7748 §6.1).
    if !shared.was_contributory() {
        return Err(HandshakeError::WeakShare);
    }
    Ok(shared.to_bytes())
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[allow(clippy::expect_used)]
fn expand(prk: &hkdf::Prk, label: &[u8], th: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // ring refuses only outputs over 255 hash lengths; failing loudly beats
    // continuing with an all-zero key.
    prk.expand(&[label, th], Len(32))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-Expand of 32 bytes");
    out
}

/// The key schedule (docs/protocol.md, "Key schedule").
fn key_schedule(
    shared: &[u8; 32],
    client_id: &str,
    hub_id: &str,
    th: &[u8; 32],
) -> (SessionSecrets, [u8; 32]) {
    let mut ids = Vec::new();
    // Identities are bounded by MAX_IDENTITY, far under 64 KiB.
    let _ = put_vec16(&mut ids, "client identity", client_id.as_bytes());
    let _ = put_vec16(&mut ids, "hub identity", hub_id.as_bytes());
    let salt = sha256(&[b"ewii/1 identities", &ids]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared);
    let secrets = SessionSecrets {
        session_id: expand(&prk, b"ewii/1 session", th),
        client_to_hub: expand(&prk, b"ewii/1 c2s", th),
        hub_to_client: expand(&prk, b"ewii/1 s2c", th),
    };
    (secrets, expand(&prk, b"ewii/1 finished", th))
}

fn finished_mac(key: &[u8; 32], th: &[u8; 32]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), th)
}

fn read_hello_start(r: &mut Reader<'_>) -> Result<([u8; 32], [u8; 32]), HandshakeError> {
    let version = r.u16("version")?;
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version(version));
    }
    Ok((r.array("random")?, r.array("key share")?))
}

/// A decoded handshake message (wire formats in docs/protocol.md). Every
/// field is bounded and checked; nothing is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `version u16 | random [32] | x25519 share [32] | chain`
    ClientHello {
        /// Hello random.
        random: [u8; 32],
        /// X25519 public share.
        share: [u8; 32],
        /// Certificate chain, leaf first.
        chain: Vec<CertificateDer<'static>>,
    },
    /// `version u16 | random [32] | share [32] | hub name vec16 | chain |
    /// scheme u16 | signature vec16`
    ServerHello {
        /// Hello random.
        random: [u8; 32],
        /// X25519 public share.
        share: [u8; 32],
        /// The hub's name.
        name: String,
        /// Certificate chain, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// Signature scheme.
        scheme: u16,
        /// Bytes of the body covered by the signature (up to the scheme).
        signed_len: usize,
        /// The signature.
        signature: Vec<u8>,
    },
    /// `scheme u16 | signature vec16`
    ClientFinish {
        /// Signature scheme.
        scheme: u16,
        /// The signature.
        signature: Vec<u8>,
    },
    /// `verify data [32]`
    ServerFinish {
        /// HMAC-SHA256 of the transcript under the finished key.
        mac: [u8; 32],
    },
    /// `code vec16 | detail vec16`
    Alert {
        /// Reason code.
        code: String,
        /// Explanation.
        detail: String,
    },
}

/// Decodes one handshake frame. Never panics; refuses anything malformed,
/// over a limit, or with trailing bytes.
pub fn decode(frame: &frame::Frame) -> Result<Message, HandshakeError> {
    let mut r = Reader::new(&frame.body);
    let m = match frame.kind {
        FrameType::ClientHello => {
            let (random, share) = read_hello_start(&mut r)?;
            Message::ClientHello {
                random,
                share,
                chain: read_chain(&mut r)?,
            }
        }
        FrameType::ServerHello => {
            let (random, share) = read_hello_start(&mut r)?;
            let name = r.vec16("hub name", MAX_IDENTITY)?;
            let name = std::str::from_utf8(name)
                .map_err(|_| DecodeError::Invalid {
                    field: "hub name",
                    why: "not UTF-8",
                })?
                .to_owned();
            let chain = read_chain(&mut r)?;
            let scheme = r.u16("signature scheme")?;
            let signed_len = frame.body.len() - r.remaining();
            let signature = r.vec16("signature", MAX_SIGNATURE)?.to_vec();
            Message::ServerHello {
                random,
                share,
                name,
                chain,
                scheme,
                signed_len,
                signature,
            }
        }
        FrameType::ClientFinish => Message::ClientFinish {
            scheme: r.u16("signature scheme")?,
            signature: r.vec16("signature", MAX_SIGNATURE)?.to_vec(),
        },
        FrameType::ServerFinish => Message::ServerFinish {
            mac: r.array("verify data")?,
        },
        FrameType::Alert => {
            let code = String::from_utf8_lossy(r.vec16("alert code", 64)?).into_owned();
            let detail = String::from_utf8_lossy(r.vec16("alert detail", 1024)?).into_owned();
            Message::Alert { code, detail }
        }
        other => {
            return Err(DecodeError::Invalid {
                field: "handshake frame type",
                why: if matches!(
                    other,
                    FrameType::Message
                        | FrameType::Route
                        | FrameType::Refused
                        | FrameType::Control
                        | FrameType::Receipt
                ) {
                    "a data frame before the handshake completed"
                } else {
                    "unknown"
                },
            }
            .into());
        }
    };
    r.finish()?;
    Ok(m)
}

fn unexpected(expected: FrameType, frame: &frame::Frame) -> HandshakeError {
    HandshakeError::Unexpected {
        expected,
        got: frame.kind,
    }
}

/// Decodes `frame`, which must be of type `expected`; an Alert becomes the
/// peer's refusal.
fn expect(frame: &frame::Frame, expected: FrameType) -> Result<Message, HandshakeError> {
    match frame.kind {
        k if k == expected => decode(frame),
        FrameType::Alert => match decode(frame)? {
            Message::Alert { code, detail } => Err(HandshakeError::Alert { code, detail }),
            _ => Err(HandshakeError::Unexpected {
                expected,
                got: FrameType::Alert,
            }),
        },
        got => Err(HandshakeError::Unexpected { expected, got }),
    }
}

/// What a finished handshake established about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The verified identity (SPIFFE ID of a client, name of a hub).
    pub identity: String,
    /// Its certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

// ---------------------------------------------------------------- client

/// Client configuration for one handshake.
#[derive(Clone)]
pub struct ClientConfig {
    /// The SVID chain and key.
    pub credentials: Credentials,
    /// The client's own SPIFFE ID (the URI SAN of its SVID).
    pub identity: String,
    /// The hub name dialled; the hub must prove it.
    pub hub_name: String,
    /// Judges the hub's chain (the hub CA).
    pub hub_verifier: Arc<dyn PeerVerifier>,
}

/// A client that sent its ClientHello and waits for the ServerHello.
pub struct ClientHandshake {
    config: ClientConfig,
    secret: [u8; 32],
    client_hello: Vec<u8>,
}

impl Drop for ClientHandshake {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl ClientHandshake {
    /// Starts a handshake; returns the state and the ClientHello frame.
    pub fn start(
        config: ClientConfig,
        entropy: Entropy,
    ) -> Result<(ClientHandshake, Vec<u8>), HandshakeError> {
        let mut body = Vec::new();
        body.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        body.extend_from_slice(&entropy.random);
        body.extend_from_slice(&x25519_public(&entropy.x25519));
        put_chain(&mut body, &config.credentials.chain)?;
        let out = frame::encode(FrameType::ClientHello, &body, MAX_HANDSHAKE)
            .map_err(|e| HandshakeError::Decode(e.into()))?;
        Ok((
            ClientHandshake {
                config,
                secret: entropy.x25519,
                client_hello: body,
            },
            out,
        ))
    }

    /// Reads the ServerHello: verifies the hub's chain, name and signature,
    /// signs the transcript, derives the keys. Returns the state waiting for
    /// ServerFinish and the ClientFinish frame.
    pub fn read_server_hello(
        self,
        frame: &frame::Frame,
        now: UnixTime,
    ) -> Result<(ClientAwaitFinish, Vec<u8>), HandshakeError> {
        let Message::ServerHello {
            share,
            name,
            chain,
            scheme,
            signed_len,
            signature,
            ..
        } = expect(frame, FrameType::ServerHello)?
        else {
            return Err(unexpected(FrameType::ServerHello, frame));
        };
        let body = &frame.body;
        if name != self.config.hub_name {
            return Err(HandshakeError::HubName {
                expected: self.config.hub_name.clone(),
                got: name,
            });
        }
        let identity = self
            .config
            .hub_verifier
            .verify_peer(&chain, now)
            .map_err(HandshakeError::Certificate)?;
        let hub_hash = sha256(&[&self.client_hello, &body[..signed_len]]);
        verify_signature(&chain[0], scheme, HUB_CONTEXT, &hub_hash, &signature)?;
        let shared = x25519(&self.secret, &share)?;

        // ClientFinish: our signature over CH || SH || scheme.
        let signer = signer(&*self.config.credentials.key)?;
        let scheme = u16::from(signer.scheme());
        let mut finish = scheme.to_be_bytes().to_vec();
        let client_hash = sha256(&[&self.client_hello, body, &finish]);
        let sig = sign(&*signer, CLIENT_CONTEXT, &client_hash)?;
        put_vec16(&mut finish, "signature", &sig)?;
        let th = sha256(&[&self.client_hello, body, &finish]);
        let (secrets, mut finished_key) =
            key_schedule(&shared, &self.config.identity, &identity, &th);
        let finished = hmac::Key::new(hmac::HMAC_SHA256, &finished_key);
        finished_key.zeroize();
        let out = frame::encode(FrameType::ClientFinish, &finish, MAX_HANDSHAKE)
            .map_err(|e| HandshakeError::Decode(e.into()))?;
        Ok((
            ClientAwaitFinish {
                secrets,
                finished,
                th,
                peer: Peer { identity, chain },
            },
            out,
        ))
    }
}

/// A client that sent ClientFinish and waits for the hub's confirmation.
pub struct ClientAwaitFinish {
    secrets: SessionSecrets,
    finished: hmac::Key,
    th: [u8; 32],
    peer: Peer,
}

impl ClientAwaitFinish {
    /// Reads ServerFinish: the hub accepted us and holds the same keys.
    pub fn read_server_finish(
        self,
        frame: &frame::Frame,
    ) -> Result<(Session, Peer), HandshakeError> {
        let Message::ServerFinish { mac } = expect(frame, FrameType::ServerFinish)? else {
            return Err(unexpected(FrameType::ServerFinish, frame));
        };
        // hmac::verify compares in constant time.
        if hmac::verify(&self.finished, &self.th, &mac).is_err() {
            return Err(HandshakeError::KeyConfirmation);
        }
        Ok((Session::new(Role::Client, self.secrets), self.peer))
    }
}

// ------------------------------------------------------------------- hub

/// Hub configuration for handshakes.
#[derive(Clone)]
pub struct HubConfig {
    /// The hub's certificate chain and key.
    pub credentials: Credentials,
    /// The hub's name (a DNS name in its certificate; what clients dial).
    pub name: String,
    /// Judges client SVIDs (trust bundle per workspace, revocation).
    pub client_verifier: Arc<dyn PeerVerifier>,
}

/// A hub that answered a ClientHello and waits for ClientFinish.
pub struct HubAwaitFinish {
    shared: [u8; 32],
    transcript: Vec<u8>,
    peer: Peer,
    name: String,
}

impl Drop for HubAwaitFinish {
    fn drop(&mut self) {
        self.shared.zeroize();
    }
}

/// Reads a ClientHello: verifies the client's SVID chain, answers with the
/// signed ServerHello frame.
pub fn hub_read_client_hello(
    config: &HubConfig,
    frame: &frame::Frame,
    entropy: Entropy,
    now: UnixTime,
) -> Result<(HubAwaitFinish, Vec<u8>), HandshakeError> {
    let Message::ClientHello { share, chain, .. } = expect(frame, FrameType::ClientHello)? else {
        return Err(unexpected(FrameType::ClientHello, frame));
    };
    let body = &frame.body;
    let identity = config
        .client_verifier
        .verify_peer(&chain, now)
        .map_err(HandshakeError::Certificate)?;
    let shared = x25519(&entropy.x25519, &share)?;

    let mut sh = Vec::new();
    sh.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    sh.extend_from_slice(&entropy.random);
    sh.extend_from_slice(&x25519_public(&entropy.x25519));
    if config.name.len() > MAX_IDENTITY {
        return Err(DecodeError::TooLong {
            field: "hub name",
            len: config.name.len(),
            max: MAX_IDENTITY,
        }
        .into());
    }
    put_vec16(&mut sh, "hub name", config.name.as_bytes())?;
    put_chain(&mut sh, &config.credentials.chain)?;
    let signer = signer(&*config.credentials.key)?;
    sh.extend_from_slice(&u16::from(signer.scheme()).to_be_bytes());
    let hash = sha256(&[body, &sh]);
    let sig = sign(&*signer, HUB_CONTEXT, &hash)?;
    put_vec16(&mut sh, "signature", &sig)?;
    let out = frame::encode(FrameType::ServerHello, &sh, MAX_HANDSHAKE)
        .map_err(|e| HandshakeError::Decode(e.into()))?;
    let mut transcript = body.to_vec();
    transcript.extend_from_slice(&sh);
    Ok((
        HubAwaitFinish {
            shared,
            transcript,
            peer: Peer { identity, chain },
            name: config.name.clone(),
        },
        out,
    ))
}

impl HubAwaitFinish {
    /// The verified client, before it has proven its key (for logs only).
    pub fn claimed_peer(&self) -> &Peer {
        &self.peer
    }

    /// Reads ClientFinish: verifies the client's signature, derives the keys
    /// and returns the session, the client, and the ServerFinish frame.
    pub fn read_client_finish(
        self,
        frame: &frame::Frame,
    ) -> Result<(Session, Peer, Vec<u8>), HandshakeError> {
        let Message::ClientFinish { scheme, signature } = expect(frame, FrameType::ClientFinish)?
        else {
            return Err(unexpected(FrameType::ClientFinish, frame));
        };
        let body = &frame.body;
        let hash = sha256(&[&self.transcript, &body[..2]]);
        verify_signature(
            &self.peer.chain[0],
            scheme,
            CLIENT_CONTEXT,
            &hash,
            &signature,
        )?;
        let th = sha256(&[&self.transcript, body]);
        let (secrets, mut finished_key) =
            key_schedule(&self.shared, &self.peer.identity, &self.name, &th);
        let mac = finished_mac(&finished_key, &th);
        finished_key.zeroize();
        let out = frame::encode(FrameType::ServerFinish, mac.as_ref(), MAX_HANDSHAKE)
            .map_err(|e| HandshakeError::Decode(e.into()))?;
        Ok((Session::new(Role::Hub, secrets), self.peer.clone(), out))
    }
}

// ------------------------------------------------------------- verifiers

/// The client's judge of the hub: the hub's chain must lead to the hub CA
/// the client was installed with and name the host it dialled. The same
/// verifier serves the TLS layer ([`HubCertVerifier::tls`]) and the app
/// layer, so both layers hold the hub to one rule.
#[derive(Debug, Clone)]
pub struct HubCertVerifier {
    tls: Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

/// The hub CA file or the hub name is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubTrustError {
    /// No certificate could be used as a trust anchor.
    #[error("the hub CA holds no usable certificate: {0}")]
    NoAnchor(String),
    /// The hub name is not a DNS name or IP address.
    #[error("{0:?} is not a valid hub host name")]
    Name(String),
}

impl HubCertVerifier {
    /// Trusts `roots` (the hub CA) for the hub called `name`.
    pub fn new(
        roots: &[CertificateDer<'static>],
        name: &str,
    ) -> Result<HubCertVerifier, HubTrustError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store
                .add(root.clone())
                .map_err(|e| HubTrustError::NoAnchor(e.to_string()))?;
        }
        if store.is_empty() {
            return Err(HubTrustError::NoAnchor("the file is empty".into()));
        }
        let tls = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| HubTrustError::NoAnchor(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|_| HubTrustError::Name(name.to_owned()))?;
        Ok(HubCertVerifier { tls, name })
    }

    /// The verifier for the TLS layer.
    pub fn tls(&self) -> Arc<rustls::client::WebPkiServerVerifier> {
        self.tls.clone()
    }

    /// The hub name as rustls takes it (SNI and name check).
    pub fn server_name(&self) -> &rustls::pki_types::ServerName<'static> {
        &self.name
    }
}

/// A stable reason code for a certificate error from rustls.
pub fn certificate_reason(err: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "untrusted_issuer",
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::NotValidForName | C::NotValidForNameContext { .. } => "wrong_name",
            C::Revoked => "revoked",
            C::BadSignature => "bad_certificate_signature",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "invalid_purpose",
            _ => "invalid_certificate",
        },
        _ => "invalid_certificate",
    }
}

impl PeerVerifier for HubCertVerifier {
    fn verify_peer(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<String, Refusal> {
        use rustls::client::danger::ServerCertVerifier;
        let (leaf, intermediates) = chain.split_first().ok_or_else(|| Refusal {
            reason: "no_certificate",
            detail: "the hub sent no certificate".into(),
        })?;
        self.tls
            .verify_server_cert(leaf, intermediates, &self.name, &[], now)
            .map_err(|e| Refusal {
                reason: certificate_reason(&e),
                detail: format!("hub certificate: {e}"),
            })?;
        Ok(self.name.to_str().into_owned())
    }
}

/// The hub judges clients with the same SVID verifier as its TLS layer:
/// the trust bundle of the workspace named in the SPIFFE ID, the X509-SVID
/// rules, revocation.
impl PeerVerifier for crate::svid::SvidVerifier {
    fn verify_peer(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<String, Refusal> {
        let (leaf, intermediates) = chain.split_first().ok_or_else(|| Refusal {
            reason: "no_certificate",
            detail: "the client sent no certificate".into(),
        })?;
        self.verify(leaf, intermediates, now)
            .map(|v| v.id.to_string())
            .map_err(|e| Refusal {
                reason: e.reason(),
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
#[path = "handshake_test.rs"]
mod tests;
