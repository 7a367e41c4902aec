//! Replicas and the registry of live tunnels: which replica holds which
//! deployment's tunnel, under a lease its heartbeat renews.
//!
//! Times here are Unix milliseconds (migration 0006). The rules:
//! - A new connection claims its deployment's row unconditionally: the
//!   newest connection wins, wherever it landed ([`Store::claim_tunnel`]).
//! - The holder renews every lease it holds with one statement per
//!   heartbeat ([`Store::replica_heartbeat`]); a row whose lease has passed
//!   belongs to a dead replica and is ignored by readers.
//! - A holder that finds its row gone re-claims it only if nobody else
//!   holds a live lease on it ([`Store::reclaim_tunnel`]); otherwise the
//!   client has reconnected elsewhere and the holder closes its stale
//!   tunnel.

use std::collections::HashSet;

use sqlx::Row;

use super::Store;
use crate::Error;

/// How long rows of dead replicas and expired leases are kept (for
/// diagnosis) before a heartbeat deletes them, in milliseconds.
const KEEP_EXPIRED_MS: i64 = 10 * 60 * 1000;

/// A tunnel this replica holds, as it publishes it.
#[derive(Debug, Clone)]
pub struct TunnelClaim<'a> {
    /// The deployment's SPIFFE ID.
    pub spiffe_id: &'a str,
    /// The connection number (unique within the replica).
    pub connection: u64,
    /// Serial of the SVID the tunnel was opened with.
    pub session_serial: &'a str,
    /// SHA-256 (hex) of `tools`.
    pub catalog: &'a str,
    /// The adapter's tools, JSON.
    pub tools: &'a str,
    /// When the tunnel came up, Unix ms.
    pub connected_at: i64,
}

/// A live tunnel held by some replica, without its catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTunnel {
    /// The workspace's name.
    pub workspace: String,
    /// The deployment's name.
    pub deployment: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// The replica that holds it.
    pub replica_id: String,
    /// That replica's peer address, if it has a replica channel.
    pub peer_address: Option<String>,
    /// The connection number on that replica.
    pub connection: u64,
    /// Serial of the SVID the tunnel was opened with.
    pub session_serial: String,
    /// SHA-256 (hex) of its catalog.
    pub catalog: String,
}

/// A live replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveReplica {
    /// Its id.
    pub id: String,
    /// Its peer address, if it has a replica channel.
    pub peer_address: Option<String>,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Registers (or re-registers) replica `id` reachable at
    /// `peer_address`, alive at `now`.
    pub async fn register_replica(
        &self,
        id: &str,
        peer_address: Option<&str>,
        now: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO replicas (id, peer_address, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET peer_address = excluded.peer_address, \
             heartbeat_at = excluded.heartbeat_at",
        )
        .bind(id)
        .bind(peer_address)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One heartbeat of replica `id`: it is alive at `now`, and every lease
    /// it holds runs to `lease_until`. Returns what it holds now, as
    /// (SPIFFE ID, connection): a tunnel missing from it was taken over
    /// (or its row lost). Also forgets long-dead replicas and leases.
    pub async fn replica_heartbeat(
        &self,
        id: &str,
        peer_address: Option<&str>,
        now: i64,
        lease_until: i64,
    ) -> Result<HashSet<(String, u64)>, Error> {
        self.register_replica(id, peer_address, now).await?;
        sqlx::query("UPDATE live_tunnels SET lease_until = $2 WHERE replica_id = $1")
            .bind(id)
            .bind(lease_until)
            .execute(&self.pool)
            .await?;
        let forget = now.saturating_sub(KEEP_EXPIRED_MS);
        sqlx::query("DELETE FROM live_tunnels WHERE lease_until < $1")
            .bind(forget)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM replicas WHERE heartbeat_at < $1 \
             AND id NOT IN (SELECT replica_id FROM live_tunnels)",
        )
        .bind(forget)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT d.spiffe_id, t.connection FROM live_tunnels t \
             JOIN deployments d ON d.id = t.deployment_id WHERE t.replica_id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, to_u64(r.try_get(1)?))))
            .collect()
    }

    /// Replica `replica` now holds `claim`'s tunnel, leased to
    /// `lease_until`, whoever held it before (the newest connection wins).
    /// `false` when no deployment has that SPIFFE ID.
    pub async fn claim_tunnel(
        &self,
        replica: &str,
        claim: &TunnelClaim<'_>,
        lease_until: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "INSERT INTO live_tunnels (deployment_id, workspace_id, replica_id, connection, \
             session_serial, catalog, tools, connected_at, lease_until) \
             SELECT d.id, d.workspace_id, $2, $3, $4, $5, $6, $7, $8 FROM deployments d \
             WHERE d.spiffe_id = $1 \
             ON CONFLICT (deployment_id) DO UPDATE SET workspace_id = excluded.workspace_id, \
             replica_id = excluded.replica_id, connection = excluded.connection, \
             session_serial = excluded.session_serial, catalog = excluded.catalog, \
             tools = excluded.tools, connected_at = excluded.connected_at, \
             lease_until = excluded.lease_until",
        )
        .bind(claim.spiffe_id)
        .bind(replica)
        .bind(to_i64(claim.connection))
        .bind(claim.session_serial)
        .bind(claim.catalog)
        .bind(claim.tools)
        .bind(claim.connected_at)
        .bind(lease_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims `claim`'s tunnel again after its row went missing, but only
    /// if no other replica holds a live lease on the deployment at `now`;
    /// whether this replica holds it now.
    pub async fn reclaim_tunnel(
        &self,
        replica: &str,
        claim: &TunnelClaim<'_>,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "INSERT INTO live_tunnels (deployment_id, workspace_id, replica_id, connection, \
             session_serial, catalog, tools, connected_at, lease_until) \
             SELECT d.id, d.workspace_id, $2, $3, $4, $5, $6, $7, $8 FROM deployments d \
             WHERE d.spiffe_id = $1 \
             ON CONFLICT (deployment_id) DO UPDATE SET workspace_id = excluded.workspace_id, \
             replica_id = excluded.replica_id, connection = excluded.connection, \
             session_serial = excluded.session_serial, catalog = excluded.catalog, \
             tools = excluded.tools, connected_at = excluded.connected_at, \
             lease_until = excluded.lease_until \
             WHERE live_tunnels.lease_until < $9 \
             OR (live_tunnels.replica_id = $2 AND live_tunnels.connection = $3)",
        )
        .bind(claim.spiffe_id)
        .bind(replica)
        .bind(to_i64(claim.connection))
        .bind(claim.session_serial)
        .bind(claim.catalog)
        .bind(claim.tools)
        .bind(claim.connected_at)
        .bind(lease_until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Updates the catalog of a tunnel `replica` still holds on the same
    /// connection; whether it does.
    pub async fn update_tunnel_catalog(
        &self,
        replica: &str,
        claim: &TunnelClaim<'_>,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE live_tunnels SET catalog = $4, tools = $5, session_serial = $6 \
             WHERE replica_id = $1 AND connection = $2 \
             AND deployment_id = (SELECT id FROM deployments WHERE spiffe_id = $3)",
        )
        .bind(replica)
        .bind(to_i64(claim.connection))
        .bind(claim.spiffe_id)
        .bind(claim.catalog)
        .bind(claim.tools)
        .bind(claim.session_serial)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Releases the row of connection `connection` of `spiffe_id` if
    /// `replica` still holds it (a newer connection elsewhere keeps its
    /// own).
    pub async fn release_tunnel(
        &self,
        replica: &str,
        spiffe_id: &str,
        connection: u64,
    ) -> Result<(), Error> {
        sqlx::query(
            "DELETE FROM live_tunnels WHERE replica_id = $1 AND connection = $2 \
             AND deployment_id = (SELECT id FROM deployments WHERE spiffe_id = $3)",
        )
        .bind(replica)
        .bind(to_i64(connection))
        .bind(spiffe_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A replica stopping: its leases and its row go, so nobody routes to
    /// it any more.
    pub async fn retire_replica(&self, replica: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM live_tunnels WHERE replica_id = $1")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every tunnel whose lease runs at `now`, with the holder's address.
    pub async fn held_tunnels(&self, now: i64) -> Result<Vec<HeldTunnel>, Error> {
        let rows = sqlx::query(
            "SELECT w.name AS workspace, d.name AS deployment, d.spiffe_id, t.replica_id, \
             r.peer_address, t.connection, t.session_serial, t.catalog \
             FROM live_tunnels t JOIN deployments d ON d.id = t.deployment_id \
             JOIN workspaces w ON w.id = t.workspace_id \
             LEFT JOIN replicas r ON r.id = t.replica_id \
             WHERE t.lease_until >= $1 ORDER BY w.name, d.name",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HeldTunnel {
                    workspace: r.try_get("workspace")?,
                    deployment: r.try_get("deployment")?,
                    spiffe_id: r.try_get("spiffe_id")?,
                    replica_id: r.try_get("replica_id")?,
                    peer_address: r.try_get("peer_address")?,
                    connection: to_u64(r.try_get("connection")?),
                    session_serial: r.try_get("session_serial")?,
                    catalog: r.try_get("catalog")?,
                })
            })
            .collect()
    }

    /// The catalog (tools JSON) of `tunnel`, if its row still has that
    /// holder, connection and catalog.
    pub async fn tunnel_tools(&self, tunnel: &HeldTunnel) -> Result<Option<String>, Error> {
        let row = sqlx::query(
            "SELECT t.tools FROM live_tunnels t JOIN deployments d ON d.id = t.deployment_id \
             WHERE d.spiffe_id = $1 AND t.replica_id = $2 AND t.connection = $3 \
             AND t.catalog = $4",
        )
        .bind(&tunnel.spiffe_id)
        .bind(&tunnel.replica_id)
        .bind(to_i64(tunnel.connection))
        .bind(&tunnel.catalog)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get(0)).transpose().map_err(Error::from)
    }

    /// Replicas whose heartbeat is at or after `since`.
    pub async fn live_replicas(&self, since: i64) -> Result<Vec<LiveReplica>, Error> {
        let rows = sqlx::query(
            "SELECT id, peer_address FROM replicas WHERE heartbeat_at >= $1 ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveReplica {
                    id: r.try_get(0)?,
                    peer_address: r.try_get(1)?,
                })
            })
            .collect()
    }
}

/// Associated data of the sealed replica CA key.
const REPLICA_CA_AAD: &[u8] = b"ewii-hub/replica-ca-key/v1";

impl Store {
    /// The replicas' internal CA, created on first use. Replicas sharing a
    /// database race on one fixed row id, so they all end up with the
    /// same CA.
    pub async fn replica_ca(
        &self,
        now: std::time::SystemTime,
    ) -> Result<crate::state::ca::ReplicaCa, Error> {
        if let Some(ca) = self.load_replica_ca().await? {
            return Ok(ca);
        }
        let ca = crate::state::ca::ReplicaCa::generate(now)?;
        let sealed = self.master_key.seal(&ca.key_pkcs8(), REPLICA_CA_AAD)?;
        let inserted = sqlx::query(
            "INSERT INTO hub_cas (id, cert_pem, key_sealed, created_at) \
             VALUES ('replica', $1, $2, $3)",
        )
        .bind(ca.certificate_pem())
        .bind(&sealed)
        .bind(super::unix(now))
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if super::is_unique_violation(&e) => {}
            other => {
                other?;
            }
        }
        self.load_replica_ca()
            .await?
            .ok_or_else(|| Error::Corrupt("the replica CA vanished after it was stored".into()))
    }

    async fn load_replica_ca(&self) -> Result<Option<crate::state::ca::ReplicaCa>, Error> {
        let row = sqlx::query("SELECT cert_pem, key_sealed FROM hub_cas WHERE id = 'replica'")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let cert_pem: String = row.try_get("cert_pem")?;
        let sealed: String = row.try_get("key_sealed")?;
        let key = self
            .master_key
            .open(&sealed, REPLICA_CA_AAD)
            .ok_or_else(|| Error::SealedKey("the replica CA".into()))?;
        crate::state::ca::ReplicaCa::from_parts(&cert_pem, &key).map(Some)
    }
}
