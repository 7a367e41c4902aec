//! The checked-in test certificates and keys (`testdata/`, see its README)
//! and a ring-backed [`Signer`] for them: what the handshake, receipt,
//! stream and signature tests run on, with no certificate generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use crate::pki::{Certificate, SignError, SignatureScheme, Signer, UnixTime};

/// 2030-01-01T00:00:00Z: inside every test certificate's validity.
pub const NOW: UnixTime = UnixTime::from_secs(1_893_456_000);
/// The SPIFFE ID of every `svid-*` certificate.
pub const CLIENT_ID: &str = "spiffe://example.org/ws/acme/dep/eu";
/// The DNS name of `hub.pem`.
pub const HUB: &str = "hub.test";

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        fn file(name: &str) -> &'static str {
            match name {
                $($name => include_str!(concat!("../testdata/", $name)),)*
                other => panic!("no test file {other}"),
            }
        }
    };
}

files!(
    "ca.pem",
    "hub.pem",
    "hub.key.pem",
    "svid-p256.pem",
    "svid-p256.key.pem",
    "svid-other.pem",
    "svid-other.key.pem",
    "svid-p384.pem",
    "svid-p384.key.pem",
    "svid-ed25519.pem",
    "svid-ed25519.key.pem",
    "svid-rsa.pem",
    "svid-rsa.key.pem",
    "bad-ca-as-leaf.pem",
    "bad-uri-san-count.pem",
    "bad-missing-key-usage.pem",
    "bad-root-path.pem",
    "bad-not-spiffe.pem",
    "bad-eku-without-client-auth.pem",
);

/// The DER of the one PEM block in `text`.
fn pem(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// The certificate `<name>.pem`.
pub fn cert(name: &str) -> Certificate {
    Certificate::from_der(pem(file(&format!("{name}.pem"))))
}

/// A ring key pair signing under one scheme.
#[derive(Debug)]
enum RingKey {
    Ecdsa(EcdsaKeyPair, SignatureScheme),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, SignatureScheme),
}

/// A [`Signer`] over a ring key pair.
#[derive(Debug)]
pub struct RingSigner(RingKey);

impl Signer for RingSigner {
    fn scheme(&self) -> SignatureScheme {
        match &self.0 {
            RingKey::Ecdsa(_, s) | RingKey::Rsa(_, s) => *s,
            RingKey::Ed25519(_) => SignatureScheme::Ed25519,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        let failed = |_| SignError("ring refused to sign".into());
        match &self.0 {
            RingKey::Ecdsa(k, _) => Ok(k.sign(&rng, message).map_err(failed)?.as_ref().to_vec()),
            RingKey::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            RingKey::Rsa(k, scheme) => {
                let padding: &'static dyn signature::RsaEncoding = match scheme {
                    SignatureScheme::RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    SignatureScheme::RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, message, &mut sig).map_err(failed)?;
                Ok(sig)
            }
        }
    }
}

/// The signer of `<name>.key.pem`; RSA keys sign with RSA-PSS SHA-512 (as
/// rustls picks for them).
pub fn signer(name: &str) -> Arc<dyn Signer> {
    let der = pem(file(&format!("{name}.key.pem")));
    let rng = SystemRandom::new();
    let key = if let Ok(k) =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
    {
        RingKey::Ecdsa(k, SignatureScheme::EcdsaP256Sha256)
    } else if let Ok(k) =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &der, &rng)
    {
        RingKey::Ecdsa(k, SignatureScheme::EcdsaP384Sha384)
    } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
        RingKey::Ed25519(k)
    } else {
        RingKey::Rsa(
            RsaKeyPair::from_pkcs8(&der).unwrap(),
            SignatureScheme::RsaPssSha512,
        )
    };
    Arc::new(RingSigner(key))
}

/// The RSA test key signing under `scheme` (one of the RSA-PSS ones).
pub fn rsa_signer(scheme: SignatureScheme) -> Arc<dyn Signer> {
    let der = pem(file("svid-rsa.key.pem"));
    Arc::new(RingSigner(RingKey::Rsa(
        RsaKeyPair::from_pkcs8(&der).unwrap(),
        scheme,
    )))
}

/// An Ed25519 signer from a 32-byte seed (the handshake vectors' keys).
pub fn ed25519_from_seed(seed: u8) -> Arc<dyn Signer> {
    Arc::new(RingSigner(RingKey::Ed25519(
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap(),
    )))
}
