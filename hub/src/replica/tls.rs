//! The replica channel's TLS: QUIC with mutual TLS 1.3 under the replicas'
//! internal CA ([`ReplicaCa`]), the ring provider (the tree's one crypto
//! provider), no 0-RTT, ALPN [`REPLICA_ALPN`].
//!
//! Both ends present a certificate from that CA and accept only a peer
//! whose chain ends at it: a workspace SVID, a hub TLS certificate or a
//! certificate from any other CA fails the handshake, before a single
//! stream is accepted. The dialling side also checks that the peer is the
//! replica it meant to reach ([`peer_replica_id`]), so a reused address
//! cannot take another replica's calls.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Error;
use crate::state::ca::{REPLICA_SERVER_NAME, ReplicaCa, ReplicaCert, replica_uri};

/// The ALPN protocol id of the replica channel.
pub const REPLICA_ALPN: &[u8] = b"ewii-replica/1";
/// Keep-alive on an idle replica link.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Silence after which a replica link counts as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most calls one peer may have in flight on a link.
pub const MAX_STREAMS: u32 = 4096;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::Serve(format!("the replica channel's {what}: {e}"))
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(t)
}

/// The QUIC configurations of one replica's channel, both directions.
#[derive(Clone)]
pub struct ChannelTls {
    /// What it serves with (client certificate required).
    pub server: quinn::ServerConfig,
    /// What it dials with.
    pub client: quinn::ClientConfig,
}

impl std::fmt::Debug for ChannelTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelTls").finish_non_exhaustive()
    }
}

impl ChannelTls {
    /// The configurations for a replica holding `cert`, trusting only
    /// `ca` (the replicas' CA certificate) for its peers.
    pub fn new(ca: &CertificateDer<'static>, cert: &ReplicaCert) -> Result<ChannelTls, Error> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).map_err(|e| tls_error("CA")(&e))?;
        let roots = Arc::new(roots);
        let chain = vec![cert.cert.clone()];
        let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8.to_vec()));

        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error("client verifier")(&e))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("server")(&e))?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain.clone(), key())
            .map_err(|e| tls_error("server certificate")(&e))?;
        server.alpn_protocols = vec![REPLICA_ALPN.to_vec()];
        server.max_early_data_size = 0;
        let server = QuicServerConfig::try_from(server).map_err(|e| tls_error("server")(&e))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(transport());

        let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| tls_error("server verifier")(&e))?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("client")(&e))?
            .with_webpki_verifier(servers)
            .with_client_auth_cert(chain, key())
            .map_err(|e| tls_error("client certificate")(&e))?;
        client.alpn_protocols = vec![REPLICA_ALPN.to_vec()];
        client.enable_early_data = false;
        let client = QuicClientConfig::try_from(client).map_err(|e| tls_error("client")(&e))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(transport());
        Ok(ChannelTls { server, client })
    }

    /// The configurations of replica `id`: a fresh certificate from `ca`.
    pub fn issue(ca: &ReplicaCa, id: &str) -> Result<ChannelTls, Error> {
        let cert = ca.issue_replica_cert(id, std::time::SystemTime::now())?;
        ChannelTls::new(ca.certificate(), &cert)
    }
}

/// The name a replica dials its peers by.
pub fn server_name() -> &'static str {
    REPLICA_SERVER_NAME
}

/// The replica id in the certificate `connection`'s peer presented (its
/// URI SAN [`replica_uri`]), if it has exactly one such name.
pub fn peer_replica_id(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let leaf = chain.first()?;
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let prefix = replica_uri("");
    let mut ids = cert
        .subject_alternative_name()
        .ok()??
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => uri.strip_prefix(prefix.as_str()).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>();
    if ids.len() == 1 { ids.pop() } else { None }
}
