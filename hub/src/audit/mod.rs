//! The audit plane: what the hub remembers and tells.
//!
//! - [`trail`]: the hash-chained audit trail, written before a call
//!   crosses a tunnel (intent) and before its result is released
//!   (outcome).
//! - [`export`]: exporters that follow the trail to SIEM sinks.
//! - [`webhook`]: revocation webhooks (HMAC-signed, retried until
//!   delivered).

pub mod export;
pub mod trail;
pub mod webhook;
