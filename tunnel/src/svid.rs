//! SPIFFE X509-SVID validation of the tunnel's client certificates.
//!
//! The customer's client authenticates to the hub with an X.509 SPIFFE
//! Verifiable Identity Document (X509-SVID) during the TLS 1.3 handshake.
//! This module decides whether such a certificate is acceptable:
//!
//! 1. [`check_leaf`] applies the pure X509-SVID leaf rules (one URI SAN
//!    holding a well-formed `spiffe://` ID with a path, not a CA, key usage
//!    critical with `digitalSignature` and without `keyCertSign`/`cRLSign`,
//!    `clientAuth` if an EKU is present).
//! 2. [`SvidVerifier::verify`] asks a [`TrustSource`] for the trust bundle of
//!    the workspace the SPIFFE ID belongs to, verifies the chain to it with
//!    webpki (RFC 5280 path validation, validity period, `clientAuth`), and
//!    checks the serial against the revocation list.
//! 3. [`SvidVerifier`] also implements rustls' [`ClientCertVerifier`], so
//!    the hub plugs it straight into its `ServerConfig`.
//!
//! Every refusal has a precise [`SvidError`] with a stable machine-readable
//! [`SvidError::reason`]; the verifier counts refusals by reason
//! ([`SvidVerifier::refusals`]) and logs each one once.
//!
//! References: the SPIFFE ID specification (`standards/SPIFFE-ID.md`) and
//! the X509-SVID specification (`standards/X509-SVID.md`) of
//! <https://github.com/spiffe/spiffe>; section numbers below refer to them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::extensions::GeneralName;

/// The URI scheme and separator every SPIFFE ID starts with.
const SCHEME: &str = "spiffe://";
/// SPIFFE-ID §2.3: implementations must support IDs up to 2048 bytes and
/// should not generate longer ones; we refuse longer ones outright.
const MAX_ID_LEN: usize = 2048;
/// SPIFFE-ID §2.3: RFC 3986 limits the host to 255 characters, so the trust
/// domain name is at most 255 bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// ASN.1 context tag of `uniformResourceIdentifier` in a `GeneralName`.
const GENERAL_NAME_URI_TAG: u32 = 6;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a client certificate is not an acceptable X509-SVID.
///
/// One variant per broken rule. [`SvidError::reason`] gives a stable,
/// machine-readable code for metrics and tests; the `Display` text is one
/// sentence for operators. Strings taken from the certificate are shown
/// debug-escaped, so a hostile certificate cannot inject lines into logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate chain does not verify to the trust bundle of the
    /// SPIFFE ID's workspace (issued by another CA, or forged).
    #[error(
        "the client SVID does not chain to its workspace's trust bundle; it was issued by a CA this workspace does not trust (wrong trust bundle?)"
    )]
    UntrustedIssuer,
    /// The SVID (or a certificate of its chain) is past its notAfter.
    #[error("the client SVID or a certificate in its chain has expired; renew the SVID")]
    Expired,
    /// The SVID (or a certificate of its chain) is before its notBefore.
    #[error(
        "the client SVID or a certificate in its chain is not valid yet; check the clocks of the issuer and the hub"
    )]
    NotYetValid,
    /// The leaf does not carry exactly one URI SAN (X509-SVID §2, §5.2).
    #[error("the client certificate has {0} URI SANs; an X509-SVID must have exactly one")]
    UriSanCount(usize),
    /// The URI SAN does not use the `spiffe` scheme (X509-SVID §5.2).
    #[error("the URI SAN {0:?} is not a SPIFFE ID; it must start with \"spiffe://\"")]
    NotSpiffe(String),
    /// The URI SAN uses the `spiffe` scheme but breaks the SPIFFE ID
    /// syntax; the text says which rule.
    #[error("invalid SPIFFE ID {0}")]
    InvalidSpiffeId(String),
    /// The SPIFFE ID has no path: it names a trust domain, not a workload
    /// (X509-SVID §3.1, §5.2).
    #[error(
        "the client SVID's SPIFFE ID has no path; a workload SVID needs one (e.g. spiffe://example.org/ws/acme/client)"
    )]
    RootPath,
    /// The leaf has basicConstraints `cA=true` (X509-SVID §4.1, §5.2).
    #[error(
        "the client certificate is a CA certificate (basicConstraints cA=true); present a leaf SVID, not a signing certificate"
    )]
    CaAsLeaf,
    /// The leaf has no keyUsage extension (X509-SVID §4.3).
    #[error(
        "the client SVID has no keyUsage extension; X509-SVIDs must carry one, marked critical"
    )]
    MissingKeyUsage,
    /// The keyUsage extension is not marked critical (X509-SVID §4.3).
    #[error("the client SVID's keyUsage extension is not marked critical, as X509-SVIDs require")]
    KeyUsageNotCritical,
    /// keyUsage lacks `digitalSignature` (X509-SVID §4.3).
    #[error("the client SVID's keyUsage lacks digitalSignature, which a leaf SVID must set")]
    MissingDigitalSignature,
    /// keyUsage sets `keyCertSign` or `cRLSign` on a leaf (X509-SVID §4.3,
    /// §5.2).
    #[error(
        "the client SVID's keyUsage sets keyCertSign or cRLSign, which a leaf SVID must not set"
    )]
    ForbiddenKeyUsage,
    /// An extendedKeyUsage extension is present without `clientAuth`
    /// (X509-SVID §4.4).
    #[error(
        "the client SVID's extendedKeyUsage does not include clientAuth; reissue it with clientAuth (and serverAuth)"
    )]
    EkuWithoutClientAuth,
    /// No trust bundle is configured for this SPIFFE ID.
    #[error(
        "no trust bundle is configured for the SPIFFE ID {0:?}; register the workspace's CA first"
    )]
    UnknownTrustDomain(String),
    /// The SVID's serial number has been revoked.
    #[error("the client SVID {id} with serial {serial} has been revoked; issue a new one")]
    Revoked {
        /// The SPIFFE ID of the revoked SVID.
        id: SpiffeId,
        /// Its serial number, in the form of [`SvidLeaf::serial`].
        serial: String,
    },
    /// The certificate (or a bundle certificate) cannot be parsed as DER
    /// X.509.
    #[error("the certificate cannot be parsed: {0}")]
    Malformed(String),
    /// A trust bundle with no CA certificate in it.
    #[error("the trust bundle contains no CA certificate; it would trust nothing")]
    EmptyBundle,
    /// Path validation failed for another reason than the ones above
    /// (name or path-length constraints, unsupported signature algorithm,
    /// ...); the text is webpki's.
    #[error("the client SVID's certificate chain is invalid: {0}")]
    InvalidChain(String),
}

impl SvidError {
    /// A stable, machine-readable code for this refusal (metrics label,
    /// test assertions). Never changes once released.
    pub fn reason(&self) -> &'static str {
        match self {
            SvidError::UntrustedIssuer => "untrusted_issuer",
            SvidError::Expired => "expired",
            SvidError::NotYetValid => "not_yet_valid",
            SvidError::UriSanCount(_) => "uri_san_count",
            SvidError::NotSpiffe(_) => "not_spiffe",
            SvidError::InvalidSpiffeId(_) => "invalid_spiffe_id",
            SvidError::RootPath => "root_path",
            SvidError::CaAsLeaf => "ca_as_leaf",
            SvidError::MissingKeyUsage => "missing_key_usage",
            SvidError::KeyUsageNotCritical => "key_usage_not_critical",
            SvidError::MissingDigitalSignature => "missing_digital_signature",
            SvidError::ForbiddenKeyUsage => "forbidden_key_usage",
            SvidError::EkuWithoutClientAuth => "eku_without_client_auth",
            SvidError::UnknownTrustDomain(_) => "unknown_trust_domain",
            SvidError::Revoked { .. } => "revoked",
            SvidError::Malformed(_) => "malformed",
            SvidError::EmptyBundle => "empty_bundle",
            SvidError::InvalidChain(_) => "invalid_chain",
        }
    }

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
}

/// Shows an untrusted string in an error message: debug-escaped, and cut to
/// a readable length.
fn shown(s: &str) -> String {
    const KEEP: usize = 96;
    if s.chars().count() <= KEEP {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(KEEP).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

// ---------------------------------------------------------------------------
// SPIFFE ID
// ---------------------------------------------------------------------------

/// A syntactically valid SPIFFE ID, `spiffe://<trust-domain>[/<path>]`.
///
/// Parsing follows the SPIFFE ID specification strictly: no normalisation
/// is done, so two IDs are equal exactly when their canonical strings
/// ([`Display`](fmt::Display)) are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    /// Empty for a trust-domain (root) ID, otherwise starts with `/`.
    path: String,
}

impl SpiffeId {
    /// Parses a SPIFFE ID.
    ///
    /// Returns [`SvidError::NotSpiffe`] when the string does not start with
    /// `spiffe://`, and [`SvidError::InvalidSpiffeId`] naming the broken rule
    /// otherwise. A root ID (`spiffe://example.org`, no path) is valid here;
    /// [`check_leaf`] is what refuses it in a workload SVID.
    pub fn parse(s: &str) -> Result<SpiffeId, SvidError> {
        let invalid = |why: &str| SvidError::InvalidSpiffeId(format!("{}: {why}", shown(s)));

        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        // SPIFFE-ID §2.3: at most 2048 bytes, scheme and all.
        if s.len() > MAX_ID_LEN {
            return Err(invalid("it is longer than 2048 bytes"));
        }
        // SPIFFE-ID §2: the scheme MUST be `spiffe`. Like the reference
        // implementations we require it in lowercase, so that the canonical
        // form is the only form.
        let Some(rest) = s.strip_prefix(SCHEME) else {
            return Err(SvidError::NotSpiffe(s.to_owned()));
        };
        // SPIFFE-ID §2: a SPIFFE ID MUST NOT include a query or a fragment.
        if rest.contains('?') {
            return Err(invalid("a query (`?`) is not allowed"));
        }
        if rest.contains('#') {
            return Err(invalid("a fragment (`#`) is not allowed"));
        }

        let (trust_domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };

        // SPIFFE-ID §2: the trust domain name is required.
        if trust_domain.is_empty() {
            return Err(invalid("the trust domain is missing"));
        }
        // SPIFFE-ID §2.1: the authority is the host only; userinfo and port
        // MUST NOT be set, and the `:` delimiter MUST NOT be present.
        if trust_domain.contains('@') {
            return Err(invalid("userinfo (`user@`) is not allowed"));
        }
        if trust_domain.contains(':') {
            return Err(invalid("a port (`:`) is not allowed"));
        }
        // SPIFFE-ID §2.3: the trust domain name is at most 255 bytes.
        if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(invalid("the trust domain is longer than 255 bytes"));
        }
        // SPIFFE-ID §2.1: trust domain names contain only lowercase letters,
        // digits, dots, dashes and underscores.
        if trust_domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("the trust domain must be lowercase"));
        }
        if let Some(c) = trust_domain.chars().find(|&c| !is_trust_domain_char(c)) {
            return Err(invalid(&format!(
                "the trust domain contains {c:?}; only a-z, 0-9, '.', '-' and '_' are allowed"
            )));
        }

        // SPIFFE-ID §2.2: path segments are non-empty (so no trailing `/`),
        // are not `.` or `..`, and contain only letters, digits, dots,
        // dashes and underscores (no percent-encoding).
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                if segment.is_empty() {
                    return Err(invalid(
                        "the path has an empty segment (`//` or a trailing `/`)",
                    ));
                }
                if segment == "." || segment == ".." {
                    return Err(invalid("the path has a `.` or `..` segment"));
                }
                if let Some(c) = segment.chars().find(|&c| !is_path_char(c)) {
                    return Err(invalid(&format!(
                        "the path contains {c:?}; only A-Z, a-z, 0-9, '.', '-' and '_' are allowed"
                    )));
                }
            }
        }

        Ok(SpiffeId {
            trust_domain: trust_domain.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, e.g. `/ws/acme/client`; empty for a trust-domain ID.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `self`, used as a prefix, covers `id`: same trust domain and
    /// `self`'s path equal to `id`'s or a parent of it on a `/` boundary
    /// (so `/ws/acme` covers `/ws/acme/x` but not `/ws/acme2`).
    pub fn is_prefix_of(&self, id: &SpiffeId) -> bool {
        if self.trust_domain != id.trust_domain {
            return false;
        }
        match id.path.strip_prefix(self.path.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SvidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

fn is_trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

// ---------------------------------------------------------------------------
// Leaf rules
// ---------------------------------------------------------------------------

/// What [`check_leaf`] learnt from a leaf that follows the X509-SVID rules.
/// Its chain is *not* verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvidLeaf {
    /// The SPIFFE ID from the URI SAN.
    pub id: SpiffeId,
    /// The serial number: lowercase hex, no separators, of the DER INTEGER's
    /// content bytes exactly as encoded (so a serial whose top bit is set
    /// keeps its leading `00` sign byte). See [`serial_hex`].
    pub serial: String,
    /// notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// The serial number of a certificate in the form used throughout this
/// module (and by revocation lists): lowercase hex, no separators, of the
/// DER INTEGER's content bytes as encoded.
pub fn serial_hex(cert: &CertificateDer<'_>) -> Result<String, SvidError> {
    let parsed = parse_cert(cert)?;
    Ok(hex(parsed.raw_serial()))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn parse_cert<'a>(
    cert: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, SvidError> {
    let (rest, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SvidError::Malformed(format!(
            "{} bytes of trailing data after the certificate",
            rest.len()
        )));
    }
    Ok(parsed)
}

/// Applies the X509-SVID leaf rules to a client's end-entity certificate,
/// without verifying its chain or validity period (that is
/// [`SvidVerifier::verify`]'s job).
///
/// The rules, in the order they are checked:
/// - basicConstraints, if present, has `cA=false` (X509-SVID §4.1, §5.2);
/// - exactly one URI SAN (X509-SVID §2, §5.2), holding a valid SPIFFE ID
///   (SPIFFE-ID §2) with a non-root path (X509-SVID §3.1, §5.2);
/// - keyUsage present and critical (§4.3), with `digitalSignature` and
///   without `keyCertSign` or `cRLSign` (§4.3, §5.2);
/// - extendedKeyUsage, if present, includes `clientAuth` (§4.4).
///
/// This is also how the hub reads the SPIFFE ID of an already-verified
/// peer after the handshake: rustls keeps the certificate, not our result.
pub fn check_leaf(end_entity: &CertificateDer<'_>) -> Result<SvidLeaf, SvidError> {
    let cert = parse_cert(end_entity)?;
    let malformed = |e: x509_parser::error::X509Error| SvidError::Malformed(e.to_string());

    // X509-SVID §4.1 / §5.2: leaf certificates MUST set cA to false, and the
    // validator MUST check it. Checked first: a signing certificate presented
    // as a leaf is best reported as such, whatever else it carries.
    if let Some(bc) = cert.basic_constraints().map_err(malformed)?
        && bc.value.ca
    {
        return Err(SvidError::CaAsLeaf);
    }

    // X509-SVID §2 / §5.2: exactly one URI SAN; SVIDs with more than one MUST
    // be rejected. Other SAN types (DNS, ...) are allowed and ignored. A URI
    // SAN that is not valid text still counts as a URI SAN.
    let mut uris: Vec<Option<&str>> = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(malformed)? {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push(Some(uri)),
                GeneralName::Invalid(tag, _) if tag.0 == GENERAL_NAME_URI_TAG => uris.push(None),
                _ => {}
            }
        }
    }
    let uri = match uris.as_slice() {
        [Some(uri)] => *uri,
        [None] => {
            return Err(SvidError::InvalidSpiffeId(
                "(the URI SAN is not valid ASCII text)".to_owned(),
            ));
        }
        _ => return Err(SvidError::UriSanCount(uris.len())),
    };
    // X509-SVID §5.2: the scheme MUST be `spiffe`, and the ID valid.
    let id = SpiffeId::parse(uri)?;
    // X509-SVID §3.1 / §5.2: leaf SPIFFE IDs MUST have a non-root path.
    if id.path().is_empty() {
        return Err(SvidError::RootPath);
    }

    // X509-SVID §4.3: the key usage extension MUST be set on all SVIDs and
    // MUST be marked critical; leaves MUST set digitalSignature and MUST NOT
    // set keyCertSign or cRLSign (re-stated as a validator duty in §5.2).
    let Some(ku) = cert.key_usage().map_err(malformed)? else {
        return Err(SvidError::MissingKeyUsage);
    };
    if !ku.critical {
        return Err(SvidError::KeyUsageNotCritical);
    }
    if ku.value.key_cert_sign() || ku.value.crl_sign() {
        return Err(SvidError::ForbiddenKeyUsage);
    }
    if !ku.value.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }

    // X509-SVID §4.4: leaves SHOULD carry an EKU (so its absence is fine —
    // SPIRE-issued and other third-party SVIDs may omit it); when present it
    // MUST list serverAuth and clientAuth. The hub only authenticates
    // clients, so clientAuth is what we insist on.
    if let Some(eku) = cert.extended_key_usage().map_err(malformed)?
        && !eku.value.client_auth
    {
        return Err(SvidError::EkuWithoutClientAuth);
    }

    Ok(SvidLeaf {
        id,
        serial: hex(cert.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Best-effort extraction of the URI SAN a refused certificate claims, for
/// the log line only (never for a decision).
fn claimed_id(end_entity: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        _ => None,
    })
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
    /// [`SvidLeaf::serial`]) has been revoked.
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

    /// Revokes a serial number (in the form of [`SvidLeaf::serial`]; case
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
            Some(p) if p.len() > SCHEME.len() => p,
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
    /// The leaf's serial number, in the form of [`SvidLeaf::serial`].
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
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(SvidError::from_webpki)?;
        cert.verify_for_usage(
            self.algorithms.all,
            bundle.anchors(),
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(SvidError::from_webpki)?;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn invalid(s: &str) -> String {
        match SpiffeId::parse(s) {
            Err(SvidError::InvalidSpiffeId(why)) => why,
            other => panic!("{s:?}: expected InvalidSpiffeId, got {other:?}"),
        }
    }

    #[test]
    fn parses_valid_ids() {
        let id = SpiffeId::parse("spiffe://example.org/ws/acme/client").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/ws/acme/client");
        assert_eq!(id.to_string(), "spiffe://example.org/ws/acme/client");

        let root = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(root.trust_domain(), "example.org");
        assert_eq!(root.path(), "");
        assert_eq!(root.to_string(), "spiffe://example.org");

        for ok in [
            "spiffe://a_b-c.d9/x",
            "spiffe://example.org/A-Z_a.z09",
            "spiffe://example.org/.hidden/..x/x..",
            "spiffe://1.2.3.4/ns/staging/sa/default",
        ] {
            let id: SpiffeId = ok.parse().unwrap();
            assert_eq!(id.to_string(), ok);
        }
    }

    #[test]
    fn length_limits() {
        let long_td = "a".repeat(255);
        assert!(SpiffeId::parse(&format!("spiffe://{long_td}/x")).is_ok());
        assert!(
            invalid(&format!("spiffe://{long_td}a/x")).contains("longer than 255 bytes"),
            "trust domain over 255 bytes"
        );

        let prefix = "spiffe://example.org/";
        let at_max = format!("{prefix}{}", "p".repeat(MAX_ID_LEN - prefix.len()));
        assert_eq!(at_max.len(), 2048);
        assert!(SpiffeId::parse(&at_max).is_ok());
        let over = format!("{at_max}p");
        let why = invalid(&over);
        assert!(why.contains("longer than 2048 bytes"), "{why}");
        // The message does not repeat the whole 2 KiB string.
        assert!(why.len() < 300, "{why}");
    }

    #[test]
    fn wrong_scheme_is_not_spiffe() {
        for s in [
            "https://example.org/x",
            "SPIFFE://example.org/x",
            "spiffe:/example.org/x",
            "spiffe:example.org/x",
            "example.org/x",
        ] {
            assert!(
                matches!(SpiffeId::parse(s), Err(SvidError::NotSpiffe(ref got)) if got == s),
                "{s}"
            );
        }
    }

    #[test]
    fn refuses_empty() {
        assert!(invalid("").contains("empty"));
    }

    #[test]
    fn refuses_missing_trust_domain() {
        assert!(invalid("spiffe://").contains("trust domain is missing"));
        assert!(invalid("spiffe:///x").contains("trust domain is missing"));
    }

    #[test]
    fn refuses_uppercase_or_odd_trust_domain() {
        assert!(invalid("spiffe://Example.org/x").contains("lowercase"));
        for s in [
            "spiffe://exa mple.org/x",
            "spiffe://exa%41mple.org/x",
            "spiffe://examplé.org/x",
            "spiffe://[::1]/x",
        ] {
            let why = invalid(s);
            assert!(
                why.contains("trust domain contains") || why.contains("port"),
                "{s}: {why}"
            );
        }
    }

    #[test]
    fn refuses_port_and_userinfo() {
        assert!(invalid("spiffe://example.org:8443/x").contains("port"));
        assert!(invalid("spiffe://user@example.org/x").contains("userinfo"));
        assert!(invalid("spiffe://user:pw@example.org/x").contains("userinfo"));
    }

    #[test]
    fn refuses_query_and_fragment() {
        assert!(invalid("spiffe://example.org/x?y=1").contains("query"));
        assert!(invalid("spiffe://example.org?y=1").contains("query"));
        assert!(invalid("spiffe://example.org/x#frag").contains("fragment"));
    }

    #[test]
    fn refuses_empty_and_dot_segments() {
        assert!(invalid("spiffe://example.org/").contains("empty segment"));
        assert!(invalid("spiffe://example.org/x/").contains("empty segment"));
        assert!(invalid("spiffe://example.org//x").contains("empty segment"));
        assert!(invalid("spiffe://example.org/./x").contains("`.` or `..`"));
        assert!(invalid("spiffe://example.org/x/..").contains("`.` or `..`"));
    }

    #[test]
    fn refuses_bad_path_characters() {
        for s in [
            "spiffe://example.org/x%20y",
            "spiffe://example.org/x y",
            "spiffe://example.org/x:y",
            "spiffe://example.org/x@y",
            "spiffe://example.org/café",
            "spiffe://example.org/x\ny",
        ] {
            assert!(invalid(s).contains("the path contains"), "{s}");
        }
    }

    #[test]
    fn errors_escape_untrusted_text() {
        let why = invalid("spiffe://example.org/x\ny");
        assert!(!why.contains('\n'), "{why}");
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let id = SpiffeId::parse("spiffe://example.org/ws/acme/client").unwrap();
        for (prefix, covers) in [
            ("spiffe://example.org", true),
            ("spiffe://example.org/ws", true),
            ("spiffe://example.org/ws/acme", true),
            ("spiffe://example.org/ws/acme/client", true),
            ("spiffe://example.org/ws/ac", false),
            ("spiffe://example.org/ws/acme/client/x", false),
            ("spiffe://example.com", false),
        ] {
            let p = SpiffeId::parse(prefix).unwrap();
            assert_eq!(p.is_prefix_of(&id), covers, "{prefix}");
        }
    }

    #[test]
    fn reasons_are_distinct() {
        let id = SpiffeId::parse("spiffe://example.org/x").unwrap();
        let all = [
            SvidError::UntrustedIssuer,
            SvidError::Expired,
            SvidError::NotYetValid,
            SvidError::UriSanCount(2),
            SvidError::NotSpiffe(String::new()),
            SvidError::InvalidSpiffeId(String::new()),
            SvidError::RootPath,
            SvidError::CaAsLeaf,
            SvidError::MissingKeyUsage,
            SvidError::KeyUsageNotCritical,
            SvidError::MissingDigitalSignature,
            SvidError::ForbiddenKeyUsage,
            SvidError::EkuWithoutClientAuth,
            SvidError::UnknownTrustDomain(String::new()),
            SvidError::Revoked {
                id,
                serial: String::new(),
            },
            SvidError::Malformed(String::new()),
            SvidError::EmptyBundle,
            SvidError::InvalidChain(String::new()),
        ];
        let reasons: HashSet<_> = all.iter().map(SvidError::reason).collect();
        assert_eq!(reasons.len(), all.len());
    }

    #[test]
    fn rejects_garbage_der() {
        let err = check_leaf(&CertificateDer::from(vec![0x30, 0x03, 0x01])).unwrap_err();
        assert_eq!(err.reason(), "malformed");
    }
}
