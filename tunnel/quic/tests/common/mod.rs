//! Shared fixtures for the `ewii-quic` integration tests (`ewii-client`'s
//! tests include them by path).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod hub;
pub mod pki;
