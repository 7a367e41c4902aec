//! The test database servers and the hub's store backends.
//!
//! The servers (PostgreSQL and MariaDB on loopback, started by
//! `scripts/test-databases.sh`) are found through [`server_url`]: a test
//! whose server is not configured prints `SKIPPED` and passes, except under
//! `CI`, where it fails. [`postgres_database`] and [`mariadb_database`] make
//! a throwaway database there with the admin URL, dropped on drop even when
//! the test panics.
//!
//! [`Backend`] is a hub store under test: a fresh SQLite data directory, or
//! a fresh PostgreSQL database; [`suite!`](crate::suite) runs one async test
//! function on both.

use std::path::PathBuf;
use std::process::{Command, Output};

use ewii_hub::state::master_key::MasterKey;
use ewii_hub::state::store::{DATABASE_FILE, ensure_private_dir, sqlite_url};
use ewii_hub::{Location, Store};
use serde_json::Value;
use sqlx::Row as _;

pub use ewii_driver_kit::{
    ServerDatabase, ServerError, block_on_own_thread, server_url, unique_name, with_database,
};

use crate::process::{HubCli, HubProcess};

/// The PostgreSQL server's admin URL (may create and drop databases).
pub const POSTGRES_ADMIN_URL_ENV: &str = "EWII_TEST_POSTGRES_ADMIN_URL";
/// The MariaDB server's admin URL (may create and drop databases).
pub const MARIADB_ADMIN_URL_ENV: &str = "EWII_TEST_MARIADB_ADMIN_URL";

/// A throwaway PostgreSQL database `<prefix>_…` made with
/// `EWII_TEST_POSTGRES_ADMIN_URL`, or `None` (with `SKIPPED: …` printed)
/// when no server is configured outside CI.
pub async fn postgres_database(prefix: &str) -> Option<ServerDatabase> {
    throwaway(POSTGRES_ADMIN_URL_ENV, prefix).await
}

/// A throwaway MariaDB database `<prefix>_…` made with
/// `EWII_TEST_MARIADB_ADMIN_URL`, or `None` (with `SKIPPED: …` printed)
/// when no server is configured outside CI.
pub async fn mariadb_database(prefix: &str) -> Option<ServerDatabase> {
    throwaway(MARIADB_ADMIN_URL_ENV, prefix).await
}

async fn throwaway(admin_var: &str, prefix: &str) -> Option<ServerDatabase> {
    let admin = server_url(admin_var, true)?;
    Some(
        ServerDatabase::create(&admin, prefix)
            .await
            .unwrap_or_else(|e| panic!("create a test database with {admin_var}: {e}")),
    )
}

/// Runs each named `async fn(&Backend)` as one test on SQLite (module
/// `sqlite`) and one on PostgreSQL (module `postgres`, skipped outside CI
/// when no server is configured). The calling crate depends on `tokio`.
#[macro_export]
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = $crate::db::Backend::sqlite().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(backend) = $crate::db::Backend::postgres().await else { return };
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

/// One hub store under test.
pub struct Backend {
    /// The store, opened the way the CLI opens it.
    pub store: Store,
    /// The database URL (for raw reads and for the CLI).
    pub url: String,
    /// The master key, base64 (for the CLI).
    pub master_key: String,
    kind: Kind,
}

enum Kind {
    Sqlite {
        dir: PathBuf,
        _tmp: tempfile::TempDir,
    },
    Postgres {
        _database: ServerDatabase,
    },
}

impl Backend {
    /// A fresh SQLite data directory, opened as `Location::Data` opens it.
    pub async fn sqlite() -> Backend {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().join("data");
        ensure_private_dir(&dir).expect("create the data directory");
        let url = sqlite_url(&dir.join(DATABASE_FILE));
        // The key travels to the CLI in the environment, so the test
        // process and the CLI agree whatever key the runner has.
        let key = MasterKey::generate().expect("a master key");
        let master_key = key.to_base64().to_string();
        let store = Store::connect(&url, key)
            .await
            .expect("open the SQLite store");
        Backend {
            store,
            url,
            master_key,
            kind: Kind::Sqlite { dir, _tmp: tmp },
        }
    }

    /// A fresh PostgreSQL database `ewii_hub_test_…`, or `None` (with
    /// `SKIPPED: …` printed) when no server is configured outside CI.
    pub async fn postgres() -> Option<Backend> {
        let database = postgres_database("ewii_hub_test").await?;
        let url = database.url().to_owned();
        let key = MasterKey::generate().expect("a master key");
        let master_key = key.to_base64().to_string();
        let store = Store::connect(&url, key)
            .await
            .expect("open the PostgreSQL store");
        Some(Backend {
            store,
            url,
            master_key,
            kind: Kind::Postgres {
                _database: database,
            },
        })
    }

    /// Where the CLI finds this backend.
    pub fn location(&self) -> Location {
        match &self.kind {
            Kind::Sqlite { dir, .. } => Location::Data(dir.clone()),
            Kind::Postgres { .. } => Location::Url(self.url.clone()),
        }
    }

    /// The real `ewii-hub` pointed at this backend.
    ///
    /// # Panics
    /// When the binary is not built (the message says how to build it).
    pub fn hub_cli(&self) -> HubCli {
        HubCli::locate(&self.location(), &self.master_key).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ewii-hub` pointed at this backend, ready for arguments.
    pub fn command(&self) -> Command {
        self.hub_cli().command()
    }

    /// Runs the CLI with `args`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.hub_cli().cli(args)
    }

    /// Runs the CLI, expects success, parses stdout as JSON.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        self.hub_cli().cli_json(args)
    }

    /// Runs the CLI, expects failure, returns stderr (one line).
    pub fn cli_err(&self, args: &[&str]) -> String {
        self.hub_cli().cli_err(args)
    }

    /// Starts `ewii-hub --json serve` on this backend (loopback, ephemeral
    /// ports) with `extra` flags.
    pub async fn serve_process(&self, extra: &[&str]) -> HubProcess {
        self.hub_cli().serve(extra).await
    }

    /// Runs one statement on the backend's database directly, past the
    /// store (to tamper with it, or to make it fail).
    pub async fn raw_exec(&self, sql: String) {
        let pool = self.raw_pool().await;
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
        pool.close().await;
    }

    /// Audit row `seq` as stored: record, prev_hash, hash.
    pub async fn raw_audit_row(&self, seq: i64) -> (String, String, String) {
        let pool = self.raw_pool().await;
        let row = sqlx::query("SELECT record, prev_hash, hash FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("audit row {seq}: {e}"));
        let out = (row.get(0), row.get(1), row.get(2));
        pool.close().await;
        out
    }

    /// The serials of the SVIDs the hub recorded as issued of `kind`
    /// (`enrolment`, `renewal`), oldest first.
    pub async fn issued_svids(&self, kind: &str) -> Vec<String> {
        let pool = self.raw_pool().await;
        let serials = sqlx::query_scalar(
            "SELECT serial FROM svids WHERE kind = $1 ORDER BY issued_at, expires_at, serial",
        )
        .bind(kind)
        .fetch_all(&pool)
        .await
        .unwrap_or_else(|e| panic!("the issued SVIDs: {e}"));
        pool.close().await;
        serials
    }

    async fn raw_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.url)
            .await
            .expect("connect to the backend's database")
    }

    /// Closes the store (a PostgreSQL database is then dropped with the
    /// backend).
    pub async fn finish(self) {
        self.store.close().await;
    }
}
