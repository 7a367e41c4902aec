//! One certificate authority per workspace, and X509-SVID issuance.
//!
//! Each workspace gets its own ECDSA P-256 CA when it is created, so a
//! deployment of one workspace can never hold an SVID that another
//! workspace's bundle accepts (security property 10). The CA key is sealed
//! under the hub master key by the store; here it is in memory only.
//!
//! [`WorkspaceCa::issue_svid`] takes nothing from a CSR but its public key
//! (after checking the CSR's self-signature, which proves possession of the
//! private key): subject, SANs, key usages, basic constraints and every
//! other requested extension are ignored, and the leaf gets exactly the
//! X509-SVID profile (X509-SVID §4: one URI SAN, `cA=false`, keyUsage
//! digitalSignature critical, EKU clientAuth + serverAuth).

use std::time::{Duration, SystemTime};

use ewii_wire::svid::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::Error;
use crate::state::tokens::random_bytes;

/// Lifetime of an X509-SVID issued at enrolment or renewal.
pub const SVID_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a workspace CA certificate.
pub const CA_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far notBefore is backdated, to tolerate clock skew between the hub
/// and the clients that verify against it.
pub const BACKDATE: Duration = Duration::from_secs(60);
/// Largest CSR accepted (a P-256 CSR is about 300 bytes).
pub const MAX_CSR_LEN: usize = 16 << 10;

/// A self-signed ECDSA P-256 signing CA: its certificate and private key.
/// The workspace CAs and the hub CA are both one of these.
pub struct SigningCa {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa").finish_non_exhaustive()
    }
}

impl SigningCa {
    /// A new CA: ECDSA P-256, `cA=true` with path length 0 (it signs
    /// leaves only), keyUsage keyCertSign + cRLSign, valid [`CA_TTL`] from
    /// `now`, with an optional URI SAN.
    fn generate(
        common_name: String,
        uri_san: Option<String>,
        now: SystemTime,
    ) -> Result<SigningCa, Error> {
        let issue = |e: rcgen::Error| Error::Issue(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Ewii");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if let Some(uri) = uri_san {
            params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(issue)?)];
        }
        params.serial_number = Some(random_serial()?);
        params.not_before = offset(now.checked_sub(BACKDATE).unwrap_or(now))?;
        params.not_after = offset(later(now, CA_TTL)?)?;
        let cert = params.self_signed(&key).map_err(issue)?;
        Ok(SigningCa {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key,
        })
    }

    /// Rebuilds a CA from its stored certificate (PEM) and PKCS#8 key;
    /// `what` names it in errors.
    fn from_parts(cert_pem: &str, key_pkcs8: &[u8], what: &str) -> Result<SigningCa, Error> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::Corrupt(format!("{what} certificate: {e}")))?;
        let key =
            KeyPair::try_from(key_pkcs8).map_err(|e| Error::Corrupt(format!("{what} key: {e}")))?;
        Ok(SigningCa {
            cert,
            cert_pem: cert_pem.to_owned(),
            key,
        })
    }

    /// The CA certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate (PEM).
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key as PKCS#8 DER, for sealing.
    pub fn key_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.serialize_der())
    }

    /// Signs a leaf for `public_key`: a random serial, the authority key
    /// identifier, valid from `now` − `backdate` to `now` + `ttl`.
    fn sign(
        &self,
        mut params: CertificateParams,
        public_key: &impl PublicKeyData,
        now: SystemTime,
        backdate: Duration,
        ttl: Duration,
    ) -> Result<rcgen::Certificate, Error> {
        let issue = |e: rcgen::Error| Error::Issue(e.to_string());
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = offset(now.checked_sub(backdate).unwrap_or(now))?;
        params.not_after = offset(later(now, ttl)?)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key).map_err(issue)?;
        params.signed_by(public_key, &issuer).map_err(issue)
    }
}

/// A workspace's signing CA: it issues the workspace's X509-SVIDs.
#[derive(Debug)]
pub struct WorkspaceCa(SigningCa);

impl std::ops::Deref for WorkspaceCa {
    type Target = SigningCa;
    fn deref(&self) -> &SigningCa {
        &self.0
    }
}

impl WorkspaceCa {
    /// Generates a new CA for `workspace` (see [`SigningCa`]), with the
    /// trust domain's SPIFFE ID as URI SAN (X509-SVID §4.2 allows it on
    /// signing certificates).
    pub fn generate(
        workspace: &str,
        trust_domain: &str,
        now: SystemTime,
    ) -> Result<WorkspaceCa, Error> {
        SigningCa::generate(
            format!("Ewii workspace {workspace} CA"),
            Some(format!("spiffe://{trust_domain}")),
            now,
        )
        .map(WorkspaceCa)
    }

    /// Rebuilds a CA from its stored certificate (PEM) and PKCS#8 key.
    pub fn from_parts(cert_pem: &str, key_pkcs8: &[u8]) -> Result<WorkspaceCa, Error> {
        SigningCa::from_parts(cert_pem, key_pkcs8, "workspace CA").map(WorkspaceCa)
    }

    /// Issues an X509-SVID for `spiffe_id` to the key of a PKCS#10 CSR.
    ///
    /// The CSR's signature must verify with its own public key (proof of
    /// possession); the key must be EC P-256 (what SPIRE and our client
    /// use), EC P-384 or Ed25519. Everything else in the CSR is ignored.
    /// The SVID is valid from `now` − min([`BACKDATE`], `ttl`/10) to
    /// `now` + `ttl`, with a random 127-bit serial.
    pub fn issue_svid(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, Error> {
        let public_key = csr_public_key(csr_der)?;
        let issue = |e: rcgen::Error| Error::Issue(e.to_string());

        let mut params = CertificateParams::default();
        // X509-SVID §2: the subject carries no meaning; leave it empty and
        // let the URI SAN (marked critical by rcgen then) name the workload.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            spiffe_id.to_string().try_into().map_err(issue)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        // Backdate for clock skew, but by no more than a tenth of the
        // lifetime: clients renew at half of notBefore..notAfter, which a
        // long backdate would pull towards the past for short TTLs.
        let cert = self.sign(params, &public_key, now, BACKDATE.min(ttl / 10), ttl)?;
        Ok(cert.der().clone())
    }
}

/// The subject public key of a CSR whose self-signature verifies.
struct CsrPublicKey {
    /// The subjectPublicKey BIT STRING contents.
    raw: Vec<u8>,
    /// Names the key's algorithm identifier for rcgen.
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// Checks a CSR the way [`WorkspaceCa::issue_svid`] will (size, DER,
/// self-signature, key algorithm), so enrolment can refuse a bad request
/// before it spends the token.
pub fn check_csr(csr_der: &[u8]) -> Result<(), Error> {
    csr_public_key(csr_der).map(|_| ())
}

/// Parses a CSR, verifies its signature and returns its public key.
///
/// Parsed here rather than with rcgen's `CertificateSigningRequestParams`,
/// which refuses CSRs carrying extensions it does not know: requested
/// extensions are ignored anyway, so they must not make issuance fail.
fn csr_public_key(csr_der: &[u8]) -> Result<CsrPublicKey, Error> {
    if csr_der.len() > MAX_CSR_LEN {
        return Err(Error::Csr(format!(
            "it is {} bytes, more than the {MAX_CSR_LEN} accepted",
            csr_der.len()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| Error::Csr(format!("not a DER PKCS#10 request ({e})")))?;
    if !rest.is_empty() {
        return Err(Error::Csr(format!(
            "{} bytes of trailing data after the request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|_| {
        Error::Csr(
            "its signature does not verify with its own public key (altered request, or not \
             signed by the key it carries)"
                .into(),
        )
    })?;
    let spki = &csr.certification_request_info.subject_pki;
    let alg_oid = &spki.algorithm.algorithm;
    let alg: &'static SignatureAlgorithm = if *alg_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Some(c) if c == OID_NIST_EC_P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => {
                return Err(Error::Csr(
                    "unsupported elliptic curve; use an EC P-256 key".into(),
                ));
            }
        }
    } else if *alg_oid == OID_SIG_ED25519 {
        &rcgen::PKCS_ED25519
    } else {
        return Err(Error::Csr(format!(
            "unsupported key algorithm {alg_oid}; use an EC P-256 key"
        )));
    };
    Ok(CsrPublicKey {
        raw: spki.subject_public_key.data.to_vec(),
        alg,
    })
}

/// A random positive serial of 16 bytes (RFC 5280 §4.1.2.2: at most 20
/// octets, positive; ≥ 64 bits of entropy per CA/B baseline practice).
fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = random_bytes::<16>()?;
    // Clear the sign bit and keep the first octet non-zero so the DER
    // INTEGER is exactly 16 positive octets.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn later(now: SystemTime, ttl: Duration) -> Result<SystemTime, Error> {
    now.checked_add(ttl)
        .ok_or_else(|| Error::Issue("the validity period is out of range".into()))
}

fn offset(t: SystemTime) -> Result<OffsetDateTime, Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Error::Issue("the clock is before 1970".into()))?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| Error::Issue("time out of range".into()))?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| Error::Issue(e.to_string()))
}

/// Lifetime of the hub's TLS server certificate (issued afresh at each
/// start of `serve`).
pub const SERVER_CERT_TTL: Duration = Duration::from_secs(397 * 24 * 3600);

/// The hub's own CA: it signs the hub's TLS server certificates. Clients
/// pin it with `ewii-client --hub-ca` (`ewii-hub hub-ca` prints it).
#[derive(Debug)]
pub struct HubCa(SigningCa);

impl std::ops::Deref for HubCa {
    type Target = SigningCa;
    fn deref(&self) -> &SigningCa {
        &self.0
    }
}

/// A TLS server certificate chain and its key, PEM.
pub struct ServerCert {
    /// Leaf then the hub CA.
    pub chain_pem: String,
    /// The leaf's PKCS#8 key, PEM.
    pub key_pem: Zeroizing<String>,
}

impl HubCa {
    /// Generates a hub CA (see [`SigningCa`]).
    pub fn generate(now: SystemTime) -> Result<HubCa, Error> {
        SigningCa::generate("Ewii hub CA".into(), None, now).map(HubCa)
    }

    /// Rebuilds the CA from its stored certificate (PEM) and PKCS#8 key.
    pub fn from_parts(cert_pem: &str, key_pkcs8: &[u8]) -> Result<HubCa, Error> {
        SigningCa::from_parts(cert_pem, key_pkcs8, "hub CA").map(HubCa)
    }

    /// Issues a TLS server certificate for `names` (DNS names or IP
    /// literals) to a fresh P-256 key.
    pub fn issue_server_cert(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<ServerCert, Error> {
        let issue = |e: rcgen::Error| Error::Issue(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(issue)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "ewii-hub".into()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = self.sign(params, &key, now, BACKDATE, SERVER_CERT_TTL)?;
        Ok(ServerCert {
            chain_pem: format!("{}{}", cert.pem(), self.certificate_pem()),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// The DNS name every replica certificate carries, and the name a replica
/// dials its peers by (their identity is the URI SAN, checked after the
/// handshake).
pub const REPLICA_SERVER_NAME: &str = "replica.ewii-hub.internal";

/// The URI SAN naming replica `id` in its certificate.
pub fn replica_uri(id: &str) -> String {
    format!("spiffe://ewii-hub.internal/replica/{id}")
}

/// The replicas' internal CA: it signs the certificates of the
/// replica-to-replica channel, both ways (mutual TLS). Kept in the store
/// under the master key like the hub CA; a peer whose certificate is not
/// from it is refused.
#[derive(Debug)]
pub struct ReplicaCa(SigningCa);

impl std::ops::Deref for ReplicaCa {
    type Target = SigningCa;
    fn deref(&self) -> &SigningCa {
        &self.0
    }
}

/// A replica's certificate (leaf, DER) and its PKCS#8 key.
pub struct ReplicaCert {
    /// The leaf.
    pub cert: CertificateDer<'static>,
    /// Its key, PKCS#8 DER.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ReplicaCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaCert").finish_non_exhaustive()
    }
}

impl ReplicaCa {
    /// Generates a replica CA (see [`SigningCa`]).
    pub fn generate(now: SystemTime) -> Result<ReplicaCa, Error> {
        SigningCa::generate("Ewii hub replica CA".into(), None, now).map(ReplicaCa)
    }

    /// Rebuilds the CA from its stored certificate (PEM) and PKCS#8 key.
    pub fn from_parts(cert_pem: &str, key_pkcs8: &[u8]) -> Result<ReplicaCa, Error> {
        SigningCa::from_parts(cert_pem, key_pkcs8, "replica CA").map(ReplicaCa)
    }

    /// Issues replica `id` its certificate, to a fresh P-256 key: DNS SAN
    /// [`REPLICA_SERVER_NAME`], URI SAN [`replica_uri`], EKU serverAuth +
    /// clientAuth (it both serves and dials).
    pub fn issue_replica_cert(&self, id: &str, now: SystemTime) -> Result<ReplicaCert, Error> {
        let issue = |e: rcgen::Error| Error::Issue(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("ewii-hub replica {id}"));
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(REPLICA_SERVER_NAME.try_into().map_err(issue)?),
            SanType::URI(replica_uri(id).try_into().map_err(issue)?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = self.sign(params, &key, now, BACKDATE, SERVER_CERT_TTL)?;
        Ok(ReplicaCert {
            cert: cert.der().clone(),
            key_pkcs8: Zeroizing::new(key.serialize_der()),
        })
    }
}
