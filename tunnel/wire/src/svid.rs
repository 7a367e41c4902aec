//! The SPIFFE X509-SVID rules that are pure functions over DER: SPIFFE ID
//! syntax, the leaf rules, the serial number.
//!
//! The customer's client authenticates to the hub with an X.509 SPIFFE
//! Verifiable Identity Document (X509-SVID). This module holds the parts of
//! deciding whether such a certificate is acceptable that need no trust
//! store and no clock:
//!
//! - [`SpiffeId`] parses and prints SPIFFE IDs strictly.
//! - [`check_leaf`] applies the X509-SVID leaf rules (one URI SAN holding a
//!   well-formed `spiffe://` ID with a path, not a CA, key usage critical
//!   with `digitalSignature` and without `keyCertSign`/`cRLSign`,
//!   `clientAuth` if an EKU is present).
//! - [`serial_hex`] is the one form of a serial number (revocation lists,
//!   audit records).
//!
//! Chain validation to a workspace's trust bundle, validity periods and
//! revocation are the QUIC binding's `SvidVerifier` (webpki); every refusal
//! either makes is a precise [`SvidError`] with a stable machine-readable
//! [`SvidError::reason`].
//!
//! References: the SPIFFE ID specification (`standards/SPIFFE-ID.md`) and
//! the X509-SVID specification (`standards/X509-SVID.md`) of
//! <https://github.com/spiffe/spiffe>; section numbers below refer to them.

use std::fmt;

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
pub fn serial_hex(cert: &[u8]) -> Result<String, SvidError> {
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
    cert: &'a [u8],
) -> Result<x509_parser::certificate::X509Certificate<'a>, SvidError> {
    let (rest, parsed) = x509_parser::parse_x509_certificate(cert)
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
/// without verifying its chain or validity period (that is the QUIC
/// binding's `SvidVerifier`).
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
pub fn check_leaf(end_entity: &[u8]) -> Result<SvidLeaf, SvidError> {
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
pub fn claimed_id(end_entity: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;

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
        let err = check_leaf(&[0x30, 0x03, 0x01]).unwrap_err();
        assert_eq!(err.reason(), "malformed");
    }
}
