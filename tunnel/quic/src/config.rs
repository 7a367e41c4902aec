//! The one place that builds the rustls and quinn configurations.
//!
//! - TLS 1.3 only, the ring provider (the one crypto provider of the tree),
//!   no 0-RTT (0-RTT data can be replayed by anyone on the path).
//! - ALPN [`ALPN`] for tunnels, [`ENROL_ALPN`] for enrolment.
//! - Keep-alive every [`KEEP_ALIVE`], idle timeout [`IDLE_TIMEOUT`], so a
//!   lost link is noticed in under 3 s.
//! - The hub's side is bounded before anyone is authenticated
//!   ([`hub_transport`]): one peer-opened stream, a connection-wide receive
//!   window of two handshake frames until the app-layer handshake proves
//!   the peer (`authenticated` widens it), no datagrams, a bounded queue
//!   of connection attempts.

use std::sync::Arc;
use std::time::Duration;

use ewii_wire::frame::{FRAME_HEADER_LEN, MAX_HANDSHAKE};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, UnixTime};

pub use ewii_wire::enrol::ENROL_ALPN;

use crate::{HubCertVerifier, KeyMaterial, NetError};

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
/// it (1 MiB): a reply of up to [`ewii_wire::frame::MAX_MESSAGE`] streams
/// through it at 1 MiB per round trip.
pub const STREAM_RECEIVE_WINDOW: u32 = 1 << 20;
/// What a connection may have in flight towards the hub, all streams
/// together, until its app-layer handshake completes: two handshake frames
/// (the largest unauthenticated message is one [`MAX_HANDSHAKE`] frame).
/// This is the bound on what an unauthenticated peer makes the hub buffer.
pub const PRE_AUTH_RECEIVE_WINDOW: u32 = 2 * (MAX_HANDSHAKE + FRAME_HEADER_LEN) as u32;
/// The connection-wide window once the peer is authenticated (32 MiB):
/// many concurrent replies at full stream speed.
pub const RECEIVE_WINDOW: u32 = 32 << 20;
/// Most connection attempts queued before the hub's accept loop takes them.
pub const MAX_INCOMING: usize = 4096;

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
/// datagrams, no unidirectional streams. `authenticated` widens the
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
pub(crate) fn authenticated(conn: &quinn::Connection) {
    conn.set_receive_window(quinn::VarInt::from_u32(RECEIVE_WINDOW));
}

/// A client's QUIC and TLS configuration: TLS 1.3 only, no early data,
/// the hub judged by a [`HubCertVerifier`], [`transport`] settings.
#[derive(Clone)]
pub struct ClientQuicConfig(quinn::ClientConfig);

impl std::fmt::Debug for ClientQuicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQuicConfig").finish_non_exhaustive()
    }
}

impl ClientQuicConfig {
    /// A tunnel's: ALPN [`ALPN`], the SVID of `keys` as client certificate,
    /// `hub` judging the hub's TLS certificate.
    pub fn tunnel(keys: &KeyMaterial, hub: &HubCertVerifier) -> Result<Self, NetError> {
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(hub.tls())
            .with_client_auth_cert(keys.chain.clone(), keys.key.clone_key())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        Self::finish(tls, ALPN)
    }

    /// An enrolment connection's: ALPN [`ENROL_ALPN`], no client
    /// certificate (the client has none yet), `hub` judging the hub.
    pub fn enrolment(hub: &HubCertVerifier) -> Result<Self, NetError> {
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(hub.tls())
            .with_no_client_auth();
        Self::finish(tls, ENROL_ALPN)
    }

    fn finish(mut tls: rustls::ClientConfig, alpn: &[u8]) -> Result<Self, NetError> {
        tls.alpn_protocols = vec![alpn.to_vec()];
        // 0-RTT data can be replayed by anyone on the path.
        tls.enable_early_data = false;
        let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport());
        Ok(ClientQuicConfig(config))
    }

    /// The quinn configuration, for a caller dialling with its own quinn
    /// endpoint (tests that speak raw QUIC to a hub).
    pub fn into_quinn(self) -> quinn::ClientConfig {
        self.0
    }

    pub(crate) fn quinn(&self) -> quinn::ClientConfig {
        self.0.clone()
    }
}

/// The hub's QUIC config: TLS 1.3 only, ALPN `ewii/1`, no 0-RTT, client
/// certificates mandatory and judged by `client_verifier`. With
/// `enrolment` it also accepts enrolment connections (ALPN
/// [`ENROL_ALPN`]) on the same port: those carry no client certificate, so
/// TLS client authentication becomes optional; a certificate that is
/// presented is still judged by `client_verifier`, and a tunnel connection
/// (ALPN `ewii/1`) without one is refused by the app-layer handshake
/// ([`crate::TlsBinding::Strict`]). The hub gets it through
/// [`crate::HubListener`]; it is public for tests and tools that run their
/// own quinn server (a relay in front of a hub).
pub fn hub_config(
    keys: &KeyMaterial,
    client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    enrolment: bool,
) -> Result<quinn::ServerConfig, NetError> {
    if enrolment {
        server_config(
            keys,
            Arc::new(OptionalClientAuth(client_verifier)),
            vec![ALPN.to_vec(), ENROL_ALPN.to_vec()],
        )
    } else {
        server_config(keys, client_verifier, vec![ALPN.to_vec()])
    }
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
