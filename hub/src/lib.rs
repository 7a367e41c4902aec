//! The Ewii hub: the operator's multi-tenant side of Ewii.
//!
//! This crate holds the hub's state and its identity authority:
//!
//! - [`store`]: workspaces, deployments, enrolment tokens, agent
//!   credentials, workspace CAs and imported bundles, through sqlx on an
//!   SQLite file (default) or PostgreSQL (several replicas), with one set of
//!   migrations for both.
//! - [`names`]: the naming rules and the SPIFFE ID layout
//!   `spiffe://<trust-domain>/ws/<workspace>/dep/<deployment>`.
//! - [`tokens`]: enrolment tokens and agent bearer credentials (random,
//!   stored only as SHA-256).
//! - [`master_key`]: the hub master key that seals CA private keys at rest
//!   (AES-256-GCM).
//! - [`ca`]: one CA per workspace and X509-SVID issuance from a PKCS#10 CSR.
//! - [`bundle`]: the SPIFFE trust bundle format (JWKS) and PEM, export and
//!   import.
//! - [`trust`]: [`trust::StoreTrust`], the tunnel's
//!   [`TrustSource`](ewii_tunnel::svid::TrustSource) over the store.
//!
//! The `ewii-hub` binary is the admin CLI over these.
#![forbid(unsafe_code)]

pub mod agents;
pub mod audit;
pub mod bundle;
pub mod ca;
pub mod error;
pub mod export;
pub mod master_key;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod registry;
pub mod serve;
pub mod store;
pub mod tokens;
pub mod trust;
pub mod upstream;
pub mod webhook;

pub use error::{Error, TokenError};
pub use store::{Agent, Deployment, EnrolmentToken, Location, Store, Workspace};
