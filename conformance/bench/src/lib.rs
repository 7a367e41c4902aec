//! Benchmarks of the Ewii tree, run with `cargo bench -p ewii-bench`:
//!
//! - `benches/records.rs`: the record layer (seal and open) and the replay
//!   window of `ewii-wire`, against raw ChaCha20-Poly1305 as the baseline
//!   (results in `BENCHMARKS.md`).
//!
//! The library itself is empty: criterion lives here so that no crate of
//! the product carries it.
#![forbid(unsafe_code)]
