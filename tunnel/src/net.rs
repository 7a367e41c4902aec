//! The QUIC binding: thin glue that moves the protocol core's bytes.
//!
//! - One place builds the rustls and quinn configs: TLS 1.3 only, ALPN
//!   `ewii/1`, no 0-RTT, the ring provider, client certificates mandatory
//!   and judged by a [`rustls::server::danger::ClientCertVerifier`] (the
//!   SVID verifier), keep-alive so a lost link is noticed in under 3 s.
//! - The hub's side is bounded before anyone is authenticated
//!   ([`hub_transport`]): one peer-opened stream, a connection-wide receive
//!   window of two handshake frames until the app-layer handshake proves
//!   the peer ([`authenticated`] widens it), no datagrams.
//! - [`ClientTunnel::connect`] and [`HubTunnel::accept`] run the app-layer
//!   handshake on the first bidirectional stream (the control stream), then
//!   every request gets its own QUIC stream with its own keys (`session`).
//! - Every reply the client sends carries a receipt signed with the
//!   session's SVID key, and the hub hands out only replies whose receipt
//!   verifies ([`crate::receipt`]).
//! - Revocation: the hub closes a tunnel with [`close_code::REVOKED`], or
//!   refuses a revoked SVID in TLS with the `certificate_revoked` alert;
//!   [`revoked_by_peer`] recognises both.
//!
//! Nothing here decides anything about security that the sans-IO core does
//! not already decide; this module reads, writes, and closes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::SigningKey;
use tokio::sync::{Mutex, mpsc};

use crate::enrol::{self, Control, ENROL_ALPN, EnrolError, EnrolRequest, EnrolResponse};
use crate::frame::{Frame, FrameDecoder, FrameType, MAX_HANDSHAKE};
use crate::handshake::{
    self, ClientConfig, ClientHandshake, Credentials, Entropy, HandshakeError, HubConfig, Peer,
};
use crate::receipt::{ReceiptError, ReplyCheck};
use crate::session::{STREAM_HEADER_LEN, Session, SessionError, StreamChannel, StreamError};

pub use crate::receipt::{Receipt, Reply};

/// The ALPN protocol id of the tunnel.
pub const ALPN: &[u8] = b"ewii/1";
/// Keep-alive interval: the link is exercised even when idle.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// Silence after which a link counts as lost. RFC 9000 §10.1 restarts the
/// idle timer at the first ack-eliciting packet sent after the last one
/// received, so a loss is noticed at most `KEEP_ALIVE + IDLE_TIMEOUT`
/// (2.5 s) after the last packet got through.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(2000);
/// Time allowed for the app-layer handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most concurrent request streams the client accepts from a hub.
pub const MAX_STREAMS: u32 = 256;
/// Most streams a peer may open to the hub at once. A client opens exactly
/// one, for the tunnel's life (the control stream) or for its enrolment;
/// every request stream is opened by the hub. So an unauthenticated peer
/// can never make the hub hold more than one stream's data.
pub const HUB_PEER_STREAMS: u32 = 1;
/// What one stream may have in flight towards the hub before the hub reads
/// it (1 MiB): a reply of up to [`crate::frame::MAX_MESSAGE`] streams
/// through it at 1 MiB per round trip.
pub const STREAM_RECEIVE_WINDOW: u32 = 1 << 20;
/// What a connection may have in flight towards the hub, all streams
/// together, until its app-layer handshake completes: two handshake frames
/// (the largest unauthenticated message is one [`MAX_HANDSHAKE`] frame).
/// This is the bound on what an unauthenticated peer makes the hub buffer.
pub const PRE_AUTH_RECEIVE_WINDOW: u32 =
    2 * (MAX_HANDSHAKE + crate::frame::FRAME_HEADER_LEN) as u32;
/// The connection-wide window once the peer is authenticated (32 MiB):
/// many concurrent replies at full stream speed.
pub const RECEIVE_WINDOW: u32 = 32 << 20;
/// Most connection attempts queued before the hub's accept loop takes them.
pub const MAX_INCOMING: usize = 4096;

/// QUIC application error codes used when closing.
pub mod close_code {
    /// Orderly shutdown.
    pub const DONE: u32 = 0;
    /// The app-layer handshake failed.
    pub const HANDSHAKE: u32 = 1;
    /// A record or stream was refused (tampering, replay).
    pub const PROTOCOL: u32 = 2;
    /// The TLS identity and the app-layer identity differ.
    pub const IDENTITY: u32 = 3;
    /// This deployment's SVID is revoked (after a goodbye, or by the
    /// operator): the client must not reconnect with it.
    pub const REVOKED: u32 = 4;
}

/// What can go wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A certificate or key file is unusable.
    #[error("{0}")]
    Credentials(String),
    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Dialling failed before any packet was exchanged.
    #[error("cannot dial the hub: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream write failed.
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// A stream read failed.
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The app-layer handshake failed.
    #[error("app-layer handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A stream's bytes were refused.
    #[error("stream refused: {0}")]
    Stream(#[from] StreamError),
    /// A stream number was refused.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// A step took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The peer broke the stream protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// An enrolment or control message was malformed.
    #[error(transparent)]
    Enrol(#[from] EnrolError),
    /// A reply's receipt is missing, malformed, or does not verify with the
    /// session's leaf certificate: the reply is not handed out.
    #[error("reply refused: {0}")]
    Receipt(String),
    /// A goodbye does not verify with the session's leaf certificate, or
    /// its time is too far from ours.
    #[error("goodbye refused: {0}")]
    Goodbye(String),
    /// The hub says this client's SVID is revoked (see [`revoked_by_peer`]).
    #[error("the hub revoked this client's SVID: {0}")]
    Revoked(String),
    /// The TLS client identity is not the app-layer identity.
    #[error("TLS identity {tls} does not match app-layer identity {app}")]
    IdentityMismatch {
        /// The SPIFFE ID in the TLS client certificate.
        tls: String,
        /// The SPIFFE ID proven in the app-layer handshake.
        app: String,
    },
}

impl NetError {
    /// A stable reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            NetError::Handshake(h) => h.reason(),
            NetError::Connection(quinn::ConnectionError::TimedOut) => "timed_out",
            NetError::Connection(_) => "connection",
            NetError::IdentityMismatch { .. } => "identity_mismatch",
            NetError::Receipt(_) => "bad_receipt",
            NetError::Goodbye(_) => "bad_goodbye",
            NetError::Revoked(_) => "revoked",
            NetError::Stream(_)
            | NetError::Session(_)
            | NetError::Protocol(_)
            | NetError::Enrol(_) => "protocol",
            NetError::Timeout(_) => "timeout",
            _ => "other",
        }
    }
}

/// A certificate chain and its private key, as loaded from PEM files.
pub struct KeyMaterial {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key (PKCS#8, SEC1 or PKCS#1).
    pub key: PrivateKeyDer<'static>,
}

impl Clone for KeyMaterial {
    fn clone(&self) -> Self {
        KeyMaterial {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("KeyMaterial")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Every certificate of a PEM text; `what` names the text in errors.
pub fn certificates_from_pem(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, NetError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Credentials(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Credentials(format!(
            "{what}: no PEM certificate in it"
        )));
    }
    Ok(certs)
}

/// Reads every certificate of a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| NetError::Credentials(format!("{}: {e}", path.display())))?;
    certificates_from_pem(&text, &path.display().to_string())
}

impl KeyMaterial {
    /// Loads a chain (leaf first) and a key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<KeyMaterial, NetError> {
        use rustls::pki_types::pem::PemObject;
        let chain = read_certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| NetError::Credentials(format!("{}: {e}", key.display())))?;
        let m = KeyMaterial { chain, key };
        m.credentials()?;
        Ok(m)
    }

    /// A chain (leaf first) and a key from PEM text.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<KeyMaterial, NetError> {
        use rustls::pki_types::pem::PemObject;
        let chain = certificates_from_pem(chain_pem, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| NetError::Credentials(format!("private key: {e}")))?;
        let m = KeyMaterial { chain, key };
        m.credentials()?;
        Ok(m)
    }

    /// The chain and a signing key for the app-layer handshake.
    pub fn credentials(&self) -> Result<Credentials, NetError> {
        let key = rustls::crypto::ring::sign::any_supported_type(&self.key)
            .map_err(|e| NetError::Credentials(format!("unusable private key: {e}")))?;
        Ok(Credentials {
            chain: self.chain.clone(),
            key,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC transport settings both ends use.
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // quinn's defaults are a 30 s idle timeout and no keep-alive: a dead
    // link would go unnoticed for half a minute.
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(t)
}

/// The hub's QUIC transport settings: [`transport`], plus the bounds that
/// hold before a peer is authenticated. A peer may open
/// [`HUB_PEER_STREAMS`] stream and, across the connection, send
/// [`PRE_AUTH_RECEIVE_WINDOW`] bytes ahead of what the hub has read; no
/// datagrams, no unidirectional streams. [`authenticated`] widens the
/// connection window once the app-layer handshake has proven the peer.
pub fn hub_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(HUB_PEER_STREAMS));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(PRE_AUTH_RECEIVE_WINDOW));
    // The protocol sends no datagrams; quinn would otherwise buffer
    // 1.25 MB of them per connection for a reader that never comes.
    t.datagram_receive_buffer_size(None);
    Arc::new(t)
}

/// Widens an authenticated connection's receive window to
/// [`RECEIVE_WINDOW`] (called once the app-layer handshake succeeded).
pub fn authenticated(conn: &quinn::Connection) {
    conn.set_receive_window(quinn::VarInt::from_u32(RECEIVE_WINDOW));
}

/// The client's QUIC config: TLS 1.3 only, ALPN `ewii/1`, no early data,
/// the SVID as client certificate, `tls_verifier` judging the hub.
pub fn client_config(
    keys: &KeyMaterial,
    tls_verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<quinn::ClientConfig, NetError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(tls_verifier)
        .with_client_auth_cert(keys.chain.clone(), keys.key.clone_key())
        .map_err(|e| NetError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT data can be replayed by anyone on the path.
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// The accepting side's QUIC config: TLS 1.3 only, ALPN `ewii/1`, no 0-RTT,
/// client certificates mandatory and judged by `client_verifier`.
pub fn hub_config(
    keys: &KeyMaterial,
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<quinn::ServerConfig, NetError> {
    server_config(keys, client_verifier, vec![ALPN.to_vec()])
}

/// Like [`hub_config`], and also accepts enrolment connections (ALPN
/// [`ENROL_ALPN`]) on the same port. Those carry no client certificate, so
/// TLS client authentication becomes optional; a certificate that is
/// presented is still judged by `client_verifier`, and a tunnel connection
/// (ALPN `ewii/1`) without one is refused by [`HubTunnel::establish`].
pub fn hub_config_with_enrolment(
    keys: &KeyMaterial,
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<quinn::ServerConfig, NetError> {
    server_config(
        keys,
        Arc::new(OptionalClientAuth(client_verifier)),
        vec![ALPN.to_vec(), ENROL_ALPN.to_vec()],
    )
}

/// TLS 1.3 only, no 0-RTT, the given client verifier and ALPN ids.
fn server_config(
    keys: &KeyMaterial,
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    alpn: Vec<Vec<u8>>,
) -> Result<quinn::ServerConfig, NetError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(keys.chain.clone(), keys.key.clone_key())
        .map_err(|e| NetError::Tls(e.to_string()))?;
    tls.alpn_protocols = alpn;
    // 0 disables 0-RTT (rustls' default, stated so nobody turns it on).
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(hub_transport());
    // Connection attempts waiting for the accept loop, and what they may
    // buffer meanwhile (quinn's defaults: 65 536 of them, 10 MiB each).
    config.max_incoming(MAX_INCOMING);
    config.incoming_buffer_size(u64::from(PRE_AUTH_RECEIVE_WINDOW));
    config.incoming_buffer_size_total(16 << 20);
    Ok(config)
}

/// A client verifier that lets a client without a certificate through (for
/// enrolment) and judges every certificate presented with the inner one.
#[derive(Debug)]
struct OptionalClientAuth(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for OptionalClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The ALPN protocol a connection settled on.
pub fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// Reads exactly one clear handshake frame, and not a byte more: what
/// follows on the control stream is sealed records.
async fn read_handshake_frame(recv: &mut quinn::RecvStream) -> Result<Frame, NetError> {
    let mut header = [0u8; crate::frame::FRAME_HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| NetError::Protocol(format!("handshake frame header: {e}")))?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_HANDSHAKE {
        return Err(HandshakeError::Decode(crate::codec::DecodeError::TooLong {
            field: "handshake frame",
            len,
            max: MAX_HANDSHAKE,
        })
        .into());
    }
    let mut bytes = header.to_vec();
    bytes.resize(header.len() + len, 0);
    recv.read_exact(&mut bytes[header.len()..])
        .await
        .map_err(|e| NetError::Protocol(format!("handshake frame body: {e}")))?;
    let mut frames = FrameDecoder::new(MAX_HANDSHAKE)
        .push(&bytes)
        .map_err(|e| HandshakeError::Decode(e.into()))?;
    frames
        .pop()
        .ok_or_else(|| NetError::Protocol("empty handshake frame".into()))
}

/// Runs an app-layer handshake within [`HANDSHAKE_TIMEOUT`]; on failure
/// closes the connection with the reason, so the peer's log says why.
async fn within_deadline<T>(
    conn: &quinn::Connection,
    handshake: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => {
            let code = match e {
                NetError::IdentityMismatch { .. } => close_code::IDENTITY,
                _ => close_code::HANDSHAKE,
            };
            conn.close(code.into(), e.reason().as_bytes());
            Err(e)
        }
        Err(_) => {
            conn.close(close_code::HANDSHAKE.into(), b"timeout");
            Err(NetError::Timeout("app-layer handshake"))
        }
    }
}

/// Reads the peer's half of the control stream for the tunnel's life.
/// Messages go to `messages` (when the caller wants them); a refused record
/// means tampering in transit and closes the connection.
fn spawn_control_reader(
    mut recv: quinn::RecvStream,
    channel: Arc<std::sync::Mutex<StreamChannel>>,
    conn: quinn::Connection,
    messages: Option<mpsc::Sender<Bytes>>,
    controls: mpsc::Sender<Bytes>,
) {
    tokio::spawn(async move {
        loop {
            let frames = match recv.read_chunk(64 << 10, true).await {
                Ok(Some(chunk)) => lock(&channel).open(&chunk.bytes),
                Ok(None) | Err(_) => return,
            };
            match frames {
                Ok(frames) => {
                    for f in frames {
                        let tx = match f.kind {
                            FrameType::Message => messages.as_ref(),
                            FrameType::Control => Some(&controls),
                            _ => None,
                        };
                        if let Some(tx) = tx
                            && tx.send(Bytes::from(f.body)).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control stream record refused; closing the tunnel");
                    conn.close(close_code::PROTOCOL.into(), b"control stream refused");
                    return;
                }
            }
        }
    });
}

/// Writes an Alert and ends our side of the control stream, giving the
/// peer a moment to read it before the connection closes.
async fn send_alert(mut send: quinn::SendStream, alert: Vec<u8>) {
    let _ = send.write_all(&alert).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
}

/// Reads one stream's sealed frames.
async fn read_frames(
    recv: &mut quinn::RecvStream,
    channel: &mut StreamChannel,
) -> Result<Option<Vec<Frame>>, NetError> {
    match recv.read_chunk(64 << 10, true).await? {
        Some(chunk) => Ok(Some(channel.open(&chunk.bytes)?)),
        None => {
            channel.finish()?;
            Ok(None)
        }
    }
}

/// The control stream: the client's stream 0, sealed after the handshake.
struct ControlSender {
    send: Mutex<(quinn::SendStream, Arc<std::sync::Mutex<StreamChannel>>)>,
}

impl ControlSender {
    async fn send(&self, kind: FrameType, body: &[u8]) -> Result<(), NetError> {
        let mut guard = self.send.lock().await;
        let (send, channel) = &mut *guard;
        let bytes = lock(channel).seal(kind, body)?;
        send.write_all(&bytes).await?;
        Ok(())
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; carrying
    // on is safe.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Now, Unix seconds.
fn unix_now() -> i64 {
    i64::try_from(UnixTime::now().as_secs()).unwrap_or(i64::MAX)
}

/// Text from the peer, made one short printable line for a log.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

// ------------------------------------------------------------- revocation

/// The QUIC error code of a CONNECTION_CLOSE carrying the TLS alert
/// `certificate_revoked` (44): `0x100 + 44 = 0x12c` (RFC 9001 §4.8).
pub fn certificate_revoked_code() -> quinn::TransportErrorCode {
    quinn::TransportErrorCode::crypto(u8::from(rustls::AlertDescription::CertificateRevoked))
}

/// Whether `reason` (why a connection closed) is the hub saying this
/// client's SVID is revoked, and if so how, for the log. Only a close the
/// peer sent counts:
/// - an application close with [`close_code::REVOKED`];
/// - a transport close with the crypto error [`certificate_revoked_code`]:
///   the hub's TLS client-certificate verifier returned
///   `CertificateError::Revoked`, rustls turned it into the
///   `certificate_revoked` alert and quinn into that QUIC error code. quinn
///   surfaces it as `ConnectionError::ConnectionClosed` on a connection
///   whose handshake had completed on the client's side (TLS 1.3 verifies
///   the client certificate after the client's last flight).
///
/// [`ClientTunnel::connect`] applies this only once the QUIC handshake has
/// completed: a close in an Initial packet is not authenticated (anyone on
/// the path can forge one), and a revoked SVID is never refused that early.
pub fn revoked_by_peer(reason: &quinn::ConnectionError) -> Option<String> {
    match reason {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(close_code::REVOKED) =>
        {
            Some(format!(
                "the hub closed the tunnel as revoked ({})",
                printable(&close.reason)
            ))
        }
        quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == certificate_revoked_code() =>
        {
            Some("the hub refused the SVID in TLS with the certificate_revoked alert".into())
        }
        _ => None,
    }
}

// ------------------------------------------------------------------ client

/// The client's end of a live tunnel.
pub struct ClientTunnel {
    conn: quinn::Connection,
    session: Arc<std::sync::Mutex<Session>>,
    peer: Peer,
    /// The SVID and key the session was established with: receipts and the
    /// goodbye are signed with this key for the session's whole life (a
    /// renewal does not change it).
    credentials: Credentials,
    /// Our SPIFFE ID (what the hub verified at the handshake).
    identity: String,
    control: ControlSender,
    /// Control messages from the hub; locked by the one renewal or goodbye
    /// in flight.
    controls: Mutex<(u64, mpsc::Receiver<Bytes>)>,
}

/// A request the hub opened on its own stream.
pub struct IncomingRequest {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    channel: StreamChannel,
    session: Arc<std::sync::Mutex<Session>>,
    confirmed: bool,
    /// Signs the receipts: the session's SVID key.
    key: Arc<dyn SigningKey>,
    /// SHA-256 of the request message, once read.
    request_digest: Option<[u8; 32]>,
}

/// What a request stream carries from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The adapter endpoint named by the hub, if any.
    pub route: Option<String>,
    /// The JSON-RPC message.
    pub message: Bytes,
}

impl ClientTunnel {
    /// Dials the hub and runs the app-layer handshake. A hub that says the
    /// SVID is revoked (in TLS, with an app-layer alert `revoked`, or by
    /// closing with [`close_code::REVOKED`]) gives [`NetError::Revoked`].
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        quic: quinn::ClientConfig,
        addr: SocketAddr,
        config: ClientConfig,
    ) -> Result<ClientTunnel, NetError> {
        let server_name = config.hub_name.clone();
        // A failure before the QUIC handshake completes is never taken for
        // a revocation (see `revoked_by_peer`).
        let conn = endpoint.connect_with(quic, addr, &server_name)?.await?;
        // Judged before `within_deadline` closes the connection on our
        // side, which replaces the peer's close reason.
        let handshake = async {
            Self::handshake(&conn, config)
                .await
                .map_err(|e| Self::revocation(&conn, e))
        };
        within_deadline(&conn, handshake).await
    }

    /// `e`, or [`NetError::Revoked`] when the hub refused us as revoked.
    fn revocation(conn: &quinn::Connection, e: NetError) -> NetError {
        if let Some(how) = conn.close_reason().as_ref().and_then(revoked_by_peer) {
            return NetError::Revoked(how);
        }
        match e {
            // The hub's app-layer SVID check refused a revoked serial (a
            // relay terminated TLS, so TLS could not tell).
            NetError::Handshake(HandshakeError::Alert { code, detail }) if code == "revoked" => {
                NetError::Revoked(format!("the hub refused the SVID: {detail}"))
            }
            e => e,
        }
    }

    async fn handshake(
        conn: &quinn::Connection,
        config: ClientConfig,
    ) -> Result<ClientTunnel, NetError> {
        let (mut send, mut recv) = conn.open_bi().await?;
        let credentials = config.credentials.clone();
        let identity = config.identity.clone();
        let (state, hello) = ClientHandshake::start(config, Entropy::from_system()?)?;
        send.write_all(&hello).await?;
        let sh = read_handshake_frame(&mut recv).await?;
        let (state, finish) = state.read_server_hello(&sh, UnixTime::now())?;
        send.write_all(&finish).await?;
        let sf = read_handshake_frame(&mut recv).await?;
        let (mut session, peer) = state.read_server_finish(&sf)?;
        let channel_arc = Arc::new(std::sync::Mutex::new(session.control()?));
        let session = Arc::new(std::sync::Mutex::new(session));
        // The hub answers renewals on the control stream; a tampered or
        // replayed record there ends the link.
        let (controls_tx, controls_rx) = mpsc::channel(4);
        spawn_control_reader(recv, channel_arc.clone(), conn.clone(), None, controls_tx);
        Ok(ClientTunnel {
            conn: conn.clone(),
            session,
            peer,
            credentials,
            identity,
            control: ControlSender {
                send: Mutex::new((send, channel_arc)),
            },
            controls: Mutex::new((0, controls_rx)),
        })
    }

    /// The hub, as the handshake proved it.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The QUIC connection (for close reasons and statistics).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends a server-initiated MCP message (a notification from the
    /// adapter) to the hub on the control stream.
    pub async fn notify(&self, message: &[u8]) -> Result<(), NetError> {
        self.control.send(FrameType::Message, message).await
    }

    /// Asks the hub for a fresh SVID over this live tunnel: sends `renew`
    /// with `csr_der` (a PKCS#10 CSR for a newly generated key) on the
    /// control stream and waits up to `timeout` for the answer. In-flight
    /// requests are not disturbed. The outer error is the link's; the inner
    /// one is the hub's refusal.
    pub async fn renew(
        &self,
        csr_der: &[u8],
        timeout: Duration,
    ) -> Result<Result<enrol::Issued, enrol::Refusal>, NetError> {
        use base64::Engine as _;
        let mut guard = self.controls.lock().await;
        let (next_id, rx) = &mut *guard;
        *next_id += 1;
        let id = *next_id;
        let csr = base64::engine::general_purpose::STANDARD.encode(csr_der);
        let body = enrol::encode(&Control::Renew { id, csr })?;
        self.control.send(FrameType::Control, &body).await?;
        let answer = async {
            loop {
                let Some(bytes) = rx.recv().await else {
                    return Err(NetError::Protocol(
                        "the tunnel closed during renewal".into(),
                    ));
                };
                match enrol::decode::<Control>(&bytes)? {
                    Control::Issued { id: got, issued } if got == id => return Ok(Ok(issued)),
                    Control::Refused { id: got, refusal } if got == id => {
                        return Ok(Err(refusal));
                    }
                    other => tracing::debug!(?other, "stale control message ignored"),
                }
            }
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| NetError::Timeout("SVID renewal"))?
    }

    /// Says goodbye: asks the hub to revoke this deployment with a
    /// `goodbye` signed by the session's SVID key, waits up to `timeout`
    /// (a renewal in flight included) for the hub's `goodbye_ack`, then
    /// closes the tunnel with [`close_code::REVOKED`].
    ///
    /// The hub closing the tunnel with [`close_code::REVOKED`] also counts
    /// as the acknowledgement: QUIC drops stream data still unsent when a
    /// connection closes, so the ack itself may never arrive. On an error
    /// the tunnel is left open for the caller to close.
    pub async fn goodbye(&self, timeout: Duration) -> Result<(), NetError> {
        let at = unix_now();
        let signature = crate::receipt::sign_goodbye(&*self.credentials.key, &self.identity, at)
            .map_err(|e| NetError::Goodbye(e.to_string()))?;
        let body = enrol::encode(&Control::Goodbye { at, signature })?;
        let exchange = async {
            // One reader of the hub's control messages at a time.
            let mut guard = self.controls.lock().await;
            let (_, rx) = &mut *guard;
            self.control.send(FrameType::Control, &body).await?;
            loop {
                let Some(bytes) = rx.recv().await else {
                    let closed = self.conn.close_reason();
                    if closed.as_ref().and_then(revoked_by_peer).is_some() {
                        return Ok(());
                    }
                    return Err(NetError::Protocol(format!(
                        "the tunnel closed before the hub acknowledged the goodbye: {}",
                        closed.map_or_else(|| "closed".to_owned(), |r| r.to_string())
                    )));
                };
                match enrol::decode::<Control>(&bytes)? {
                    Control::GoodbyeAck {} => return Ok(()),
                    other => tracing::debug!(?other, "control message ignored during goodbye"),
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout("goodbye acknowledgement"))??;
        self.conn
            .close(close_code::REVOKED.into(), b"goodbye: deployment revoked");
        Ok(())
    }

    /// Waits for the hub's next request stream. `None` once the tunnel is
    /// closed.
    pub async fn next_request(&self) -> Option<Result<IncomingRequest, NetError>> {
        let (send, mut recv) = match self.conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return None,
        };
        let header = async {
            let mut h = [0u8; STREAM_HEADER_LEN];
            recv.read_exact(&mut h)
                .await
                .map_err(|e| NetError::Protocol(format!("stream header: {e}")))?;
            let number = u64::from_be_bytes(h);
            let channel = lock(&self.session).accept_stream(number)?;
            Ok::<_, NetError>(channel)
        };
        Some(header.await.map(|channel| IncomingRequest {
            send,
            recv,
            channel,
            session: self.session.clone(),
            confirmed: false,
            key: self.credentials.key.clone(),
            request_digest: None,
        }))
    }

    /// Closes the tunnel in an orderly way.
    pub fn close(&self, reason: &str) {
        self.conn.close(close_code::DONE.into(), reason.as_bytes());
    }
}

impl IncomingRequest {
    /// Reads the hub's route and message, up to the stream's close record.
    pub async fn read(&mut self) -> Result<Request, NetError> {
        let mut route = None;
        let mut message = None;
        while let Some(frames) = read_frames(&mut self.recv, &mut self.channel).await? {
            if !self.confirmed && self.channel.verified() {
                lock(&self.session).confirm_stream(self.channel.number())?;
                self.confirmed = true;
            }
            for f in frames {
                match (f.kind, &message) {
                    (FrameType::Route, None) if route.is_none() => {
                        route = Some(String::from_utf8_lossy(&f.body).into_owned());
                    }
                    (FrameType::Message, None) => message = Some(Bytes::from(f.body)),
                    (kind, _) => {
                        return Err(NetError::Protocol(format!(
                            "unexpected {kind:?} frame on a request stream"
                        )));
                    }
                }
            }
        }
        let message = message
            .ok_or_else(|| NetError::Protocol("a request stream without a message".into()))?;
        self.request_digest = Some(crate::receipt::digest(&message));
        Ok(Request { route, message })
    }

    /// Sends one message back (a response, or a notification about it),
    /// followed by its receipt: the session's SVID key signing the request
    /// and this message. Returns the receipt.
    pub async fn reply(&mut self, message: &[u8]) -> Result<Receipt, NetError> {
        let request_digest = self
            .request_digest
            .ok_or_else(|| NetError::Protocol("a reply before the request was read".into()))?;
        let receipt = Receipt::sign(&*self.key, request_digest, message)
            .map_err(|e| NetError::Receipt(e.to_string()))?;
        let body = receipt
            .encode()
            .map_err(|e| NetError::Receipt(e.to_string()))?;
        let mut bytes = self.channel.seal(FrameType::Message, message)?;
        bytes.extend(self.channel.seal(FrameType::Receipt, &body)?);
        self.send.write_all(&bytes).await?;
        Ok(receipt)
    }

    /// Tells the hub the request was not forwarded, and why.
    pub async fn refuse(&mut self, reason: &str) -> Result<(), NetError> {
        let bytes = self.channel.seal(FrameType::Refused, reason.as_bytes())?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    /// Ends our direction with the close record.
    pub async fn finish(mut self) -> Result<(), NetError> {
        let bytes = self.channel.seal_close()?;
        self.send.write_all(&bytes).await?;
        let _ = self.send.finish();
        Ok(())
    }
}

// --------------------------------------------------------------------- hub

/// Whether the hub requires the TLS client certificate to carry the same
/// SPIFFE ID as the app-layer handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsBinding {
    /// The default: a deployment's TLS connection carries only its own
    /// traffic (deployment A's SVID can never carry B's tunnel).
    Strict,
    /// For a TLS-terminating relay in front of the hub: the app layer alone
    /// names the deployment.
    Relayed,
}

/// The hub's end of a live tunnel.
pub struct HubTunnel {
    conn: quinn::Connection,
    session: Arc<std::sync::Mutex<Session>>,
    peer: Peer,
    notifications: Mutex<mpsc::Receiver<Bytes>>,
    controls: Mutex<mpsc::Receiver<Bytes>>,
    /// Our half of the control stream, open for the tunnel's life.
    control: ControlSender,
}

/// The SPIFFE ID in the TLS client certificate of `conn`.
fn tls_identity(conn: &quinn::Connection) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let leaf = chain.first()?;
    crate::svid::check_leaf(leaf).ok().map(|l| l.id.to_string())
}

impl HubTunnel {
    /// Completes TLS (the config's client verifier judges the SVID) and the
    /// app-layer handshake on an incoming connection.
    pub async fn accept(
        incoming: quinn::Incoming,
        config: &HubConfig,
        binding: TlsBinding,
    ) -> Result<HubTunnel, NetError> {
        let conn = incoming.await?;
        Self::establish(conn, config, binding).await
    }

    /// Runs the app-layer handshake on a connection whose TLS handshake is
    /// complete (for a caller that looks at the ALPN first). With
    /// [`TlsBinding::Strict`] a connection without a TLS client certificate
    /// is refused.
    pub async fn establish(
        conn: quinn::Connection,
        config: &HubConfig,
        binding: TlsBinding,
    ) -> Result<HubTunnel, NetError> {
        within_deadline(&conn, Self::handshake(&conn, config, binding)).await
    }

    async fn handshake(
        conn: &quinn::Connection,
        config: &HubConfig,
        binding: TlsBinding,
    ) -> Result<HubTunnel, NetError> {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let ch = read_handshake_frame(&mut recv).await?;
        let (state, sh) = match handshake::hub_read_client_hello(
            config,
            &ch,
            Entropy::from_system()?,
            UnixTime::now(),
        ) {
            Ok(r) => r,
            Err(e) => {
                send_alert(send, e.alert()).await;
                return Err(e.into());
            }
        };
        if binding == TlsBinding::Strict {
            let tls = tls_identity(conn).unwrap_or_default();
            let app = state.claimed_peer().identity.clone();
            if tls != app {
                let e = NetError::IdentityMismatch { tls, app };
                send_alert(send, handshake::alert(e.reason(), &e.to_string())).await;
                return Err(e);
            }
        }
        send.write_all(&sh).await?;
        let cf = read_handshake_frame(&mut recv).await?;
        let (mut session, peer, sf) = match state.read_client_finish(&cf) {
            Ok(r) => r,
            Err(e) => {
                send_alert(send, e.alert()).await;
                return Err(e.into());
            }
        };
        send.write_all(&sf).await?;
        let control = Arc::new(std::sync::Mutex::new(session.control()?));
        let session = Arc::new(std::sync::Mutex::new(session));
        let (tx, rx) = mpsc::channel(256);
        let (controls_tx, controls_rx) = mpsc::channel(4);
        spawn_control_reader(recv, control.clone(), conn.clone(), Some(tx), controls_tx);
        // Proven: replies may now flow at full speed.
        authenticated(conn);
        Ok(HubTunnel {
            conn: conn.clone(),
            session,
            peer,
            notifications: Mutex::new(rx),
            controls: Mutex::new(controls_rx),
            control: ControlSender {
                send: Mutex::new((send, control)),
            },
        })
    }

    /// The client, as the handshake proved it.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The QUIC connection (close reasons, remote address, statistics).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The next server-initiated message from the adapter (e.g.
    /// `notifications/tools/list_changed`); `None` once the tunnel closed.
    pub async fn next_notification(&self) -> Option<Bytes> {
        self.notifications.lock().await.recv().await
    }

    /// The client's next control message (a renewal request); `None` once
    /// the tunnel closed.
    pub async fn next_control(&self) -> Option<Result<Control, NetError>> {
        let bytes = self.controls.lock().await.recv().await?;
        Some(enrol::decode::<Control>(&bytes).map_err(NetError::from))
    }

    /// Sends a control message (an answer to `renew`) on the control stream.
    pub async fn send_control(&self, message: &Control) -> Result<(), NetError> {
        let body = enrol::encode(message)?;
        self.control.send(FrameType::Control, &body).await
    }

    /// Checks a goodbye from the client ([`Control::Goodbye`]): signed by
    /// the key of the session's leaf certificate for the session's SPIFFE
    /// ID, at a time within [`crate::receipt::GOODBYE_MAX_SKEW`] of ours.
    pub fn verify_goodbye(&self, at: i64, signature: &str) -> Result<(), NetError> {
        let leaf = self
            .peer
            .chain
            .first()
            .ok_or_else(|| NetError::Goodbye("the session has no client certificate".into()))?;
        crate::receipt::verify_goodbye(leaf, &self.peer.identity, at, signature, unix_now())
            .map_err(|e| NetError::Goodbye(e.to_string()))
    }

    /// Sends one JSON-RPC message on its own stream. The receiver yields the
    /// client's answers (responses and notifications about the request,
    /// each with its verified receipt, or a refusal) and ends with the
    /// stream; an error ends it early. A reply whose receipt is missing,
    /// malformed or does not verify with the session's leaf certificate is
    /// never handed out: the receiver yields [`NetError::Receipt`] instead.
    pub async fn request(
        &self,
        route: Option<&str>,
        message: &[u8],
    ) -> Result<mpsc::Receiver<Result<Reply, NetError>>, NetError> {
        let leaf =
            self.peer.chain.first().cloned().ok_or_else(|| {
                NetError::Protocol("the session has no client certificate".into())
            })?;
        let mut check = ReplyCheck::new(leaf, message);
        let identity = self.peer.identity.clone();
        let mut channel = lock(&self.session).open_stream();
        let (mut send, mut recv) = self.conn.open_bi().await?;
        let mut out = channel.header().to_vec();
        if let Some(route) = route {
            out.extend(channel.seal(FrameType::Route, route.as_bytes())?);
        }
        out.extend(channel.seal(FrameType::Message, message)?);
        out.extend(channel.seal_close()?);
        send.write_all(&out).await?;
        let _ = send.finish();
        let (tx, rx) = mpsc::channel(16);
        let conn = self.conn.clone();
        tokio::spawn(async move {
            let refused = |e: ReceiptError| {
                tracing::warn!(spiffe_id = %identity, error = %e, "reply refused");
                match e {
                    ReceiptError::UnexpectedFrame(_) => NetError::Protocol(e.to_string()),
                    e => NetError::Receipt(e.to_string()),
                }
            };
            loop {
                match read_frames(&mut recv, &mut channel).await {
                    Ok(Some(frames)) => {
                        for f in frames {
                            let reply = match check.push(f) {
                                Ok(None) => continue,
                                Ok(Some(reply)) => Ok(reply),
                                Err(e) => Err(refused(e)),
                            };
                            // After a refusal the stream is not read on.
                            let stop = reply.is_err();
                            if tx.send(reply).await.is_err() || stop {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        if let Err(e) = check.finish() {
                            let _ = tx.send(Err(refused(e))).await;
                        }
                        return;
                    }
                    Err(e) => {
                        if matches!(e, NetError::Stream(_)) {
                            // A refused record means tampering in transit.
                            conn.close(close_code::PROTOCOL.into(), b"reply stream refused");
                        }
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Closes the tunnel.
    pub fn close(&self, reason: &str) {
        self.conn.close(close_code::DONE.into(), reason.as_bytes());
    }
}

// -------------------------------------------------------------- enrolment

/// The QUIC config of an enrolment connection: TLS 1.3, ALPN
/// [`ENROL_ALPN`], no client certificate (the client has none yet), the
/// hub judged by `tls_verifier`.
pub fn enrol_client_config(
    tls_verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<quinn::ClientConfig, NetError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(tls_verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ENROL_ALPN.to_vec()];
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// Enrols: dials the hub with ALPN [`ENROL_ALPN`], sends the token and
/// CSR, and returns the hub's answer (an SVID or a refusal).
pub async fn enrol(
    endpoint: &quinn::Endpoint,
    quic: quinn::ClientConfig,
    addr: SocketAddr,
    hub_name: &str,
    request: &EnrolRequest,
) -> Result<EnrolResponse, NetError> {
    let conn = endpoint.connect_with(quic, addr, hub_name)?.await?;
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let body = enrol::encode(request)?;
        let frame = crate::frame::encode(FrameType::Message, &body, MAX_HANDSHAKE)
            .map_err(|e| HandshakeError::Decode(e.into()))?;
        send.write_all(&frame).await?;
        let _ = send.finish();
        let answer = read_handshake_frame(&mut recv).await?;
        Ok::<_, NetError>(enrol::decode::<EnrolResponse>(&answer.body)?)
    };
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| NetError::Timeout("enrolment"));
    conn.close(close_code::DONE.into(), b"enrolled");
    answer?
}

/// The hub's side of an enrolment connection: the request and where the
/// answer goes.
pub struct EnrolExchange {
    conn: quinn::Connection,
    send: quinn::SendStream,
}

impl EnrolExchange {
    /// Reads the client's one request (within [`HANDSHAKE_TIMEOUT`]).
    pub async fn read(conn: quinn::Connection) -> Result<(EnrolRequest, EnrolExchange), NetError> {
        let read = async {
            let (send, mut recv) = conn.accept_bi().await?;
            let frame = read_handshake_frame(&mut recv).await?;
            Ok::<_, NetError>((enrol::decode::<EnrolRequest>(&frame.body)?, send))
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read).await {
            Ok(Ok((request, send))) => Ok((request, EnrolExchange { conn, send })),
            Ok(Err(e)) => {
                conn.close(close_code::PROTOCOL.into(), e.reason().as_bytes());
                Err(e)
            }
            Err(_) => {
                conn.close(close_code::HANDSHAKE.into(), b"timeout");
                Err(NetError::Timeout("enrolment request"))
            }
        }
    }

    /// Sends the answer and lets the client close the connection.
    pub async fn answer(mut self, response: &EnrolResponse) -> Result<(), NetError> {
        let body = enrol::encode(response)?;
        let frame = crate::frame::encode(FrameType::Message, &body, MAX_HANDSHAKE)
            .map_err(|e| HandshakeError::Decode(e.into()))?;
        self.send.write_all(&frame).await?;
        let _ = self.send.finish();
        // The client closes once it has read the answer.
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.conn.closed()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport_close(code: quinn::TransportErrorCode) -> quinn::ConnectionError {
        quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: code,
            frame_type: None,
            reason: Bytes::from_static(b"peer refused"),
        })
    }

    fn application_close(code: u32) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(code),
            reason: Bytes::from_static(b"revoked by the operator\n"),
        })
    }

    #[test]
    fn only_the_peers_revoked_close_and_certificate_revoked_alert_mean_revoked() {
        // certificate_revoked (44) travels as QUIC crypto error 0x100 + 44.
        assert_eq!(u64::from(certificate_revoked_code()), 0x12c);
        let tls = revoked_by_peer(&transport_close(certificate_revoked_code()));
        assert!(tls.is_some_and(|how| how.contains("certificate_revoked")));
        let app = revoked_by_peer(&application_close(close_code::REVOKED));
        assert_eq!(
            app.as_deref(),
            Some("the hub closed the tunnel as revoked (revoked by the operator)")
        );

        // Every other TLS alert and close code is an ordinary failure.
        for alert in [
            rustls::AlertDescription::CertificateUnknown,
            rustls::AlertDescription::CertificateExpired,
            rustls::AlertDescription::UnknownCA,
            rustls::AlertDescription::BadCertificate,
        ] {
            let e = transport_close(quinn::TransportErrorCode::crypto(u8::from(alert)));
            assert_eq!(revoked_by_peer(&e), None, "{alert:?}");
        }
        for code in [
            close_code::DONE,
            close_code::HANDSHAKE,
            close_code::PROTOCOL,
            close_code::IDENTITY,
            9,
        ] {
            assert_eq!(revoked_by_peer(&application_close(code)), None, "{code}");
        }
        for e in [
            quinn::ConnectionError::TimedOut,
            quinn::ConnectionError::LocallyClosed,
            quinn::ConnectionError::Reset,
        ] {
            assert_eq!(revoked_by_peer(&e), None, "{e}");
        }
    }
}
