//! Certificates and keys as the I/O side holds them: PEM files and text,
//! rustls' key types, and the bridge to `ewii-wire`'s [`Signer`], clock and
//! randomness.
//!
//! - [`KeyMaterial`]: a certificate chain and its private key, from PEM.
//! - [`RustlsSigner`]: a rustls signing key as the handshake's
//!   [`Signer`], under a scheme of [`SCHEMES`] the key supports.
//! - [`entropy`], [`now`]: the randomness and the time the sans-IO
//!   handshake is handed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ewii_wire::handshake::{Credentials, Entropy, Refusal};
use ewii_wire::pki::{Certificate, SCHEMES, SignError, SignatureScheme, Signer, UnixTime};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::NetError;

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
        let chain = read_certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| NetError::Credentials(format!("{}: {e}", key.display())))?;
        let m = KeyMaterial { chain, key };
        m.credentials()?;
        Ok(m)
    }

    /// A chain (leaf first) and a key from PEM text.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<KeyMaterial, NetError> {
        let chain = certificates_from_pem(chain_pem, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| NetError::Credentials(format!("private key: {e}")))?;
        let m = KeyMaterial { chain, key };
        m.credentials()?;
        Ok(m)
    }

    /// The chain and a signer for the app-layer handshake, receipts and
    /// the goodbye.
    pub fn credentials(&self) -> Result<Credentials, NetError> {
        Ok(Credentials {
            chain: self.chain.iter().map(wire_certificate).collect(),
            signer: Arc::new(RustlsSigner::new(&self.key)?),
        })
    }
}

/// A certificate as the wire crate takes it.
pub fn wire_certificate(cert: &CertificateDer<'_>) -> Certificate {
    Certificate::from_der(cert.as_ref())
}

/// A rustls signing key (the ring provider's) as the handshake's
/// [`Signer`]: it signs under the scheme rustls picks among [`SCHEMES`]
/// for the key's type (ECDSA and Ed25519 have one each; RSA keys sign with
/// RSA-PSS SHA-512).
#[derive(Debug, Clone)]
pub struct RustlsSigner {
    signer: Arc<dyn rustls::sign::Signer>,
    scheme: SignatureScheme,
}

impl RustlsSigner {
    /// The signer of `key` (PKCS#8, SEC1 or PKCS#1). Fails for a key type
    /// ring cannot sign with, or one supporting none of [`SCHEMES`].
    pub fn new(key: &PrivateKeyDer<'_>) -> Result<RustlsSigner, NetError> {
        let key = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| NetError::Credentials(format!("unusable private key: {e}")))?;
        let offered: Vec<rustls::SignatureScheme> = SCHEMES
            .iter()
            .map(|s| rustls::SignatureScheme::from(s.code()))
            .collect();
        let signer = key.choose_scheme(&offered).ok_or_else(|| {
            NetError::Credentials(
                "the private key supports none of the allowed signature schemes".into(),
            )
        })?;
        let scheme = SignatureScheme::from_code(u16::from(signer.scheme())).ok_or_else(|| {
            NetError::Credentials("the private key chose a scheme that is not allowed".into())
        })?;
        Ok(RustlsSigner {
            signer: Arc::from(signer),
            scheme,
        })
    }
}

impl Signer for RustlsSigner {
    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signer
            .sign(message)
            .map_err(|e| SignError(e.to_string()))
    }
}

/// Fresh randomness from the operating system for one handshake.
pub fn entropy() -> Result<Entropy, NetError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut e = Entropy {
        random: [0; 32],
        x25519: [0; 32],
    };
    rng.fill(&mut e.random)
        .and_then(|()| rng.fill(&mut e.x25519))
        .map_err(|_| NetError::Randomness)?;
    Ok(e)
}

/// Now, as the wire crate takes it.
pub fn now() -> UnixTime {
    UnixTime::from_secs(rustls::pki_types::UnixTime::now().as_secs())
}

/// Now, Unix seconds (goodbyes).
pub(crate) fn unix_now() -> i64 {
    i64::try_from(now().as_secs()).unwrap_or(i64::MAX)
}

/// A handshake chain as rustls takes it: the leaf and the intermediates;
/// an empty chain is refused (`who` sent no certificate).
pub(crate) fn rustls_chain<'a>(
    chain: &'a [Certificate],
    who: &str,
) -> Result<(CertificateDer<'a>, Vec<CertificateDer<'a>>), Refusal> {
    let (leaf, intermediates) = chain.split_first().ok_or_else(|| Refusal {
        reason: "no_certificate",
        detail: format!("the {who} sent no certificate"),
    })?;
    Ok((
        CertificateDer::from(leaf.as_der()),
        intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_der()))
            .collect(),
    ))
}

/// A wire-crate time as rustls and webpki take it.
pub(crate) fn rustls_time(t: UnixTime) -> rustls::pki_types::UnixTime {
    rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(t.as_secs()))
}
