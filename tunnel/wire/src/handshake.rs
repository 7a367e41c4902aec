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
//! `now`, keys as [`Signer`]s and judges of certificate chains as
//! [`PeerVerifier`]s (the QUIC binding implements both over rustls and
//! webpki). Wire formats ([`message`]) and vectors are in
//! `docs/protocol.md`.

use std::sync::Arc;

use ring::{digest, hkdf, hmac};
use zeroize::Zeroize;

use crate::codec::{DecodeError, put_vec16};
use crate::frame::{self, FrameType, MAX_HANDSHAKE};
use crate::pki::{Certificate, SignatureError, Signer, UnixTime};
use crate::session::{Role, Session, SessionSecrets};

pub mod message;

pub use message::{Message, alert, decode};
use message::{expect, put_chain, unexpected};

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

/// Signature schemes a handshake may use. SPIRE issues EC P-256 keys;
/// Ed25519 keeps the vectors deterministic.
pub use crate::pki::SCHEMES;

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
            HandshakeError::Signing(_) => "signing",
            HandshakeError::WeakShare => "weak_share",
            HandshakeError::KeyConfirmation => "key_confirmation",
            HandshakeError::Alert { .. } => "peer_alert",
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
    fn verify_peer(&self, chain: &[Certificate], now: UnixTime) -> Result<String, Refusal>;
}

/// One side's certificate chain and key.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Leaf first.
    pub chain: Vec<Certificate>,
    /// The leaf's private key: signs transcripts, receipts and goodbyes.
    pub signer: Arc<dyn Signer>,
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

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Signs `context || message` with `signer`: the one signing path of the
/// tree (handshake transcripts, response receipts, goodbyes).
pub(crate) fn sign(
    signer: &dyn Signer,
    context: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    signer
        .sign(&[context, message].concat())
        .map_err(|e| HandshakeError::Signing(e.0))
}

/// Verifies a signature over `context || message` with the public key of
/// `leaf` ([`crate::pki::verify`]): the one verification path for
/// handshake transcripts, response receipts and goodbyes.
pub(crate) fn verify_signature(
    leaf: &Certificate,
    scheme: u16,
    context: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), HandshakeError> {
    let msg = [context, message].concat();
    crate::pki::verify(leaf, scheme, &msg, signature).map_err(|e| match e {
        SignatureError::Scheme(s) => HandshakeError::Scheme(s),
        _ => HandshakeError::BadSignature,
    })
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

/// What a finished handshake established about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The verified identity (SPIFFE ID of a client, name of a hub).
    pub identity: String,
    /// Its certificate chain, leaf first.
    pub chain: Vec<Certificate>,
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
        let signer = &*self.config.credentials.signer;
        let scheme = signer.scheme().code();
        let mut finish = scheme.to_be_bytes().to_vec();
        let client_hash = sha256(&[&self.client_hello, body, &finish]);
        let sig = sign(signer, CLIENT_CONTEXT, &client_hash)?;
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
    let signer = &*config.credentials.signer;
    sh.extend_from_slice(&signer.scheme().code().to_be_bytes());
    let hash = sha256(&[body, &sh]);
    let sig = sign(signer, HUB_CONTEXT, &hash)?;
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

#[cfg(test)]
#[path = "handshake_test.rs"]
mod tests;
