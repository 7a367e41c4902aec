-- Revoking a deployment invalidates its outstanding enrolment tokens, in
-- the same transaction as the revoke: a token issued before a revoke must
-- not undo it. Only a token issued after the revoke brings the deployment
-- back. NULL = not revoked. Same dialect rules as 0001.
ALTER TABLE enrolment_tokens ADD COLUMN revoked_at BIGINT;
