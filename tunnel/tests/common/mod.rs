//! Shared fixtures for the `ewii-tunnel` integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pki;
