-- Revocation, per-agent policy and the audit trail. Same dialect rules as
-- 0001: TEXT and BIGINT only, ids made by the hub, Unix seconds.

-- Every SVID the hub issued, so that revoking a deployment revokes each of
-- its serials (the tunnel's TLS and app-layer checks ask by serial).
CREATE TABLE svids (
    serial TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    kind TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX svids_deployment ON svids (deployment_id);

-- Revoked SVID serials (lowercase hex). `revoke --deployment` and a
-- client's goodbye add every serial of the deployment; `revoke --svid` one.
CREATE TABLE revoked_serials (
    serial TEXT PRIMARY KEY,
    deployment_id TEXT,
    reason TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);

-- A revoked deployment refuses every SVID of its SPIFFE ID, including ones
-- the hub did not issue (an imported SPIRE CA), until it enrols again with
-- a new token.
ALTER TABLE deployments ADD COLUMN revoked_at BIGINT;
ALTER TABLE deployments ADD COLUMN revoked_reason TEXT;

-- Counters serving hubs poll to notice changes made by other processes
-- (the admin CLI, other replicas): 'revocation' is bumped with every change
-- of the revocation state; 'audit_head' is the sequence number of the last
-- audit record (so a deleted last record is noticed too).
CREATE TABLE revisions (
    id TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO revisions (id, value) VALUES ('revocation', 0);
INSERT INTO revisions (id, value) VALUES ('audit_head', 0);

-- Revocation webhooks: per workspace (deployment_id NULL) or per
-- deployment. The secret is sealed under the master key.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    deployment_id TEXT REFERENCES deployments (id),
    url TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id);

-- The outbox: written in the same transaction as the revocation, delivered
-- by a serving hub with retries until a 2xx answer.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    delivered_at BIGINT,
    last_status BIGINT,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (delivered_at, next_attempt_at);

-- An agent's policy, TOML; NULL = unrestricted.
ALTER TABLE agents ADD COLUMN policy TEXT;

-- The audit trail: one row per tools/call. `record` is the record's JSON
-- exactly as hashed; hash = SHA-256(prev_hash || "\n" || record), hex.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- How far each exporter got.
CREATE TABLE audit_export_cursors (
    exporter TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
