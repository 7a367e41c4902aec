//! The client's own identity: where its X509-SVID comes from, the enrolled
//! state on disk, fresh keys and CSRs for enrolment and renewal, and the
//! checks an issued SVID must pass before it is used.
//!
//! - An [`IdentitySource::Static`] SVID comes from PEM files the operator
//!   issued; it is used as is and never renewed.
//! - An [`IdentitySource::Enrolled`] SVID lives in the state directory
//!   ([`IdentityStore`]): `svid.pem` (the chain, leaf first), `svid.key`
//!   (its PKCS#8 key, mode 0600) and `bundle.pem` (the workspace trust
//!   bundle). The client generates every key itself ([`KeyRequest`]): only
//!   the CSR goes to the hub, the private key never leaves the machine.
//!
//! Nothing here talks to the network; [`crate::client`] runs enrolment and
//! renewal with these pieces.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use ewii_quic::KeyMaterial;
use ewii_wire::enrol::{EnrolRequest, Issued};

/// The SVID chain in the state directory (PEM, leaf first).
pub const SVID_FILE: &str = "svid.pem";
/// The SVID's private key in the state directory (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "svid.key";
/// The workspace trust bundle in the state directory (PEM).
pub const BUNDLE_FILE: &str = "bundle.pem";
/// What [`IdentityStore::set_aside`] appends to the names of a revoked SVID
/// and its key.
pub const REVOKED_SUFFIX: &str = ".revoked";

/// Renewal starts at this fraction of the SVID's lifetime, plus jitter.
const RENEW_FROM: f64 = 0.45;
/// The width of the renewal jitter, as a fraction of the lifetime.
const RENEW_JITTER: f64 = 0.10;
/// Longest wait before a failed renewal is tried again.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Shortest wait before a failed renewal is tried again.
const RETRY_MIN: Duration = Duration::from_secs(1);

/// Where the client's SVID comes from.
pub enum IdentitySource {
    /// An SVID and key from PEM files (`--svid/--key`), never renewed.
    Static(KeyMaterial),
    /// An SVID the hub issued at enrolment, kept (and renewed) in `state`.
    Enrolled {
        /// The state directory.
        state: PathBuf,
        /// A single-use enrolment token, used only when the state holds no
        /// usable SVID.
        token: Option<Zeroizing<String>>,
    },
}

impl std::fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token or the key.
        match self {
            IdentitySource::Static(keys) => f.debug_tuple("Static").field(keys).finish(),
            IdentitySource::Enrolled { state, token } => f
                .debug_struct("Enrolled")
                .field("state", state)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// What can go wrong with the client's identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A state file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The SVID breaks an X509-SVID rule or cannot be parsed.
    #[error("the SVID is not usable: {0}")]
    Svid(String),
    /// The SVID is not for the key next to it (or the key we generated).
    #[error("{0}")]
    KeyMismatch(String),
    /// A renewed SVID names another SPIFFE ID than the one renewed.
    #[error("the hub issued an SVID for {got} while renewing {expected}")]
    WrongIdentity {
        /// The SPIFFE ID being renewed.
        expected: String,
        /// The SPIFFE ID in the new SVID.
        got: String,
    },
    /// Generating a key or a CSR failed.
    #[error("cannot generate a key or CSR: {0}")]
    Key(String),
    /// The state directory holds an incomplete or broken identity.
    #[error("the enrolled identity in {dir} is unusable: {why}")]
    State {
        /// The state directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the client tells about its SVID (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidInfo {
    /// The SPIFFE ID of the URI SAN.
    pub spiffe_id: String,
    /// The serial number, lowercase hex (as [`ewii_wire::svid::SvidLeaf::serial`]).
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl SvidInfo {
    /// Checks a leaf against the X509-SVID rules ([`ewii_wire::svid::check_leaf`])
    /// and reads its validity period.
    pub fn of(leaf: &CertificateDer<'_>) -> Result<SvidInfo, IdentityError> {
        let checked =
            ewii_wire::svid::check_leaf(leaf).map_err(|e| IdentityError::Svid(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| IdentityError::Svid(e.to_string()))?;
        Ok(SvidInfo {
            spiffe_id: checked.id.to_string(),
            serial: checked.serial,
            not_before: cert.validity().not_before.timestamp(),
            not_after: checked.not_after,
        })
    }

    /// Whether notAfter is behind `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        unix_seconds(now) >= self.not_after
    }

    /// What is left of the SVID's life at `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        at(self.not_after)
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// notAfter as RFC 3339 (UTC, seconds).
    pub fn expires_at_rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp(self.not_after, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| self.not_after.to_string())
    }
}

impl std::fmt::Display for SvidInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (serial {}, expires {})",
            self.spiffe_id,
            self.serial,
            self.expires_at_rfc3339()
        )
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn at(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(unix.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// When to renew an SVID valid from `not_before` to `not_after` (Unix
/// seconds): at `lifetime × (0.45 + 0.1 × unit)` after notBefore, so about
/// half-way through its life, with jitter so that deployments enrolled
/// together do not renew together. `unit` is uniform in [0, 1).
pub fn renewal_time(not_before: i64, not_after: i64, unit: f64) -> SystemTime {
    let lifetime = Duration::from_secs(not_after.saturating_sub(not_before).max(0).unsigned_abs());
    let fraction = RENEW_FROM + RENEW_JITTER * unit.clamp(0.0, 1.0);
    at(not_before) + lifetime.mul_f64(fraction)
}

/// How long to wait before trying a failed renewal again, with
/// `remaining` left of the SVID's life: 10 % of it, at most 30 s, at least
/// 1 s.
pub fn retry_delay(remaining: Duration) -> Duration {
    (remaining / 10).clamp(RETRY_MIN, RETRY_MAX)
}

/// A uniform random number in [0, 1).
pub(crate) fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// The SVID the client presents, with its key and when to renew it.
#[derive(Debug, Clone)]
pub struct CurrentIdentity {
    keys: KeyMaterial,
    svid: SvidInfo,
    renew_at: SystemTime,
}

impl CurrentIdentity {
    /// Checks the leaf of `keys` against the X509-SVID rules and picks a
    /// renewal time about half-way through its life.
    pub fn from_keys(keys: KeyMaterial) -> Result<CurrentIdentity, IdentityError> {
        let leaf = keys
            .chain
            .first()
            .ok_or_else(|| IdentityError::Svid("the certificate file is empty".into()))?;
        let svid = SvidInfo::of(leaf)?;
        let renew_at = renewal_time(svid.not_before, svid.not_after, random_unit());
        Ok(CurrentIdentity {
            keys,
            svid,
            renew_at,
        })
    }

    /// The chain and its key.
    pub fn keys(&self) -> &KeyMaterial {
        &self.keys
    }

    /// The SVID's SPIFFE ID, serial and validity.
    pub fn svid(&self) -> &SvidInfo {
        &self.svid
    }

    /// The SPIFFE ID.
    pub fn spiffe_id(&self) -> &str {
        &self.svid.spiffe_id
    }

    /// When renewal is due (see [`renewal_time`]).
    pub fn renew_at(&self) -> SystemTime {
        self.renew_at
    }

    /// Whether the SVID has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.svid.is_expired(now)
    }
}

/// A freshly generated EC P-256 key and a PKCS#10 CSR for it. The key
/// stays here; only the CSR is sent.
pub struct KeyRequest {
    key: rcgen::KeyPair,
    csr: Vec<u8>,
}

impl std::fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("KeyRequest")
            .field("csr_len", &self.csr.len())
            .finish_non_exhaustive()
    }
}

impl KeyRequest {
    /// Generates a key and its CSR.
    pub fn generate() -> Result<KeyRequest, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        Ok(KeyRequest {
            csr: csr.der().to_vec(),
            key,
        })
    }

    /// The CSR, DER.
    pub fn csr_der(&self) -> &[u8] {
        &self.csr
    }

    /// The enrolment request carrying `token` and this CSR.
    pub fn enrol_request(&self, token: &Zeroizing<String>) -> EnrolRequest {
        use base64::Engine as _;
        EnrolRequest {
            token: token.clone(),
            csr: base64::engine::general_purpose::STANDARD.encode(&self.csr),
        }
    }

    /// Takes the hub's answer: the SVID must be for this key and pass the
    /// X509-SVID leaf rules, and its SPIFFE ID must be the one the hub
    /// named.
    pub fn accept(self, issued: &Issued) -> Result<IssuedIdentity, IdentityError> {
        let chain = ewii_quic::certificates_from_pem(&issued.svid_pem, "the issued SVID")
            .map_err(|e| IdentityError::Svid(e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| IdentityError::Svid("the hub sent no certificate".into()))?;
        if leaf_public_key(leaf)? != self.key.public_key_raw() {
            return Err(IdentityError::KeyMismatch(
                "the hub issued an SVID for another key than the one this client generated".into(),
            ));
        }
        let key_pem = Zeroizing::new(self.key.serialize_pem());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let identity = CurrentIdentity::from_keys(KeyMaterial { chain, key })?;
        if identity.spiffe_id() != issued.spiffe_id {
            return Err(IdentityError::Svid(format!(
                "the hub said it issued {} but the SVID names {}",
                issued.spiffe_id,
                identity.spiffe_id()
            )));
        }
        if !issued.bundle_pem.trim().is_empty()
            && let Err(e) = ewii_quic::TrustBundle::from_pem(&issued.bundle_pem)
        {
            tracing::warn!(error = %e, "the trust bundle the hub sent is not usable; saved anyway");
        }
        Ok(IssuedIdentity {
            identity,
            svid_pem: issued.svid_pem.clone(),
            key_pem,
            bundle_pem: issued.bundle_pem.clone(),
        })
    }
}

/// The subjectPublicKey bits of a certificate.
fn leaf_public_key(leaf: &CertificateDer<'_>) -> Result<Vec<u8>, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| IdentityError::Svid(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// A checked SVID the hub issued for a key of ours, ready to save.
pub struct IssuedIdentity {
    identity: CurrentIdentity,
    svid_pem: String,
    key_pem: Zeroizing<String>,
    bundle_pem: String,
}

impl std::fmt::Debug for IssuedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedIdentity")
            .field("svid", &self.identity.svid)
            .finish_non_exhaustive()
    }
}

impl IssuedIdentity {
    /// The new identity.
    pub fn identity(&self) -> &CurrentIdentity {
        &self.identity
    }

    /// The new identity, taken out.
    pub fn into_identity(self) -> CurrentIdentity {
        self.identity
    }
}

/// The enrolled identity in the client's state directory.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    dir: PathBuf,
}

impl IdentityStore {
    /// The identity kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> IdentityStore {
        IdentityStore { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the enrolled SVID and key: `None` when the client never
    /// enrolled (no `svid.pem`). The SVID must pass the X509-SVID leaf rules
    /// and be for the key next to it; it may have expired (the caller
    /// decides).
    pub fn load(&self) -> Result<Option<CurrentIdentity>, IdentityError> {
        let svid = self.dir.join(SVID_FILE);
        if !svid.try_exists().map_err(io_error(&svid))? {
            return Ok(None);
        }
        let broken = |why: String| IdentityError::State {
            dir: self.dir.clone(),
            why,
        };
        let key_path = self.dir.join(KEY_FILE);
        let keys =
            KeyMaterial::from_pem_files(&svid, &key_path).map_err(|e| broken(e.to_string()))?;
        let leaf = keys
            .chain
            .first()
            .ok_or_else(|| broken(format!("{SVID_FILE} holds no certificate")))?;
        let ours =
            rcgen::KeyPair::try_from(&keys.key).map_err(|e| broken(format!("{KEY_FILE}: {e}")))?;
        if leaf_public_key(leaf)? != ours.public_key_raw() {
            return Err(broken(format!(
                "{SVID_FILE} is not for the key in {KEY_FILE} (an interrupted renewal?)"
            )));
        }
        CurrentIdentity::from_keys(keys)
            .map(Some)
            .map_err(|e| broken(e.to_string()))
    }

    /// Saves an issued SVID, its key and the bundle, each file atomically
    /// (a temporary file in the same directory, flushed to disk, renamed
    /// over the old one). The key file is 0600 before a byte is written.
    /// The key goes first and the SVID last, so `svid.pem` never names a key
    /// that is not there yet.
    pub fn save(&self, issued: &IssuedIdentity) -> Result<(), IdentityError> {
        create_private_dir(&self.dir)?;
        write_atomic(&self.dir, KEY_FILE, issued.key_pem.as_bytes(), true)?;
        write_atomic(&self.dir, BUNDLE_FILE, issued.bundle_pem.as_bytes(), false)?;
        write_atomic(&self.dir, SVID_FILE, issued.svid_pem.as_bytes(), false)?;
        self.sync()
    }

    /// Deletes the enrolled SVID and its key (after a goodbye: starting
    /// again needs a new enrolment token); keeps the trust bundle. The SVID
    /// goes first, so an interruption leaves "not enrolled", never an SVID
    /// without its key. Files already gone are fine.
    pub fn forget(&self) -> Result<(), IdentityError> {
        for name in [SVID_FILE, KEY_FILE] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        self.sync()
    }

    /// Moves a revoked SVID and its key aside, to `svid.pem.revoked` and
    /// `svid.key.revoked` (replacing older ones): the client no longer
    /// counts as enrolled, and the files stay for the operator to look at.
    /// The SVID goes first, for the reason given in
    /// [`IdentityStore::forget`]. Returns where the SVID went, if it was
    /// there.
    pub fn set_aside(&self) -> Result<Option<PathBuf>, IdentityError> {
        let mut moved = None;
        for name in [SVID_FILE, KEY_FILE] {
            let from = self.dir.join(name);
            let to = self.dir.join(format!("{name}{REVOKED_SUFFIX}"));
            match std::fs::rename(&from, &to) {
                Ok(()) if name == SVID_FILE => moved = Some(to),
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&from)(e)),
            }
        }
        self.sync()?;
        Ok(moved)
    }

    /// Makes renames and deletions in the directory durable.
    fn sync(&self) -> Result<(), IdentityError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.dir))
    }
}

/// Creates `dir` (and its parents) owner-only if it does not exist; an
/// existing directory is left as the administrator set it.
fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_error(dir))
}

/// Writes `name` in `dir` atomically: a new temporary file (0600 from its
/// creation when `secret`), fsync, rename.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], secret: bool) -> Result<(), IdentityError> {
    let tmp = dir.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        (random_unit() * f64::from(u32::MAX)) as u32
    ));
    let result = write_then_rename(&tmp, &dir.join(name), bytes, secret);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    target: &Path,
    bytes: &[u8],
    secret: bool,
) -> Result<(), IdentityError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(tmp).map_err(io_error(tmp))?;
    #[cfg(unix)]
    if secret {
        // The umask can only narrow `mode`; state it anyway.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error(tmp))?;
    }
    file.write_all(bytes).map_err(io_error(tmp))?;
    file.sync_all().map_err(io_error(tmp))?;
    drop(file);
    std::fs::rename(tmp, target).map_err(io_error(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_around_half_life() {
        let (nb, na) = (1_000, 1_000 + 3_600);
        let early = renewal_time(nb, na, 0.0);
        let late = renewal_time(nb, na, 0.999_999);
        assert_eq!(early, at(nb) + Duration::from_secs(1_620));
        assert!(late > early && late <= at(nb) + Duration::from_secs(1_980));
        // A broken validity period renews at once rather than never.
        assert_eq!(renewal_time(na, nb, 0.5), at(na));
    }

    #[test]
    fn retries_wait_a_tenth_of_what_is_left_within_bounds() {
        assert_eq!(
            retry_delay(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(retry_delay(Duration::from_secs(3_600)), RETRY_MAX);
        assert_eq!(retry_delay(Duration::from_secs(2)), RETRY_MIN);
        assert_eq!(retry_delay(Duration::ZERO), RETRY_MIN);
    }

    #[test]
    fn a_fresh_key_request_hides_its_key_and_carries_a_csr() {
        let req = KeyRequest::generate().unwrap();
        assert!(!req.csr_der().is_empty());
        let token = Zeroizing::new("tok-secret".to_owned());
        let enrol = req.enrol_request(&token);
        assert!(!enrol.csr.is_empty());
        assert!(!format!("{req:?}").contains("PRIVATE"));
        let source = IdentitySource::Enrolled {
            state: "/s".into(),
            token: Some(token),
        };
        assert!(!format!("{source:?}").contains("tok-secret"));
    }

    /// A CA that signs CSRs with the SVID profile (what the hub does).
    struct Ca(rcgen::Issuer<'static, rcgen::KeyPair>);

    impl Ca {
        fn new() -> Ca {
            let mut params = rcgen::CertificateParams::default();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            Ca(rcgen::Issuer::new(params, key))
        }

        fn issue(&self, csr_der: &[u8], id: &str, ca: bool) -> Issued {
            let der = rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
            let mut csr = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
            let mut params = rcgen::CertificateParams::default();
            params.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().unwrap())];
            params.is_ca = if ca {
                rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
            } else {
                rcgen::IsCa::ExplicitNoCa
            };
            params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            csr.params = params;
            let cert = csr.signed_by(&self.0).unwrap();
            let leaf = ewii_wire::svid::check_leaf(cert.der()).ok();
            Issued {
                spiffe_id: id.into(),
                svid_pem: cert.pem(),
                bundle_pem: String::new(),
                serial: leaf.as_ref().map(|l| l.serial.clone()).unwrap_or_default(),
                expires_at: leaf.map(|l| l.not_after).unwrap_or_default(),
            }
        }
    }

    const ID: &str = "spiffe://example.org/ws/acme/dep/eu";

    #[test]
    fn an_issued_svid_must_be_for_our_key_and_an_svid() {
        let ca = Ca::new();
        let ours = KeyRequest::generate().unwrap();
        let theirs = KeyRequest::generate().unwrap();
        let err = ours
            .accept(&ca.issue(theirs.csr_der(), ID, false))
            .unwrap_err();
        assert!(matches!(err, IdentityError::KeyMismatch(_)), "{err}");

        let ours = KeyRequest::generate().unwrap();
        let csr = ours.csr_der().to_vec();
        let err = ours.accept(&ca.issue(&csr, ID, true)).unwrap_err();
        assert!(matches!(err, IdentityError::Svid(_)), "{err}");

        let ours = KeyRequest::generate().unwrap();
        let csr = ours.csr_der().to_vec();
        let mut issued = ca.issue(&csr, ID, false);
        issued.spiffe_id = "spiffe://example.org/ws/acme/dep/other".into();
        assert!(
            ours.accept(&issued).is_err(),
            "the hub's word and the SVID differ"
        );

        let ours = KeyRequest::generate().unwrap();
        let csr = ours.csr_der().to_vec();
        let issued = ca.issue(&csr, ID, false);
        let accepted = ours.accept(&issued).unwrap();
        assert_eq!(accepted.identity().spiffe_id(), ID);
        assert_eq!(accepted.identity().svid().serial, issued.serial);
        assert!(!format!("{accepted:?}").contains("PRIVATE"));
    }

    #[test]
    fn saved_state_loads_back_and_a_key_that_does_not_match_is_caught() {
        use std::os::unix::fs::PermissionsExt as _;
        let ca = Ca::new();
        let dir = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(dir.path().join("state/nested"));
        let req = KeyRequest::generate().unwrap();
        let csr = req.csr_der().to_vec();
        let issued = req.accept(&ca.issue(&csr, ID, false)).unwrap();
        store.save(&issued).unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.svid(), issued.identity().svid());
        let mode = |name: &str| {
            std::fs::metadata(store.dir().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(
            std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let names: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");

        // Saving again replaces every file (a renewal).
        let req = KeyRequest::generate().unwrap();
        let csr = req.csr_der().to_vec();
        let renewed = req.accept(&ca.issue(&csr, ID, false)).unwrap();
        store.save(&renewed).unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().svid(),
            renewed.identity().svid()
        );

        // An SVID next to another key (an interrupted renewal) is refused.
        std::fs::write(store.dir().join(KEY_FILE), issued.key_pem.as_bytes()).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, IdentityError::State { .. }), "{err}");
        assert!(err.to_string().contains("not for the key"), "{err}");
    }

    #[test]
    fn forgetting_deletes_the_svid_and_key_and_setting_aside_renames_them() {
        let ca = Ca::new();
        let dir = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(dir.path());
        let save = || {
            let req = KeyRequest::generate().unwrap();
            let csr = req.csr_der().to_vec();
            let mut issued = ca.issue(&csr, ID, false);
            issued.bundle_pem = "bundle".into();
            store.save(&req.accept(&issued).unwrap()).unwrap();
        };
        let names = || {
            let mut n: Vec<String> = std::fs::read_dir(store.dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        };

        save();
        store.forget().unwrap();
        assert_eq!(names(), vec![BUNDLE_FILE]);
        assert!(store.load().unwrap().is_none(), "not enrolled any more");
        store.forget().unwrap();

        save();
        let moved = store.set_aside().unwrap();
        assert_eq!(moved, Some(store.dir().join("svid.pem.revoked")));
        assert_eq!(
            names(),
            vec![BUNDLE_FILE, "svid.key.revoked", "svid.pem.revoked"]
        );
        assert!(store.load().unwrap().is_none());
        assert_eq!(store.set_aside().unwrap(), None);
    }

    #[test]
    fn an_empty_state_directory_is_not_enrolled() {
        let dir = tempfile::tempdir().unwrap();
        assert!(IdentityStore::new(dir.path()).load().unwrap().is_none());
    }
}
