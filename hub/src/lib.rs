//! The Ewii hub: the operator's multi-tenant side of Ewii, in three planes.
//!
//! - [`state`]: what the hub knows and the identity authority: the store
//!   (workspaces, deployments, enrolment tokens, agent credentials, SVIDs,
//!   revocations, audit rows; SQLite or PostgreSQL through sqlx, one set of
//!   migrations), the workspace CAs and SVID issuance, the master key that
//!   seals CA keys, tokens and credentials, SPIFFE trust bundles and the
//!   tunnel's trust source over the store, and the naming rules.
//! - [`gateway`]: what serves: `ewii-hub serve` (tunnels and enrolment on
//!   QUIC, the agents' MCP endpoint on HTTP), the registry of live
//!   deployments, the MCP session to each deployment's adapter, the
//!   per-agent policy, and the metrics.
//! - [`audit`]: what is remembered and told: the hash-chained audit trail,
//!   its exporters (SIEM sinks), and the revocation webhooks.
//! - [`replica`]: several hub replicas as one service: the registry of
//!   live tunnels in the store, and the mutual-TLS channel that routes an
//!   agent's call to the replica holding the deployment's tunnel.
//!
//! [`error`] holds the crate's error type. The `ewii-hub` binary
//! (`src/main.rs`, `src/cli/`) is the admin CLI over these.
#![forbid(unsafe_code)]

pub mod audit;
pub mod error;
pub mod gateway;
pub mod replica;
pub mod state;

pub use error::{Error, TokenError};
pub use state::store::{Agent, Deployment, EnrolmentToken, Location, Store, Workspace};
