//! Helpers shared by the tests that need the live MariaDB/MySQL server
//! (`EWII_TEST_MARIADB_URL`, e.g. started by `scripts/test-databases.sh`).
#![allow(dead_code)]

use std::time::Duration;

use ewii_driver_core::{DatabaseConfig, Limits};
use ewii_driver_kit::ServerDatabase;
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

/// The test server's URL; `None` (test skipped) when it is not configured
/// outside CI.
pub fn server_url() -> Option<String> {
    ewii_driver_kit::server_url("EWII_TEST_MARIADB_URL", true)
}

pub async fn connect(url: &str) -> MySqlConnection {
    MySqlConnection::connect(url)
        .await
        .expect("connect to the test server")
}

/// Runs one statement on the test server as the configured user.
pub async fn exec(url: &str, sql: &str) {
    let mut conn = connect(url).await;
    conn.execute(AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
    conn.close().await.ok();
}

/// A fresh database on the test server, dropped with the returned value;
/// `None` (test skipped) when the server is not configured outside CI.
pub async fn temp_database(prefix: &str) -> Option<ServerDatabase> {
    let server = server_url()?;
    Some(
        ServerDatabase::create(&server, prefix)
            .await
            .expect("create a test database"),
    )
}

pub fn config(url: &str, read_only: bool, limits: Limits) -> DatabaseConfig {
    DatabaseConfig {
        limits,
        ..ewii_driver_kit::database_config("maria", "mariadb", url, read_only)
    }
}

/// How many statements containing `marker` other sessions are running.
pub async fn running_statements(url: &str, marker: &str) -> i64 {
    let mut conn = connect(url).await;
    let row = sqlx::query(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
    )
    .bind(marker)
    .fetch_one(&mut conn)
    .await
    .expect("read the process list");
    conn.close().await.ok();
    row.get::<i64, _>(0)
}

/// Waits up to `within` for no statement containing `marker` to run.
pub async fn gone_within(url: &str, marker: &str, within: Duration) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        if running_statements(url, marker).await == 0 {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
