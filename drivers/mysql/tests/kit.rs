//! The MySQL/MariaDB driver against the shared driver test kit, on the live
//! server of `EWII_TEST_MARIADB_URL`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Mutex;

use async_trait::async_trait;
use ewii_driver_core::{DatabaseConfig, Driver, Limits, SqlDialect};
use ewii_driver_kit::{self as kit, KitHarness, ServerDatabase};
use ewii_driver_mysql::{MYSQL_DRIVER, begin_read_only, connect_options, init_connection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};

struct MariaHarness {
    server: String,
    /// A marker that only this run's slow statement carries, so that other
    /// tests' statements in the process list do not count.
    slow_marker: String,
    /// The databases the kit asked for, dropped with the harness.
    created: Mutex<Vec<ServerDatabase>>,
}

impl MariaHarness {
    fn new(server: String) -> Self {
        MariaHarness {
            server,
            slow_marker: kit::unique_name("kit_slow"),
            created: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl KitHarness for MariaHarness {
    fn driver(&self) -> &'static dyn Driver {
        &MYSQL_DRIVER
    }

    fn dialect(&self) -> SqlDialect {
        SqlDialect::MySql
    }

    async fn create_empty(&self) -> Result<DatabaseConfig, String> {
        let db = ServerDatabase::create(&self.server, "ewii_kit")
            .await
            .map_err(|e| e.to_string())?;
        let config = DatabaseConfig {
            name: "kit".into(),
            ..common::config(db.url(), false, Limits::default())
        };
        self.created.lock().unwrap().push(db);
        Ok(config)
    }

    fn slow_query(&self) -> String {
        format!("SELECT SLEEP(30) AS {}", self.slow_marker)
    }

    fn extra_read_only_attacks(&self) -> Vec<String> {
        [
            "SELECT * FROM kit_customers INTO OUTFILE '/tmp/ewii_kit_outfile'",
            "SELECT * INTO DUMPFILE '/tmp/ewii_kit_dumpfile' FROM kit_customers LIMIT 1",
            "SELECT LOAD_FILE('/etc/passwd')",
            "SELECT GET_LOCK('ewii_kit', 1)",
            "LOAD DATA INFILE '/tmp/ewii_kit_outfile' INTO TABLE kit_orders",
            "LOAD XML INFILE '/tmp/ewii_kit_outfile' INTO TABLE kit_orders",
            "SET SESSION TRANSACTION READ WRITE",
            "SET autocommit = 1",
            "SET @@session.sql_mode = 'NO_BACKSLASH_ESCAPES'",
            "COMMIT",
            "START TRANSACTION",
            "DO SLEEP(0)",
            "REPLACE INTO kit_orders (id, customer_id, total_cents) VALUES (1, 1, 0)",
            "INSERT IGNORE INTO kit_orders (id, customer_id, total_cents) VALUES (996, 1, 0)",
            "INSERT INTO kit_orders (id, customer_id, total_cents) VALUES (1, 1, 0) \
             ON DUPLICATE KEY UPDATE total_cents = 0",
            "UPDATE kit_orders o JOIN kit_customers c ON c.id = o.customer_id \
             SET o.total_cents = 0",
            "DELETE o FROM kit_orders o JOIN kit_customers c ON c.id = o.customer_id",
            "TRUNCATE TABLE kit_orders",
            "RENAME TABLE kit_orders TO kit_renamed",
            "LOCK TABLES kit_orders WRITE",
            "HANDLER kit_orders OPEN",
            "CREATE TEMPORARY TABLE kit_tmp (a INT)",
            "SELECT * FROM kit_orders FOR UPDATE",
            "SELECT * FROM kit_orders LOCK IN SHARE MODE",
            "SELECT 1 INTO @ewii_kit",
            "SELECT NEXTVAL(kit_seq)",
            "CALL kit_proc()",
            "KILL QUERY 1",
            "FLUSH TABLES",
            // Executable comments: MariaDB runs their content as SQL.
            "SELECT 1 /*M! INTO OUTFILE '/tmp/ewii_kit_m' */",
            "SELECT 1 /*!50000 INTO OUTFILE '/tmp/ewii_kit_bang' */",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    async fn execute_unguarded(&self, config: &DatabaseConfig, sql: &str) -> Result<(), String> {
        let options = connect_options(config).map_err(|e| e.to_string())?;
        let mut conn = options.connect().await.map_err(|e| e.to_string())?;
        // Exactly the driver's read-only session, without the classifier.
        init_connection(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        begin_read_only(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let outcome = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        conn.execute("ROLLBACK").await.ok();
        conn.close().await.ok();
        outcome
    }

    async fn statement_still_running(&self, config: &DatabaseConfig, marker: &str) -> bool {
        common::running_statements(config.url.expose(), marker).await > 0
    }
}

#[tokio::test]
async fn driver_test_kit() {
    let Some(server) = common::server_url() else {
        return;
    };
    kit::run(&MariaHarness::new(server)).await.assert_passed();
}
