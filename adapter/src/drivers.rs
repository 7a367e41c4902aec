//! The drivers linked into this adapter.
//!
//! A driver crate that is never named in code is not linked, and its
//! `inventory` registration silently disappears; naming each one here is
//! what puts it in the binary. A test checks this list against the registry.

use ewii_driver_mongodb as _;
use ewii_driver_mssql as _;
use ewii_driver_mysql as _;
use ewii_driver_oracle as _;
use ewii_driver_postgres as _;
use ewii_driver_sqlite as _;

/// The drivers this build is expected to carry, sorted.
pub const BUILT_IN: &[&str] = &["mongodb", "mssql", "mysql", "oracle", "postgres", "sqlite"];

#[cfg(test)]
mod tests {
    /// Guards against the inventory pitfall: a driver crate in Cargo.toml
    /// but not linked would silently vanish from the registry.
    #[test]
    fn registry_lists_every_built_in_driver() {
        let names: Vec<&str> = ewii_driver_core::registered_drivers()
            .iter()
            .map(|d| d.name())
            .collect();
        assert_eq!(names, super::BUILT_IN);
    }
}
