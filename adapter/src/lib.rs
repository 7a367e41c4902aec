//! The Ewii MCP adapter.
//!
//! Runs on the customer's side next to the databases, reachable on
//! localhost only. It keeps database credentials in an encrypted store and
//! serves the union of the attached databases' tools over MCP, on the MCP
//! layer it shares with the hub ([`ewii_mcp`]).
//!
//! - [`server`]: the live catalog ([`Adapter`]) as the MCP backend;
//! - [`serve`]: the transports (loopback HTTP, a unix socket, stdio) and
//!   the watcher that follows the credential store;
//! - [`access`]: who the HTTP endpoint serves (browser origins, the local
//!   credential), and [`local_credential`], that credential;
//! - [`store`]: the encrypted credential store; [`home`]: the adapter's
//!   directory and configuration; [`admin`]: the CLI's operations;
//!   [`drivers`]: the drivers linked in.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod drivers;
pub mod home;
pub mod local_credential;
pub mod serve;
pub mod server;
pub mod store;

pub use home::{AdapterConfig, AdapterHome};
pub use server::{Adapter, McpService};
