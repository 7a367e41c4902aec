#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::testdata::{cert, rsa_signer, signer};

const MESSAGE: &[u8] = b"ewii/1 test message";

fn signed(name: &str) -> (Certificate, u16, Vec<u8>) {
    let s = signer(name);
    (cert(name), s.scheme().code(), s.sign(MESSAGE).unwrap())
}

#[test]
fn every_allowed_scheme_verifies_with_its_own_key() {
    for (name, scheme) in [
        ("svid-p256", SignatureScheme::EcdsaP256Sha256),
        ("svid-p384", SignatureScheme::EcdsaP384Sha384),
        ("svid-ed25519", SignatureScheme::Ed25519),
        ("hub", SignatureScheme::EcdsaP256Sha256),
    ] {
        let (leaf, code, sig) = signed(name);
        assert_eq!(code, scheme.code(), "{name}");
        verify(&leaf, code, MESSAGE, &sig).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let rsa = cert("svid-rsa");
    for scheme in [
        SignatureScheme::RsaPssSha256,
        SignatureScheme::RsaPssSha384,
        SignatureScheme::RsaPssSha512,
    ] {
        let sig = rsa_signer(scheme).sign(MESSAGE).unwrap();
        verify(&rsa, scheme.code(), MESSAGE, &sig).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        // The same key under another hash: refused.
        let other = if scheme == SignatureScheme::RsaPssSha256 {
            SignatureScheme::RsaPssSha384
        } else {
            SignatureScheme::RsaPssSha256
        };
        assert_eq!(
            verify(&rsa, other.code(), MESSAGE, &sig),
            Err(SignatureError::BadSignature)
        );
    }
}

#[test]
fn a_flipped_bit_another_message_or_another_key_is_refused() {
    for name in ["svid-p256", "svid-p384", "svid-ed25519", "svid-rsa"] {
        let (leaf, code, sig) = signed(name);
        for i in [0, sig.len() / 2, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            assert!(
                verify(&leaf, code, MESSAGE, &bad).is_err(),
                "{name} byte {i}"
            );
        }
        assert_eq!(
            verify(&leaf, code, b"another message", &sig),
            Err(SignatureError::BadSignature),
            "{name}"
        );
    }
    let (_, code, sig) = signed("svid-other");
    assert_eq!(
        verify(&cert("svid-p256"), code, MESSAGE, &sig),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn the_scheme_must_be_allowed_and_match_the_keys_type_and_curve() {
    let (p256, code, sig) = signed("svid-p256");
    // rsa_pkcs1_sha256, ecdsa_sha1, and nothing at all.
    for outside in [0x0401, 0x0203, 0x0000] {
        assert_eq!(
            verify(&p256, outside, MESSAGE, &sig),
            Err(SignatureError::Scheme(outside))
        );
    }
    // A P-384 signature presented as P-256 under a P-384 certificate, and
    // the other way round: the curve is part of the key type.
    let (p384, code384, sig384) = signed("svid-p384");
    assert_eq!(
        verify(&p384, code, MESSAGE, &sig384),
        Err(SignatureError::KeyType(SignatureScheme::EcdsaP256Sha256))
    );
    assert_eq!(
        verify(&p256, code384, MESSAGE, &sig),
        Err(SignatureError::KeyType(SignatureScheme::EcdsaP384Sha384))
    );
    // Ed25519 under an EC key, EC and RSA-PSS under an Ed25519 key.
    let (ed, ed_code, ed_sig) = signed("svid-ed25519");
    assert_eq!(
        verify(&p256, ed_code, MESSAGE, &ed_sig),
        Err(SignatureError::KeyType(SignatureScheme::Ed25519))
    );
    assert_eq!(
        verify(&ed, code, MESSAGE, &sig),
        Err(SignatureError::KeyType(SignatureScheme::EcdsaP256Sha256))
    );
    assert_eq!(
        verify(&ed, SignatureScheme::RsaPssSha256.code(), MESSAGE, &sig),
        Err(SignatureError::KeyType(SignatureScheme::RsaPssSha256))
    );
    // RSA-PSS needs an RSA key.
    assert_eq!(
        verify(&p256, SignatureScheme::RsaPssSha512.code(), MESSAGE, &sig),
        Err(SignatureError::KeyType(SignatureScheme::RsaPssSha512))
    );
}

#[test]
fn garbage_and_trailing_bytes_are_not_a_certificate() {
    let (leaf, code, sig) = signed("svid-p256");
    assert_eq!(
        verify(
            &Certificate::from_der(vec![0x30, 0x03, 0x01]),
            code,
            MESSAGE,
            &sig
        ),
        Err(SignatureError::Certificate)
    );
    let mut trailing = leaf.into_der();
    trailing.push(0);
    assert_eq!(
        verify(&Certificate::from_der(trailing), code, MESSAGE, &sig),
        Err(SignatureError::Certificate)
    );
}

#[test]
fn scheme_code_points_round_trip() {
    for s in SCHEMES {
        assert_eq!(SignatureScheme::from_code(s.code()), Some(*s));
    }
    assert_eq!(SignatureScheme::EcdsaP256Sha256.code(), 0x0403);
    assert_eq!(SignatureScheme::Ed25519.code(), 0x0807);
    assert_eq!(SignatureScheme::from_code(0x0401), None);
    let c = Certificate::from_der(vec![1, 2, 3]);
    assert_eq!(format!("{c:?}"), "Certificate(3 bytes)");
    assert_eq!(&*c, &[1, 2, 3]);
}
