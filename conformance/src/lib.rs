//! The one fixture library Ewii's end-to-end suites (`conformance/tests/`)
//! share.
//!
//! Modules:
//! - [`db`]: the test database servers ([`db::server_url`]: skip outside CI,
//!   fail under CI), throwaway PostgreSQL and MariaDB databases dropped on
//!   drop, and the hub's store backends ([`db::Backend`], SQLite and
//!   PostgreSQL, with the CLI and raw reads of the store) with the
//!   [`suite!`] macro that runs one test on both;
//! - [`sample`]: the sample databases suites serve (the SQLite shop), the
//!   one place they are built;
//! - [`pki`]: the test PKI ([`ewii_test_pki`], re-exported) and its key
//!   material and trust bundles;
//! - [`svid`]: SVIDs issued straight from a workspace CA in the store, and
//!   a workspace's trust as a verifier outside the hub holds it;
//! - [`site`]: what a suite sets up first: a workspace with an agent, an
//!   agent with a policy, a deployment connected through a real client, and
//!   the [`site::EnrolmentSite`] every enrolment test starts from;
//! - [`hub`]: the real hub in-process ([`hub::start_hub`]), waiting for a
//!   deployment's tunnel, one tunnel attempt, the hub's metrics;
//! - [`adapter`]: the test adapter, the real `ewii-adapter` in-process on
//!   TCP and a unix socket, restartable, with its local credential;
//! - [`client`]: the client runtime in-process (with an SVID, or enrolled
//!   with a token against the real hub) and the `ewii-client` binary, and
//!   its connection log;
//! - [`raw_mcp`]: MCP as raw JSON-RPC through an adapter link or a tunnel;
//! - [`agent`]: an MCP agent client (rmcp, streamable HTTP, bearer) and raw
//!   HTTP requests for tests that need the exact answer;
//! - [`process`]: the real binaries (`ewii-hub`, `ewii-adapter`,
//!   `ewii-client`, `ewii`) as processes: where they are, a private home,
//!   waiting for a line, a port or the exit with a deadline, SIGTERM then
//!   SIGKILL on drop, a free loopback port, and the hub CLI and `serve`
//!   process;
//! - [`oauth`]: a real OAuth authorization server (npm `oidc-provider`
//!   on Node 22) on loopback, and tokens from its real endpoints;
//! - [`stand_in`]: stand-ins for what the real parts never do, named as
//!   such (a scripted adapter, a QUIC listener that is not the hub).
//!
//! Fixtures panic with a message naming what failed: a fixture that cannot
//! be set up is a failed test. What a test asserts on (an agent refused, a
//! process that never becomes ready) is returned as a `Result` instead.
#![forbid(unsafe_code)]
// Fixture set-up fails the test that asked for it, with the reason.
#![allow(clippy::expect_used)]

pub mod adapter;
pub mod agent;
pub mod client;
pub mod db;
pub mod hub;
pub mod oauth;
pub mod pki;
pub mod process;
pub mod raw_mcp;
pub mod sample;
pub mod site;
pub mod stand_in;
pub mod svid;
