//! The `query` tool: bound parameters, JSON value mapping, errors that say
//! what to fix, and writes on a read-write database.

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{Database, Limits, ToolError};
use serde_json::{Value, json};

use crate::calls::{as_i64, call, placeholder as ph, rows};
use crate::fixture::CUSTOMERS;
use crate::harness::Kit;
use crate::report::{Check, ensure};

/// "query binds parameters and returns the right rows"
pub(crate) async fn binds_parameters(kit: &Kit<'_>, ro: &dyn Database) -> Check {
    let d = kit.dialect();
    let sql = format!(
        "SELECT id, name, email FROM kit_customers WHERE country = {} AND id > {} ORDER BY id",
        ph(d, 1),
        ph(d, 2)
    );
    let r = call(
        ro,
        StandardTool::Query,
        json!({"sql": sql, "params": ["DE", 20]}),
    )
    .await
    .map_err(|e| e.to_string())?;
    let want = json!([
        [22, "Customer 22", "c22@example.com"],
        [25, "Customer 25", "c25@example.com"],
        [28, "Customer 28", "c28@example.com"]
    ]);
    ensure!(r["rows"] == want, "rows {} != {want}", r["rows"]);
    ensure!(r["row_count"] == 3, "row_count {}", r["row_count"]);
    let names: Vec<&str> = r["columns"]
        .as_array()
        .ok_or("no columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(names == ["id", "name", "email"], "column names {names:?}");
    ensure!(
        r.get("truncated").is_none_or(Value::is_null),
        "complete result marked truncated"
    );
    // A parameter that looks like an injection stays a value.
    let sql = format!(
        "SELECT count(*) FROM kit_customers WHERE name = {}",
        ph(d, 1)
    );
    let n = rows(ro, &sql, json!(["x' OR '1'='1"])).await?;
    ensure!(
        as_i64(&n[0][0]) == Some(0),
        "injection-shaped parameter matched rows: {n:?}"
    );
    Ok(())
}

/// "NULL, text, integer and real map to JSON"
pub(crate) async fn json_values(ro: &dyn Database) -> Check {
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
}

/// "errors say what to fix"
pub(crate) async fn errors(kit: &Kit<'_>, ro: &dyn Database) -> Check {
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
    let d = kit.dialect();
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
}

/// "read-write: writes run and report affected rows"
pub(crate) async fn writes(kit: &Kit<'_>) -> Check {
    let db = kit.open(false, Limits::default()).await?;
    let d = kit.dialect();
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
}
