//! The gateway plane: what serves agents and deployments.
//!
//! - [`serve`]: `ewii-hub serve`: starts the listeners and the background
//!   duties (trust refresh, revocation enforcement, webhook delivery,
//!   audit export), and stops them.
//! - [`tunnels`]: the deployments' side: enrolment and tunnels on the QUIC
//!   port, each tunnel's MCP session with its adapter, renewal, goodbye.
//! - [`http`]: the agents' HTTP edge: `/mcp` behind the bearer gate,
//!   `/healthz`, `/metrics`.
//! - [`tls`]: HTTPS for that edge (`--http-tls-cert`), its certificate
//!   reloaded on `SIGHUP` or change.
//! - [`agents`]: the agents' MCP service: the workspace's tools, policy,
//!   routing and auditing of every call.
//! - [`registry`]: the live deployments and their catalogs.
//! - [`upstream`]: the hub as an MCP client of each deployment's adapter,
//!   through its tunnel.
//! - [`oauth`]: the hub as an OAuth 2.1 resource server: access tokens
//!   from each workspace's authorization server, RFC 9728 metadata.
//! - [`policy`]: per-agent policy: the model, its evaluation, statement
//!   classification and rate limits.
//! - [`metrics`]: Prometheus metrics.

pub mod agents;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod policy;
pub mod registry;
pub mod serve;
pub mod tls;
pub mod tunnels;
pub mod upstream;
