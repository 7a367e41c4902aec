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
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::io;
use crate::state::bundle;
use crate::state::ca::{HubCa, WorkspaceCa};
use crate::state::master_key::MasterKey;
use crate::state::names::{self, DEFAULT_TRUST_DOMAIN};
use crate::state::tokens::{self, secret_hash};
use crate::{Error, TokenError};
use ewii_driver_core::SecretString;

pub mod audit;
pub mod revocation;

pub use audit::{StoredRecord, Verification};
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

fn unix_after(now: SystemTime, ttl: Duration) -> i64 {
    unix(now).saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The hub's state store. Cheap to clone (a pool and a shared key).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    master_key: Arc<MasterKey>,
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
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool,
            master_key: Arc::new(master_key),
        })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // -- workspaces ---------------------------------------------------------

    /// Creates a workspace and its CA. `trust_domain` defaults to
    /// [`DEFAULT_TRUST_DOMAIN`]. A taken name is [`Error::WorkspaceExists`]
    /// and changes nothing.
    pub async fn create_workspace(
        &self,
        name: &str,
        trust_domain: Option<&str>,
        now: SystemTime,
    ) -> Result<Workspace, Error> {
        names::validate_name("workspace", name)?;
        let trust_domain = trust_domain.unwrap_or(DEFAULT_TRUST_DOMAIN);
        names::validate_trust_domain(trust_domain)?;
        if self.find_workspace(name).await?.is_some() {
            return Err(Error::WorkspaceExists(name.to_owned()));
        }
        let workspace = Workspace {
            id: tokens::random_id()?,
            name: name.to_owned(),
            trust_domain: trust_domain.to_owned(),
            bundle_sequence: 1,
            created_at: unix(now),
        };
        let ca = WorkspaceCa::generate(name, trust_domain, now)?;
        let sealed = self
            .master_key
            .seal(&ca.key_pkcs8(), &ca_key_aad(&workspace.id))?;

        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO workspaces (id, name, trust_domain, bundle_sequence, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&workspace.id)
        .bind(&workspace.name)
        .bind(&workspace.trust_domain)
        .bind(workspace.bundle_sequence)
        .bind(workspace.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            // Another admin (or replica) won the race for the name.
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::WorkspaceExists(name.to_owned()));
            }
            other => other?,
        };
        sqlx::query(
            "INSERT INTO workspace_cas (id, workspace_id, cert_pem, key_sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tokens::random_id()?)
        .bind(&workspace.id)
        .bind(ca.certificate_pem())
        .bind(&sealed)
        .bind(workspace.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(workspace)
    }

    /// Every workspace, by name.
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, Error> {
        let rows = sqlx::query(
            "SELECT id, name, trust_domain, bundle_sequence, created_at FROM workspaces \
             ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(workspace_row).collect()
    }

    /// The workspace named `name`, or [`Error::NoWorkspace`].
    pub async fn workspace(&self, name: &str) -> Result<Workspace, Error> {
        self.find_workspace(name)
            .await?
            .ok_or_else(|| Error::NoWorkspace(name.to_owned()))
    }

    async fn find_workspace(&self, name: &str) -> Result<Option<Workspace>, Error> {
        let row = sqlx::query(
            "SELECT id, name, trust_domain, bundle_sequence, created_at FROM workspaces \
             WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(workspace_row).transpose()
    }

    /// The workspace's CA, its key unsealed with the master key.
    pub async fn workspace_ca(&self, workspace: &str) -> Result<WorkspaceCa, Error> {
        let ws = self.workspace(workspace).await?;
        let row = sqlx::query(
            "SELECT cert_pem, key_sealed FROM workspace_cas WHERE workspace_id = $1 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&ws.id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::Corrupt(format!("workspace {workspace:?} has no CA")))?;
        let cert_pem: String = row.try_get("cert_pem")?;
        let sealed: String = row.try_get("key_sealed")?;
        let key = self
            .master_key
            .open(&sealed, &ca_key_aad(&ws.id))
            .ok_or_else(|| Error::SealedKey(workspace.to_owned()))?;
        WorkspaceCa::from_parts(&cert_pem, &key)
    }

    /// The workspace's trust bundle: its own CA and imported CAs.
    pub async fn trust_bundle(&self, workspace: &str) -> Result<WorkspaceBundle, Error> {
        let ws = self.workspace(workspace).await?;
        let own = self.pem_column(
            "SELECT cert_pem AS pem FROM workspace_cas WHERE workspace_id = $1 ORDER BY created_at, id",
            &ws.id,
        );
        let imported = self.pem_column(
            "SELECT pem FROM imported_bundles WHERE workspace_id = $1 ORDER BY created_at, id",
            &ws.id,
        );
        let (own, imported) = (own.await?, imported.await?);
        Ok(WorkspaceBundle {
            workspace: ws,
            own,
            imported,
        })
    }

    /// Every workspace's trust bundle (what [`crate::state::trust::StoreTrust`]
    /// caches).
    pub async fn all_trust_bundles(&self) -> Result<Vec<WorkspaceBundle>, Error> {
        let mut out = Vec::new();
        for ws in self.list_workspaces().await? {
            out.push(self.trust_bundle(&ws.name).await?);
        }
        Ok(out)
    }

    async fn pem_column(
        &self,
        sql: &'static str,
        workspace_id: &str,
    ) -> Result<Vec<CertificateDer<'static>>, Error> {
        let rows = sqlx::query(sql)
            .bind(workspace_id)
            .fetch_all(&self.pool)
            .await?;
        let mut certs = Vec::new();
        for row in rows {
            let pem: String = row.try_get("pem")?;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                certs.push(
                    cert.map_err(|e| Error::Corrupt(format!("stored certificate PEM: {e}")))?,
                );
            }
        }
        Ok(certs)
    }

    /// Adds CA certificates (already checked by [`bundle::parse_bundle`])
    /// to the workspace's trust bundle and bumps its sequence.
    pub async fn import_bundle(
        &self,
        workspace: &str,
        certs: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<Workspace, Error> {
        if certs.is_empty() {
            return Err(Error::Bundle("no certificate to import".into()));
        }
        let ws = self.workspace(workspace).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO imported_bundles (id, workspace_id, pem, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(tokens::random_id()?)
        .bind(&ws.id)
        .bind(bundle::to_pem(certs))
        .bind(unix(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE workspaces SET bundle_sequence = bundle_sequence + 1 WHERE id = $1")
            .bind(&ws.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.workspace(workspace).await
    }

    // -- deployments and enrolment tokens -----------------------------------

    /// Creates a deployment and its first enrolment token, valid `ttl`.
    pub async fn create_deployment(
        &self,
        workspace: &str,
        name: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(Deployment, EnrolmentToken), Error> {
        names::validate_name("deployment", name)?;
        let ws = self.workspace(workspace).await?;
        let exists = || Error::DeploymentExists {
            workspace: workspace.to_owned(),
            deployment: name.to_owned(),
        };
        if self.find_deployment(&ws, name).await?.is_some() {
            return Err(exists());
        }
        let deployment = Deployment {
            id: tokens::random_id()?,
            workspace: ws.name.clone(),
            name: name.to_owned(),
            spiffe_id: names::deployment_spiffe_id(&ws.trust_domain, &ws.name, name)?,
            created_at: unix(now),
        };
        let token = tokens::new_enrolment_token()?;
        let expires_at = unix_after(now, ttl);

        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deployments (id, workspace_id, name, spiffe_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&deployment.id)
        .bind(&ws.id)
        .bind(&deployment.name)
        .bind(deployment.spiffe_id.to_string())
        .bind(deployment.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(exists()),
            other => other?,
        };
        insert_token(&mut tx, &token, &deployment.id, expires_at, now).await?;
        tx.commit().await?;
        Ok((deployment, EnrolmentToken { token, expires_at }))
    }

    /// Issues a new enrolment token for an existing deployment (earlier
    /// unused tokens stay valid until they expire, or until the deployment
    /// is revoked). After `ewii-hub revoke --deployment`, this is how the
    /// deployment comes back: only a token issued after the revoke enrols.
    pub async fn issue_enrolment_token(
        &self,
        workspace: &str,
        deployment: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<EnrolmentToken, Error> {
        let ws = self.workspace(workspace).await?;
        let dep = self
            .find_deployment(&ws, deployment)
            .await?
            .ok_or_else(|| Error::NoDeployment {
                workspace: workspace.to_owned(),
                deployment: deployment.to_owned(),
            })?;
        let token = tokens::new_enrolment_token()?;
        let expires_at = unix_after(now, ttl);
        let mut tx = self.pool.begin().await?;
        insert_token(&mut tx, &token, &dep.id, expires_at, now).await?;
        tx.commit().await?;
        Ok(EnrolmentToken { token, expires_at })
    }

    /// The deployments of a workspace, by name.
    pub async fn list_deployments(&self, workspace: &str) -> Result<Vec<Deployment>, Error> {
        let ws = self.workspace(workspace).await?;
        let rows = sqlx::query(
            "SELECT id, name, spiffe_id, created_at FROM deployments WHERE workspace_id = $1 \
             ORDER BY name",
        )
        .bind(&ws.id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| deployment_row(r, &ws.name)).collect()
    }

    /// The deployment whose SPIFFE ID is `id`, if any.
    pub async fn deployment_by_spiffe_id(&self, id: &str) -> Result<Option<Deployment>, Error> {
        let row = sqlx::query(
            "SELECT d.id, d.name, d.spiffe_id, d.created_at, w.name AS workspace \
             FROM deployments d JOIN workspaces w ON w.id = d.workspace_id \
             WHERE d.spiffe_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let workspace: String = row.try_get("workspace")?;
        deployment_row(&row, &workspace).map(Some)
    }

    /// Whether the store answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // -- the hub's own CA ---------------------------------------------------

    /// The hub CA that signs the hub's TLS certificates, created on first
    /// use. Replicas sharing a database race on one fixed row id, so they
    /// all end up with the same CA.
    pub async fn hub_ca(&self, now: SystemTime) -> Result<HubCa, Error> {
        if let Some(ca) = self.load_hub_ca().await? {
            return Ok(ca);
        }
        let ca = HubCa::generate(now)?;
        let sealed = self.master_key.seal(&ca.key_pkcs8(), HUB_CA_AAD)?;
        let inserted = sqlx::query(
            "INSERT INTO hub_cas (id, cert_pem, key_sealed, created_at) VALUES ('hub', $1, $2, $3)",
        )
        .bind(ca.certificate_pem())
        .bind(&sealed)
        .bind(unix(now))
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {}
            other => {
                other?;
            }
        }
        self.load_hub_ca()
            .await?
            .ok_or_else(|| Error::Corrupt("the hub CA vanished after it was stored".into()))
    }

    async fn load_hub_ca(&self) -> Result<Option<HubCa>, Error> {
        let row = sqlx::query("SELECT cert_pem, key_sealed FROM hub_cas WHERE id = 'hub'")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let cert_pem: String = row.try_get("cert_pem")?;
        let sealed: String = row.try_get("key_sealed")?;
        let key = self
            .master_key
            .open(&sealed, HUB_CA_AAD)
            .ok_or_else(|| Error::SealedKey("the hub CA".into()))?;
        HubCa::from_parts(&cert_pem, &key).map(Some)
    }

    async fn find_deployment(
        &self,
        ws: &Workspace,
        name: &str,
    ) -> Result<Option<Deployment>, Error> {
        let row = sqlx::query(
            "SELECT id, name, spiffe_id, created_at FROM deployments \
             WHERE workspace_id = $1 AND name = $2",
        )
        .bind(&ws.id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| deployment_row(r, &ws.name))
            .transpose()
    }

    /// Spends an enrolment token at time `now` and returns its deployment.
    ///
    /// Atomic across connections and replicas: one conditional
    /// `UPDATE … WHERE used_at IS NULL AND revoked_at IS NULL AND
    /// expires_at > now RETURNING`, so of two concurrent uses exactly one
    /// wins. Spending the token and lifting the deployment's revocation
    /// are one transaction, which touches the token row first as
    /// [`Store::revoke_deployment`] does: a revoke and an enrolment racing
    /// are serialised by that row, and whichever commits last decides (a
    /// revoke committed after the enrolment leaves the deployment revoked;
    /// one committed before has invalidated the token).
    ///
    /// A refused token is [`TokenError::Unknown`],
    /// [`TokenError::AlreadyUsed`], [`TokenError::Revoked`] (issued before
    /// a revoke of its deployment) or [`TokenError::Expired`].
    pub async fn consume_enrolment_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Deployment, TokenError> {
        let hash = tokens::secret_hash(token);
        let now = unix(now);
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let won = sqlx::query(
            "UPDATE enrolment_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $1 RETURNING deployment_id",
        )
        .bind(now)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::from)?;
        if let Some(row) = won {
            let deployment_id: String = row.try_get("deployment_id").map_err(Error::from)?;
            // A token issued after the revoke is how a revoked deployment
            // comes back.
            let lifted = revocation::lift_deployment_revocation(&mut tx, &deployment_id).await?;
            tx.commit().await.map_err(Error::from)?;
            if lifted {
                tracing::info!(deployment = %deployment_id, "revocation lifted by a new enrolment");
            }
            return Ok(self.deployment_by_id(&deployment_id).await?);
        }
        tx.rollback().await.map_err(Error::from)?;
        // Refused: say why. This read cannot change the outcome; the
        // UPDATE above already decided it.
        let row = sqlx::query(
            "SELECT t.used_at, t.revoked_at, w.name AS workspace, d.name AS deployment \
             FROM enrolment_tokens t \
             JOIN deployments d ON d.id = t.deployment_id \
             JOIN workspaces w ON w.id = d.workspace_id \
             WHERE t.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?;
        let Some(row) = row else {
            return Err(TokenError::Unknown);
        };
        let used_at: Option<i64> = row.try_get("used_at").map_err(Error::from)?;
        let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(Error::from)?;
        let workspace: String = row.try_get("workspace").map_err(Error::from)?;
        let deployment: String = row.try_get("deployment").map_err(Error::from)?;
        Err(if used_at.is_some() {
            TokenError::AlreadyUsed {
                workspace,
                deployment,
            }
        } else if revoked_at.is_some() {
            // Checked before expiry: "revoked" names the real reason and
            // the same next step.
            TokenError::Revoked {
                workspace,
                deployment,
            }
        } else {
            TokenError::Expired {
                workspace,
                deployment,
            }
        })
    }

    async fn deployment_by_id(&self, id: &str) -> Result<Deployment, Error> {
        let row = sqlx::query(
            "SELECT d.id, d.name, d.spiffe_id, d.created_at, w.name AS workspace \
             FROM deployments d JOIN workspaces w ON w.id = d.workspace_id WHERE d.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let workspace: String = row.try_get("workspace")?;
        deployment_row(&row, &workspace)
    }

    // -- agents -------------------------------------------------------------

    /// Creates an agent and returns its bearer credential (shown once;
    /// only its SHA-256 is stored).
    pub async fn create_agent(
        &self,
        workspace: &str,
        name: &str,
        now: SystemTime,
    ) -> Result<(Agent, SecretString), Error> {
        self.create_agent_with_policy(workspace, name, None, now)
            .await
    }

    /// Creates an agent with a policy (TOML, validated by the caller).
    pub async fn create_agent_with_policy(
        &self,
        workspace: &str,
        name: &str,
        policy: Option<&str>,
        now: SystemTime,
    ) -> Result<(Agent, SecretString), Error> {
        names::validate_name("agent", name)?;
        let ws = self.workspace(workspace).await?;
        let exists = || Error::AgentExists {
            workspace: workspace.to_owned(),
            agent: name.to_owned(),
        };
        let taken = sqlx::query("SELECT id FROM agents WHERE workspace_id = $1 AND name = $2")
            .bind(&ws.id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Err(exists());
        }
        let agent = Agent {
            id: tokens::random_id()?,
            workspace: ws.name.clone(),
            name: name.to_owned(),
            created_at: unix(now),
            policy: policy.map(str::to_owned),
        };
        let credential = tokens::new_agent_credential()?;
        let inserted = sqlx::query(
            "INSERT INTO agents (id, workspace_id, name, credential_hash, created_at, policy) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&agent.id)
        .bind(&ws.id)
        .bind(&agent.name)
        .bind(secret_hash(credential.expose()))
        .bind(agent.created_at)
        .bind(&agent.policy)
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(exists()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok((agent, credential)),
        }
    }

    /// The agents of a workspace, by name.
    pub async fn list_agents(&self, workspace: &str) -> Result<Vec<Agent>, Error> {
        let ws = self.workspace(workspace).await?;
        let rows = sqlx::query(
            "SELECT id, name, created_at, policy FROM agents WHERE workspace_id = $1 \
             ORDER BY name",
        )
        .bind(&ws.id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Agent {
                    id: r.try_get("id")?,
                    workspace: ws.name.clone(),
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    policy: r.try_get("policy")?,
                })
            })
            .collect()
    }

    /// Sets (or with `None` removes) an agent's policy (TOML, validated by
    /// the caller). Takes effect on the agent's next call.
    pub async fn set_agent_policy(
        &self,
        workspace: &str,
        agent: &str,
        policy: Option<&str>,
    ) -> Result<Agent, Error> {
        let ws = self.workspace(workspace).await?;
        let updated =
            sqlx::query("UPDATE agents SET policy = $1 WHERE workspace_id = $2 AND name = $3")
                .bind(policy)
                .bind(&ws.id)
                .bind(agent)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(Error::Invalid(format!(
                "no agent named {agent:?} in workspace {workspace:?}; see `ewii-hub agent list \
                 --workspace {workspace}`"
            )));
        }
        self.list_agents(workspace)
            .await?
            .into_iter()
            .find(|a| a.name == agent)
            .ok_or_else(|| Error::Corrupt("the agent vanished while its policy was set".into()))
    }

    /// The agent whose credential is `bearer`, if any. The lookup is by
    /// SHA-256, so the comparison never touches the secret itself.
    pub async fn authenticate_agent(&self, bearer: &str) -> Result<Option<Agent>, Error> {
        if !bearer.starts_with(tokens::AGENT_CREDENTIAL_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT a.id, a.name, a.created_at, a.policy, w.name AS workspace \
             FROM agents a JOIN workspaces w ON w.id = a.workspace_id \
             WHERE a.credential_hash = $1",
        )
        .bind(tokens::secret_hash(bearer))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Agent {
                id: r.try_get("id")?,
                workspace: r.try_get("workspace")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                policy: r.try_get("policy")?,
            })
        })
        .transpose()
    }
}

async fn insert_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    token: &SecretString,
    deployment_id: &str,
    expires_at: i64,
    now: SystemTime,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO enrolment_tokens (token_hash, deployment_id, expires_at, used_at, created_at) \
         VALUES ($1, $2, $3, NULL, $4)",
    )
    .bind(secret_hash(token.expose()))
    .bind(deployment_id)
    .bind(expires_at)
    .bind(unix(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Associated data of a sealed CA key: binds it to its workspace row.
const HUB_CA_AAD: &[u8] = b"ewii-hub/hub-ca-key/v1";

fn ca_key_aad(workspace_id: &str) -> Vec<u8> {
    format!("ewii-hub/workspace-ca-key/v1\0{workspace_id}").into_bytes()
}

fn workspace_row(row: &AnyRow) -> Result<Workspace, Error> {
    Ok(Workspace {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        trust_domain: row.try_get("trust_domain")?,
        bundle_sequence: row.try_get("bundle_sequence")?,
        created_at: row.try_get("created_at")?,
    })
}

fn deployment_row(row: &AnyRow, workspace: &str) -> Result<Deployment, Error> {
    let spiffe_id: String = row.try_get("spiffe_id")?;
    Ok(Deployment {
        id: row.try_get("id")?,
        workspace: workspace.to_owned(),
        name: row.try_get("name")?,
        spiffe_id: SpiffeId::parse(&spiffe_id)
            .map_err(|e| Error::Corrupt(format!("stored SPIFFE ID: {e}")))?,
        created_at: row.try_get("created_at")?,
    })
}

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
