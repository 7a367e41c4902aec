//! The audit plane: what the hub remembers and tells.
//!
//! - [`trail`]: the hash-chained audit trail, written before a call
//!   crosses a tunnel (intent) and before its result is released
//!   (outcome).
//! - [`export`]: exporters that follow the trail to SIEM sinks.
//! - [`webhook`]: revocation webhooks (HMAC-signed, retried until
//!   delivered).
//! - [`egress`]: what both send through: the HTTP client, the URL rule, CA
//!   files and TLS for receivers, retry delays.

pub mod egress;
pub mod export;
pub mod trail;
pub mod webhook;
