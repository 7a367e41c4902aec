//! The certificates and keys `ewii-wire`'s tests use (`tunnel/wire/testdata`,
//! see its README): `ewii-wire` may not depend on rcgen, so they are made
//! here, once, and checked in.
//!
//! `EWII_WRITE_TESTDATA=1 cargo test -p ewii-quic --test wire_testdata`
//! (re)writes them, reusing every key file already there. Every run checks
//! the checked-in set: each key signs under its scheme with rustls and the
//! signature verifies with `ewii_wire::pki::verify`, and each deliberately
//! broken SVID is refused by `check_leaf` with the reason its name says.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use ewii_wire::pki::{Certificate, SignatureScheme};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, date_time_ymd,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CLIENT_ID: &str = "spiffe://example.org/ws/acme/dep/eu";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/testdata")
}

/// The key in `<name>.key.pem`, or a new one of `alg` (none for RSA: ring
/// cannot generate RSA keys, so `svid-rsa.key.pem` comes from
/// `openssl genpkey`, as the README says).
fn key(name: &str, alg: &'static rcgen::SignatureAlgorithm) -> KeyPair {
    let path = dir().join(format!("{name}.key.pem"));
    match std::fs::read_to_string(&path) {
        Ok(pem) => KeyPair::from_pem(&pem).unwrap(),
        Err(_) => KeyPair::generate_for(alg).unwrap(),
    }
}

fn params(serial: u8) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.serial_number = Some(SerialNumber::from_slice(&[serial]));
    p.not_before = date_time_ymd(2026, 1, 1);
    p.not_after = date_time_ymd(2046, 1, 1);
    p
}

fn svid_params(serial: u8, id: &str) -> CertificateParams {
    let mut p = params(serial);
    p.distinguished_name
        .push(DnType::OrganizationName, "Ewii test");
    p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    p
}

fn write(name: &str, text: &str) {
    std::fs::write(dir().join(name), text).unwrap();
}

fn generate() {
    let ca_key = key("ca", &rcgen::PKCS_ECDSA_P256_SHA256);
    let mut ca = params(1);
    ca.distinguished_name
        .push(DnType::CommonName, "ewii test workspace ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    write("ca.pem", &ca_cert.pem());
    write("ca.key.pem", &ca_key.serialize_pem());
    let issuer = Issuer::new(ca, ca_key);

    let issue = |name: &str, p: CertificateParams, key: Option<KeyPair>| {
        let key = key.unwrap_or_else(|| self::key(name, &rcgen::PKCS_ECDSA_P256_SHA256));
        let cert = p.signed_by(&key, &issuer).unwrap();
        write(&format!("{name}.pem"), &cert.pem());
        if !name.starts_with("bad-") {
            write(&format!("{name}.key.pem"), &key.serialize_pem());
        }
    };

    let mut hub = params(2);
    hub.distinguished_name.push(DnType::CommonName, "hub.test");
    hub.subject_alt_names = vec![SanType::DnsName("hub.test".try_into().unwrap())];
    hub.is_ca = IsCa::ExplicitNoCa;
    hub.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    hub.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue("hub", hub, None);

    issue("svid-p256", svid_params(3, CLIENT_ID), None);
    issue("svid-other", svid_params(4, CLIENT_ID), None);
    issue(
        "svid-p384",
        svid_params(5, CLIENT_ID),
        Some(key("svid-p384", &rcgen::PKCS_ECDSA_P384_SHA384)),
    );
    issue(
        "svid-ed25519",
        svid_params(6, CLIENT_ID),
        Some(key("svid-ed25519", &rcgen::PKCS_ED25519)),
    );
    let rsa = std::fs::read_to_string(dir().join("svid-rsa.key.pem"))
        .expect("svid-rsa.key.pem: make it once with openssl (see the README)");
    issue(
        "svid-rsa",
        svid_params(7, CLIENT_ID),
        Some(KeyPair::from_pem(&rsa).unwrap()),
    );

    let mut p = svid_params(8, CLIENT_ID);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    issue("bad-ca-as-leaf", p, None);
    let mut p = svid_params(9, CLIENT_ID);
    p.subject_alt_names.push(SanType::URI(
        "spiffe://example.org/ws/acme/dep/us".try_into().unwrap(),
    ));
    issue("bad-uri-san-count", p, None);
    let mut p = svid_params(10, CLIENT_ID);
    p.key_usages = Vec::new();
    issue("bad-missing-key-usage", p, None);
    issue(
        "bad-root-path",
        svid_params(11, "spiffe://example.org"),
        None,
    );
    issue(
        "bad-not-spiffe",
        svid_params(12, "https://example.org/ws/acme"),
        None,
    );
    let mut p = svid_params(13, CLIENT_ID);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue("bad-eku-without-client-auth", p, None);
}

fn cert(name: &str) -> Certificate {
    let path = dir().join(format!("{name}.pem"));
    let der =
        CertificateDer::from_pem_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Certificate::from_der(der.to_vec())
}

fn rustls_schemes() -> Vec<rustls::SignatureScheme> {
    ewii_wire::pki::SCHEMES
        .iter()
        .map(|s| rustls::SignatureScheme::from(s.code()))
        .collect()
}

#[test]
fn the_checked_in_test_certificates_and_keys_are_consistent() {
    if std::env::var_os("EWII_WRITE_TESTDATA").is_some() {
        generate();
    }
    let schemes = rustls_schemes();
    for (name, scheme) in [
        ("hub", SignatureScheme::EcdsaP256Sha256),
        ("svid-p256", SignatureScheme::EcdsaP256Sha256),
        ("svid-other", SignatureScheme::EcdsaP256Sha256),
        ("svid-p384", SignatureScheme::EcdsaP384Sha384),
        ("svid-ed25519", SignatureScheme::Ed25519),
        ("svid-rsa", SignatureScheme::RsaPssSha512),
    ] {
        let leaf = cert(name);
        let key = PrivateKeyDer::from_pem_file(dir().join(format!("{name}.key.pem"))).unwrap();
        let key = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        let signer = key.choose_scheme(&schemes).unwrap();
        assert_eq!(u16::from(signer.scheme()), scheme.code(), "{name}");
        let sig = signer.sign(b"ewii test data").unwrap();
        ewii_wire::pki::verify(&leaf, scheme.code(), b"ewii test data", &sig)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.starts_with("svid") {
            let checked = ewii_wire::svid::check_leaf(&leaf).unwrap();
            assert_eq!(checked.id.to_string(), CLIENT_ID);
        }
    }
    // The other key is another key: a signature by one does not verify
    // under the other's certificate.
    assert_ne!(cert("svid-p256"), cert("svid-other"));
    for (name, reason) in [
        ("bad-ca-as-leaf", "ca_as_leaf"),
        ("bad-uri-san-count", "uri_san_count"),
        ("bad-missing-key-usage", "missing_key_usage"),
        ("bad-root-path", "root_path"),
        ("bad-not-spiffe", "not_spiffe"),
        ("bad-eku-without-client-auth", "eku_without_client_auth"),
    ] {
        let err = ewii_wire::svid::check_leaf(&cert(name)).unwrap_err();
        assert_eq!(err.reason(), reason, "{name}: {err}");
    }
    // Both chain to the CA, and the CA is one.
    let ca = cert("ca");
    let (_, parsed) = x509_parser::parse_x509_certificate(ca.as_der()).unwrap();
    assert!(parsed.is_ca());
}
