//! MySQL/MariaDB-specific behaviour on the live server of
//! `EWII_TEST_MARIADB_URL`: value mapping, server-side cancellation, error
//! messages, `check` warnings and the read-only fences.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{
    CallContext, Database, DatabaseConfig, Driver, DriverError, Limits, ToolError, dispatch,
};
use ewii_driver_kit::{self as kit, assert_unparsable_needs_other, call, classes};
use ewii_driver_mysql::MYSQL_DRIVER;
use serde_json::{Value, json};

async fn open(config: &DatabaseConfig) -> Arc<dyn Database> {
    MYSQL_DRIVER.open(config).await.expect("open")
}

async fn query(db: &dyn Database, sql: &str, params: Value) -> Value {
    call(
        db,
        StandardTool::Query,
        json!({"sql": sql, "params": params}),
    )
    .await
    .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
}

const TYPED_TABLE: &str = "CREATE TABLE typed (
    id INT PRIMARY KEY AUTO_INCREMENT,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, i INT, iu INT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED, bu_small BIGINT UNSIGNED,
    flag BOOL, b1 BIT(1), b12 BIT(12), yr YEAR,
    dec30 DECIMAL(30,10), f FLOAT, d DOUBLE,
    dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL,
    tm TIME, tm3 TIME(3),
    j JSON, bin BINARY(4), vbin VARBINARY(8), bl BLOB,
    uuid_char CHAR(36), uuid_native UUID, ip INET6,
    txt TEXT, vc_bin VARCHAR(10) COLLATE utf8mb4_bin, e ENUM('a','b'), st SET('x','y'))";

const TYPED_ROW: &str = "INSERT INTO typed VALUES (1,
    -128, 255, -32768, 8388607, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615, 42,
    TRUE, b'1', b'101010101010', 2024,
    '12345678901234567890.0123456789', 0.1, 3.141592653589793,
    '2024-02-29', '2024-02-29 13:14:15', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15',
    '-838:59:59', '12:34:56.789',
    '{\"a\": [1, 2, {\"b\": null}], \"c\": \"d\"}', x'00FF10AB', x'DEADBEEF', 'hello',
    '123e4567-e89b-12d3-a456-426614174000', '123e4567-e89b-12d3-a456-426614174000',
    '2001:db8::1', 'héllo wörld', 'abc', 'b', 'x,y')";

#[tokio::test]
async fn values_map_to_exact_json() {
    let Some(tmp) = common::temp_database("ewii_types").await else {
        return;
    };
    let rw = open(&common::config(tmp.url(), false, Limits::default())).await;
    query(rw.as_ref(), TYPED_TABLE, json!([])).await;
    let inserted = query(rw.as_ref(), TYPED_ROW, json!([])).await;
    assert_eq!(inserted["affected_rows"], 1);
    query(rw.as_ref(), "INSERT INTO typed (id) VALUES (?)", json!([2])).await;
    rw.close().await;

    let ro = open(&common::config(tmp.url(), true, Limits::default())).await;
    let r = query(ro.as_ref(), "SELECT * FROM typed ORDER BY id", json!([])).await;
    let first = json!([
        1,
        -128,
        255,
        -32768,
        8388607,
        -2147483648i64,
        4294967295u64,
        i64::MIN,
        "18446744073709551615",
        42,
        1,
        1,
        2730,
        2024,
        "12345678901234567890.0123456789",
        0.1,
        std::f64::consts::PI,
        "2024-02-29",
        "2024-02-29T13:14:15",
        "2024-02-29T13:14:15.123456",
        "2024-02-29T13:14:15Z",
        "-838:59:59",
        "12:34:56.789",
        {"a": [1, 2, {"b": null}], "c": "d"},
        "AP8Qqw==",
        "3q2+7w==",
        "aGVsbG8=",
        "123e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-426614174000",
        "2001:db8::1",
        "héllo wörld",
        "abc",
        "b",
        "x,y"
    ]);
    let mut second = vec![json!(2)];
    second.resize(34, Value::Null);
    assert_eq!(r["rows"][0], first, "first row");
    assert_eq!(r["rows"][1], Value::Array(second), "NULL row");

    let types: Vec<&str> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    let type_of = |name: &str| {
        let i = r["columns"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["name"] == name)
            .unwrap();
        types[i]
    };
    assert_eq!(type_of("bu"), "BIGINT UNSIGNED");
    assert_eq!(type_of("dec30"), "DECIMAL");
    assert_eq!(type_of("j"), "JSON");
    assert_eq!(type_of("vc_bin"), "VARCHAR");
    assert_eq!(type_of("bl"), "BLOB");
    assert_eq!(type_of("ts"), "TIMESTAMP");

    // Bound parameters of every kind, and expressions.
    let r = query(
        ro.as_ref(),
        "SELECT ?, ?, ?, ?, ?, 1 + 1, 2.5, NULL, CAST('2024-01-02' AS DATE)",
        json!([null, true, 42, 2.5, "text"]),
    )
    .await;
    assert_eq!(
        r["rows"][0],
        json!([null, 1, 42, 2.5, "text", 2, "2.5", null, "2024-01-02"])
    );

    // An empty result still describes its columns.
    let r = query(
        ro.as_ref(),
        "SELECT id, j FROM typed WHERE id = ?",
        json!([99]),
    )
    .await;
    assert_eq!(r["rows"], json!([]));
    assert_eq!(
        r["columns"],
        json!([{"name": "id", "type": "INT"}, {"name": "j", "type": "JSON"}])
    );

    // describe_table knows MariaDB JSON columns and AUTO_INCREMENT.
    let d = call(
        ro.as_ref(),
        StandardTool::DescribeTable,
        json!({"table": "typed"}),
    )
    .await
    .unwrap();
    let column = |name: &str| {
        d["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(column("j")["data_type"], "json");
    assert_eq!(column("id")["default"], "AUTO_INCREMENT");
    assert_eq!(column("flag")["data_type"], "tinyint(1)");
    assert!(column("txt").get("default").is_none(), "{d}");
    ro.close().await;
}

#[tokio::test]
async fn timeout_stops_the_statement_on_the_server() {
    let Some(tmp) = common::temp_database("ewii_timeout").await else {
        return;
    };
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let db = open(&common::config(tmp.url(), true, limits)).await;
    let marker = kit::unique_name("timeout_probe");
    let sql = format!("SELECT SLEEP(30) AS {marker}");

    // The statement, looked up by its full text as the kit does, is
    // visible while it runs: the check below is not vacuous.
    let watcher = {
        let url = tmp.url().to_owned();
        let sql = sql.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            common::running_statements(&url, &sql).await
        })
    };
    let started = Instant::now();
    let r = call(db.as_ref(), StandardTool::Query, json!({"sql": sql})).await;
    let took = started.elapsed();
    assert_eq!(
        watcher.await.unwrap(),
        1,
        "the slow statement was not seen running"
    );
    assert!(
        matches!(r, Err(ToolError::Timeout { limit }) if limit == Duration::from_secs(1)),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(2), "timeout took {took:?}");
    assert!(
        common::gone_within(tmp.url(), &marker, Duration::from_millis(300)).await,
        "the statement is still running on the server"
    );
    let ok = query(db.as_ref(), "SELECT 1", json!([])).await;
    assert_eq!(ok["rows"], json!([[1]]));
    db.close().await;
}

#[tokio::test]
async fn client_cancellation_kills_the_statement() {
    let Some(tmp) = common::temp_database("ewii_cancel").await else {
        return;
    };
    // A long limit: only KILL QUERY can stop the statement this early.
    let db = open(&common::config(tmp.url(), true, Limits::default())).await;
    let marker = kit::unique_name("cancel_probe");
    let sql = format!("SELECT SLEEP(30) AS {marker}");
    let ctx = CallContext::default();
    let cancel = ctx.cancel.clone();
    let url = tmp.url().to_owned();
    let probe_marker = marker.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let seen = common::running_statements(&url, &probe_marker).await;
        cancel.cancel();
        seen
    });
    let started = Instant::now();
    let r = dispatch(db.as_ref(), StandardTool::Query, json!({"sql": sql}), &ctx).await;
    assert_eq!(
        canceller.await.unwrap(),
        1,
        "the slow statement was not seen running"
    );
    assert!(matches!(r, Err(ToolError::Cancelled)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        common::gone_within(tmp.url(), &marker, Duration::from_millis(300)).await,
        "the statement is still running on the server after KILL QUERY"
    );
    let ok = query(db.as_ref(), "SELECT 2", json!([])).await;
    assert_eq!(ok["rows"], json!([[2]]));
    db.close().await;
}

fn assert_one_line_without_secret(message: &str, secret: &str) {
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(!message.contains(secret), "leaks the password: {message}");
}

fn url_config(url: &str) -> DatabaseConfig {
    kit::database_config("maria", "mysql", url, true)
}

async fn check_error(url: &str) -> String {
    let db = open(&url_config(url)).await;
    let e = db.check().await.expect_err("check must fail");
    assert!(matches!(e, DriverError::Connect(_)), "{e:?}");
    db.close().await;
    e.to_string()
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_say_what_to_fix() {
    // URL errors need no server.
    for (url, expect) in [
        ("postgres://u:s3cr3t-pw@db/x", "mysql://"),
        ("mysql://u:s3cr3t-pw@db:notaport/x", "port"),
    ] {
        let e = MYSQL_DRIVER
            .open(&url_config(url))
            .await
            .err()
            .expect("bad URL refused");
        assert!(matches!(e, DriverError::BadUrl(_)), "{e:?}");
        let m = e.to_string();
        assert!(m.contains(expect), "{m}");
        assert!(m.contains("mysql://reader:secret@db:3306/app"), "{m}");
        assert_one_line_without_secret(&m, "s3cr3t-pw");
    }
    assert!(
        MYSQL_DRIVER
            .open(&url_config("mariadb://u@db/x"))
            .await
            .is_ok()
    );

    let m = check_error("mysql://ewii:s3cr3t-pw@127.0.0.1:1/ewii_test").await;
    assert!(
        m.contains("127.0.0.1:1") && m.contains("check the host and port"),
        "{m}"
    );
    assert_one_line_without_secret(&m, "s3cr3t-pw");

    let Some(server) = common::server_url() else {
        return;
    };
    let wrong = server.replacen("ewii:ewii@", "ewii:s3cr3t-pw@", 1);
    assert_ne!(wrong, server, "the test URL has the form user:password@");
    let m = check_error(&wrong).await;
    assert!(m.contains("password"), "{m}");
    assert_one_line_without_secret(&m, "s3cr3t-pw");

    let m = check_error(&kit::with_database(&server, "ewii_no_such_db")).await;
    assert!(
        m.contains("ewii_no_such_db") && m.contains("database name"),
        "{m}"
    );

    // A tool call on an unreachable server is Unavailable, not a timeout.
    let db = open(&url_config("mysql://ewii@127.0.0.1:1/ewii_test")).await;
    let r = call(db.as_ref(), StandardTool::Query, json!({"sql": "SELECT 1"})).await;
    assert!(
        matches!(&r, Err(ToolError::Unavailable(m)) if m.contains("127.0.0.1:1")),
        "{r:?}"
    );
}

#[tokio::test]
async fn check_reports_the_engine_mode_and_warns_about_writable_accounts() {
    let Some(tmp) = common::temp_database("ewii_check").await else {
        return;
    };
    // The test account has ALL PRIVILEGES: a read-only database still
    // holds, but check() says the account could write.
    let db = open(&common::config(tmp.url(), true, Limits::default())).await;
    let report = db.check().await.expect("check");
    assert!(report.engine_read_only, "{report:?}");
    assert!(
        report.server_version.starts_with("MariaDB ")
            || report.server_version.starts_with("MySQL "),
        "{report:?}"
    );
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("write privileges"))
        .unwrap_or_else(|| panic!("no write-privilege warning: {report:?}"));
    assert!(
        warning.contains("INSERT") && warning.contains("GRANT SELECT"),
        "{warning}"
    );
    assert!(warning.contains("FILE also lets"), "{warning}");
    db.close().await;

    // An account with SELECT only: no warning.
    let reader = kit::unique_name("ewii_reader");
    common::exec(
        tmp.server(),
        &format!("CREATE USER '{reader}'@'%' IDENTIFIED BY 'reader-pw'"),
    )
    .await;
    common::exec(
        tmp.server(),
        &format!("GRANT SELECT ON `{}`.* TO '{reader}'@'%'", tmp.name()),
    )
    .await;
    let reader_url = tmp
        .url()
        .replacen("ewii:ewii@", &format!("{reader}:reader-pw@"), 1);
    let db = open(&common::config(&reader_url, true, Limits::default())).await;
    let report = db.check().await.expect("check as reader");
    assert!(report.engine_read_only, "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");
    db.close().await;
    common::exec(tmp.server(), &format!("DROP USER '{reader}'@'%'")).await;

    // Read-write: honest about it.
    let db = open(&common::config(tmp.url(), false, Limits::default())).await;
    let report = db.check().await.expect("check read-write");
    assert!(!report.engine_read_only, "{report:?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("read-write")),
        "{report:?}"
    );
    db.close().await;
}

#[tokio::test]
async fn read_only_refuses_what_a_read_only_transaction_allows() {
    let Some(tmp) = common::temp_database("ewii_fences").await else {
        return;
    };
    common::exec(tmp.url(), "CREATE TABLE t (a INT)").await;
    common::exec(tmp.url(), "INSERT INTO t VALUES (1)").await;
    let db = open(&common::config(tmp.url(), true, Limits::default())).await;
    let file = format!("/tmp/{}", kit::unique_name("ewii_outfile"));
    for sql in [
        format!("SELECT * FROM t INTO OUTFILE '{file}'"),
        // MariaDB runs the content of /*M! … */; a parser may skip it.
        format!("SELECT a FROM t /*M! INTO OUTFILE '{file}' */"),
        format!("SELECT a FROM t /*M!100000 INTO DUMPFILE '{file}' */"),
        "SELECT a FROM t /*M! , GET_LOCK('ewii', 1) */".to_owned(),
        "SELECT LOAD_FILE('/etc/hostname')".to_owned(),
        "SELECT RELEASE_ALL_LOCKS()".to_owned(),
    ] {
        let r = call(db.as_ref(), StandardTool::Query, json!({"sql": sql})).await;
        assert!(
            matches!(r, Err(ToolError::Refused { .. })),
            "`{sql}`: {r:?}"
        );
    }
    assert!(!std::path::Path::new(&file).exists(), "a file was written");
    // A refused word inside a value is fine as a bound parameter.
    let r = query(
        db.as_ref(),
        "SELECT count(*) FROM t WHERE ? <> ''",
        json!(["INTO OUTFILE"]),
    )
    .await;
    assert_eq!(r["rows"], json!([[1]]));
    // The server reads backslash escapes as the classifier does: this is
    // one string, not a call of sleep().
    let r = query(db.as_ref(), "SELECT 'a\\', sleep(0) -- '", json!([])).await;
    assert_eq!(r["rows"], json!([["a', sleep(0) -- "]]));
    db.close().await;
}

#[tokio::test]
async fn explain_returns_the_json_plan() {
    let Some(tmp) = common::temp_database("ewii_explain").await else {
        return;
    };
    common::exec(tmp.url(), "CREATE TABLE t (a INT PRIMARY KEY, b INT)").await;
    let db = open(&common::config(tmp.url(), true, Limits::default())).await;
    let r = call(
        db.as_ref(),
        StandardTool::Explain,
        json!({"sql": "SELECT * FROM t WHERE a = ?", "params": [1]}),
    )
    .await
    .unwrap();
    assert_eq!(r["format"], "mysql-json");
    assert!(r["plan"]["query_block"].is_object(), "{r}");
    let e = call(
        db.as_ref(),
        StandardTool::Explain,
        json!({"sql": "SELECT * FROM t WHERE a = ?"}),
    )
    .await;
    assert!(
        matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("param")),
        "{e:?}"
    );
    let e = call(
        db.as_ref(),
        StandardTool::Explain,
        json!({"sql": "SELECT * FROM t", "analyze": true}),
    )
    .await;
    assert!(
        matches!(&e, Err(ToolError::Refused { reason }) if reason.contains("read-write")),
        "{e:?}"
    );
    db.close().await;

    // Read-write: ANALYZE runs reads, never writes.
    common::exec(tmp.url(), "INSERT INTO t VALUES (1, 10), (2, 20)").await;
    let rw = open(&common::config(tmp.url(), false, Limits::default())).await;
    let r = call(
        rw.as_ref(),
        StandardTool::Explain,
        json!({"sql": "SELECT * FROM t WHERE b > ?", "params": [5], "analyze": true}),
    )
    .await
    .unwrap();
    assert_eq!(r["format"], "mariadb-analyze-json");
    assert!(r["plan"]["query_block"]["r_loops"].is_number(), "{r}");
    let e = call(
        rw.as_ref(),
        StandardTool::Explain,
        json!({"sql": "DELETE FROM t", "analyze": true}),
    )
    .await;
    assert!(matches!(e, Err(ToolError::Refused { .. })), "{e:?}");
    let count = query(rw.as_ref(), "SELECT count(*) FROM t", json!([])).await;
    assert_eq!(count["rows"], json!([[2]]));
    rw.close().await;
}

#[tokio::test]
async fn sessions_tokenise_sql_like_the_classifier() {
    use sqlx::{Connection, Executor, Row};
    let Some(server) = common::server_url() else {
        return;
    };
    let mut conn = common::connect(&server).await;
    conn.execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI,STRICT_TRANS_TABLES'")
        .await
        .unwrap();
    ewii_driver_mysql::init_connection(&mut conn).await.unwrap();
    let mode: String = sqlx::query("SELECT @@SESSION.sql_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert!(mode.contains("STRICT_TRANS_TABLES"), "{mode}");
    for gone in ["NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "ANSI"] {
        assert!(
            !mode.split(',').any(|m| m == gone),
            "{gone} still set: {mode}"
        );
    }
    conn.close().await.ok();
}

#[tokio::test]
async fn a_read_only_call_cannot_write_on_a_read_write_database() {
    let Some(db) = common::temp_database("callro").await else {
        return;
    };
    let rw = open(&common::config(db.url(), false, Limits::default())).await;
    query(
        rw.as_ref(),
        "CREATE TABLE t (a INT) ENGINE=InnoDB",
        json!([]),
    )
    .await;
    query(rw.as_ref(), "INSERT INTO t VALUES (1), (2)", json!([])).await;
    common::exec(
        db.url(),
        "CREATE FUNCTION wipe() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM t; RETURN 1; END",
    )
    .await;
    common::exec(db.url(), "CREATE TABLE log (a INT) ENGINE=InnoDB").await;
    common::exec(
        db.url(),
        "CREATE TRIGGER wipe_on_log AFTER INSERT ON log FOR EACH ROW DELETE FROM t",
    )
    .await;
    let q = |sql: &str| json!({ "sql": sql });
    let read = classes(&["read"]);
    let err = dispatch(rw.as_ref(), StandardTool::Query, q("SELECT wipe()"), &read)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("READ ONLY"), "{err}");
    let err = dispatch(
        rw.as_ref(),
        StandardTool::Query,
        q("INSERT INTO log VALUES (1)"),
        &read,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ToolError::Refused { .. }), "{err}");
    // Unparsable: refused without `other`, also for a direct caller.
    assert_unparsable_needs_other(rw.as_ref(), "HANDLER t OPEN").await;
    assert_eq!(
        query(rw.as_ref(), "SELECT count(*) FROM t", json!([])).await["rows"],
        json!([[2]])
    );
    // A writer's call after a read-only one gets a read-write session.
    let all = classes(&["read", "write", "ddl", "other"]);
    dispatch(
        rw.as_ref(),
        StandardTool::Query,
        q("INSERT INTO log VALUES (1)"),
        &all,
    )
    .await
    .unwrap();
    assert_eq!(
        query(rw.as_ref(), "SELECT count(*) FROM t", json!([])).await["rows"],
        json!([[0]])
    );
    rw.close().await;
}
