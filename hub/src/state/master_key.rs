//! The hub master key, which seals workspace CA private keys at rest.
//!
//! Resolution order ([`MasterKey::resolve`]):
//! 1. `EWII_HUB_MASTER_KEY`: base64 of 32 bytes. This is what production
//!    uses, injected from a secret store (Vault, KMS-decrypted file, a
//!    Kubernetes secret), so that the key never sits beside the database.
//! 2. With the SQLite store only: `DATA/master.key` (mode 0600, created on
//!    first use). Convenient for one machine, but a copy of the data
//!    directory then holds key and ciphertext together.
//! 3. With `--database-url` and no environment key: refused. Several hub
//!    replicas share one database, so they must share one key that lives
//!    outside any one replica.
//!
//! Sealing is AES-256-GCM (ring) with a fresh random 96-bit nonce per seal;
//! the caller's associated data binds a sealed value to its row (a CA key
//! moved to another workspace's row no longer opens).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::Error;
use crate::error::io;
use crate::state::tokens::random_bytes;

/// The environment variable holding the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "EWII_HUB_MASTER_KEY";
/// The key file's name inside the SQLite data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// A 256-bit AES-GCM key, zeroised on drop, never printed.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<MasterKey, Error> {
        Ok(MasterKey {
            key: Zeroizing::new(random_bytes::<32>()?),
        })
    }

    /// Reads a key from base64 (standard alphabet, padding optional,
    /// surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<MasterKey, Error> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            B64.decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .map_err(|_| {
                    Error::MasterKey(format!(
                        "not valid base64; generate one with `head -c 32 /dev/urandom | base64` \
                         and set {MASTER_KEY_ENV}"
                    ))
                })?,
        );
        let key: [u8; 32] = bytes[..].try_into().map_err(|_| {
            Error::MasterKey(format!(
                "it decodes to {} bytes, it must be 32; generate one with `head -c 32 \
                 /dev/urandom | base64`",
                bytes.len()
            ))
        })?;
        Ok(MasterKey {
            key: Zeroizing::new(key),
        })
    }

    /// The key as base64, to hand it to a secret store.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(&self.key[..]))
    }

    /// The key from `EWII_HUB_MASTER_KEY`, if the variable is set.
    pub fn from_env() -> Result<Option<MasterKey>, Error> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                MasterKey::from_base64(&v).map(Some).map_err(|e| match e {
                    Error::MasterKey(why) => Error::MasterKey(format!("{MASTER_KEY_ENV}: {why}")),
                    other => other,
                })
            }
            _ => Ok(None),
        }
    }

    /// Reads `path`, or creates it (mode 0600) with a new random key. An
    /// existing file readable by group or others is refused.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, Error> {
        match fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(Error::MasterKey(format!(
                        "{} is readable by other users; run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    )));
                }
                let text =
                    Zeroizing::new(fs::read_to_string(path).map_err(io("cannot read", path))?);
                MasterKey::from_base64(&text).map_err(|e| match e {
                    Error::MasterKey(why) => Error::MasterKey(format!("{}: {why}", path.display())),
                    other => other,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate()?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io("cannot create", path))?;
                let mut text = key.to_base64();
                text.push('\n');
                f.write_all(text.as_bytes())
                    .map_err(io("cannot write", path))?;
                f.sync_all().map_err(io("cannot fsync", path))?;
                if let Some(dir) = path.parent() {
                    File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(io("cannot fsync directory", dir))?;
                }
                Ok(key)
            }
            Err(e) => Err(io("cannot read", path)(e)),
        }
    }

    /// The key for a hub: `EWII_HUB_MASTER_KEY` if set; otherwise
    /// `DATA/master.key` when the store is the SQLite file in `data_dir`;
    /// otherwise (a shared database) an error.
    pub fn resolve(data_dir: Option<&Path>) -> Result<MasterKey, Error> {
        if let Some(key) = MasterKey::from_env()? {
            return Ok(key);
        }
        match data_dir {
            Some(dir) => MasterKey::load_or_create(&dir.join(MASTER_KEY_FILE)),
            None => Err(Error::MasterKey(format!(
                "{MASTER_KEY_ENV} is not set; with --database-url every hub replica must use the \
                 same master key, so it cannot be generated locally: generate one once with \
                 `head -c 32 /dev/urandom | base64`, keep it in your secret store and set \
                 {MASTER_KEY_ENV} on every replica"
            ))),
        }
    }

    fn aead(&self) -> Result<LessSafeKey, Error> {
        UnboundKey::new(&AES_256_GCM, &self.key[..])
            .map(LessSafeKey::new)
            .map_err(|_| Error::MasterKey("AES-256-GCM key setup failed".into()))
    }

    /// Seals `plaintext` bound to `aad`: base64 of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, Error> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let mut buf = Zeroizing::new(plaintext.to_vec());
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *buf,
            )
            .map_err(|_| Error::MasterKey("AES-256-GCM sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(B64.encode(out))
    }

    /// Opens a value made by [`MasterKey::seal`] with the same `aad`;
    /// `None` when the key or the associated data is wrong or the value
    /// was altered.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(B64.decode(sealed).ok()?);
        if buf.len() < NONCE_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = buf[..NONCE_LEN].try_into().ok()?;
        let plaintext_len = {
            let body = &mut buf[NONCE_LEN..];
            self.aead()
                .ok()?
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
                .ok()?
                .len()
        };
        Some(Zeroizing::new(
            buf[NONCE_LEN..NONCE_LEN + plaintext_len].to_vec(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret key bytes", b"ws-1").unwrap();
        assert_eq!(
            &key.open(&sealed, b"ws-1").unwrap()[..],
            b"secret key bytes"
        );
        assert!(key.open(&sealed, b"ws-2").is_none(), "aad not bound");
        let other = MasterKey::generate().unwrap();
        assert!(other.open(&sealed, b"ws-1").is_none(), "wrong key opened");
        assert!(key.open("AAAA", b"ws-1").is_none());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let a = MasterKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(*a.to_base64(), *b.to_base64());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(Error::MasterKey(_))
        ));
    }

    #[test]
    fn base64_forms() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        let k = MasterKey::generate().unwrap();
        let text = k.to_base64();
        let back = MasterKey::from_base64(&format!("  {}\n", *text)).unwrap();
        assert_eq!(*back.to_base64(), *text);
    }
}
