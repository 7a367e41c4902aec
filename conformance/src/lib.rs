//! `ewii-conformance`: the crates, binaries and suites that judge any Ewii
//! build from the outside.
//!
//! The library holds no code yet. The binaries:
//! - `ewii-bearer-proxy` (`src/bin/ewii-bearer-proxy.rs`): a loopback-only
//!   HTTP fixture that adds `Authorization: Bearer <credential>` to every
//!   request and forwards it unchanged otherwise, so the official MCP
//!   conformance suite (which cannot send headers) can judge the hub's
//!   `/mcp` without the hub being weakened.
//!
//! The suites run by `scripts/test.sh` live beside this crate:
//! `conformance/mcp/` (the official `@modelcontextprotocol/conformance`
//! suite against the adapter and the hub through the tunnel),
//! `conformance/sdk/` (the official Python and TypeScript SDK clients) and
//! `conformance/flows/` (the operator and customer flow with the real
//! binaries).
#![forbid(unsafe_code)]
