//! Workspaces, their CAs and trust bundles, and the hub's own CA.

use super::{
    HUB_CA_AAD, Store, Workspace, WorkspaceBundle, ca_key_aad, is_unique_violation,
    select_workspaces, unix,
};
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sqlx::Row;

use crate::Error;
use crate::state::bundle;
use crate::state::ca::{HubCa, WorkspaceCa};
use crate::state::names::{self, DEFAULT_TRUST_DOMAIN};
use crate::state::tokens::{self};

impl Store {
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
        Ok(
            sqlx::query_as::<_, Workspace>(select_workspaces!("ORDER BY name"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The workspace named `name`, or [`Error::NoWorkspace`].
    pub async fn workspace(&self, name: &str) -> Result<Workspace, Error> {
        self.find_workspace(name)
            .await?
            .ok_or_else(|| Error::NoWorkspace(name.to_owned()))
    }

    pub(super) async fn find_workspace(&self, name: &str) -> Result<Option<Workspace>, Error> {
        Ok(
            sqlx::query_as::<_, Workspace>(select_workspaces!("WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
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
}
