//! Per-workspace OAuth configuration: which authorization server's access
//! tokens the hub accepts for the workspace's agents, and what a token
//! granted (kept on the request's [`Agent`](super::Agent), for policy and
//! audit).

use std::time::SystemTime;

use serde::Serialize;
use sqlx::Row as _;

use super::{Store, unix};
use crate::Error;
use ewii_driver_core::SecretString;

/// What `ewii-hub workspace oauth set` stores.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    /// The authorization server's issuer identifier (RFC 8414 `issuer`),
    /// compared byte for byte with a token's `iss`.
    pub issuer: String,
    /// The audience tokens must carry: the hub's resource URI (RFC 8707).
    pub audience: String,
    /// The claim that names the agent (`sub`, `client_id`, …).
    pub claim: String,
    /// RFC 7662 introspection for opaque tokens, if the server issues them.
    pub introspection: Option<Introspection>,
}

/// Where and as whom the hub introspects opaque tokens.
#[derive(Clone, Debug)]
pub struct Introspection {
    /// The introspection endpoint.
    pub url: String,
    /// The hub's client id at the authorization server.
    pub client_id: String,
    /// Its secret (sealed in the store).
    pub client_secret: SecretString,
}

/// A workspace's OAuth configuration as the gateway uses it.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The workspace's name.
    pub workspace: String,
    /// The settings.
    pub settings: OAuthSettings,
}

/// What the access token of one request granted: carried on the request's
/// agent, fenced into its policy and written to its audit records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OAuthGrant {
    /// The token's issuer.
    pub issuer: String,
    /// The value of the workspace's claim (the agent's OAuth subject).
    pub subject: String,
    /// The OAuth client the token was issued to, when it says.
    pub client: Option<String>,
    /// The token's scopes.
    pub scopes: Vec<String>,
    /// The token's `exp`, Unix seconds.
    pub expires_at: i64,
}

fn secret_aad(workspace_id: &str) -> Vec<u8> {
    format!("ewii-hub oauth client secret v1 {workspace_id}").into_bytes()
}

impl Store {
    /// Sets (replaces) a workspace's OAuth configuration.
    pub async fn set_workspace_oauth(
        &self,
        workspace: &str,
        settings: &OAuthSettings,
        now: SystemTime,
    ) -> Result<(), Error> {
        for (what, value) in [
            ("issuer", settings.issuer.as_str()),
            ("audience", settings.audience.as_str()),
            ("claim", settings.claim.as_str()),
        ] {
            if value.trim().is_empty() || value.trim() != value {
                return Err(Error::Invalid(format!(
                    "the OAuth {what} must be non-empty, without surrounding spaces"
                )));
            }
        }
        let ws = self.workspace(workspace).await?;
        let sealed = settings
            .introspection
            .as_ref()
            .map(|i| {
                self.master_key
                    .seal(i.client_secret.expose().as_bytes(), &secret_aad(&ws.id))
            })
            .transpose()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM workspace_oauth WHERE workspace_id = $1")
            .bind(&ws.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO workspace_oauth (workspace_id, issuer, audience, claim, \
             introspection_url, client_id, client_secret_sealed, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&ws.id)
        .bind(&settings.issuer)
        .bind(&settings.audience)
        .bind(&settings.claim)
        .bind(settings.introspection.as_ref().map(|i| i.url.clone()))
        .bind(settings.introspection.as_ref().map(|i| i.client_id.clone()))
        .bind(sealed)
        .bind(unix(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a workspace's OAuth configuration: its agents' tokens are
    /// refused from the next request on. Whether there was one.
    pub async fn clear_workspace_oauth(&self, workspace: &str) -> Result<bool, Error> {
        let ws = self.workspace(workspace).await?;
        let n = sqlx::query("DELETE FROM workspace_oauth WHERE workspace_id = $1")
            .bind(&ws.id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Every workspace's OAuth configuration, by workspace name.
    pub async fn oauth_configs(&self) -> Result<Vec<OAuthConfig>, Error> {
        let rows = sqlx::query(
            "SELECT w.id, w.name, o.issuer, o.audience, o.claim, o.introspection_url, \
             o.client_id, o.client_secret_sealed \
             FROM workspace_oauth o JOIN workspaces w ON w.id = o.workspace_id ORDER BY w.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0)?;
            let workspace: String = row.try_get(1)?;
            let url: Option<String> = row.try_get(5)?;
            let client_id: Option<String> = row.try_get(6)?;
            let sealed: Option<String> = row.try_get(7)?;
            let introspection =
                match (url, client_id, sealed) {
                    (Some(url), Some(client_id), Some(sealed)) => {
                        let secret = self.master_key.open(&sealed, &secret_aad(&id)).ok_or_else(|| {
                        Error::Corrupt(format!(
                            "the OAuth client secret of workspace {workspace:?} does not open \
                             with this master key"
                        ))
                    })?;
                        Some(Introspection {
                            url,
                            client_id,
                            client_secret: SecretString::new(
                                String::from_utf8_lossy(&secret).into_owned(),
                            ),
                        })
                    }
                    _ => None,
                };
            out.push(OAuthConfig {
                workspace,
                settings: OAuthSettings {
                    issuer: row.try_get(2)?,
                    audience: row.try_get(3)?,
                    claim: row.try_get(4)?,
                    introspection,
                },
            });
        }
        Ok(out)
    }
}
