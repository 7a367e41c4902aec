//! Test PKI built with rcgen: a CA, X509-SVIDs it issues (valid, or with
//! one rule broken on purpose), and hub server certificates.
//!
//! Every key is ECDSA P-256, what SPIRE issues by default.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ewii_quic::TrustBundle;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Sets a certificate's validity period from `SystemTime`s (seconds
/// precision; times before 1970 are not supported).
///
/// rcgen wants `time::OffsetDateTime`, and this crate does not depend on
/// `time`: rcgen's epoch plus a `std::time::Duration` builds one without
/// naming the type.
pub fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    // Positive and without a leading zero byte, so the DER INTEGER's content
    // is exactly these 16 bytes (and `Leaf::serial` is their hex).
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    SerialNumber::from_slice(&bytes)
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
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
    /// The serial number, in the form of `ewii_wire::svid::SvidLeaf::serial`.
    pub serial: String,
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
        params.serial_number = Some(random_serial());
        params
    }

    /// A self-signed CA: ECDSA P-256, `cA=true`, keyUsage keyCertSign and
    /// cRLSign, valid from a day ago for a year.
    pub fn new(common_name: &str) -> TestCa {
        let params = Self::ca_params(common_name);
        let key = p256();
        let cert = params.self_signed(&key).unwrap();
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
        let cert = params.clone().signed_by(&key, &self.issuer).unwrap();
        TestCa {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The parameters of a valid X509-SVID for `spiffe_id`.
    fn svid_params(spiffe_id: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Ewii test");
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        // rcgen marks keyUsage critical, as X509-SVID §4.3 requires.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let now = SystemTime::now();
        set_validity(&mut params, now - HOUR, now + DAY);
        params.serial_number = Some(random_serial());
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
        let mut params = CertificateParams::new(vec![dns_name.to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        set_validity(&mut params, now - HOUR, now + DAY);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        self.issue(params)
    }

    /// Issues an end-entity certificate with `params` and a fresh P-256 key.
    pub fn issue(&self, params: CertificateParams) -> Leaf {
        let key = p256();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = cert.der().clone();
        let serial = ewii_wire::svid::serial_hex(&der).unwrap();
        Leaf {
            chain: vec![der],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }

    /// A trust bundle holding this CA only.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_der(vec![self.cert.clone()]).unwrap()
    }
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
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        (cert, key)
    }
}

/// Installs ring as the process-wide rustls crypto provider; a no-op if a
/// provider is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
