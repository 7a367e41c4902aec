//! The Ewii MCP adapter.
//!
//! Runs on the customer's side next to the databases, reachable on
//! localhost only. It keeps database credentials in an encrypted store
//! ([`store`]), opens each attached database through its driver plugin and
//! serves the union of their tools over MCP ([`server`], [`serve`]).
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
