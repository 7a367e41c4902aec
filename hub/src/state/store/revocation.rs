//! Revocation state, issued SVIDs and the revocation webhooks' outbox.
//!
//! Revoking writes, in one transaction: the revoked serials, the
//! deployment's `revoked_at` and the invalidation of its outstanding
//! enrolment tokens (for a deployment revoke), a bump of the
//! `revocation` revision that serving hubs poll, a `NOTIFY` on
//! PostgreSQL ([`crate::state::notify`]), and one outbox row per
//! webhook that wants the event. A serving hub therefore learns of a
//! revocation made by the CLI or another replica within one poll, and a
//! webhook is delivered even if no hub was running when it was revoked.
//!
//! A revoked deployment comes back only by enrolling with a token issued
//! *after* the revoke: tokens issued before it are invalidated with it
//! (refused as `token_revoked`), so a token lying around from before (a
//! spare one, one copied into a compose file) cannot undo the revoke. A
//! revoke by serial (`revoke --svid`) revokes that SVID only: the
//! deployment is not revoked, so its tokens stay as they were (enrolling
//! again gets a new serial; the revoked one stays revoked).

use std::collections::HashSet;
use std::time::SystemTime;

use serde::Serialize;
use sqlx::Row;
use zeroize::Zeroizing;

use super::{Store, unix};
use crate::Error;
use crate::state::notify::{self, Topic};
use crate::state::tokens;

/// Why something was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// `ewii-hub revoke`.
    Operator,
    /// The client's signed goodbye on a graceful stop.
    Goodbye,
}

impl RevocationReason {
    /// The stored and exported code.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Operator => "operator",
            RevocationReason::Goodbye => "goodbye",
        }
    }
}

/// What a revocation did.
#[derive(Clone, Debug, Serialize)]
pub struct Revoked {
    /// The workspace, when the serial belongs to a known deployment.
    pub workspace: Option<String>,
    /// The deployment, when known.
    pub deployment: Option<String>,
    /// Its SPIFFE ID, when known.
    pub spiffe_id: Option<String>,
    /// Serials newly revoked.
    pub serials: Vec<String>,
    /// Webhook deliveries queued.
    pub webhooks: usize,
    /// Outstanding enrolment tokens of the deployment this revoke
    /// invalidated (always 0 for a revoke by serial).
    pub tokens_revoked: u64,
    /// When, Unix seconds.
    pub revoked_at: i64,
}

/// The revocation state a serving hub enforces.
#[derive(Clone, Debug, Default)]
pub struct RevocationState {
    /// Revoked serials, lowercase hex.
    pub serials: HashSet<String>,
    /// SPIFFE IDs of revoked deployments.
    pub spiffe_ids: HashSet<String>,
}

/// A registered webhook (without its secret).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Webhook {
    /// Id, for `webhook remove`.
    pub id: String,
    /// The workspace.
    pub workspace: String,
    /// The deployment, or `None` for every deployment of the workspace.
    pub deployment: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A delivery that is due, leased to this hub.
pub struct DueDelivery {
    /// Delivery id (the receiver's idempotency key).
    pub id: String,
    /// The event name.
    pub event: String,
    /// The URL.
    pub url: String,
    /// The webhook secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// The JSON body.
    pub body: String,
    /// Attempts made so far.
    pub attempts: i64,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A delivery's record, for `webhook deliveries`.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct DeliveryRecord {
    /// Delivery id.
    pub id: String,
    /// The webhook.
    pub webhook_id: String,
    /// The URL.
    pub url: String,
    /// The event name.
    pub event: String,
    /// Queued at, Unix seconds.
    pub created_at: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// Delivered at (a 2xx answer), Unix seconds.
    pub delivered_at: Option<i64>,
    /// The last HTTP status received.
    pub last_status: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the next attempt is due, Unix seconds.
    pub next_attempt_at: i64,
}

/// Normalises a serial as typed by an operator: hex digits only
/// (`0x`, `:` and spaces dropped), lowercase.
pub fn normalize_serial(serial: &str) -> Result<String, Error> {
    let s = serial.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || hex.len() > 128 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "{serial:?} is not an SVID serial: give it in hex as `ewii-client run --check` or \
             `ewii-hub audit tail` (svid_serial) print it (e.g. 4f1a…, colons allowed)"
        )));
    }
    Ok(hex)
}

fn secret_aad(id: &str) -> Vec<u8> {
    format!("ewii-hub/webhook-secret/v1\0{id}").into_bytes()
}

const REVOCATION: &str = "revocation";

impl Store {
    /// Records an SVID the hub issued to `deployment_id`.
    pub async fn record_svid(
        &self,
        deployment_id: &str,
        serial: &str,
        kind: &str,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO svids (serial, deployment_id, kind, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(serial)
        .bind(deployment_id)
        .bind(kind)
        .bind(issued_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes a deployment: every SVID the hub issued it, and any other
    /// SVID of its SPIFFE ID, until it enrols again with a token issued
    /// after this revoke. Its outstanding enrolment tokens are invalidated
    /// in the same transaction.
    pub async fn revoke_deployment(
        &self,
        workspace: &str,
        deployment: &str,
        reason: RevocationReason,
        now: SystemTime,
    ) -> Result<Revoked, Error> {
        let (ws, dep) = self.existing_deployment(workspace, deployment).await?;
        let at = unix(now);
        let mut tx = self.pool.begin().await?;
        // First, so that this transaction takes the token rows before the
        // deployment row, in the order an enrolment does: the two are
        // serialised, never deadlocked (see `consume_enrolment_token`).
        let tokens_revoked = sqlx::query(
            "UPDATE enrolment_tokens SET revoked_at = $1 \
             WHERE deployment_id = $2 AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $1",
        )
        .bind(at)
        .bind(&dep.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let fresh: Vec<String> = sqlx::query(
            "SELECT serial FROM svids WHERE deployment_id = $1 \
             AND serial NOT IN (SELECT serial FROM revoked_serials) ORDER BY issued_at",
        )
        .bind(&dep.id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("serial"))
        .collect::<Result<_, _>>()?;
        for serial in &fresh {
            sqlx::query(
                "INSERT INTO revoked_serials (serial, deployment_id, reason, revoked_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(serial)
            .bind(&dep.id)
            .bind(reason.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE deployments SET revoked_at = $1, revoked_reason = $2 WHERE id = $3")
            .bind(at)
            .bind(reason.as_str())
            .bind(&dep.id)
            .execute(&mut *tx)
            .await?;
        bump(&mut tx, REVOCATION).await?;
        let mut revoked = Revoked {
            workspace: Some(ws.name.clone()),
            deployment: Some(dep.name.clone()),
            spiffe_id: Some(dep.spiffe_id.to_string()),
            serials: fresh,
            webhooks: 0,
            tokens_revoked,
            revoked_at: at,
        };
        let body = serde_json::json!({
            "event": "deployment.revoked",
            "time": at,
            "workspace": ws.name,
            "deployment": dep.name,
            "spiffe_id": dep.spiffe_id.to_string(),
            "serials": revoked.serials,
            "reason": reason.as_str(),
        });
        revoked.webhooks = enqueue(
            &mut tx,
            &ws.id,
            Some(&dep.id),
            "deployment.revoked",
            &body,
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Revokes one SVID by serial (hex, as `serial_hex` prints it). A
    /// serial the hub never issued is revoked all the same (an SVID from
    /// an imported CA).
    pub async fn revoke_serial(
        &self,
        serial: &str,
        reason: RevocationReason,
        now: SystemTime,
    ) -> Result<Revoked, Error> {
        let serial = normalize_serial(serial)?;
        let at = unix(now);
        let mut tx = self.pool.begin().await?;
        let owner = sqlx::query(
            "SELECT d.id, d.name, d.spiffe_id, w.id AS workspace_id, w.name AS workspace \
             FROM svids s JOIN deployments d ON d.id = s.deployment_id \
             JOIN workspaces w ON w.id = d.workspace_id WHERE s.serial = $1",
        )
        .bind(&serial)
        .fetch_optional(&mut *tx)
        .await?;
        let already = sqlx::query("SELECT serial FROM revoked_serials WHERE serial = $1")
            .bind(&serial)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let mut revoked = Revoked {
            workspace: None,
            deployment: None,
            spiffe_id: None,
            serials: Vec::new(),
            webhooks: 0,
            tokens_revoked: 0,
            revoked_at: at,
        };
        let (dep_id, ws_id) = match &owner {
            Some(row) => {
                revoked.workspace = Some(row.try_get("workspace")?);
                revoked.deployment = Some(row.try_get("name")?);
                revoked.spiffe_id = Some(row.try_get("spiffe_id")?);
                (
                    Some(row.try_get::<String, _>("id")?),
                    Some(row.try_get::<String, _>("workspace_id")?),
                )
            }
            None => (None, None),
        };
        if !already {
            sqlx::query(
                "INSERT INTO revoked_serials (serial, deployment_id, reason, revoked_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&serial)
            .bind(&dep_id)
            .bind(reason.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            bump(&mut tx, REVOCATION).await?;
            revoked.serials.push(serial.clone());
            if let Some(ws_id) = &ws_id {
                let body = serde_json::json!({
                    "event": "svid.revoked",
                    "time": at,
                    "workspace": revoked.workspace,
                    "deployment": revoked.deployment,
                    "spiffe_id": revoked.spiffe_id,
                    "serials": [serial],
                    "reason": reason.as_str(),
                });
                revoked.webhooks =
                    enqueue(&mut tx, ws_id, dep_id.as_deref(), "svid.revoked", &body, at).await?;
            }
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// The revocation revision: changes whenever the revocation state does.
    pub async fn revocation_revision(&self) -> Result<i64, Error> {
        let row = sqlx::query("SELECT value FROM revisions WHERE id = $1")
            .bind(REVOCATION)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Every revoked serial and revoked deployment.
    pub async fn revocation_state(&self) -> Result<RevocationState, Error> {
        let mut state = RevocationState::default();
        for r in sqlx::query("SELECT serial FROM revoked_serials")
            .fetch_all(&self.pool)
            .await?
        {
            state.serials.insert(r.try_get("serial")?);
        }
        for r in sqlx::query("SELECT spiffe_id FROM deployments WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?
        {
            state.spiffe_ids.insert(r.try_get("spiffe_id")?);
        }
        Ok(state)
    }

    // -- webhooks -------------------------------------------------------------

    /// Registers a webhook for a workspace, or one of its deployments.
    pub async fn add_webhook(
        &self,
        workspace: &str,
        deployment: Option<&str>,
        url: &str,
        secret: &str,
        now: SystemTime,
    ) -> Result<Webhook, Error> {
        crate::audit::egress::check_url(url)
            .map_err(|e| Error::Invalid(format!("webhook URL {url:?} refused: {e}")))?;
        let ws = self.workspace(workspace).await?;
        let dep =
            match deployment {
                Some(d) => Some(self.find_deployment(&ws, d).await?.ok_or_else(|| {
                    Error::NoDeployment {
                        workspace: workspace.to_owned(),
                        deployment: d.to_owned(),
                    }
                })?),
                None => None,
            };
        let id = tokens::random_id()?;
        let sealed = self.master_key.seal(secret.as_bytes(), &secret_aad(&id))?;
        let at = unix(now);
        sqlx::query(
            "INSERT INTO webhooks (id, workspace_id, deployment_id, url, secret_sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&ws.id)
        .bind(dep.as_ref().map(|d| d.id.clone()))
        .bind(url)
        .bind(&sealed)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(Webhook {
            id,
            workspace: ws.name,
            deployment: dep.map(|d| d.name),
            url: url.to_owned(),
            created_at: at,
        })
    }

    /// A workspace's webhooks.
    pub async fn list_webhooks(&self, workspace: &str) -> Result<Vec<Webhook>, Error> {
        let ws = self.workspace(workspace).await?;
        Ok(sqlx::query_as::<_, Webhook>(
            "SELECT h.id, w.name AS workspace, d.name AS deployment, h.url, h.created_at \
             FROM webhooks h JOIN workspaces w ON w.id = h.workspace_id \
             LEFT JOIN deployments d ON d.id = h.deployment_id \
             WHERE h.workspace_id = $1 ORDER BY h.created_at, h.id",
        )
        .bind(&ws.id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes a webhook and its pending deliveries.
    pub async fn remove_webhook(&self, workspace: &str, id: &str) -> Result<(), Error> {
        let ws = self.workspace(workspace).await?;
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("SELECT id FROM webhooks WHERE id = $1 AND workspace_id = $2")
            .bind(id)
            .bind(&ws.id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(Error::Invalid(format!(
                "no webhook {id:?} in workspace {workspace:?}; see `ewii-hub webhook list \
                 --workspace {workspace}`"
            )));
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Leases up to `limit` due deliveries to the caller for `lease_s`
    /// seconds (another replica skips them meanwhile).
    pub async fn due_deliveries(
        &self,
        now: SystemTime,
        lease_s: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, Error> {
        let now = unix(now);
        let rows = sqlx::query(
            "SELECT x.id, x.event, x.body, x.attempts, h.id AS webhook_id, h.url, h.secret_sealed \
             FROM webhook_deliveries x JOIN webhooks h ON h.id = x.webhook_id \
             WHERE x.delivered_at IS NULL AND x.next_attempt_at <= $1 AND x.lease_until <= $1 \
             ORDER BY x.created_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            let leased = sqlx::query(
                "UPDATE webhook_deliveries SET lease_until = $1 \
                 WHERE id = $2 AND delivered_at IS NULL AND lease_until <= $3",
            )
            .bind(now + lease_s)
            .bind(&id)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if leased == 0 {
                continue;
            }
            let webhook_id: String = r.try_get("webhook_id")?;
            let sealed: String = r.try_get("secret_sealed")?;
            let Some(secret) = self.master_key.open(&sealed, &secret_aad(&webhook_id)) else {
                tracing::error!(webhook = %webhook_id, "a webhook secret does not decrypt; is this the master key it was sealed with?");
                continue;
            };
            due.push(DueDelivery {
                id,
                event: r.try_get("event")?,
                url: r.try_get("url")?,
                secret,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
            });
        }
        Ok(due)
    }

    /// Records a successful delivery.
    pub async fn delivery_succeeded(
        &self,
        id: &str,
        status: u16,
        now: SystemTime,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE webhook_deliveries SET delivered_at = $1, last_status = $2, \
             attempts = attempts + 1, last_error = NULL, lease_until = 0 WHERE id = $3",
        )
        .bind(unix(now))
        .bind(i64::from(status))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn delivery_failed(
        &self,
        id: &str,
        status: Option<u16>,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $1, \
             last_error = $2, next_attempt_at = $3, lease_until = 0 WHERE id = $4",
        )
        .bind(status.map(i64::from))
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A workspace's webhook deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        workspace: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, Error> {
        let ws = self.workspace(workspace).await?;
        Ok(sqlx::query_as::<_, DeliveryRecord>(
            "SELECT x.id, x.webhook_id, h.url, x.event, x.created_at, x.attempts, x.delivered_at, \
             x.last_status, x.last_error, x.next_attempt_at \
             FROM webhook_deliveries x JOIN webhooks h ON h.id = x.webhook_id \
             WHERE h.workspace_id = $1 ORDER BY x.created_at DESC, x.id LIMIT $2",
        )
        .bind(&ws.id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Lifts a deployment's revocation (its revoked serials stay revoked),
/// inside the transaction that spends a token issued after the revoke.
/// Whether it was revoked.
pub(super) async fn lift_deployment_revocation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deployment_id: &str,
) -> Result<bool, Error> {
    let changed = sqlx::query(
        "UPDATE deployments SET revoked_at = NULL, revoked_reason = NULL \
         WHERE id = $1 AND revoked_at IS NOT NULL",
    )
    .bind(deployment_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed > 0 {
        bump(tx, REVOCATION).await?;
    }
    Ok(changed > 0)
}

/// Bumps the revocation revision and notifies every replica, both taking
/// effect when `tx` commits.
async fn bump(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE revisions SET value = value + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    notify::notify(tx, Topic::Revocation).await?;
    Ok(())
}

/// Queues `event` for every webhook of the workspace that covers the
/// deployment. Returns how many.
async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    workspace_id: &str,
    deployment_id: Option<&str>,
    event: &str,
    body: &serde_json::Value,
    now: i64,
) -> Result<usize, Error> {
    let hooks: Vec<String> = sqlx::query(
        "SELECT id FROM webhooks WHERE workspace_id = $1 \
         AND (deployment_id IS NULL OR deployment_id = $2)",
    )
    .bind(workspace_id)
    .bind(deployment_id.unwrap_or(""))
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<Result<_, _>>()?;
    for hook in &hooks {
        let id = tokens::random_id()?;
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            o.insert("delivery".into(), serde_json::Value::String(id.clone()));
        }
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event, body, created_at, attempts, \
             next_attempt_at, lease_until, delivered_at, last_status, last_error) \
             VALUES ($1, $2, $3, $4, $5, 0, $5, 0, NULL, NULL, NULL)",
        )
        .bind(&id)
        .bind(hook)
        .bind(event)
        .bind(body.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(hooks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise() {
        assert_eq!(normalize_serial("0x4F:1A").unwrap(), "4f1a");
        assert_eq!(normalize_serial(" 4f 1a ").unwrap(), "4f1a");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
    }
}
