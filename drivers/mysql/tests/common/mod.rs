//! Helpers shared by the tests that need the live MariaDB/MySQL server
//! (`EWII_TEST_MARIADB_URL`, e.g. started by `scripts/test-databases.sh`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ewii_driver_core::testkit;
use ewii_driver_core::{DatabaseConfig, Limits, SecretString};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

/// The test server's URL; `None` (test skipped) when it is not configured
/// outside CI.
pub fn server_url() -> Option<String> {
    testkit::server_url("EWII_TEST_MARIADB_URL", true)
}

/// A name no other test (of this run or another) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// `url` with its database path replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let path_start = head[authority_start..]
        .find('/')
        .map_or(head.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &head[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
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

/// Creates a fresh database and returns its name and URL.
pub async fn create_database(server: &str, prefix: &str) -> (String, String) {
    let name = unique(prefix);
    exec(server, &format!("CREATE DATABASE `{name}`")).await;
    let url = with_database(server, &name);
    (name, url)
}

pub async fn drop_database(server: &str, name: &str) {
    exec(server, &format!("DROP DATABASE IF EXISTS `{name}`")).await;
}

pub fn config(url: &str, read_only: bool, limits: Limits) -> DatabaseConfig {
    DatabaseConfig {
        name: "maria".into(),
        driver: "mariadb".into(),
        url: SecretString::new(url),
        read_only,
        limits,
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
