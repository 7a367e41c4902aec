//! The hub's judge of client certificates: SPIFFE X509-SVIDs verified
//! against the trust bundle of the workspace their SPIFFE ID names.
//!
//! 1. [`check_leaf`] (sans I/O, in `ewii-wire`) applies the X509-SVID leaf
//!    rules.
//! 2. [`SvidVerifier::verify`] asks a [`TrustSource`] for the trust bundle of
//!    the workspace the SPIFFE ID belongs to, verifies the chain to it with
//!    webpki (RFC 5280 path validation, validity period, `clientAuth`), and
//!    checks the serial against the revocation list.
//! 3. [`SvidVerifier`] also implements rustls' [`ClientCertVerifier`], so
//!    the hub's TLS layer uses it as is, and the handshake's
//!    [`PeerVerifier`], so the app layer holds clients to the same rules.
//!
//! Every refusal has a precise [`SvidError`] with a stable machine-readable
//! [`SvidError::reason`]; the verifier counts refusals by reason
//! ([`SvidVerifier::refusals`]) and logs each one once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ewii_wire::handshake::{PeerVerifier, Refusal};
use ewii_wire::pki::Certificate;
use ewii_wire::svid::{SpiffeId, SvidError, check_leaf, claimed_id};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::keys::{rustls_chain, rustls_time};

/// The URI scheme and separator every SPIFFE ID starts with.
const SPIFFE_SCHEME: &str = "spiffe://";

/// Maps a webpki path-validation error onto the refusal it means here.
fn from_webpki(err: webpki::Error) -> SvidError {
    use webpki::Error as W;
    match err {
        // A wrong signature from a CA with the right name is, for the
        // operator, the same thing as an unknown CA: the chain does not
        // verify to the bundle.
        W::UnknownIssuer | W::InvalidSignatureForPublicKey => SvidError::UntrustedIssuer,
        W::CertExpired { .. } => SvidError::Expired,
        W::CertNotValidYet { .. } => SvidError::NotYetValid,
        W::CaUsedAsEndEntity => SvidError::CaAsLeaf,
        W::RequiredEkuNotFoundContext(_) => SvidError::EkuWithoutClientAuth,
        W::BadDer
        | W::BadDerTime
        | W::TrailingData(_)
        | W::UnsupportedCertVersion
        | W::MalformedExtensions
        | W::ExtensionValueInvalid
        | W::InvalidSerialNumber
        | W::InvalidCertValidity => SvidError::Malformed(err.to_string()),
        other => SvidError::InvalidChain(other.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Trust bundles and trust sources
// ---------------------------------------------------------------------------

/// The CA certificates trusted to issue SVIDs for one workspace
/// (X509-SVID §5.1: the "CA bundle").
#[derive(Clone, Debug)]
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    /// Reads every `CERTIFICATE` block of a PEM document (other blocks, such
    /// as keys, are skipped).
    pub fn from_pem(pem: &str) -> Result<TrustBundle, SvidError> {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SvidError::Malformed(format!("trust bundle PEM: {e}")))?;
        TrustBundle::from_der(certs)
    }

    /// Builds a bundle from DER certificates. Each must parse as a trust
    /// anchor; an empty list is refused ([`SvidError::EmptyBundle`]) rather
    /// than silently trusting nothing.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<TrustBundle, SvidError> {
        if certs.is_empty() {
            return Err(SvidError::EmptyBundle);
        }
        let anchors = certs
            .iter()
            .enumerate()
            .map(|(i, cert)| {
                webpki::anchor_from_trusted_cert(cert)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| {
                        SvidError::Malformed(format!("trust bundle certificate #{}: {e}", i + 1))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustBundle { certs, anchors })
    }

    /// The trust anchors, as webpki wants them.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The CA certificates, in the order given.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

/// Maps a SPIFFE ID to its workspace's trust bundle and checks revocation.
///
/// The hub implements it over its store; tests use [`InMemoryTrust`].
/// Called during TLS handshakes, so implementations should answer from
/// memory and not block.
pub trait TrustSource: Send + Sync + fmt::Debug {
    /// The trust bundle that may issue SVIDs for `id`, if any.
    fn bundle_for(&self, id: &SpiffeId) -> Option<Arc<TrustBundle>>;
    /// Whether the SVID of `id` with this serial (in the form of
    /// [`ewii_wire::svid::SvidLeaf::serial`]) has been revoked.
    fn is_revoked(&self, id: &SpiffeId, serial: &str) -> bool;
}

/// An in-memory [`TrustSource`]: bundles registered under SPIFFE ID
/// prefixes, and a set of revoked serials.
///
/// A prefix such as `spiffe://example.org` or `spiffe://example.org/ws/acme`
/// covers the IDs under it on path-segment boundaries (`/ws/acme` covers
/// `/ws/acme/client`, not `/ws/acme2`); the longest matching prefix wins.
#[derive(Debug, Default)]
pub struct InMemoryTrust {
    bundles: Vec<(SpiffeId, Arc<TrustBundle>)>,
    revoked: RwLock<HashSet<String>>,
}

impl InMemoryTrust {
    /// No bundles, nothing revoked.
    pub fn new() -> InMemoryTrust {
        InMemoryTrust::default()
    }

    /// Registers `bundle` for the IDs under `prefix` (replacing any bundle
    /// registered for the same prefix).
    ///
    /// An invalid prefix is logged and ignored, so IDs under it are refused
    /// with [`SvidError::UnknownTrustDomain`]; use
    /// [`InMemoryTrust::try_with_bundle`] to get the error instead.
    pub fn with_bundle(self, prefix: &str, bundle: TrustBundle) -> InMemoryTrust {
        match Self::parse_prefix(prefix) {
            Ok(prefix) => self.insert(prefix, bundle),
            Err(err) => {
                tracing::warn!(prefix = ?prefix, "trust bundle ignored: {err}");
                self
            }
        }
    }

    /// Like [`InMemoryTrust::with_bundle`], but an invalid prefix is an
    /// error.
    pub fn try_with_bundle(
        self,
        prefix: &str,
        bundle: TrustBundle,
    ) -> Result<InMemoryTrust, SvidError> {
        Ok(self.insert(Self::parse_prefix(prefix)?, bundle))
    }

    /// Revokes a serial number (in the form of [`ewii_wire::svid::SvidLeaf::serial`]; case
    /// is ignored).
    pub fn revoke(&self, serial: &str) {
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(serial.to_ascii_lowercase());
    }

    fn parse_prefix(prefix: &str) -> Result<SpiffeId, SvidError> {
        // Tolerate one trailing `/`: "everything under example.org/ws/".
        let trimmed = match prefix.strip_suffix('/') {
            Some(p) if p.len() > SPIFFE_SCHEME.len() => p,
            _ => prefix,
        };
        SpiffeId::parse(trimmed)
    }

    fn insert(mut self, prefix: SpiffeId, bundle: TrustBundle) -> InMemoryTrust {
        self.bundles.retain(|(p, _)| *p != prefix);
        self.bundles.push((prefix, Arc::new(bundle)));
        self
    }
}

impl TrustSource for InMemoryTrust {
    fn bundle_for(&self, id: &SpiffeId) -> Option<Arc<TrustBundle>> {
        self.bundles
            .iter()
            .filter(|(prefix, _)| prefix.is_prefix_of(id))
            // All matches are prefixes of the same ID: the longest path is
            // the most specific.
            .max_by_key(|(prefix, _)| prefix.path().len())
            .map(|(_, bundle)| Arc::clone(bundle))
    }

    fn is_revoked(&self, _id: &SpiffeId, serial: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&serial.to_ascii_lowercase())
    }
}

// ---------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------

/// A client SVID that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSvid {
    /// The client's SPIFFE ID.
    pub id: SpiffeId,
    /// The leaf's serial number, in the form of [`ewii_wire::svid::SvidLeaf::serial`].
    pub serial: String,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Verifies client X509-SVIDs against per-workspace trust bundles, counts
/// refusals by reason, and serves as the hub's rustls
/// [`ClientCertVerifier`] (TLS 1.3 only).
#[derive(Debug)]
pub struct SvidVerifier {
    trust: Arc<dyn TrustSource>,
    algorithms: WebPkiSupportedAlgorithms,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl SvidVerifier {
    /// A verifier over `trust`, using the ring provider's signature
    /// algorithms.
    pub fn new(trust: Arc<dyn TrustSource>) -> SvidVerifier {
        SvidVerifier {
            trust,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            refusals: Mutex::new(BTreeMap::new()),
        }
    }

    /// Verifies a client's certificate chain at time `now`: the leaf rules
    /// ([`check_leaf`]), the trust bundle of its SPIFFE ID, RFC 5280 path
    /// validation to that bundle for `clientAuth` (X509-SVID §5.1), then
    /// revocation.
    ///
    /// Each refusal is counted under its [`SvidError::reason`] and logged
    /// once at `warn`.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<VerifiedSvid, SvidError> {
        let result = self.verify_inner(end_entity, intermediates, now);
        if let Err(err) = &result {
            self.refused(end_entity, err);
        }
        result
    }

    fn verify_inner(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<VerifiedSvid, SvidError> {
        let leaf = check_leaf(end_entity)?;

        let bundle = self
            .trust
            .bundle_for(&leaf.id)
            .ok_or_else(|| SvidError::UnknownTrustDomain(leaf.id.to_string()))?;

        // X509-SVID §5.1: standard RFC 5280 path validation to the bundle.
        // No CRLs: revocation is the trust source's serial list below.
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(from_webpki)?;
        cert.verify_for_usage(
            self.algorithms.all,
            bundle.anchors(),
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(from_webpki)?;

        if self.trust.is_revoked(&leaf.id, &leaf.serial) {
            return Err(SvidError::Revoked {
                id: leaf.id,
                serial: leaf.serial,
            });
        }

        Ok(VerifiedSvid {
            id: leaf.id,
            serial: leaf.serial,
            not_after: leaf.not_after,
        })
    }

    fn refused(&self, end_entity: &CertificateDer<'_>, err: &SvidError) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(err.reason())
            .or_insert(0) += 1;
        let claimed = claimed_id(end_entity);
        let spiffe_id = claimed.as_deref().unwrap_or("-");
        tracing::warn!(
            reason = err.reason(),
            spiffe_id = ?spiffe_id,
            "client SVID refused: {err}"
        );
    }

    /// Refusals so far, by [`SvidError::reason`] (the hub's "handshake
    /// failures by reason" metric). Reasons never seen are absent.
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientCertVerifier for SvidVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Every tunnel client authenticates with its SVID.
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Bundles are per workspace and the ID is only known from the
        // certificate, so there is no single list of CAs to hint.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|err| match err {
                // rustls sends `certificate_revoked` for this one (every
                // `Other` becomes `certificate_unknown`), which tells the
                // client to stop retrying with this SVID.
                SvidError::Revoked { .. } => {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
                }
                err => rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(err)),
                )),
            })
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not allowed: the Ewii tunnel requires TLS 1.3".to_owned(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The [`SvidError`] inside a rustls error produced by
/// [`SvidVerifier`]'s `verify_client_cert`, if it is one. A revoked SVID is
/// `CertificateError::Revoked` (so the client gets the
/// `certificate_revoked` alert) and carries none: see [`reason_of`].
pub fn svid_error(err: &rustls::Error) -> Option<&SvidError> {
    let other = match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => other,
        rustls::Error::Other(other) => other,
        _ => return None,
    };
    other.0.downcast_ref::<SvidError>()
}

/// The [`SvidError::reason`] inside a rustls error produced by
/// [`SvidVerifier`]'s `verify_client_cert`, if it is one.
pub fn reason_of(err: &rustls::Error) -> Option<&'static str> {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => Some("revoked"),
        err => svid_error(err).map(SvidError::reason),
    }
}

/// The hub judges clients in the app-layer handshake with the same
/// verifier as its TLS layer: the trust bundle of the workspace named in
/// the SPIFFE ID, the X509-SVID rules, revocation.
impl PeerVerifier for SvidVerifier {
    fn verify_peer(
        &self,
        chain: &[Certificate],
        now: ewii_wire::pki::UnixTime,
    ) -> Result<String, Refusal> {
        let (leaf, intermediates) = rustls_chain(chain, "client")?;
        self.verify(&leaf, &intermediates, rustls_time(now))
            .map(|v| v.id.to_string())
            .map_err(|e| Refusal {
                reason: e.reason(),
                detail: e.to_string(),
            })
    }
}
