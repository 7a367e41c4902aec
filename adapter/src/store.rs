//! The encrypted credential store (`credentials.enc`).
//!
//! Everything secret the adapter holds (database URLs with passwords, any
//! other credential) lives only here, encrypted with AES-256-GCM.
//!
//! - Key: PBKDF2-HMAC-SHA256 of the enrolment token, 600 000 iterations,
//!   salted with the workspace id *and* a random 16-byte salt, so one token
//!   never yields the same key for two workspaces or two stores.
//! - The header (format, workspace, KDF parameters) is the AEAD's associated
//!   data: editing it makes decryption fail rather than silently weakening it.
//! - Writes are atomic: a temporary file (mode 0600) is written and fsynced,
//!   renamed over the store, and the directory fsynced. A crash at any point
//!   leaves the old or the new store, never a torn one.
//! - Plaintext and keys live in zeroising buffers and are never logged.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::num::NonZeroU32;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// PBKDF2 iterations (OWASP 2023 guidance for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
const FORMAT: &str = "ewii-credential-store";
const VERSION: u32 = 1;
const SALT_LEN: usize = 16;
/// Shortest enrolment token accepted: shorter ones are too easy to guess
/// offline against a stolen store.
pub const MIN_TOKEN_LEN: usize = 16;

/// A failure of the credential store. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store yet.
    #[error(
        "no credential store at {0}: run `ewii-adapter init --workspace-id ID` first (or point \
         --home / EWII_ADAPTER_HOME at the right directory)"
    )]
    Missing(PathBuf),
    /// `init` on an existing store.
    #[error(
        "a credential store already exists at {0}; remove the adapter home to start over, or \
         use another --home"
    )]
    AlreadyExists(PathBuf),
    /// The token does not open the store.
    #[error(
        "the enrolment token does not open the credential store at {0} (wrong token, or a store \
         made for another deployment); check EWII_ENROLLMENT_TOKEN or --enrollment-token-file. \
         The store was not changed"
    )]
    WrongToken(PathBuf),
    /// The token is too short.
    #[error(
        "the enrolment token is {0} characters long; it must be at least {MIN_TOKEN_LEN}: use the \
         token the operator issued for this deployment"
    )]
    WeakToken(usize),
    /// The file is not a store this version can read.
    #[error("the credential store at {path} is unreadable: {reason}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O failure.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |cause| StoreError::Io {
        action,
        path: path.to_owned(),
        cause,
    }
}

/// One attached database as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    /// Driver name.
    pub driver: String,
    /// Connection URL (secret).
    pub url: SecretString,
    /// Read-only (default) or read-write.
    pub read_only: bool,
    /// Per-call bounds.
    pub limits: Limits,
}

impl DatabaseEntry {
    /// The configuration handed to the driver.
    pub fn to_config(&self, name: &str) -> DatabaseConfig {
        DatabaseConfig {
            name: name.to_owned(),
            driver: self.driver.clone(),
            url: self.url.clone(),
            read_only: self.read_only,
            limits: self.limits,
        }
    }
}

/// The decrypted content of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreContents {
    /// Attached databases by name.
    pub databases: BTreeMap<String, DatabaseEntry>,
}

impl StoreContents {
    /// Driver configurations of every database.
    pub fn configs(&self) -> Vec<DatabaseConfig> {
        self.databases
            .iter()
            .map(|(name, e)| e.to_config(name))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    iterations: u32,
    salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoreFile {
    format: String,
    version: u32,
    workspace_id: String,
    kdf: Kdf,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

impl StoreFile {
    /// Associated data: every header field, so none can be edited unseen.
    fn aad(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.format,
            self.version,
            self.workspace_id,
            self.kdf.algorithm,
            self.kdf.iterations,
            self.kdf.salt,
            self.cipher
        )
        .into_bytes()
    }
}

/// The derived key of an unlocked store, kept by a serving adapter so that
/// it can re-read the store when the admin changes it.
pub struct StoreKey {
    key: Zeroizing<[u8; 32]>,
    workspace_id: String,
    kdf: Kdf,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey")
            .field("workspace_id", &self.workspace_id)
            .finish_non_exhaustive()
    }
}

impl StoreKey {
    /// The workspace the store belongs to.
    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }

    fn derive(
        token: &SecretString,
        workspace_id: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Zeroizing<[u8; 32]> {
        let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        // Salt = domain label, workspace id, random salt: binds the key to
        // this workspace as the security brief requires.
        let mut full_salt = Vec::with_capacity(64 + workspace_id.len());
        full_salt.extend_from_slice(b"ewii-credential-store/v1\0");
        full_salt.extend_from_slice(workspace_id.as_bytes());
        full_salt.push(0);
        full_salt.extend_from_slice(salt);
        let mut key = Zeroizing::new([0u8; 32]);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &full_salt,
            token.expose().as_bytes(),
            &mut key[..],
        );
        key
    }

    fn aead(&self) -> Result<LessSafeKey, StoreError> {
        UnboundKey::new(&AES_256_GCM, &self.key[..])
            .map(LessSafeKey::new)
            .map_err(|_| StoreError::Corrupt {
                path: PathBuf::new(),
                reason: "AES-256-GCM key setup failed".into(),
            })
    }
}

fn check_token(token: &SecretString) -> Result<(), StoreError> {
    let len = token.expose().chars().count();
    if len < MIN_TOKEN_LEN {
        return Err(StoreError::WeakToken(len));
    }
    Ok(())
}

/// Creates a new empty store at `path` and returns its key.
pub fn create(
    path: &Path,
    workspace_id: &str,
    token: &SecretString,
) -> Result<StoreKey, StoreError> {
    check_token(token)?;
    if path.exists() {
        return Err(StoreError::AlreadyExists(path.to_owned()));
    }
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: "the system random generator failed".into(),
        })?;
    let kdf = Kdf {
        algorithm: "pbkdf2-hmac-sha256".into(),
        iterations: PBKDF2_ITERATIONS,
        salt: B64.encode(salt),
    };
    let key = StoreKey {
        key: StoreKey::derive(token, workspace_id, &salt, PBKDF2_ITERATIONS),
        workspace_id: workspace_id.to_owned(),
        kdf,
    };
    write(path, &key, &StoreContents::default())?;
    Ok(key)
}

fn read_file(path: &Path) -> Result<StoreFile, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing(path.to_owned()));
        }
        Err(e) => return Err(io("cannot read", path)(e)),
    };
    let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("not a credential store ({e})"),
    })?;
    if file.format != FORMAT || file.version != VERSION || file.cipher != "aes-256-gcm" {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "format {} v{} with {} is not supported by this version",
                file.format, file.version, file.cipher
            ),
        });
    }
    if file.kdf.algorithm != "pbkdf2-hmac-sha256" || file.kdf.iterations < PBKDF2_ITERATIONS {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: "the key derivation parameters are weaker than this version accepts".into(),
        });
    }
    Ok(file)
}

/// Opens the store with the enrolment token.
pub fn unlock(path: &Path, token: &SecretString) -> Result<(StoreKey, StoreContents), StoreError> {
    let file = read_file(path)?;
    let salt = B64
        .decode(&file.kdf.salt)
        .map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("bad salt ({e})"),
        })?;
    let key = StoreKey {
        key: StoreKey::derive(token, &file.workspace_id, &salt, file.kdf.iterations),
        workspace_id: file.workspace_id.clone(),
        kdf: file.kdf.clone(),
    };
    let contents = decrypt(path, &key, &file)?;
    Ok((key, contents))
}

/// Re-reads the store with an already derived key (a serving adapter
/// following the admin's changes).
pub fn read(path: &Path, key: &StoreKey) -> Result<StoreContents, StoreError> {
    let file = read_file(path)?;
    if file.workspace_id != key.workspace_id || file.kdf != key.kdf {
        return Err(StoreError::WrongToken(path.to_owned()));
    }
    decrypt(path, key, &file)
}

fn decrypt(path: &Path, key: &StoreKey, file: &StoreFile) -> Result<StoreContents, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let nonce_bytes: [u8; NONCE_LEN] = B64
        .decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| corrupt("bad nonce".into()))?;
    let mut buf = Zeroizing::new(
        B64.decode(&file.ciphertext)
            .map_err(|e| corrupt(format!("bad ciphertext encoding ({e})")))?,
    );
    let plaintext = key
        .aead()?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(file.aad()),
            &mut buf[..],
        )
        // A wrong token and a tampered file look the same to AES-GCM; the
        // wrong token is by far the common case.
        .map_err(|_| StoreError::WrongToken(path.to_owned()))?;
    serde_json::from_slice(plaintext).map_err(|e| corrupt(format!("bad content ({e})")))
}

/// Encrypts `contents` and atomically replaces the store at `path`.
pub fn write(path: &Path, key: &StoreKey, contents: &StoreContents) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let rng = SystemRandom::new();
    let mut nonce = [0u8; NONCE_LEN];
    // A fresh random 96-bit nonce per write: stores are rewritten a handful
    // of times, far below the birthday bound.
    rng.fill(&mut nonce).map_err(|_| StoreError::Corrupt {
        path: path.to_owned(),
        reason: "the system random generator failed".into(),
    })?;
    let mut file = StoreFile {
        format: FORMAT.into(),
        version: VERSION,
        workspace_id: key.workspace_id.clone(),
        kdf: key.kdf.clone(),
        cipher: "aes-256-gcm".into(),
        nonce: B64.encode(nonce),
        ciphertext: String::new(),
    };
    let mut buf =
        Zeroizing::new(
            serde_json::to_vec(contents).map_err(|e| StoreError::Corrupt {
                path: path.to_owned(),
                reason: format!("cannot encode ({e})"),
            })?,
        );
    key.aead()?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(file.aad()),
            &mut *buf,
        )
        .map_err(|_| StoreError::Corrupt {
            path: path.to_owned(),
            reason: "encryption failed".into(),
        })?;
    file.ciphertext = B64.encode(&buf[..]);
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("cannot encode ({e})"),
    })?;
    bytes.push(b'\n');
    atomic_replace(dir, path, &bytes)
}

/// Writes `bytes` to a 0600 temporary file beside `path`, fsyncs it, renames
/// it over `path` and fsyncs the directory.
pub fn atomic_replace(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    remove_stale_temporaries(dir, path);
    let mut suffix = [0u8; 6];
    let _ = SystemRandom::new().fill(&mut suffix);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", hex(&suffix)));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot create", &tmp))?;
        f.write_all(bytes).map_err(io("cannot write", &tmp))?;
        f.sync_all().map_err(io("cannot fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io("cannot replace", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes temporaries left by a writer that was killed mid-write; they
/// never hold the live store, which is only ever replaced by rename.
fn remove_stale_temporaries(dir: &Path, path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes `dir` exist with mode 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("cannot chmod", dir))
}

/// An exclusive lock held while a command reads, changes and writes the
/// store, so two admins' commands never lose each other's change.
pub struct StoreLock {
    _file: File,
}

/// Takes the store's write lock (blocking until it is free).
pub fn lock(dir: &Path) -> Result<StoreLock, StoreError> {
    let path = dir.join("credentials.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("cannot open", &path))?;
    file.lock().map_err(io("cannot lock", &path))?;
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SecretString {
        SecretString::new("correct-horse-battery-staple")
    }

    #[test]
    fn round_trip_and_wrong_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.enc");
        let key = create(&path, "ws-1", &token()).expect("create");
        let mut contents = StoreContents::default();
        contents.databases.insert(
            "shop".into(),
            DatabaseEntry {
                driver: "postgres".into(),
                url: SecretString::new("postgres://app:hunter2-very-secret@db/shop"),
                read_only: true,
                limits: Limits::default(),
            },
        );
        write(&path, &key, &contents).expect("write");
        let raw = fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("hunter2"),
            "plaintext secret in the store file"
        );
        assert!(!text.contains("shop"), "database name in the clear");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let (_, back) = unlock(&path, &token()).expect("unlock");
        assert_eq!(back, contents);

        let err = unlock(&path, &SecretString::new("wrong-token-wrong-token")).expect_err("wrong");
        assert!(matches!(err, StoreError::WrongToken(_)));
        assert_eq!(
            fs::read(&path).expect("read"),
            raw,
            "store changed by a failed unlock"
        );
    }

    #[test]
    fn header_tampering_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.enc");
        create(&path, "ws-1", &token()).expect("create");
        let text = fs::read_to_string(&path).expect("read");
        // Re-labelling the store for another workspace changes the KDF salt
        // and the AAD: it must not open.
        fs::write(&path, text.replace("\"ws-1\"", "\"ws-2\"")).expect("write");
        assert!(matches!(
            unlock(&path, &token()),
            Err(StoreError::WrongToken(_))
        ));
    }

    #[test]
    fn weak_tokens_and_double_init_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.enc");
        assert!(matches!(
            create(&path, "ws", &SecretString::new("short")),
            Err(StoreError::WeakToken(5))
        ));
        create(&path, "ws", &token()).expect("create");
        assert!(matches!(
            create(&path, "ws", &token()),
            Err(StoreError::AlreadyExists(_))
        ));
    }
}
