//! The client's judge of the hub: the hub's chain must lead to the hub CA
//! the client was installed with (`--hub-ca`) and name the host it dialled.
//! One [`HubCertVerifier`] serves the TLS layer ([`HubCertVerifier::tls`])
//! and the app-layer handshake ([`PeerVerifier`]), so both layers hold the
//! hub to one rule.

use std::sync::Arc;

use ewii_wire::handshake::{PeerVerifier, Refusal};
use ewii_wire::pki::{Certificate, UnixTime};
use rustls::pki_types::CertificateDer;

use crate::keys::{rustls_chain, rustls_time};

/// The client's judge of the hub, in TLS and in the app-layer handshake.
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
    fn verify_peer(&self, chain: &[Certificate], now: UnixTime) -> Result<String, Refusal> {
        use rustls::client::danger::ServerCertVerifier;
        let (leaf, intermediates) = rustls_chain(chain, "hub")?;
        self.tls
            .verify_server_cert(&leaf, &intermediates, &self.name, &[], rustls_time(now))
            .map_err(|e| Refusal {
                reason: certificate_reason(&e),
                detail: format!("hub certificate: {e}"),
            })?;
        Ok(self.name.to_str().into_owned())
    }
}
