//! The drivers linked into this adapter.
//!
//! A driver crate that is never named in code is not linked, and its
//! `inventory` registration silently disappears; naming each one here is
//! what puts it in the binary. A test checks this list against the registry.

use ewii_driver_sqlite as _;

/// The drivers this build is expected to carry.
pub const BUILT_IN: &[&str] = &["sqlite"];
