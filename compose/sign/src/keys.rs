//! The signing key pair: ECDSA P-256 with SHA-256, as cosign's own keys.
//!
//! The private key is written as PKCS#8 `PRIVATE KEY` PEM (mode 0600);
//! cosign imports it with `cosign import-key-pair --key cosign.key`. The
//! public key is SubjectPublicKeyInfo `PUBLIC KEY` PEM, the form
//! `cosign verify --key cosign.pub` reads.

use std::path::Path;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

use crate::SignError;

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte
/// uncompressed point: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 },
/// BIT STRING }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A signing key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

/// A verifying key: the uncompressed P-256 point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey(Vec<u8>);

impl SigningKey {
    /// A new random key; returns it with its PKCS#8 PEM.
    pub fn generate() -> Result<(SigningKey, String), SignError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| SignError::Key("cannot generate a P-256 key".into()))?;
        let pem = to_pem("PRIVATE KEY", pkcs8.as_ref());
        Ok((SigningKey::from_pkcs8(pkcs8.as_ref())?, pem))
    }

    /// From PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, SignError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
            .map_err(|e| SignError::Key(format!("not a PKCS#8 ECDSA P-256 key: {e}")))?;
        Ok(SigningKey { pair, rng })
    }

    /// From a `PRIVATE KEY` PEM file.
    pub fn read(path: &Path) -> Result<SigningKey, SignError> {
        let text = read(path)?;
        SigningKey::from_pkcs8(&from_pem(&text, "PRIVATE KEY")?)
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.pair.public_key().as_ref().to_vec())
    }

    /// An ASN.1 DER ECDSA signature over SHA-256 of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SignError::Key("signing failed".into()))
    }
}

impl VerifyingKey {
    /// From a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM text.
    pub fn from_pem(text: &str) -> Result<VerifyingKey, SignError> {
        let der = from_pem(text, "PUBLIC KEY")?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(VerifyingKey(point.to_vec())),
            _ => Err(SignError::Key(
                "not an ECDSA P-256 public key (cosign's key type)".into(),
            )),
        }
    }

    /// From a `PUBLIC KEY` PEM file.
    pub fn read(path: &Path) -> Result<VerifyingKey, SignError> {
        VerifyingKey::from_pem(&read(path)?)
    }

    /// The `PUBLIC KEY` PEM text.
    pub fn to_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        to_pem("PUBLIC KEY", &der)
    }

    /// Whether `signature` (ASN.1 DER) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

fn read(path: &Path) -> Result<String, SignError> {
    std::fs::read_to_string(path)
        .map_err(|e| SignError::Key(format!("cannot read {}: {e}", path.display())))
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn from_pem(text: &str, label: &str) -> Result<Vec<u8>, SignError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| SignError::Key(format!("no {begin} block")))?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| SignError::Key(format!("bad base64 in the {label} block: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let (key, pem) = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(&from_pem(&pem, "PRIVATE KEY").unwrap()).unwrap();
        let public = VerifyingKey::from_pem(&key.verifying_key().to_pem()).unwrap();
        assert_eq!(public, again.verifying_key());
        let sig = key.sign(b"payload").unwrap();
        assert!(public.verifies(b"payload", &sig));
        assert!(!public.verifies(b"payload!", &sig));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(!other.verifying_key().verifies(b"payload", &sig));
    }

    #[test]
    fn the_public_key_is_a_p256_subject_public_key_info() {
        // A P-256 SPKI is 91 bytes, base64 in two PEM lines.
        let (key, _) = SigningKey::generate().unwrap();
        let pem = key.verifying_key().to_pem();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
        );
        assert_eq!(from_pem(&pem, "PUBLIC KEY").unwrap().len(), 91);
        assert!(
            VerifyingKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }
}
