//! The SQLite driver against the shared driver test kit, plus the
//! SQLite-specific proofs that the engine itself holds read-only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use async_trait::async_trait;
use ewii_driver_core::{DatabaseConfig, Driver, SqlDialect};
use ewii_driver_kit::{self as kit, KitHarness};
use ewii_driver_sqlite::{SQLITE_DRIVER, connect_options};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};
use tempfile::TempDir;

struct SqliteHarness {
    dir: TempDir,
}

impl SqliteHarness {
    fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

async fn empty_db(dir: &TempDir) -> DatabaseConfig {
    let path = dir.path().join("kit.db");
    let conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    conn.close().await.unwrap();
    kit::database_config(
        "kit",
        "sqlite",
        &format!("sqlite://{}", path.display()),
        false,
    )
}

#[async_trait]
impl KitHarness for SqliteHarness {
    fn driver(&self) -> &'static dyn Driver {
        &SQLITE_DRIVER
    }

    fn dialect(&self) -> SqlDialect {
        SqlDialect::Sqlite
    }

    async fn create_empty(&self) -> Result<DatabaseConfig, String> {
        Ok(empty_db(&self.dir).await)
    }

    fn slow_query(&self) -> String {
        // One long sqlite3_step: only an engine interrupt can stop it.
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000000) \
         SELECT count(*) FROM c"
            .into()
    }

    fn extra_read_only_attacks(&self) -> Vec<String> {
        let other = self.dir.path().join("attached.db");
        vec![
            format!("ATTACH DATABASE '{}' AS evil", other.display()),
            "PRAGMA writable_schema = 1".into(),
            "PRAGMA query_only = 0".into(),
            "PRAGMA journal_mode = DELETE".into(),
            format!(
                "VACUUM INTO '{}'",
                self.dir.path().join("copy.db").display()
            ),
            "SELECT load_extension('/tmp/evil')".into(),
            "REPLACE INTO kit_orders (id, customer_id, total_cents) VALUES (1, 1, 0)".into(),
            "INSERT OR IGNORE INTO kit_orders (id, customer_id, total_cents) VALUES (996, 1, 0)"
                .into(),
        ]
    }

    async fn execute_unguarded(&self, config: &DatabaseConfig, sql: &str) -> Result<(), String> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(config).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let r = pool
            .execute(AssertSqlSafe(sql.to_owned()))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        pool.close().await;
        r
    }
}

#[tokio::test]
async fn driver_test_kit() {
    kit::run(&SqliteHarness::new()).await.assert_passed();
}

#[tokio::test]
async fn engine_read_only_survives_turning_query_only_off() {
    let h = SqliteHarness::new();
    let mut cfg = empty_db(&h.dir).await;
    // Make a table while read-write.
    let rw = sqlx::SqlitePool::connect_with(connect_options(&cfg).unwrap())
        .await
        .unwrap();
    rw.execute("CREATE TABLE t (a INTEGER)").await.unwrap();
    rw.close().await;

    cfg.read_only = true;
    let mut conn = connect_options(&cfg).unwrap().connect().await.unwrap();
    // Even with the pragma switched off, the file was opened read-only.
    conn.execute("PRAGMA query_only = 0").await.unwrap();
    let err = conn
        .execute("INSERT INTO t VALUES (1)")
        .await
        .expect_err("write refused");
    assert!(err.to_string().contains("readonly"), "{err}");
    // ATTACH of a new file cannot create it: attached files inherit read-only.
    let target = h.dir.path().join("new.db");
    let attached = conn
        .execute(AssertSqlSafe(format!(
            "ATTACH DATABASE '{}' AS x",
            target.display()
        )))
        .await;
    assert!(
        attached.is_err() || !target.exists(),
        "ATTACH created a new file"
    );
}

#[tokio::test]
async fn missing_file_and_memory_urls_are_clear_errors() {
    let cfg = |url: &str| kit::database_config("x", "sqlite", url, true);
    let err = SQLITE_DRIVER
        .open(&cfg("sqlite:///nonexistent/dir/x.db"))
        .await
        .err()
        .expect("missing file refused");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = SQLITE_DRIVER
        .open(&cfg("sqlite::memory:"))
        .await
        .err()
        .expect("memory refused");
    assert!(err.to_string().contains("in-memory"), "{err}");
    let err = SQLITE_DRIVER
        .open(&cfg("postgres://x/y"))
        .await
        .err()
        .expect("wrong scheme");
    assert!(err.to_string().contains("sqlite://"), "{err}");
}

#[tokio::test]
async fn a_read_only_call_runs_query_only_on_a_read_write_database() {
    use ewii_driver_core::{CallContext, ToolError};
    use kit::{assert_unparsable_needs_other, classes, query_as};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let cfg = empty_db(&dir).await;
    let db = SQLITE_DRIVER.open(&cfg).await.unwrap();
    let all = classes(&["read", "write", "ddl", "other"]);
    for sql in [
        "CREATE TABLE t (a INT)",
        "CREATE TABLE log (a INT)",
        "CREATE TRIGGER wipe AFTER INSERT ON log BEGIN DELETE FROM t; END",
        "INSERT INTO t VALUES (1), (2)",
    ] {
        query_as(db.as_ref(), sql, &all).await.unwrap();
    }
    let read = classes(&["read"]);
    // The engine's read-only mode is on for the read-only call, and off
    // again for the next call on the same pool.
    let mode = |ctx: CallContext| {
        let db = db.clone();
        async move {
            query_as(db.as_ref(), "SELECT * FROM pragma_query_only", &ctx)
                .await
                .unwrap()["rows"][0][0]
                .clone()
        }
    };
    for _ in 0..4 {
        assert_eq!(mode(read.clone()).await, json!(1));
        assert_eq!(mode(all.clone()).await, json!(0));
        assert_eq!(mode(CallContext::default()).await, json!(0));
    }
    // A write (that would fire the trigger) is refused; unparsable SQL is
    // refused without `other`, also for a direct caller.
    let err = query_as(db.as_ref(), "INSERT INTO log VALUES (1)", &read)
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::Refused { .. }), "{err}");
    assert_unparsable_needs_other(db.as_ref(), "SELECT 1 FROM t WHERE a GLOB").await;
    let n = query_as(db.as_ref(), "SELECT count(*) FROM t", &read)
        .await
        .unwrap();
    assert_eq!(n["rows"], json!([[2]]));
    db.close().await;
}
