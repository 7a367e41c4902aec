//! The adapter's local credential: the secret its one caller, the Ewii
//! client, presents as `Authorization: Bearer <credential>` on every HTTP
//! request, so that no other local process and no browser page is served
//! the customer's databases (security property 1).
//!
//! - 256 random bits, base64url without padding, behind the prefix
//!   `ewii_local_` (so a leaked one is recognisable in a secret scanner).
//! - Lives in `local-credential` in the adapter home, mode 0600, written
//!   atomically (write, fsync, rename) like the credential store. `init`
//!   creates it; `serve` creates it in a home made before it existed;
//!   `ewii-adapter local-credential --rotate` replaces it.
//! - Compared without timing leaks: [`CredentialCheck`] keeps only an HMAC
//!   of the credential under a key made at start-up, and verifies the
//!   presented value's HMAC in constant time, so neither its length nor a
//!   matching prefix shows in the response time.
//! - Never logged: [`LocalCredential`]'s `Debug` prints no secret.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::home::AdapterHome;
use crate::store::{self, StoreError};

/// The file, inside the adapter home.
pub const FILE_NAME: &str = "local-credential";
/// What every local credential starts with.
pub const PREFIX: &str = "ewii_local_";
/// Random bytes in a credential (256 bit).
const RANDOM_BYTES: usize = 32;

/// A failure to create, read or check the local credential. Each message
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocalCredentialError {
    /// No credential file.
    #[error(
        "no local credential at {0}: run `ewii-adapter local-credential --rotate` to create one \
         (or start `ewii-adapter serve`, which creates it), then give the file to ewii-client \
         with --adapter-credential-file"
    )]
    Missing(PathBuf),
    /// The file does not hold a credential this version made.
    #[error(
        "the local credential file {0} is not an `ewii_local_` credential; replace it with \
         `ewii-adapter local-credential --rotate` and give the new one to ewii-client"
    )]
    Malformed(PathBuf),
    /// The file is readable by every user on the machine.
    #[error(
        "the local credential file {path} has mode {mode:o}, readable by other users; run \
         `chmod 600 {path}` (0640 for a group shared with the client) and rotate it with \
         `ewii-adapter local-credential --rotate`, since it may have been read"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The system's random generator failed.
    #[error("the system random number generator failed; cannot create a local credential")]
    Random,
    /// Reading or writing the file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The adapter's local credential. Its `Debug` hides the value.
#[derive(Clone)]
pub struct LocalCredential {
    secret: Zeroizing<String>,
}

impl fmt::Debug for LocalCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalCredential(<redacted>)")
    }
}

impl LocalCredential {
    /// A new random credential.
    pub fn generate() -> Result<LocalCredential, LocalCredentialError> {
        let mut bytes = Zeroizing::new([0u8; RANDOM_BYTES]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| LocalCredentialError::Random)?;
        let mut secret = Zeroizing::new(String::with_capacity(PREFIX.len() + 43));
        secret.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut secret);
        Ok(LocalCredential { secret })
    }

    /// Parses the contents of a credential file (surrounding whitespace is
    /// ignored); `path` names the file in the error.
    pub fn parse(text: &str, path: &Path) -> Result<LocalCredential, LocalCredentialError> {
        let text = text.trim();
        let well_formed = text.strip_prefix(PREFIX).is_some_and(|b64| {
            URL_SAFE_NO_PAD
                .decode(b64)
                .map(Zeroizing::new)
                .is_ok_and(|raw| raw.len() == RANDOM_BYTES)
        });
        if !well_formed {
            return Err(LocalCredentialError::Malformed(path.to_owned()));
        }
        Ok(LocalCredential {
            secret: Zeroizing::new(text.to_owned()),
        })
    }

    /// The value, for the one place that must send or print it.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// A checker for presented credentials (see [`CredentialCheck`]).
    pub fn check(&self) -> Result<CredentialCheck, LocalCredentialError> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| LocalCredentialError::Random)?;
        let tag = hmac::sign(&key, self.secret.as_bytes()).as_ref().to_vec();
        Ok(CredentialCheck { key, tag })
    }
}

/// Checks presented credentials against the adapter's, in constant time.
///
/// It holds an HMAC-SHA256 of the credential under a random key, not the
/// credential: a presented value is accepted when its HMAC verifies
/// (`ring::hmac::verify` compares in constant time). The attacker does not
/// know the key, so the time taken says nothing about how close a guess is.
pub struct CredentialCheck {
    key: hmac::Key,
    tag: Vec<u8>,
}

impl fmt::Debug for CredentialCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialCheck(<redacted>)")
    }
}

impl CredentialCheck {
    /// Whether `presented` is the adapter's credential.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, &self.tag).is_ok()
    }
}

/// Reads the credential at `path`. A file readable by other users (any
/// "other" permission bit) is refused: the credential opens the databases.
pub fn load(path: &Path) -> Result<LocalCredential, LocalCredentialError> {
    let io = |action: &'static str| {
        move |cause| StoreError::Io {
            action,
            path: path.to_owned(),
            cause,
        }
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LocalCredentialError::Missing(path.to_owned()));
        }
        Err(e) => return Err(io("cannot read")(e).into()),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(LocalCredentialError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io("cannot read"))?);
    LocalCredential::parse(&text, path)
}

/// Replaces the home's credential with a new random one (mode 0600,
/// atomic) and returns it. The old one stops working when `serve` restarts.
pub fn rotate(home: &AdapterHome) -> Result<LocalCredential, LocalCredentialError> {
    store::ensure_private_dir(home.dir())?;
    let _lock = store::lock(home.dir())?;
    write_new(home)
}

/// The home's credential, created first when the home has none (a home
/// made before the credential existed); `true` when it was just created.
pub fn load_or_create(home: &AdapterHome) -> Result<(LocalCredential, bool), LocalCredentialError> {
    let path = home.local_credential_path();
    match load(&path) {
        Err(LocalCredentialError::Missing(_)) => {}
        other => return other.map(|c| (c, false)),
    }
    // Under the store lock, so two `serve`s starting at once agree on one.
    let _lock = store::lock(home.dir())?;
    match load(&path) {
        Err(LocalCredentialError::Missing(_)) => write_new(home).map(|c| (c, true)),
        other => other.map(|c| (c, false)),
    }
}

fn write_new(home: &AdapterHome) -> Result<LocalCredential, LocalCredentialError> {
    let credential = LocalCredential::generate()?;
    let mut text = Zeroizing::new(credential.expose().to_owned());
    text.push('\n');
    store::atomic_replace(home.dir(), &home.local_credential_path(), text.as_bytes())?;
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_random_well_formed_and_parse_back() {
        let a = LocalCredential::generate().expect("generate");
        let b = LocalCredential::generate().expect("generate");
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), PREFIX.len() + 43, "256 bit in base64url");
        let back =
            LocalCredential::parse(&format!("  {}\n", a.expose()), Path::new("f")).expect("parse");
        assert_eq!(back.expose(), a.expose());
        assert!(!format!("{a:?}").contains(&a.expose()[PREFIX.len()..]));
    }

    #[test]
    fn malformed_files_are_refused() {
        for text in [
            "",
            "ewii_local_",
            "ewii_local_short",
            "not-a-credential-at-all-but-long-enough-to-look-like-one-xxxxxxx",
            "ewii_local_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(
                matches!(
                    LocalCredential::parse(text, Path::new("f")),
                    Err(LocalCredentialError::Malformed(_))
                ),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn the_check_accepts_only_the_credential() {
        let c = LocalCredential::generate().expect("generate");
        let check = c.check().expect("check");
        assert!(check.accepts(c.expose().as_bytes()));
        let mut wrong = c.expose().to_owned();
        wrong.pop();
        assert!(!check.accepts(wrong.as_bytes()), "a prefix accepted");
        wrong.push(if c.expose().ends_with('A') { 'B' } else { 'A' });
        assert!(
            !check.accepts(wrong.as_bytes()),
            "a changed last character accepted"
        );
        assert!(!check.accepts(b""));
        let other = LocalCredential::generate().expect("generate");
        assert!(!check.accepts(other.expose().as_bytes()));
    }

    #[test]
    fn files_are_0600_rotated_atomically_and_refused_when_world_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = AdapterHome::new(dir.path().join("home"));
        let path = home.local_credential_path();
        assert!(matches!(load(&path), Err(LocalCredentialError::Missing(_))));
        store::ensure_private_dir(home.dir()).expect("dir");
        let (first, created) = load_or_create(&home).expect("create");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&home).expect("load");
        assert!(!created);
        assert_eq!(again.expose(), first.expose());
        let rotated = rotate(&home).expect("rotate");
        assert_ne!(rotated.expose(), first.expose());
        assert_eq!(load(&path).expect("load").expose(), rotated.expose());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load(&path),
            Err(LocalCredentialError::Exposed { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        load(&path).expect("group-readable for a shared client group");
    }
}
