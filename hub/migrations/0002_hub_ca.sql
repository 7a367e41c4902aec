-- The hub's own CA, which signs its TLS server certificates; clients pin
-- it (`ewii-client --hub-ca`). One row, id 'hub'; the key is sealed under
-- the master key like the workspace CAs'.
CREATE TABLE hub_cas (
    id TEXT PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    key_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
