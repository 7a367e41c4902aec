-- Agents sign in with OAuth 2.1 access tokens from the workspace's
-- authorization server (issue #18). Same dialect rules as 0001.
--
-- One authorization server per workspace: tokens must come from `issuer`,
-- be audience-bound to `audience` (the hub's resource URI), and name their
-- agent in claim `claim`. Opaque tokens are introspected at
-- `introspection_url` with the client's credentials; the secret is
-- AES-256-GCM-sealed under the hub master key with the workspace id as
-- associated data, like the workspace CA key.
CREATE TABLE workspace_oauth (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id),
    issuer TEXT NOT NULL,
    audience TEXT NOT NULL,
    claim TEXT NOT NULL,
    introspection_url TEXT,
    client_id TEXT,
    client_secret_sealed TEXT,
    updated_at BIGINT NOT NULL
);

-- The value of the workspace's claim that names this agent (NULL: the
-- agent has no OAuth identity). Unique per workspace; NULLs repeat.
ALTER TABLE agents ADD COLUMN oauth_subject TEXT;
CREATE UNIQUE INDEX agents_oauth_subject ON agents (workspace_id, oauth_subject);

-- A disabled agent is refused on its next request, whatever credential it
-- presents (static bearer or OAuth token). NULL = enabled.
ALTER TABLE agents ADD COLUMN disabled_at BIGINT;
