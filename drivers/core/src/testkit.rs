//! The driver test kit: one fixture and the behaviour every driver must show.
//!
//! A driver crate implements [`KitHarness`] in its tests (how to create an
//! empty database, how to run SQL on its read-only session *without* Ewii's
//! classifier) and calls [`run`]:
//!
//! ```text
//! #[tokio::test]
//! async fn driver_test_kit() {
//!     ewii_driver_core::testkit::run(&MyHarness::new()).await.assert_passed();
//! }
//! ```
//!
//! The kit loads its fixture through the driver's own read-write `query`
//! tool, then checks every standard tool, limits and paging, read-only mode
//! at both fences, error messages, timeouts and cancellation. Every check
//! runs even when an earlier one fails, and the report names each failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ewii_tools_schema::StandardTool;
use serde_json::{Value, json};

use crate::{
    CallContext, Catalog, Database, DatabaseConfig, Driver, Limits, SqlDialect, ToolError,
    dispatch, find_driver,
};

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

/// The outcome of a kit run.
#[derive(Debug)]
pub struct KitReport {
    /// Driver name.
    pub driver: String,
    /// Each check with its outcome.
    pub checks: Vec<(String, Result<(), String>)>,
}

impl KitReport {
    /// Panics with every failed check, or prints a one-line summary.
    pub fn assert_passed(&self) {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("  - {name}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "driver test kit: {} of {} checks failed for driver '{}':\n{}",
            failed.len(),
            self.checks.len(),
            self.driver,
            failed.join("\n")
        );
        println!(
            "driver test kit: all {} checks passed for driver '{}'",
            self.checks.len(),
            self.driver
        );
    }
}

const CUSTOMERS: i64 = 30;
const ORDERS: i64 = 60;

fn country(id: i64) -> &'static str {
    match id % 3 {
        0 => "FR",
        1 => "DE",
        _ => "US",
    }
}

/// The fixture: portable SQL accepted by SQLite, PostgreSQL and MariaDB.
pub fn fixture_statements() -> Vec<String> {
    let mut s = vec![
        "CREATE TABLE kit_customers (\
            id INTEGER PRIMARY KEY, \
            name VARCHAR(100) NOT NULL, \
            email VARCHAR(200) UNIQUE, \
            country VARCHAR(2) NOT NULL DEFAULT 'FR')"
            .to_owned(),
        "CREATE TABLE kit_orders (\
            id INTEGER PRIMARY KEY, \
            customer_id INTEGER NOT NULL, \
            total_cents INTEGER NOT NULL, \
            note VARCHAR(200), \
            FOREIGN KEY (customer_id) REFERENCES kit_customers (id))"
            .to_owned(),
        "CREATE INDEX kit_orders_customer ON kit_orders (customer_id)".to_owned(),
    ];
    let customers: Vec<String> = (1..=CUSTOMERS)
        .map(|id| {
            let email = if id == 7 {
                "NULL".to_owned()
            } else {
                format!("'c{id:02}@example.com'")
            };
            format!("({id}, 'Customer {id:02}', {email}, '{}')", country(id))
        })
        .collect();
    s.push(format!(
        "INSERT INTO kit_customers (id, name, email, country) VALUES {}",
        customers.join(", ")
    ));
    let orders: Vec<String> = (1..=ORDERS)
        .map(|id| {
            let note = if id % 4 == 0 {
                "NULL".to_owned()
            } else {
                format!("'note {id:02}'")
            };
            format!("({id}, {}, {}, {note})", id % CUSTOMERS + 1, id * 100 + 7)
        })
        .collect();
    s.push(format!(
        "INSERT INTO kit_orders (id, customer_id, total_cents, note) VALUES {}",
        orders.join(", ")
    ));
    s
}

fn ph(dialect: SqlDialect, n: usize) -> String {
    match dialect {
        SqlDialect::Postgres => format!("${n}"),
        SqlDialect::Sqlite | SqlDialect::MySql => "?".to_owned(),
    }
}

struct Kit<'a> {
    h: &'a dyn KitHarness,
    base: DatabaseConfig,
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

impl Kit<'_> {
    fn config(&self, read_only: bool, limits: Limits) -> DatabaseConfig {
        DatabaseConfig {
            read_only,
            limits,
            ..self.base.clone()
        }
    }

    async fn open(&self, read_only: bool, limits: Limits) -> Result<Arc<dyn Database>, String> {
        self.h
            .driver()
            .open(&self.config(read_only, limits))
            .await
            .map_err(|e| format!("open failed: {e}"))
    }
}

async fn record<F>(checks: &mut Vec<(String, Check)>, name: &str, f: F)
where
    F: Future<Output = Check>,
{
    let outcome = match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(r) => r,
        Err(_) => Err("check did not finish within 60 s".into()),
    };
    checks.push((name.to_owned(), outcome));
}

async fn call(db: &dyn Database, tool: StandardTool, args: Value) -> Result<Value, ToolError> {
    dispatch(db, tool, args, &CallContext::default()).await
}

async fn rows(db: &dyn Database, sql: &str, params: Value) -> Result<Vec<Vec<Value>>, String> {
    let r = call(
        db,
        StandardTool::Query,
        json!({"sql": sql, "params": params}),
    )
    .await
    .map_err(|e| format!("`{sql}` failed: {e}"))?;
    serde_json::from_value(r["rows"].clone()).map_err(|e| e.to_string())
}

/// Numbers may come back as JSON numbers or (for DECIMAL sums) strings.
fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
    })
}

async fn fingerprint(db: &dyn Database, extra: &[String]) -> Result<Vec<i64>, String> {
    let mut out = Vec::new();
    let mut queries = vec![
        "SELECT count(*), sum(total_cents) FROM kit_orders".to_owned(),
        "SELECT count(*) FROM kit_customers".to_owned(),
    ];
    queries.extend(extra.iter().cloned());
    for sql in &queries {
        for v in rows(db, sql, json!([])).await?.concat() {
            out.push(as_i64(&v).ok_or_else(|| format!("non-numeric fingerprint {v}"))?);
        }
    }
    let tables = call(db, StandardTool::ListTables, json!({}))
        .await
        .map_err(|e| e.to_string())?;
    out.push(tables["tables"].as_array().map_or(0, |t| t.len() as i64));
    Ok(out)
}

/// Runs the whole kit against a driver.
pub async fn run(h: &dyn KitHarness) -> KitReport {
    let driver = h.driver().name().to_owned();
    let mut report = KitReport {
        driver: driver.clone(),
        checks: Vec::new(),
    };
    let base = match h.create_empty().await {
        Ok(c) => c,
        Err(e) => {
            report.checks.push(("create empty database".into(), Err(e)));
            return report;
        }
    };
    let kit = Kit { h, base };
    let mut checks: Vec<(String, Check)> = Vec::new();

    // Fixture through the driver's own read-write query tool.
    let load = async {
        let db = kit.open(false, Limits::default()).await?;
        for sql in fixture_statements().into_iter().chain(h.extra_fixture()) {
            // Allowed every class, `other` included: engine syntax the
            // classifier cannot parse (CREATE PROCEDURE … $$ … $$) is
            // refused to a caller that is not.
            let all = CallContext {
                statements: Some(crate::StatementClasses::all()),
                ..CallContext::default()
            };
            dispatch(
                db.as_ref(),
                StandardTool::Query,
                json!({ "sql": sql }),
                &all,
            )
            .await
            .map_err(|e| format!("fixture statement failed: {e}\n{sql}"))?;
        }
        db.close().await;
        Ok(())
    }
    .await;
    checks.push(("load fixture (read-write query)".into(), load));
    if checks.iter().any(|(_, r)| r.is_err()) {
        report.checks = checks;
        return report;
    }

    let d = h.dialect();
    let extra_fp = h.extra_fingerprint();
    let extra_fp = &extra_fp;
    let ro = kit.open(true, Limits::default()).await;
    let ro = match ro {
        Ok(db) => db,
        Err(e) => {
            checks.push(("open read-only".into(), Err(e)));
            report.checks = checks;
            return report;
        }
    };
    let ro = ro.as_ref();

    record(&mut checks, "registered and found by name", async {
        let found = find_driver(&driver).map_err(|e| e.to_string())?;
        ensure!(
            found.name() == driver,
            "find_driver returned {}",
            found.name()
        );
        Ok(())
    })
    .await;

    let cfg = kit.config(true, Limits::default());
    record(
        &mut checks,
        "catalog advertises the standard tools",
        async {
            let mut catalog = Catalog::new();
            let change = catalog.apply(vec![cfg]).await;
            ensure!(change.failed.is_empty(), "open failed: {:?}", change.failed);
            let names: Vec<&str> = catalog.tools().iter().map(|t| t.name.as_str()).collect();
            let base = &kit.base.name;
            for suffix in ["query", "list_tables", "describe_table", "explain"] {
                let want = format!("{base}_{suffix}");
                ensure!(
                    names.contains(&want.as_str()),
                    "missing {want} in {names:?}"
                );
            }
            let q = catalog
                .tools()
                .iter()
                .find(|t| t.name.ends_with("_query"))
                .ok_or("no query tool")?;
            ensure!(
                q.annotations.read_only_hint,
                "read-only query tool must say readOnlyHint"
            );
            catalog.close().await;
            Ok(())
        },
    )
    .await;

    record(
        &mut checks,
        "check reports an engine-enforced read-only session",
        async {
            let report = ro.check().await.map_err(|e| e.to_string())?;
            ensure!(
                report.engine_read_only,
                "engine_read_only is false: {report:?}"
            );
            ensure!(!report.server_version.is_empty(), "no server version");
            Ok(())
        },
    )
    .await;

    record(&mut checks, "list_tables lists the fixture", async {
        let r = call(ro, StandardTool::ListTables, json!({}))
            .await
            .map_err(|e| e.to_string())?;
        let tables = r["tables"].as_array().ok_or("no tables array")?;
        for want in ["kit_customers", "kit_orders"] {
            let t = tables
                .iter()
                .find(|t| t["name"] == want)
                .ok_or_else(|| format!("{want} not listed in {r}"))?;
            ensure!(t["kind"] == "table", "{want} kind is {}", t["kind"]);
            ensure!(
                t["schema"].as_str().is_some_and(|s| !s.is_empty()),
                "empty schema"
            );
        }
        Ok(())
    })
    .await;

    record(
        &mut checks,
        "describe_table: columns, keys, indexes",
        async {
            let r = call(
                ro,
                StandardTool::DescribeTable,
                json!({"table": "kit_orders"}),
            )
            .await
            .map_err(|e| e.to_string())?;
            let cols: Vec<&str> = r["columns"]
                .as_array()
                .ok_or("no columns")?
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            ensure!(
                cols == ["id", "customer_id", "total_cents", "note"],
                "columns {cols:?}"
            );
            let col = |n: &str| {
                r["columns"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["name"] == n))
                    .cloned()
                    .unwrap_or_default()
            };
            ensure!(
                col("id")["nullable"] == false,
                "id must be NOT NULL (primary key)"
            );
            ensure!(
                col("customer_id")["nullable"] == false,
                "customer_id must be NOT NULL"
            );
            ensure!(col("note")["nullable"] == true, "note must be nullable");
            ensure!(
                col("total_cents")["data_type"]
                    .as_str()
                    .is_some_and(|t| t.to_lowercase().contains("int")),
                "total_cents type {}",
                col("total_cents")["data_type"]
            );
            ensure!(
                r["primary_key"] == json!(["id"]),
                "primary key {}",
                r["primary_key"]
            );
            let fk_ok = r["foreign_keys"].as_array().is_some_and(|fks| {
                fks.iter().any(|fk| {
                    fk["columns"] == json!(["customer_id"])
                        && fk["referenced_table"] == "kit_customers"
                        && fk["referenced_columns"] == json!(["id"])
                })
            });
            ensure!(
                fk_ok,
                "foreign key customer_id -> kit_customers(id) missing: {}",
                r["foreign_keys"]
            );
            let idx_ok = r["indexes"].as_array().is_some_and(|ix| {
                ix.iter()
                    .any(|i| i["columns"] == json!(["customer_id"]) && i["unique"] == false)
            });
            ensure!(idx_ok, "index on customer_id missing: {}", r["indexes"]);

            let c = call(
                ro,
                StandardTool::DescribeTable,
                json!({"table": "kit_customers"}),
            )
            .await
            .map_err(|e| e.to_string())?;
            let uniq = c["indexes"].as_array().is_some_and(|ix| {
                ix.iter()
                    .any(|i| i["columns"] == json!(["email"]) && i["unique"] == true)
            });
            ensure!(uniq, "unique index on email missing: {}", c["indexes"]);
            let country = c["columns"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == "country").cloned())
                .ok_or("no country column")?;
            ensure!(
                country["default"]
                    .as_str()
                    .is_some_and(|d| d.contains("FR")),
                "country default {}",
                country["default"]
            );
            Ok(())
        },
    )
    .await;

    record(
        &mut checks,
        "describe_table of a missing table is NotFound",
        async {
            match call(
                ro,
                StandardTool::DescribeTable,
                json!({"table": "kit_nope"}),
            )
            .await
            {
                Err(ToolError::NotFound(m)) => {
                    ensure!(
                        m.contains("kit_nope"),
                        "message does not name the table: {m}"
                    );
                    Ok(())
                }
                other => Err(format!("expected NotFound, got {other:?}")),
            }
        },
    )
    .await;

    record(&mut checks, "query binds parameters and returns the right rows", async {
        let sql = format!(
            "SELECT id, name, email FROM kit_customers WHERE country = {} AND id > {} ORDER BY id",
            ph(d, 1),
            ph(d, 2)
        );
        let r = call(ro, StandardTool::Query, json!({"sql": sql, "params": ["DE", 20]}))
            .await
            .map_err(|e| e.to_string())?;
        let want = json!([
            [22, "Customer 22", "c22@example.com"],
            [25, "Customer 25", "c25@example.com"],
            [28, "Customer 28", "c28@example.com"]
        ]);
        ensure!(r["rows"] == want, "rows {} != {want}", r["rows"]);
        ensure!(r["row_count"] == 3, "row_count {}", r["row_count"]);
        let names: Vec<&str> = r["columns"].as_array().ok_or("no columns")?.iter().filter_map(|c| c["name"].as_str()).collect();
        ensure!(names == ["id", "name", "email"], "column names {names:?}");
        ensure!(r.get("truncated").is_none_or(Value::is_null), "complete result marked truncated");
        // A parameter that looks like an injection stays a value.
        let sql = format!("SELECT count(*) FROM kit_customers WHERE name = {}", ph(d, 1));
        let n = rows(ro, &sql, json!(["x' OR '1'='1"])).await?;
        ensure!(as_i64(&n[0][0]) == Some(0), "injection-shaped parameter matched rows: {n:?}");
        Ok(())
    })
    .await;

    record(
        &mut checks,
        "NULL, text, integer and real map to JSON",
        async {
            let r = rows(
                ro,
                "SELECT email, name, id FROM kit_customers WHERE id = 7",
                json!([]),
            )
            .await?;
            ensure!(
                r == vec![vec![Value::Null, json!("Customer 07"), json!(7)]],
                "got {r:?}"
            );
            let r = rows(ro, "SELECT 2.5", json!([])).await?;
            ensure!(
                r[0][0].as_f64() == Some(2.5) || r[0][0] == "2.5",
                "2.5 came back as {}",
                r[0][0]
            );
            Ok(())
        },
    )
    .await;

    let paging = kit
        .open(
            true,
            Limits {
                max_rows: 10,
                ..Limits::default()
            },
        )
        .await;
    record(
        &mut checks,
        "max_rows truncates with a notice and offset pages on",
        async {
            let db = paging?;
            let sql = "SELECT id FROM kit_customers ORDER BY id";
            let mut got = Vec::new();
            let mut offset = 0u64;
            for page in 0..3 {
                let r = call(
                    db.as_ref(),
                    StandardTool::Query,
                    json!({"sql": sql, "offset": offset}),
                )
                .await
                .map_err(|e| e.to_string())?;
                let ids: Vec<i64> = r["rows"]
                    .as_array()
                    .ok_or("rows")?
                    .iter()
                    .filter_map(|row| row[0].as_i64())
                    .collect();
                ensure!(ids.len() == 10, "page {page} has {} rows", ids.len());
                got.extend(ids);
                if page < 2 {
                    let t = &r["truncated"];
                    ensure!(t["reason"] == "max_rows", "page {page} truncation {t}");
                    ensure!(
                        t["message"].as_str().is_some_and(|m| m.contains("offset=")),
                        "notice does not say how to page: {t}"
                    );
                    offset = t["next_offset"].as_u64().ok_or("no next_offset")?;
                } else {
                    ensure!(
                        r.get("truncated").is_none_or(Value::is_null),
                        "last page marked truncated"
                    );
                }
            }
            ensure!(got == (1..=30).collect::<Vec<_>>(), "paged ids {got:?}");
            let r = call(
                db.as_ref(),
                StandardTool::Query,
                json!({"sql": sql, "max_rows": 4}),
            )
            .await
            .map_err(|e| e.to_string())?;
            ensure!(
                r["row_count"] == 4,
                "max_rows argument ignored: {}",
                r["row_count"]
            );
            let r = call(
                db.as_ref(),
                StandardTool::Query,
                json!({"sql": sql, "max_rows": 1000}),
            )
            .await
            .map_err(|e| e.to_string())?;
            ensure!(
                r["row_count"] == 10,
                "max_rows argument raised the configured limit"
            );
            db.close().await;
            Ok(())
        },
    )
    .await;

    let small = kit
        .open(
            true,
            Limits {
                max_bytes: 300,
                ..Limits::default()
            },
        )
        .await;
    record(&mut checks, "max_bytes truncates with a notice", async {
        let db = small?;
        let r = call(
            db.as_ref(),
            StandardTool::Query,
            json!({"sql": "SELECT id, name, email FROM kit_customers ORDER BY id"}),
        )
        .await
        .map_err(|e| e.to_string())?;
        let n = r["row_count"].as_u64().ok_or("row_count")?;
        ensure!(n > 0 && n < 30, "{n} rows under a 300 byte limit");
        ensure!(
            r["truncated"]["reason"] == "max_bytes",
            "truncation {}",
            r["truncated"]
        );
        ensure!(
            r["truncated"]["next_offset"] == n,
            "next_offset {}",
            r["truncated"]["next_offset"]
        );
        let bytes = serde_json::to_vec(&r["rows"])
            .map_err(|e| e.to_string())?
            .len();
        ensure!(bytes <= 300 + 2 * 30, "rows take {bytes} bytes");
        db.close().await;
        Ok(())
    })
    .await;

    let mut attacks: Vec<String> = vec![
        "INSERT INTO kit_orders (id, customer_id, total_cents) VALUES (999, 1, 1)".into(),
        "UPDATE kit_orders SET total_cents = 0".into(),
        "DELETE FROM kit_orders".into(),
        "DROP TABLE kit_orders".into(),
        "CREATE TABLE kit_evil (a INTEGER)".into(),
        "ALTER TABLE kit_orders ADD COLUMN evil INTEGER".into(),
        "SELECT 1; DELETE FROM kit_orders".into(),
        "SELECT count(*) FROM kit_orders; DROP TABLE kit_orders".into(),
        "WITH d AS (DELETE FROM kit_orders RETURNING id) SELECT count(*) FROM d".into(),
        "WITH x AS (SELECT 1) INSERT INTO kit_orders (id, customer_id, total_cents) SELECT 998, 1, 1 FROM x".into(),
    ];
    attacks.extend(h.extra_read_only_attacks());
    record(
        &mut checks,
        "read-only: writes are refused by Ewii and data is unchanged",
        async {
            let before = fingerprint(ro, extra_fp).await?;
            for sql in &attacks {
                match call(ro, StandardTool::Query, json!({"sql": sql})).await {
                    Ok(v) => return Err(format!("`{sql}` was allowed: {v}")),
                    Err(e) => ensure!(!e.to_string().is_empty(), "empty error for `{sql}`"),
                }
            }
            let after = fingerprint(ro, extra_fp).await?;
            ensure!(before == after, "data changed: {before:?} -> {after:?}");
            Ok(())
        },
    )
    .await;

    let engine_attacks = [
        "INSERT INTO kit_orders (id, customer_id, total_cents) VALUES (997, 1, 1)",
        "UPDATE kit_orders SET total_cents = 0",
        "DELETE FROM kit_orders",
        "DROP TABLE kit_orders",
        "CREATE TABLE kit_evil (a INTEGER)",
    ];
    let ro_cfg = kit.config(true, Limits::default());
    record(
        &mut checks,
        "read-only: the engine refuses writes even without the classifier",
        async {
            let before = fingerprint(ro, extra_fp).await?;
            for sql in engine_attacks {
                if h.execute_unguarded(&ro_cfg, sql).await.is_ok() {
                    return Err(format!(
                        "the engine accepted `{sql}` on a read-only session"
                    ));
                }
            }
            let after = fingerprint(ro, extra_fp).await?;
            ensure!(before == after, "data changed: {before:?} -> {after:?}");
            Ok(())
        },
    )
    .await;

    record(
        &mut checks,
        "explain returns a plan; refuses writes on read-only",
        async {
            let sql = format!("SELECT * FROM kit_orders WHERE customer_id = {}", ph(d, 1));
            let r = call(
                ro,
                StandardTool::Explain,
                json!({"sql": sql, "params": [3]}),
            )
            .await
            .map_err(|e| e.to_string())?;
            ensure!(
                !r["plan"].is_null() && r["plan"] != json!([]),
                "empty plan {r}"
            );
            ensure!(
                r["format"].as_str().is_some_and(|f| !f.is_empty()),
                "no format"
            );
            let refused = call(
                ro,
                StandardTool::Explain,
                json!({"sql": "DELETE FROM kit_orders"}),
            )
            .await;
            ensure!(
                matches!(refused, Err(ToolError::Refused { .. })),
                "explain DELETE: {refused:?}"
            );
            Ok(())
        },
    )
    .await;

    record(&mut checks, "errors say what to fix", async {
        let e = call(
            ro,
            StandardTool::Query,
            json!({"sql": "SELEC * FROM kit_customers"}),
        )
        .await;
        ensure!(
            matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("syntax")),
            "syntax error: {e:?}"
        );
        let e = call(ro, StandardTool::Query, json!({})).await;
        ensure!(
            matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("sql")),
            "missing sql: {e:?}"
        );
        let e = call(ro, StandardTool::Query, json!({"sql": 5})).await;
        ensure!(
            matches!(e, Err(ToolError::InvalidArguments(_))),
            "ill-typed sql: {e:?}"
        );
        let e = call(
            ro,
            StandardTool::Query,
            json!({"sql": "SELECT * FROM kit_nope"}),
        )
        .await;
        ensure!(
            matches!(&e, Err(ToolError::Database(m)) if m.contains("kit_nope")),
            "unknown table: {e:?}"
        );
        let sql = format!("SELECT {} + {}", ph(d, 1), ph(d, 2));
        let e = call(ro, StandardTool::Query, json!({"sql": sql, "params": [1]})).await;
        ensure!(
            matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("param")),
            "missing parameter: {e:?}"
        );
        // The database still answers after errors.
        let ok = rows(ro, "SELECT count(*) FROM kit_customers", json!([])).await?;
        ensure!(
            as_i64(&ok[0][0]) == Some(CUSTOMERS),
            "count after errors {ok:?}"
        );
        Ok(())
    })
    .await;

    let rw = kit.open(false, Limits::default()).await;
    record(
        &mut checks,
        "read-write: writes run and report affected rows",
        async {
            let db = rw?;
            let ins = format!(
                "INSERT INTO kit_orders (id, customer_id, total_cents) VALUES ({}, {}, {})",
                ph(d, 1),
                ph(d, 2),
                ph(d, 3)
            );
            let r = call(
                db.as_ref(),
                StandardTool::Query,
                json!({"sql": ins, "params": [500, 2, 42]}),
            )
            .await
            .map_err(|e| e.to_string())?;
            ensure!(
                r["affected_rows"] == 1,
                "affected_rows {}",
                r["affected_rows"]
            );
            let r = rows(
                db.as_ref(),
                "SELECT total_cents FROM kit_orders WHERE id = 500",
                json!([]),
            )
            .await?;
            ensure!(
                r == vec![vec![json!(42)]],
                "inserted row reads back as {r:?}"
            );
            let r = call(
                db.as_ref(),
                StandardTool::Query,
                json!({"sql": "DELETE FROM kit_orders WHERE id = 500"}),
            )
            .await
            .map_err(|e| e.to_string())?;
            ensure!(
                r["affected_rows"] == 1,
                "delete affected_rows {}",
                r["affected_rows"]
            );
            let e = call(
                db.as_ref(),
                StandardTool::Query,
                json!({"sql": "SELECT 1; DELETE FROM kit_orders"}),
            )
            .await;
            ensure!(
                matches!(e, Err(ToolError::Refused { .. })),
                "stacked statements on read-write: {e:?}"
            );
            db.close().await;
            Ok(())
        },
    )
    .await;

    let timeout_limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let slow_db = kit.open(true, timeout_limits).await;
    let slow_cfg = kit.config(true, timeout_limits);
    let slow = h.slow_query();
    record(
        &mut checks,
        "timeout cancels the statement on the server",
        async {
            let db = slow_db?;
            let started = Instant::now();
            let r = call(db.as_ref(), StandardTool::Query, json!({"sql": slow})).await;
            let took = started.elapsed();
            ensure!(
                matches!(r, Err(ToolError::Timeout { .. })),
                "expected Timeout, got {r:?}"
            );
            ensure!(took < Duration::from_secs(5), "timeout took {took:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
            ensure!(
                !h.statement_still_running(&slow_cfg, &slow).await,
                "statement still running on the server"
            );
            let ok = rows(db.as_ref(), "SELECT count(*) FROM kit_customers", json!([])).await?;
            ensure!(
                as_i64(&ok[0][0]) == Some(CUSTOMERS),
                "database unusable after timeout"
            );

            // Cancellation by the client.
            let ctx = CallContext::default();
            let cancel = ctx.cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                cancel.cancel();
            });
            let started = Instant::now();
            let r = dispatch(db.as_ref(), StandardTool::Query, json!({"sql": slow}), &ctx).await;
            ensure!(
                matches!(r, Err(ToolError::Cancelled)),
                "expected Cancelled, got {r:?}"
            );
            ensure!(
                started.elapsed() < Duration::from_millis(900),
                "cancel took {:?}",
                started.elapsed()
            );
            db.close().await;
            Ok(())
        },
    )
    .await;

    ro.close().await;
    report.checks = checks;
    report
}

/// The URL of a test database server from environment variable `var`.
///
/// Unset: prints a `SKIPPED` line and returns `None` — unless `required_in_ci`
/// is true and `CI` is set, where a missing server is a failure (the
/// PostgreSQL and MariaDB servers are started by `scripts/test-databases.sh`
/// and must never be silently skipped there).
pub fn server_url(var: &str, required_in_ci: bool) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !(required_in_ci && std::env::var_os("CI").is_some()),
                "{var} is not set but CI requires this server: start it with \
                 `eval \"$(scripts/test-databases.sh start)\"`"
            );
            println!("SKIPPED: {var} is not set; this test needs a live server");
            None
        }
    }
}
