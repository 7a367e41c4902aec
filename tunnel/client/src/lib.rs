//! The Ewii client: the customer-side end of the tunnel.
//!
//! It dials ONE outbound QUIC connection to the operator's hub (through
//! `ewii-quic`), proves its identity with its SPIFFE X.509-SVID, and
//! forwards each MCP request the hub sends to an allow-listed local MCP
//! adapter. It never listens.
//!
//! - [`client`]: the runtime behind `ewii-client run`: enrolment, renewal
//!   over the live tunnel, reconnect with backoff, the goodbye on stop,
//!   revocation, forwarding within the allow-list.
//! - [`identity`]: where the SVID comes from, the enrolled state on disk,
//!   fresh keys and CSRs, and the checks an issued SVID must pass.
//! - [`forward`]: the last hop to the adapter (MCP streamable HTTP), the
//!   allow-list, the adapter's local credential, and the refusal code of
//!   each failure.
//! - [`connlog`]: the JSON-lines connection log.
//!
//! The binary is `src/bin/ewii-client.rs`.
#![forbid(unsafe_code)]

pub mod client;
pub mod connlog;
pub mod forward;
pub mod identity;
