//! Enrolment tokens and agent bearer credentials.
//!
//! Both are 32 bytes from the system CSPRNG (ring), base64url without
//! padding; agent credentials carry the prefix `ewii_agent_` so that secret
//! scanners can recognise them. The store keeps only their SHA-256: the
//! secrets have 256 bits of entropy, so a fast hash is enough to make a
//! leaked database useless for enrolling or calling. Both are handed out as
//! the project's one secret type, `SecretString` (zeroised, never printed).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ewii_tools_schema::SecretString;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::Error;

/// Prefix of every agent bearer credential.
pub const AGENT_CREDENTIAL_PREFIX: &str = "ewii_agent_";

/// The SHA-256 of a presented secret, lowercase hex.
pub fn secret_hash(secret: &str) -> String {
    hex(digest(&SHA256, secret.as_bytes()).as_ref())
}

/// A new single-use enrolment token: 32 random bytes, base64url.
pub fn new_enrolment_token() -> Result<SecretString, Error> {
    let bytes = Zeroizing::new(random_bytes::<32>()?);
    Ok(SecretString::new(B64URL.encode(&bytes[..])))
}

/// A new agent bearer credential: `ewii_agent_` and 32 random bytes,
/// base64url.
pub fn new_agent_credential() -> Result<SecretString, Error> {
    let bytes = Zeroizing::new(random_bytes::<32>()?);
    Ok(SecretString::new(format!(
        "{AGENT_CREDENTIAL_PREFIX}{}",
        B64URL.encode(&bytes[..])
    )))
}

/// `N` bytes from the system CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Random)?;
    Ok(bytes)
}

/// A random 128-bit row id, lowercase hex.
pub(crate) fn random_id() -> Result<String, Error> {
    Ok(hex(&random_bytes::<16>()?))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_enrolment_token().unwrap();
        let b = new_enrolment_token().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 43);
        assert_eq!(B64URL.decode(a.expose()).unwrap().len(), 32);
        assert_eq!(secret_hash(a.expose()).len(), 64);
        assert_ne!(secret_hash(a.expose()), secret_hash(b.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));

        let c = new_agent_credential().unwrap();
        assert!(c.expose().starts_with(AGENT_CREDENTIAL_PREFIX));
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
