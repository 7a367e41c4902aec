//! What a driver's tests tell the kit, and the kit's view of the database
//! under test.

use std::sync::Arc;

use async_trait::async_trait;
use ewii_driver_core::{Database, DatabaseConfig, Driver, Limits, SqlDialect};

/// What a driver's tests tell the kit.
#[async_trait]
pub trait KitHarness: Send + Sync {
    /// The driver under test.
    fn driver(&self) -> &'static dyn Driver;

    /// The SQL dialect (for placeholders and parsing).
    fn dialect(&self) -> SqlDialect;

    /// Creates a new, empty database and returns a read-write configuration
    /// for it (any limits; the kit sets its own).
    async fn create_empty(&self) -> Result<DatabaseConfig, String>;

    /// A statement that runs for well over 10 seconds.
    fn slow_query(&self) -> String;

    /// Extra dialect-specific writes a read-only database must refuse
    /// (e.g. `ATTACH`, `PRAGMA writable_schema`).
    fn extra_read_only_attacks(&self) -> Vec<String> {
        Vec::new()
    }

    /// Dialect-specific objects created after the fixture through the
    /// read-write query tool (sequences, procedures used by the attacks).
    fn extra_fixture(&self) -> Vec<String> {
        Vec::new()
    }

    /// Extra single-number queries whose values must not change when a
    /// read-only database refuses an attack (e.g. a sequence's last value).
    fn extra_fingerprint(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs `sql` on the session a read-only `config` gets from the driver,
    /// bypassing Ewii's classifier: proves the *engine* refuses writes.
    async fn execute_unguarded(&self, config: &DatabaseConfig, sql: &str) -> Result<(), String>;

    /// After a timeout or cancellation, whether a statement containing
    /// `marker` is still running on the server. Embedded engines keep the
    /// default.
    async fn statement_still_running(&self, _config: &DatabaseConfig, _marker: &str) -> bool {
        false
    }
}

/// The harness and the empty database it made: every check opens the
/// database from this base configuration with its own mode and limits.
pub(crate) struct Kit<'a> {
    pub(crate) h: &'a dyn KitHarness,
    pub(crate) base: DatabaseConfig,
}

impl Kit<'_> {
    /// The base configuration in `read_only` mode with `limits`.
    pub(crate) fn config(&self, read_only: bool, limits: Limits) -> DatabaseConfig {
        DatabaseConfig {
            read_only,
            limits,
            ..self.base.clone()
        }
    }

    /// Opens the database through the driver under test.
    pub(crate) async fn open(
        &self,
        read_only: bool,
        limits: Limits,
    ) -> Result<Arc<dyn Database>, String> {
        self.h
            .driver()
            .open(&self.config(read_only, limits))
            .await
            .map_err(|e| format!("open failed: {e}"))
    }

    /// The driver's dialect.
    pub(crate) fn dialect(&self) -> SqlDialect {
        self.h.dialect()
    }
}
