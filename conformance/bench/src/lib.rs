//! Benchmarks of the Ewii tree:
//!
//! - `benches/records.rs` (`cargo bench -p ewii-bench`): the record layer
//!   (seal and open) and the replay window of `ewii-wire`, against raw
//!   ChaCha20-Poly1305 as the baseline.
//! - `src/bin/ewii-bench/` (the `ewii-bench` binary): tunnel bulk
//!   throughput against raw quinn, the audit trail's commit cost per call,
//!   idle tunnels on one hub and the reconnect storm.
//! - `run.sh` with `harness/` (wrk Lua script, Python drivers): the MCP call
//!   path against DBHub and raw PostgreSQL on the real binaries, and the
//!   keep-alive stall check; it also runs the binary's parts.
//!
//! Results and how they were measured: `BENCHMARKS.md`. The library itself
//! is empty: the benchmark tools live here so that no crate of the product
//! carries them.
#![forbid(unsafe_code)]
