//! SPIFFE trust bundles: the JWKS document of the SPIFFE Trust Domain and
//! Bundle specification (`standards/SPIFFE_Trust_Domain_and_Bundle.md` §4),
//! and PEM.
//!
//! An X.509 authority is a JWK with `"use": "x509-svid"` whose `x5c` holds
//! exactly one base64 (not base64url) DER certificate (§4.2.1). Keys with
//! another `use` (`jwt-svid`) are skipped on import: the hub only verifies
//! X509-SVIDs.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ewii_quic::TrustBundle;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};

use crate::Error;

/// Largest bundle document accepted on import.
pub const MAX_BUNDLE_LEN: usize = 1 << 20;

/// The SPIFFE bundle (JWKS) for X.509 authorities `certs`, with
/// `spiffe_sequence` = `sequence`.
pub fn to_jwks(certs: &[CertificateDer<'_>], sequence: u64) -> Result<Value, Error> {
    let keys = certs.iter().map(jwk).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "keys": keys, "spiffe_sequence": sequence }))
}

/// One `x509-svid` JWK: the EC public key coordinates and the certificate.
fn jwk(cert: &CertificateDer<'_>) -> Result<Value, Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| Error::Bundle(format!("unparsable CA certificate ({e})")))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(Error::Bundle(
            "only EC CA keys can be exported as a SPIFFE bundle; use --pem".into(),
        ));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    let (crv, len) = match curve {
        Some(c) if c == OID_EC_P256 => ("P-256", 32),
        Some(c) if c == OID_NIST_EC_P384 => ("P-384", 48),
        _ => return Err(Error::Bundle("unsupported EC curve in a CA key".into())),
    };
    // SEC 1 §2.3.3 uncompressed point: 0x04 ‖ X ‖ Y.
    let point = &spki.subject_public_key.data;
    if point.len() != 1 + 2 * len || point[0] != 0x04 {
        return Err(Error::Bundle(
            "the CA key is not an uncompressed EC point".into(),
        ));
    }
    Ok(json!({
        "use": "x509-svid",
        "kty": "EC",
        "crv": crv,
        "x": B64URL.encode(&point[1..=len]),
        "y": B64URL.encode(&point[1 + len..]),
        "x5c": [B64.encode(cert.as_ref())],
    }))
}

/// The certificates as concatenated PEM `CERTIFICATE` blocks.
pub fn to_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = B64.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            // Base64 output is ASCII.
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Reads a bundle to import: PEM `CERTIFICATE` blocks or a SPIFFE bundle
/// JWKS. Each certificate must be a CA (basicConstraints `cA=true`,
/// X509-SVID §4.1) usable as a trust anchor; at least one is required.
pub fn parse_bundle(text: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    if text.len() > MAX_BUNDLE_LEN {
        return Err(Error::Bundle(format!(
            "the file is larger than {MAX_BUNDLE_LEN} bytes"
        )));
    }
    let trimmed = text.trim_start();
    let certs = if trimmed.starts_with('{') {
        from_jwks(trimmed)?
    } else if trimmed.starts_with("-----BEGIN") {
        CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Bundle(format!("bad PEM ({e})")))?
    } else {
        return Err(Error::Bundle(
            "not PEM certificates nor a SPIFFE bundle (JWKS JSON)".into(),
        ));
    };
    if certs.is_empty() {
        return Err(Error::Bundle(
            "it contains no X.509 CA certificate (no CERTIFICATE block, or no key with \"use\": \
             \"x509-svid\")"
                .into(),
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        check_ca(cert).map_err(|why| Error::Bundle(format!("certificate #{}: {why}", i + 1)))?;
    }
    // The tunnel's own bundle type is the judge of what is a usable anchor.
    TrustBundle::from_der(certs.clone()).map_err(|e| Error::Bundle(e.to_string()))?;
    Ok(certs)
}

fn from_jwks(text: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| Error::Bundle(format!("invalid JSON ({e})")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Bundle("the JWKS has no \"keys\" array".into()))?;
    let mut certs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if key.get("use").and_then(Value::as_str) != Some("x509-svid") {
            continue;
        }
        // §4.2.1: x5c MUST hold exactly one certificate, the authority.
        let x5c = key
            .get("x5c")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a[0].as_str())
            .ok_or_else(|| {
                Error::Bundle(format!(
                    "key #{}: an x509-svid key needs \"x5c\" with exactly one certificate",
                    i + 1
                ))
            })?;
        let der = B64
            .decode(x5c)
            .map_err(|e| Error::Bundle(format!("key #{}: x5c is not base64 ({e})", i + 1)))?;
        certs.push(CertificateDer::from(der));
    }
    Ok(certs)
}

fn check_ca(cert: &CertificateDer<'_>) -> Result<(), String> {
    let (rest, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".into());
    }
    match parsed.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(()),
        Ok(_) => Err(
            "not a CA certificate (basicConstraints cA=true is missing); import the CA that \
             signs the SVIDs, not an SVID"
                .into(),
        ),
        Err(e) => Err(format!("bad basicConstraints ({e})")),
    }
}
