//! The state plane: what the hub knows, and its identity authority.
//!
//! - [`store`]: workspaces, deployments, enrolment tokens, agent
//!   credentials, workspace CAs, issued SVIDs, revocations, webhooks and
//!   audit rows, per-workspace OAuth settings and agents' OAuth subjects,
//!   through sqlx on an SQLite file (default) or PostgreSQL
//!   (several replicas), with one set of migrations for both.
//! - [`names`]: the naming rules and the SPIFFE ID layout
//!   `spiffe://<trust-domain>/ws/<workspace>/dep/<deployment>`.
//! - [`tokens`]: enrolment tokens and agent bearer credentials (random,
//!   stored only as SHA-256).
//! - [`master_key`]: the hub master key that seals CA private keys at rest
//!   (AES-256-GCM).
//! - [`ca`]: the hub CA and one CA per workspace; X509-SVID issuance from a
//!   PKCS#10 CSR.
//! - [`bundle`]: the SPIFFE trust bundle format (JWKS) and PEM, export and
//!   import.
//! - [`duty`]: single duties (exporters, webhooks) on exactly one replica
//!   at a time, by a PostgreSQL advisory lock.
//! - [`notify`]: PostgreSQL `LISTEN`/`NOTIFY` between replicas for what
//!   must be fast everywhere (revocations), the poll as the fallback.
//! - [`trust`]: [`trust::StoreTrust`], the tunnel's trust source over the
//!   store (bundles and revocations, cached and refreshed).

pub mod bundle;
pub mod ca;
pub mod duty;
pub mod master_key;
pub mod names;
pub mod notify;
pub mod store;
pub mod tokens;
pub mod trust;
