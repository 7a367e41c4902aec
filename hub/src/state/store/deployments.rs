//! Deployments and their enrolment tokens.

use super::{
    Deployment, DeploymentRow, EnrolmentToken, Store, Workspace, is_unique_violation, revocation,
    select_deployments, unix, unix_after,
};
use std::time::{Duration, SystemTime};

use sqlx::Row;

use crate::state::names::{self};
use crate::state::tokens::{self, secret_hash};
use crate::{Error, TokenError};
use ewii_driver_core::SecretString;

impl Store {
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
        let (_, dep) = self.existing_deployment(workspace, deployment).await?;
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
        sqlx::query_as::<_, DeploymentRow>(select_deployments!(
            "WHERE d.workspace_id = $1 ORDER BY d.name"
        ))
        .bind(&ws.id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(Deployment::try_from)
        .collect()
    }

    /// The deployment whose SPIFFE ID is `id`, if any.
    pub async fn deployment_by_spiffe_id(&self, id: &str) -> Result<Option<Deployment>, Error> {
        sqlx::query_as::<_, DeploymentRow>(select_deployments!("WHERE d.spiffe_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(Deployment::try_from)
            .transpose()
    }

    /// Whether the store answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The workspace `workspace` and its deployment `deployment`, or
    /// [`Error::NoDeployment`].
    pub(super) async fn existing_deployment(
        &self,
        workspace: &str,
        deployment: &str,
    ) -> Result<(Workspace, Deployment), Error> {
        let ws = self.workspace(workspace).await?;
        match self.find_deployment(&ws, deployment).await? {
            Some(dep) => Ok((ws, dep)),
            None => Err(Error::NoDeployment {
                workspace: workspace.to_owned(),
                deployment: deployment.to_owned(),
            }),
        }
    }

    /// The deployment `name` of `ws`, if any.
    pub(super) async fn find_deployment(
        &self,
        ws: &Workspace,
        name: &str,
    ) -> Result<Option<Deployment>, Error> {
        sqlx::query_as::<_, DeploymentRow>(select_deployments!(
            "WHERE d.workspace_id = $1 AND d.name = $2"
        ))
        .bind(&ws.id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(Deployment::try_from)
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

    /// The deployment with internal id `id`.
    pub(super) async fn deployment_by_id(&self, id: &str) -> Result<Deployment, Error> {
        sqlx::query_as::<_, DeploymentRow>(select_deployments!("WHERE d.id = $1"))
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .try_into()
    }
}

/// Stores the hash of a new enrolment token for `deployment_id`.
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
