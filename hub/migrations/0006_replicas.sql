-- Replicas and the registry of live tunnels (issue #19). Same dialect
-- rules as 0001 (TEXT and BIGINT only, ids made by the hub), except that
-- the times here are Unix MILLISECONDS: leases last seconds.

-- One row per running `ewii-hub serve` process. `id` is random per start;
-- `peer_address` is where the other replicas reach its replica channel
-- (`--replica-advertise`), NULL when it has none (nothing can be routed to
-- it). A replica whose heartbeat is older than the lease is dead.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    peer_address TEXT,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- Which replica holds each connected deployment's tunnel. One row per
-- deployment: a newer connection (the client reconnected, on this replica
-- or another) replaces the row, and the replica that held the older one
-- notices at its next heartbeat and closes it. A row whose lease has
-- passed belongs to a dead replica and is ignored. `tools` is the
-- adapter's catalog (JSON), `catalog` its SHA-256, so other replicas
-- list and authorise the deployment's tools without asking its replica.
CREATE TABLE live_tunnels (
    deployment_id TEXT PRIMARY KEY REFERENCES deployments (id),
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    replica_id TEXT NOT NULL,
    connection BIGINT NOT NULL,
    session_serial TEXT NOT NULL,
    catalog TEXT NOT NULL,
    tools TEXT NOT NULL,
    connected_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
CREATE INDEX live_tunnels_replica ON live_tunnels (replica_id);
CREATE INDEX live_tunnels_workspace ON live_tunnels (workspace_id);

-- The replicas' internal CA (issues the certificates of the mutual-TLS
-- replica channel) is a row 'replica' of `hub_cas`, its key sealed under
-- the master key with its own associated data.
