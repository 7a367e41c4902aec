//! The few PKI types the protocol core needs, with no TLS stack behind them.
//!
//! - [`Certificate`]: an X.509 certificate as DER bytes, as it travels in a
//!   handshake chain.
//! - [`UnixTime`]: a point in time, handed in by the caller (this crate
//!   reads no clock).
//! - [`SignatureScheme`] and [`SCHEMES`]: the TLS 1.3 signature schemes a
//!   handshake, a receipt or a goodbye may use.
//! - [`Signer`]: a private key that signs under one scheme. The QUIC
//!   binding implements it over rustls' signing keys; tests implement it
//!   over ring.
//! - [`verify`]: checks a signature with a certificate's public key, with
//!   ring's algorithms and x509-parser's view of the SubjectPublicKeyInfo.
//!   The key's algorithm (and curve) must be the one the scheme names, as
//!   webpki requires: an Ed25519 signature never verifies under a P-256
//!   key's bytes read another way.

use std::fmt;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::{Oid, Tag};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};

/// An X.509 certificate, DER.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Certificate(Vec<u8>);

impl Certificate {
    /// The certificate with these DER bytes (not parsed yet).
    pub fn from_der(der: impl Into<Vec<u8>>) -> Certificate {
        Certificate(der.into())
    }

    /// Its DER bytes.
    pub fn as_der(&self) -> &[u8] {
        &self.0
    }

    /// Its DER bytes, taken out.
    pub fn into_der(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({} bytes)", self.0.len())
    }
}

impl AsRef<[u8]> for Certificate {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for Certificate {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Certificate {
    fn from(der: Vec<u8>) -> Certificate {
        Certificate(der)
    }
}

impl From<&[u8]> for Certificate {
    fn from(der: &[u8]) -> Certificate {
        Certificate(der.to_vec())
    }
}

/// Seconds since the Unix epoch, as the caller's clock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> UnixTime {
        UnixTime(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }
}

/// A TLS 1.3 signature scheme this protocol allows (RFC 8446 §4.2.3
/// code points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// `ecdsa_secp256r1_sha256` (0x0403): what SPIRE issues.
    EcdsaP256Sha256,
    /// `ed25519` (0x0807): deterministic, what the vectors use.
    Ed25519,
    /// `ecdsa_secp384r1_sha384` (0x0503).
    EcdsaP384Sha384,
    /// `rsa_pss_rsae_sha256` (0x0804).
    RsaPssSha256,
    /// `rsa_pss_rsae_sha384` (0x0805).
    RsaPssSha384,
    /// `rsa_pss_rsae_sha512` (0x0806).
    RsaPssSha512,
}

/// Every scheme a handshake, a receipt or a goodbye may use, in order of
/// preference (a key signs with the first its type supports).
pub const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::EcdsaP256Sha256,
    SignatureScheme::Ed25519,
    SignatureScheme::EcdsaP384Sha384,
    SignatureScheme::RsaPssSha256,
    SignatureScheme::RsaPssSha384,
    SignatureScheme::RsaPssSha512,
];

impl SignatureScheme {
    /// The TLS code point.
    pub const fn code(self) -> u16 {
        match self {
            SignatureScheme::EcdsaP256Sha256 => 0x0403,
            SignatureScheme::Ed25519 => 0x0807,
            SignatureScheme::EcdsaP384Sha384 => 0x0503,
            SignatureScheme::RsaPssSha256 => 0x0804,
            SignatureScheme::RsaPssSha384 => 0x0805,
            SignatureScheme::RsaPssSha512 => 0x0806,
        }
    }

    /// The allowed scheme with this code point, if it is one.
    pub fn from_code(code: u16) -> Option<SignatureScheme> {
        SCHEMES.iter().copied().find(|s| s.code() == code)
    }

    /// ring's verification algorithm, and whether a SubjectPublicKeyInfo
    /// algorithm (with its parameters) is the key type this scheme needs.
    fn verification(self) -> (&'static dyn VerificationAlgorithm, fn(&Spki<'_>) -> bool) {
        match self {
            SignatureScheme::EcdsaP256Sha256 => (&signature::ECDSA_P256_SHA256_ASN1, |k| {
                k.is_ec_on(&OID_EC_P256)
            }),
            SignatureScheme::EcdsaP384Sha384 => (&signature::ECDSA_P384_SHA384_ASN1, |k| {
                k.is_ec_on(&OID_NIST_EC_P384)
            }),
            SignatureScheme::Ed25519 => (&signature::ED25519, |k| {
                k.algorithm == OID_SIG_ED25519 && k.parameters.is_none()
            }),
            SignatureScheme::RsaPssSha256 => (&signature::RSA_PSS_2048_8192_SHA256, |k| k.is_rsa()),
            SignatureScheme::RsaPssSha384 => (&signature::RSA_PSS_2048_8192_SHA384, |k| k.is_rsa()),
            SignatureScheme::RsaPssSha512 => (&signature::RSA_PSS_2048_8192_SHA512, |k| k.is_rsa()),
        }
    }
}

/// Why a signature could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// A private key that signs under one of [`SCHEMES`]: the leaf key of a
/// handshake's certificate chain.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The scheme its signatures use.
    fn scheme(&self) -> SignatureScheme;
    /// Signs `message` (the whole of it: context strings included).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A scheme outside [`SCHEMES`].
    #[error("signature scheme 0x{0:04x} is not allowed")]
    Scheme(u16),
    /// The certificate cannot be parsed (or has bytes after it).
    #[error("the certificate cannot be parsed")]
    Certificate,
    /// The certificate's key is not of the type the scheme needs.
    #[error("the certificate's key is not a {0:?} key")]
    KeyType(SignatureScheme),
    /// The signature does not verify with the certificate's key.
    #[error("the signature does not verify with the certificate's key")]
    BadSignature,
}

/// The algorithm of a SubjectPublicKeyInfo.
struct Spki<'a> {
    algorithm: Oid<'a>,
    parameters: Option<&'a x509_parser::asn1_rs::Any<'a>>,
}

impl Spki<'_> {
    fn is_ec_on(&self, curve: &Oid<'_>) -> bool {
        self.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
            && self
                .parameters
                .and_then(|p| Oid::try_from(p).ok())
                .is_some_and(|c| &c == curve)
    }

    /// `rsaEncryption` with NULL parameters: the key form TLS 1.3's
    /// `rsa_pss_rsae_*` schemes use (and the only one webpki accepts).
    fn is_rsa(&self) -> bool {
        self.algorithm == OID_PKCS1_RSAENCRYPTION
            && self.parameters.is_some_and(|p| p.tag() == Tag::Null)
    }
}

/// Verifies `signature` over `message` with the public key of `leaf`,
/// under the scheme with code point `scheme`.
pub fn verify(
    leaf: &Certificate,
    scheme: u16,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let scheme = SignatureScheme::from_code(scheme).ok_or(SignatureError::Scheme(scheme))?;
    let (rest, cert) = x509_parser::parse_x509_certificate(leaf.as_der())
        .map_err(|_| SignatureError::Certificate)?;
    if !rest.is_empty() {
        return Err(SignatureError::Certificate);
    }
    let spki = cert.public_key();
    let key = Spki {
        algorithm: spki.algorithm.algorithm.clone(),
        parameters: spki.algorithm.parameters.as_ref(),
    };
    let (algorithm, key_fits) = scheme.verification();
    if !key_fits(&key) {
        return Err(SignatureError::KeyType(scheme));
    }
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
        .verify(message, signature)
        .map_err(|_| SignatureError::BadSignature)
}

#[cfg(test)]
#[path = "pki_test.rs"]
mod tests;
