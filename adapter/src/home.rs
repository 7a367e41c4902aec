//! The adapter's state directory and its (non-secret) configuration file.

use std::path::{Path, PathBuf};

use ewii_driver_core::Limits;
use serde::{Deserialize, Serialize};

use crate::store::{self, StoreError};

/// The adapter home: `adapter.toml`, `credentials.enc`, `credentials.lock`,
/// `local-credential`.
#[derive(Debug, Clone)]
pub struct AdapterHome {
    dir: PathBuf,
}

/// `adapter.toml`: nothing secret lives here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// The workspace this deployment belongs to.
    pub workspace_id: String,
    /// Defaults for `serve`.
    #[serde(default)]
    pub serve: ServeConfig,
    /// Limits given to newly added databases unless overridden.
    #[serde(default)]
    pub defaults: Limits,
}

/// `[serve]` section of `adapter.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServeConfig {
    /// Default `--listen` address (`EWII_ADAPTER_LISTEN` overrides it).
    pub listen: Option<String>,
    /// Extra accepted `Host` names (e.g. a compose service name).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted, each exactly (scheme, host and port), e.g.
    /// `http://localhost:6274`. None by default.
    pub allowed_origins: Vec<String>,
}

impl AdapterHome {
    /// A home at `dir` (not created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AdapterHome { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The encrypted credential store.
    pub fn store_path(&self) -> PathBuf {
        self.dir.join("credentials.enc")
    }

    /// The local credential the adapter's client presents (see
    /// [`crate::local_credential`]).
    pub fn local_credential_path(&self) -> PathBuf {
        self.dir.join(crate::local_credential::FILE_NAME)
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("adapter.toml")
    }

    /// Reads `adapter.toml`.
    pub fn load_config(&self) -> Result<AdapterConfig, StoreError> {
        let path = self.config_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(path));
            }
            Err(cause) => {
                return Err(StoreError::Io {
                    action: "cannot read",
                    path,
                    cause,
                });
            }
        };
        toml::from_str(&text).map_err(|e| StoreError::Corrupt {
            path,
            reason: format!("invalid TOML: {e}"),
        })
    }

    /// Writes `adapter.toml` atomically.
    pub fn save_config(&self, config: &AdapterConfig) -> Result<(), StoreError> {
        let path = self.config_path();
        let mut text = String::from(
            "# Ewii adapter configuration. Nothing secret belongs here: database URLs and\n\
             # passwords live in credentials.enc, encrypted.\n",
        );
        text.push_str(
            &toml::to_string_pretty(config).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
        );
        store::atomic_replace(&self.dir, &path, text.as_bytes())
    }
}
