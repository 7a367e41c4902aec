//! The one fixture library Ewii's end-to-end suites share.
//!
//! Modules:
//! - [`db`]: the test database servers ([`db::server_url`]: skip outside CI,
//!   fail under CI), throwaway PostgreSQL and MariaDB databases dropped on
//!   drop, and the hub's store backends ([`db::Backend`], SQLite and
//!   PostgreSQL) with the [`suite!`] macro that runs one test on both;
//! - [`sample`]: the sample databases suites serve (the SQLite shop);
//! - [`process`]: the real binaries (`ewii-hub`, `ewii-adapter`,
//!   `ewii-client`, `ewii`) as processes: where they are, a private home,
//!   waiting for a line or a port with a deadline, SIGTERM then SIGKILL on
//!   drop, a free loopback port, and the hub CLI and `serve` process;
//! - [`agent`]: an MCP agent client (rmcp, streamable HTTP, bearer) and raw
//!   HTTP requests for tests that need the exact answer.
//!
//! Fixtures panic with a message naming what failed: a fixture that cannot
//! be set up is a failed test. What a test asserts on (an agent refused, a
//! process that never becomes ready) is returned as a `Result` instead.
#![forbid(unsafe_code)]
// Fixture set-up fails the test that asked for it, with the reason.
#![allow(clippy::expect_used)]

pub mod agent;
pub mod db;
pub mod process;
pub mod sample;
