//! The PostgreSQL driver against the driver test kit and the read-only
//! bypasses users of database MCP servers report, on a real server
//! (`scripts/test-databases.sh start`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{
    CallContext, Database, DatabaseConfig, Driver, SecretString, SqlDialect, ToolError, dispatch,
};
use ewii_driver_kit::{
    self as kit, KitHarness, ServerDatabase, assert_unparsable_needs_other, classes, query,
    query_as,
};
use ewii_driver_postgres::{POSTGRES_DRIVER, connect_options};
use serde_json::json;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection};

const URL_VAR: &str = "EWII_TEST_POSTGRES_URL";

async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("connect to the test server")
}

/// A throwaway database for one test (dropped with the returned value) and
/// a read-write configuration for it.
async fn fresh_database(url: &str, tag: &str) -> (ServerDatabase, DatabaseConfig) {
    let db = ServerDatabase::create(url, &format!("kit_{tag}"))
        .await
        .expect("create a test database");
    let config = kit::database_config("kit", "postgres", db.url(), false);
    (db, config)
}

struct PgHarness {
    url: String,
    /// The databases the kit asked for, dropped with the harness.
    created: Mutex<Vec<ServerDatabase>>,
}

#[async_trait]
impl KitHarness for PgHarness {
    fn driver(&self) -> &'static dyn Driver {
        &POSTGRES_DRIVER
    }

    fn dialect(&self) -> SqlDialect {
        SqlDialect::Postgres
    }

    async fn create_empty(&self) -> Result<DatabaseConfig, String> {
        let (db, config) = fresh_database(&self.url, "main").await;
        self.created.lock().unwrap().push(db);
        Ok(config)
    }

    fn slow_query(&self) -> String {
        "SELECT pg_sleep(30)".into()
    }

    fn extra_fixture(&self) -> Vec<String> {
        vec![
            "CREATE SEQUENCE kit_seq".into(),
            // Writers hidden behind a procedure and a function: only the
            // engine's read-only transaction can stop these.
            "CREATE PROCEDURE kit_wipe() LANGUAGE plpgsql AS $$ BEGIN DELETE FROM kit_orders; END $$".into(),
            "CREATE FUNCTION kit_wipe_fn() RETURNS integer LANGUAGE plpgsql AS $$ BEGIN DELETE FROM kit_orders; RETURN 1; END $$".into(),
        ]
    }

    fn extra_fingerprint(&self) -> Vec<String> {
        vec![
            "SELECT last_value FROM kit_seq".into(),
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'".into(),
            "SELECT count(*) FROM pg_largeobject_metadata".into(),
        ]
    }

    fn extra_read_only_attacks(&self) -> Vec<String> {
        [
            "SELECT * INTO kit_copy FROM kit_orders",
            "COPY kit_orders TO PROGRAM 'cat > /tmp/ewii-kit-copy'",
            "COPY kit_orders FROM PROGRAM 'echo 1,1,1,x'",
            "COPY kit_orders TO '/tmp/ewii-kit-copy'",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "SET default_transaction_read_only = off",
            "SET transaction_read_only = off",
            "COMMIT; DROP TABLE kit_orders",
            "COMMIT",
            "ROLLBACK; DELETE FROM kit_orders",
            "CALL kit_wipe()",
            "DO $$ BEGIN DELETE FROM kit_orders; END $$",
            "SELECT kit_wipe_fn()",
            "SELECT nextval('kit_seq')",
            "SELECT setval('kit_seq', 100)",
            "SELECT pg_terminate_backend(pg_backend_pid())",
            "SELECT pg_cancel_backend(1)",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_read_binary_file('/etc/passwd')",
            "SELECT lo_export(1, '/tmp/ewii-kit-lo')",
            "SELECT lo_import('/etc/passwd')",
            "SELECT dblink_exec('dbname=postgres', 'DROP TABLE kit_orders')",
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT pg_advisory_lock(42)",
            "SELECT * FROM kit_orders FOR UPDATE",
            "PREPARE p AS DELETE FROM kit_orders",
            "LISTEN kit_channel",
            "VACUUM kit_orders",
            "TRUNCATE kit_orders",
            "GRANT ALL ON kit_orders TO PUBLIC",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    async fn execute_unguarded(&self, config: &DatabaseConfig, sql: &str) -> Result<(), String> {
        let mut c = connect_options(config)
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        // The driver's read-only session: a read-only transaction.
        c.execute("BEGIN READ ONLY")
            .await
            .map_err(|e| e.to_string())?;
        let r = c
            .execute(AssertSqlSafe(sql.to_owned()))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = c.execute("ROLLBACK").await;
        r
    }

    async fn statement_still_running(&self, config: &DatabaseConfig, marker: &str) -> bool {
        let mut c = connect_options(config).unwrap().connect().await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1",
        )
        .bind(marker)
        .fetch_one(&mut c)
        .await
        .unwrap();
        n > 0
    }
}

#[tokio::test]
async fn driver_test_kit() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let harness = PgHarness {
        url,
        created: Mutex::default(),
    };
    kit::run(&harness).await.assert_passed();
}

async fn open(config: &DatabaseConfig) -> std::sync::Arc<dyn Database> {
    POSTGRES_DRIVER.open(config).await.unwrap()
}

#[tokio::test]
async fn types_map_to_json_as_documented() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let (_db, cfg) = fresh_database(&url, "types").await;
    let db = open(&cfg).await;
    let r = query(
        db.as_ref(),
        "SELECT 1::int2 AS i2, 2147483647::int4 AS i4, 9007199254740993::int8 AS i8, \
                12345678901234567890.12345678901234567890::numeric AS num, \
                1.5::float8 AS f8, true AS b, 'héllo'::text AS t, 'ab'::char(3) AS c, \
                DATE '2026-03-04' AS d, TIME '12:34:56.5' AS tm, \
                TIMESTAMP '2026-03-04 05:06:07.123' AS ts, \
                TIMESTAMPTZ '2026-03-04 05:06:07+02' AS tstz, \
                '{\"a\": [1, null]}'::json AS j, '{\"b\": true}'::jsonb AS jb, \
                ARRAY[1, NULL, 3]::int4[] AS arr, ARRAY['x', 'y']::text[] AS tarr, \
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '\\x00ff10'::bytea AS bin, \
                NULL::int4 AS nul, 0.1::real AS r, INTERVAL '1 day' AS iv",
    )
    .await
    .unwrap();
    let row = &r["rows"][0];
    let want = json!([
        1, 2147483647, 9007199254740993i64,
        "12345678901234567890.12345678901234567890",
        1.5, true, "héllo", "ab ",
        "2026-03-04", "12:34:56.500", "2026-03-04T05:06:07.123", "2026-03-04T03:06:07Z",
        {"a": [1, null]}, {"b": true},
        [1, null, 3], ["x", "y"],
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "AP8Q", null,
        0.1, "<interval value: cast it in SQL, e.g. column::text>"
    ]);
    assert_eq!(row, &want, "columns: {}", r["columns"]);
    assert_eq!(r["columns"][3]["type"], "numeric");
    db.close().await;
}

#[tokio::test]
async fn timeout_cancels_pg_sleep_on_the_server_within_a_second() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let (_db, mut cfg) = fresh_database(&url, "timeout").await;
    cfg.read_only = true;
    cfg.limits.timeout = Duration::from_secs(1);
    let db = open(&cfg).await;
    let started = Instant::now();
    let marker = format!("timeout-test-{}", std::process::id());
    let r = query(db.as_ref(), &format!("SELECT pg_sleep(30), '{marker}'")).await;
    let took = started.elapsed();
    assert!(matches!(r, Err(ToolError::Timeout { .. })), "{r:?}");
    assert!(took < Duration::from_millis(2500), "timeout took {took:?}");
    let mut c = admin(&url).await;
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' \
         AND pid <> pg_backend_pid()",
    )
    .bind(&marker)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(running, 0, "pg_sleep still running on the server");
    println!("measured: pg_sleep(30) with a 1 s limit returned Timeout after {took:?}");
    db.close().await;
}

#[tokio::test]
async fn truncated_results_do_not_leave_the_statement_running() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let (_db, mut cfg) = fresh_database(&url, "trunc").await;
    cfg.read_only = true;
    cfg.limits.max_rows = 5;
    let db = open(&cfg).await;
    let r = query(db.as_ref(), "SELECT g FROM generate_series(1, 50000000) g")
        .await
        .unwrap();
    assert_eq!(r["row_count"], 5);
    assert_eq!(r["truncated"]["reason"], "max_rows");
    // The pool still works after the early stop.
    let r = query(db.as_ref(), "SELECT 1").await.unwrap();
    assert_eq!(r["rows"], json!([[1]]));
    db.close().await;
}

#[tokio::test]
async fn connection_problems_are_one_line_with_what_to_do() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let cfg = |u: String| kit::database_config("x", "postgres", &u, true);
    let wrong_pw = url.replacen("ewii:ewii@", "ewii:wrong-password@", 1);
    let cases = [
        (wrong_pw, "check the user name and password"),
        (
            "postgres://ewii:ewii@127.0.0.1:1/x".to_owned(),
            "cannot reach a PostgreSQL server at 127.0.0.1:1",
        ),
        (
            kit::with_database(&url, "no_such_db"),
            "check the database name",
        ),
    ];
    for (u, want) in cases {
        let db = open(&cfg(u)).await;
        let err = db.check().await.expect_err("check must fail").to_string();
        assert!(err.contains(want), "expected '{want}' in: {err}");
        assert!(
            !err.contains("wrong-password") && !err.contains('\n'),
            "{err}"
        );
    }
    let err = POSTGRES_DRIVER
        .open(&cfg("mysql://x@y/z".into()))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("postgres://"), "{err}");
}

#[tokio::test]
async fn read_only_check_warns_when_the_role_can_write() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let (tmp, mut cfg) = fresh_database(&url, "grants").await;
    let rw = open(&cfg).await;
    query(rw.as_ref(), "CREATE TABLE t (a int)").await.unwrap();
    rw.close().await;
    cfg.read_only = true;
    let db = open(&cfg).await;
    let report = db.check().await.unwrap();
    assert!(report.engine_read_only);
    assert!(
        report.warnings.iter().any(|w| w.contains("can write")),
        "owner role not flagged: {report:?}"
    );
    db.close().await;

    // A least-privilege role (SELECT only) gets no such warning.
    let Some(admin_url) = kit::server_url("EWII_TEST_POSTGRES_ADMIN_URL", true) else {
        return;
    };
    let role = format!("kit_reader_{}", std::process::id());
    let dbname = tmp.name();
    let mut a = admin(&kit::with_database(&admin_url, dbname)).await;
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'"),
        format!("GRANT CONNECT ON DATABASE {dbname} TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON t TO {role}"),
    ] {
        a.execute(AssertSqlSafe(sql)).await.unwrap();
    }
    let reader_url = cfg
        .url
        .expose()
        .replacen("ewii:ewii@", &format!("{role}:reader-pw@"), 1);
    let reader = open(&DatabaseConfig {
        url: SecretString::new(reader_url),
        ..cfg.clone()
    })
    .await;
    let report = reader.check().await.unwrap();
    assert!(
        !report.warnings.iter().any(|w| w.contains("can write")),
        "SELECT-only role flagged: {report:?}"
    );
    reader.close().await;
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        let _ = a.execute(AssertSqlSafe(sql)).await;
    }
    // The test user drops the database: no superuser session may remain.
    a.close().await.ok();
}

#[tokio::test]
async fn explain_analyze_only_on_read_write() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let (_db, mut cfg) = fresh_database(&url, "explain").await;
    let rw = open(&cfg).await;
    query(rw.as_ref(), "CREATE TABLE t (a int)").await.unwrap();
    // ANALYZE of a write runs it, then rolls it back.
    let r = dispatch(
        rw.as_ref(),
        StandardTool::Explain,
        json!({"sql": "INSERT INTO t VALUES (1)", "analyze": true}),
        &CallContext::default(),
    )
    .await
    .unwrap();
    assert!(r["plan"][0]["Plan"].is_object(), "{r}");
    assert_eq!(
        query(rw.as_ref(), "SELECT count(*) FROM t").await.unwrap()["rows"],
        json!([[0]])
    );
    rw.close().await;
    cfg.read_only = true;
    let ro = open(&cfg).await;
    let r = dispatch(
        ro.as_ref(),
        StandardTool::Explain,
        json!({"sql": "SELECT * FROM t", "analyze": true}),
        &CallContext::default(),
    )
    .await;
    assert!(matches!(r, Err(ToolError::Refused { .. })), "{r:?}");
    ro.close().await;
}

#[tokio::test]
async fn a_read_only_call_cannot_write_on_a_read_write_database() {
    let Some(url) = kit::server_url(URL_VAR, true) else {
        return;
    };
    let (_db, cfg) = fresh_database(&url, "callro").await;
    let rw = open(&cfg).await;
    query(rw.as_ref(), "CREATE TABLE t (a int)").await.unwrap();
    query(rw.as_ref(), "INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    query(
        rw.as_ref(),
        "CREATE FUNCTION wipe() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; RETURN 1; END $$",
    )
    .await
    .unwrap();
    query(
        rw.as_ref(),
        "CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM t; RETURN NULL; END $$",
    )
    .await
    .unwrap();
    let read = classes(&["read"]);
    // A function that deletes: a read to the classifier, refused by the engine.
    let err = query_as(rw.as_ref(), "SELECT wipe()", &read)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only transaction"), "{err}");
    // The classifier (second fence) refuses a visible write before the engine.
    let err = query_as(rw.as_ref(), "DELETE FROM t", &read)
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::Refused { .. }), "{err}");
    // Unparsable SQL on a read-write database: refused without `other`,
    // from the hub and from a direct caller alike.
    assert_unparsable_needs_other(rw.as_ref(), "SELECT 1 FROM t WHERE a IS OF (int)").await;
    let all = classes(&["read", "write", "ddl", "other"]);
    let r = query_as(rw.as_ref(), "DO $$ BEGIN PERFORM 1; END $$", &all).await;
    assert!(
        r.is_ok(),
        "allowed `other` runs what the parser cannot read: {r:?}"
    );
    assert_eq!(
        query(rw.as_ref(), "SELECT count(*) FROM t").await.unwrap()["rows"],
        json!([[2]])
    );
    // The same function does delete for a call allowed to write.
    query_as(rw.as_ref(), "SELECT wipe()", &all).await.unwrap();
    assert_eq!(
        query(rw.as_ref(), "SELECT count(*) FROM t").await.unwrap()["rows"],
        json!([[0]])
    );
    rw.close().await;
}
