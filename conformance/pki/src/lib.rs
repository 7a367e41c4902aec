//! The one test PKI of the Ewii tree, built with rcgen: CAs
//! ([`TestCa::new`]) and their intermediates, X509-SVIDs ([`TestCa::svid`],
//! or with one rule broken on purpose: [`TestCa::svid_with`]), hub server
//! certificates ([`TestCa::server`]), a CA made outside Ewii as SPIRE makes
//! them ([`SpireCa`]), and PEM files ([`Leaf::write_pem`],
//! [`TestCa::write_pem`]).
//!
//! Every key is ECDSA P-256, what SPIRE issues by default. This crate
//! depends on no Ewii crate: `ewii-quic`'s own tests use it, and
//! `ewii-conformance` (which depends on the hub, hence on `ewii-quic`)
//! re-exports it as `ewii_conformance::pki`.
#![forbid(unsafe_code)]
// Test fixtures: a certificate that cannot be built is a failed test.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use rcgen;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Sets a certificate's validity period from `SystemTime`s (seconds
/// precision; times before 1970 are not supported).
///
/// rcgen wants `time::OffsetDateTime`: rcgen's epoch plus a
/// `std::time::Duration` builds one without depending on `time`.
pub fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
}

/// A fresh P-256 key.
fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key")
}

/// 16 random bytes as a serial number, positive and without a leading zero
/// byte, so the DER INTEGER's content is exactly these bytes and
/// [`Leaf::serial`] is their hex (the form `ewii_wire::svid::serial_hex`
/// gives).
///
/// The randomness is the x coordinate of a freshly generated key (rcgen
/// draws it from the system's CSPRNG): this crate needs no other source.
fn random_serial() -> (SerialNumber, String) {
    let point = p256().public_key_raw().to_vec();
    let mut bytes = [0u8; 16];
    // Uncompressed SEC1 point: 0x04, then x.
    bytes.copy_from_slice(&point[1..17]);
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (SerialNumber::from_slice(&bytes), hex)
}

/// Writes `text` to `path`, readable by its owner only when `private`.
fn write_file(path: &Path, text: &str, private: bool) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
    }
}

/// An end-entity certificate and its private key.
pub struct Leaf {
    /// The certificate chain to present: the leaf only.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key, PKCS#8.
    pub key: PrivateKeyDer<'static>,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The serial number, lower-case hex (`ewii_wire::svid::serial_hex`).
    pub serial: String,
}

impl Leaf {
    /// A copy of the private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// Writes `<name>.crt` and `<name>.key` (PEM) into `dir`, the key
    /// readable by its owner only, and returns their paths.
    pub fn write_pem(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_file(&cert, &self.cert_pem, false);
        write_file(&key, &self.key_pem, true);
        (cert, key)
    }
}

/// A certificate authority for tests: self-signed (or, from
/// [`TestCa::intermediate`], issued by another `TestCa`).
pub struct TestCa {
    /// The CA certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn ca_params(common_name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        set_validity(&mut params, now - DAY, now + 365 * DAY);
        params.serial_number = Some(random_serial().0);
        params
    }

    /// A self-signed CA: ECDSA P-256, `cA=true`, keyUsage keyCertSign and
    /// cRLSign, valid from a day ago for a year.
    pub fn new(common_name: &str) -> TestCa {
        let params = Self::ca_params(common_name);
        let key = p256();
        let cert = params.self_signed(&key).expect("self-sign a test CA");
        TestCa {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA issued by this one. Its SVIDs verify with this
    /// CA's bundle when its `cert` is passed as an intermediate.
    pub fn intermediate(&self, common_name: &str) -> TestCa {
        let mut params = Self::ca_params(common_name);
        params.use_authority_key_identifier_extension = true;
        let key = p256();
        let cert = params
            .clone()
            .signed_by(&key, &self.issuer)
            .expect("issue a test intermediate");
        TestCa {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate alone, as a trust bundle's certificates.
    pub fn certificates(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    /// Writes the CA certificate to `dir/<name>.pem` and returns the path
    /// (what a client's `--hub-ca` names).
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        write_file(&path, &self.cert_pem, false);
        path
    }

    /// The parameters of a valid X509-SVID for `spiffe_id`.
    fn svid_params(spiffe_id: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Ewii test");
        params.subject_alt_names = vec![SanType::URI(
            spiffe_id.try_into().expect("a SPIFFE ID is a URI"),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        // rcgen marks keyUsage critical, as X509-SVID §4.3 requires.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let now = SystemTime::now();
        set_validity(&mut params, now - HOUR, now + DAY);
        params.use_authority_key_identifier_extension = true;
        params
    }

    /// A valid X509-SVID for `spiffe_id`: one URI SAN, `cA=false`, keyUsage
    /// digitalSignature (critical), EKU clientAuth and serverAuth, valid
    /// from an hour ago for a day, ECDSA P-256, random serial.
    pub fn svid(&self, spiffe_id: &str) -> Leaf {
        self.svid_with(spiffe_id, |_| {})
    }

    /// Like [`TestCa::svid`], with `f` changing the parameters first (to
    /// break one rule).
    pub fn svid_with(&self, spiffe_id: &str, f: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = Self::svid_params(spiffe_id);
        f(&mut params);
        self.issue(params)
    }

    /// A hub server certificate for `dns_name`: DNS SAN, EKU serverAuth,
    /// keyUsage digitalSignature, ECDSA P-256.
    pub fn server(&self, dns_name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec![dns_name.to_owned()]).expect("a DNS name for a SAN");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        set_validity(&mut params, now - HOUR, now + DAY);
        params.use_authority_key_identifier_extension = true;
        self.issue(params)
    }

    /// Issues an end-entity certificate with `params` and a fresh P-256
    /// key. A random serial replaces any `params` set.
    pub fn issue(&self, params: CertificateParams) -> Leaf {
        issue(params, &self.issuer)
    }
}

/// Signs `params` (with a random serial) for a fresh P-256 key.
fn issue(mut params: CertificateParams, issuer: &Issuer<'static, KeyPair>) -> Leaf {
    let (serial_number, serial) = random_serial();
    params.serial_number = Some(serial_number);
    let key = p256();
    let cert = params
        .signed_by(&key, issuer)
        .expect("issue a test certificate");
    Leaf {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial,
    }
}

/// A CA made outside Ewii, as an existing SPIRE server makes it: P-256,
/// `O=SPIRE`, keyUsage keyCertSign, cRLSign and digitalSignature; its
/// SVIDs carry only a URI SAN, SPIRE's key usages and both EKUs. What the
/// hub must accept once the bundle is imported, and refuse before.
pub struct SpireCa {
    /// The CA certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl SpireCa {
    /// A self-signed SPIRE-like root named `common_name`.
    pub fn new(common_name: &str) -> SpireCa {
        let key = p256();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "SPIRE");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign a SPIRE-like CA");
        SpireCa {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An SVID for `spiffe_id`, SPIRE's profile: only the URI SAN, keyUsage
    /// digitalSignature, keyEncipherment and keyAgreement, EKU serverAuth
    /// and clientAuth.
    pub fn svid(&self, spiffe_id: &str) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "SPIRE");
        params.subject_alt_names = vec![SanType::URI(
            spiffe_id.try_into().expect("a SPIFFE ID is a URI"),
        )];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        issue(params, &self.issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_sixteen_random_bytes_in_lower_case_hex() {
        let ca = TestCa::new("ca");
        let (a, b) = (ca.svid("spiffe://t/x"), ca.svid("spiffe://t/x"));
        assert_eq!(a.serial.len(), 32);
        assert_ne!(a.serial, b.serial);
        assert!(a.serial.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        // The serial is the DER INTEGER's content: find it in the certificate.
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&a.serial[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        let mut tagged = vec![0x02, 16];
        tagged.extend(&bytes);
        assert!(a.chain[0].windows(18).any(|w| w == tagged.as_slice()));
    }

    #[test]
    fn pem_files_are_written_with_a_private_key_file() {
        let dir = std::env::temp_dir().join(format!("ewii-test-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let leaf = SpireCa::new("root").svid("spiffe://t/x");
        let (cert, key) = leaf.write_pem(&dir, "svid");
        assert!(
            std::fs::read_to_string(&cert)
                .unwrap_or_default()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        let ca = TestCa::new("hub ca").write_pem(&dir, "hub-ca");
        assert!(ca.ends_with("hub-ca.pem"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
