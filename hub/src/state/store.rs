//! The hub's state, through sqlx.
//!
//! One [`Store`] over either an SQLite file (`DATA/hub.db`, the default) or
//! PostgreSQL (`--database-url`, shared by several hub replicas). Both run
//! the same migrations (`hub/migrations/`), written in the SQL the two
//! share: TEXT and BIGINT columns only, ids made by the hub, times in Unix
//! seconds, binary values in base64.
//!
//! Nothing here is kept in process memory beyond a call: every replica sees
//! every change (ARCHITECTURE "Scale beyond one machine"). Operations that
//! race between replicas are single statements whose outcome the database
//! decides: unique constraints for names, and one conditional
//! `UPDATE … RETURNING` for enrolment tokens.
//!
//! An enrolment token is single use, expires, and dies with a revoke of
//! its deployment: [`Store::revoke_deployment`] marks every outstanding
//! token of the deployment revoked in the revoke's own transaction, so a
//! token issued before a revoke can never undo it
//! ([`TokenError::Revoked`], `token_revoked`); only a token issued after
//! the revoke (`ewii-hub deployment token`) brings the deployment back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ewii_wire::svid::SpiffeId;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::Error;
use crate::error::io;
use crate::state::master_key::MasterKey;
use ewii_driver_core::SecretString;

mod agents;
pub mod audit;
mod deployments;
pub mod oauth;
mod rate;
pub mod replicas;
pub mod revocation;
mod workspaces;

pub use audit::{StoredRecord, Verification};
pub use oauth::{OAuthConfig, OAuthGrant, OAuthSettings};
pub use revocation::{
    DeliveryRecord, DueDelivery, RevocationReason, RevocationState, Revoked, Webhook,
};

/// The schema migrations, shared by SQLite and PostgreSQL.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite file's name inside the data directory.
pub const DATABASE_FILE: &str = "hub.db";
/// The environment variable that overrides `--database-url`.
pub const DATABASE_URL_ENV: &str = "EWII_HUB_DATABASE_URL";
/// Default lifetime of an enrolment token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where the hub keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file `hub.db` (and `master.key`) in this directory,
    /// created with mode 0700.
    Data(PathBuf),
    /// A database URL (`postgres://…`; `sqlite:…` also works).
    Url(String),
}

/// A workspace: one customer of the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Workspace {
    /// Internal id.
    pub id: String,
    /// Unique name, `^[a-z][a-z0-9-]{0,31}$`.
    pub name: String,
    /// The SPIFFE trust domain of its deployments' IDs.
    pub trust_domain: String,
    /// The trust bundle's `spiffe_sequence`, bumped on every change.
    pub bundle_sequence: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A deployment: one client + adapter of a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// Internal id.
    pub id: String,
    /// The workspace's name.
    pub workspace: String,
    /// Name, unique within the workspace.
    pub name: String,
    /// `spiffe://<trust-domain>/ws/<workspace>/dep/<deployment>`.
    #[serde(serialize_with = "display")]
    pub spiffe_id: SpiffeId,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// An AI agent's credential record (the credential itself is not kept).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Agent {
    /// Internal id.
    pub id: String,
    /// The workspace's name.
    pub workspace: String,
    /// Name, unique within the workspace.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// The agent's policy (TOML), `None` when unrestricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The value of its workspace's OAuth claim that names it, if it signs
    /// in with OAuth access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_subject: Option<String>,
    /// What the OAuth access token of this request granted; `None` for a
    /// static bearer credential (and for agents read from the store).
    #[sqlx(skip)]
    #[serde(skip)]
    pub oauth: Option<OAuthGrant>,
}

/// A freshly issued enrolment token, to show the operator once.
#[derive(Debug)]
pub struct EnrolmentToken {
    /// The token (only its SHA-256 is stored).
    pub token: SecretString,
    /// Expiry, Unix seconds: the token is refused from this instant on.
    pub expires_at: i64,
}

/// The certificates a workspace trusts to issue SVIDs of its deployments.
#[derive(Clone, Debug)]
pub struct WorkspaceBundle {
    /// The workspace.
    pub workspace: Workspace,
    /// The workspace's own CA certificate(s).
    pub own: Vec<CertificateDer<'static>>,
    /// CA certificates imported with `workspace import-bundle`.
    pub imported: Vec<CertificateDer<'static>>,
}

impl WorkspaceBundle {
    /// Own and imported CAs together: what verification trusts.
    pub fn all(&self) -> Vec<CertificateDer<'static>> {
        self.own.iter().chain(&self.imported).cloned().collect()
    }
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Unix seconds of `t` (0 before 1970, saturating far in the future).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn unix_after(now: SystemTime, ttl: Duration) -> i64 {
    unix(now).saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The hub's state store. Cheap to clone (a pool and a shared key).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    master_key: Arc<MasterKey>,
    /// The audit chain's head (sequence number and hash) as this store
    /// last committed it: see [`Store::append_audit`].
    audit_head: Arc<std::sync::Mutex<Option<(i64, String)>>>,
    /// The URL of a PostgreSQL store, for its notification listener
    /// ([`crate::state::notify`]); `None` for SQLite.
    postgres_url: Option<Arc<str>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `location`, creating the data directory (0700)
    /// and the database file as needed, resolving the master key
    /// ([`MasterKey::resolve`]) and applying pending migrations.
    pub async fn open(location: &Location) -> Result<Store, Error> {
        match location {
            Location::Data(dir) => {
                ensure_private_dir(dir)?;
                let key = MasterKey::resolve(Some(dir))?;
                let path = dir.join(DATABASE_FILE);
                let store = Store::connect(&sqlite_url(&path), key).await?;
                // The directory is private already; keep the file so too in
                // case it is ever copied out of it.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .map_err(io("cannot chmod", &path))?;
                Ok(store)
            }
            Location::Url(url) => {
                let key = MasterKey::resolve(None)?;
                Store::connect(url, key).await
            }
        }
    }

    /// Connects to a database URL with an explicit master key and applies
    /// pending migrations.
    pub async fn connect(url: &str, master_key: MasterKey) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new().max_connections(8);
        if url.starts_with("sqlite:") {
            // Write-ahead logging with a full sync: each commit (an audit
            // record's among them) is one append and one fsync of the log,
            // durable on return, instead of the rollback journal's
            // create-write-sync-delete dance; readers do not block the
            // writer. SQLite keeps the log's file mode equal to the
            // database file's.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool,
            master_key: Arc::new(master_key),
            audit_head: Arc::default(),
            postgres_url: crate::state::notify::is_postgres(url).then(|| Arc::from(url)),
        })
    }

    /// The URL of a PostgreSQL store (several replicas may share it and
    /// notify each other), or `None` for SQLite.
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Associated data of a sealed CA key: binds it to its workspace row.
pub(super) const HUB_CA_AAD: &[u8] = b"ewii-hub/hub-ca-key/v1";

pub(super) fn ca_key_aad(workspace_id: &str) -> Vec<u8> {
    format!("ewii-hub/workspace-ca-key/v1\0{workspace_id}").into_bytes()
}

/// A `deployments` row joined with its workspace's name (`w.name AS
/// workspace`), as every deployment query selects it.
#[derive(sqlx::FromRow)]
pub(super) struct DeploymentRow {
    id: String,
    workspace: String,
    name: String,
    spiffe_id: String,
    created_at: i64,
}

impl TryFrom<DeploymentRow> for Deployment {
    type Error = Error;

    fn try_from(row: DeploymentRow) -> Result<Deployment, Error> {
        Ok(Deployment {
            spiffe_id: SpiffeId::parse(&row.spiffe_id)
                .map_err(|e| Error::Corrupt(format!("stored SPIFFE ID: {e}")))?,
            id: row.id,
            workspace: row.workspace,
            name: row.name,
            created_at: row.created_at,
        })
    }
}

/// `SELECT` of [`DeploymentRow`]s from `deployments d JOIN workspaces w`,
/// then the rest of the statement (a static string: sqlx takes no SQL
/// built at run time).
macro_rules! select_deployments {
    ($rest:literal) => {
        concat!(
            "SELECT d.id, w.name AS workspace, d.name, d.spiffe_id, d.created_at \
             FROM deployments d JOIN workspaces w ON w.id = d.workspace_id ",
            $rest
        )
    };
}
use select_deployments;

/// `SELECT` of [`Workspace`]s, then the rest of the statement.
macro_rules! select_workspaces {
    ($rest:literal) => {
        concat!(
            "SELECT id, name, trust_domain, bundle_sequence, created_at FROM workspaces ",
            $rest
        )
    };
}
use select_workspaces;

/// The sqlx URL of an SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Makes `dir` exist with mode 0700 (it holds the database and, without
/// `EWII_HUB_MASTER_KEY`, the master key).
pub fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("cannot chmod", dir))
}
