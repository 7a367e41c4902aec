//! Read-only databases at both fences: Ewii's classifier refuses writes
//! (the portable list plus the harness's dialect-specific ones), the engine
//! refuses them with the classifier bypassed, and `explain` refuses too.
//! "Refused" means the data is unchanged, not just an error.

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{Database, Limits, ToolError};
use serde_json::json;

use crate::calls::{as_i64, call, placeholder, rows};
use crate::harness::Kit;
use crate::report::{Check, ensure};

/// Writes every dialect must refuse on a read-only database, including
/// stacked statements and writes hidden in a CTE.
const ATTACKS: &[&str] = &[
    "INSERT INTO kit_orders (id, customer_id, total_cents) VALUES (999, 1, 1)",
    "UPDATE kit_orders SET total_cents = 0",
    "DELETE FROM kit_orders",
    "DROP TABLE kit_orders",
    "CREATE TABLE kit_evil (a INTEGER)",
    "ALTER TABLE kit_orders ADD COLUMN evil INTEGER",
    "SELECT 1; DELETE FROM kit_orders",
    "SELECT count(*) FROM kit_orders; DROP TABLE kit_orders",
    "WITH d AS (DELETE FROM kit_orders RETURNING id) SELECT count(*) FROM d",
    "WITH x AS (SELECT 1) INSERT INTO kit_orders (id, customer_id, total_cents) SELECT 998, 1, 1 FROM x",
];

/// Writes the engine itself must refuse on the driver's read-only session.
const ENGINE_ATTACKS: &[&str] = &[
    "INSERT INTO kit_orders (id, customer_id, total_cents) VALUES (997, 1, 1)",
    "UPDATE kit_orders SET total_cents = 0",
    "DELETE FROM kit_orders",
    "DROP TABLE kit_orders",
    "CREATE TABLE kit_evil (a INTEGER)",
];

/// Numbers that change when any write lands: row counts, a sum, the number
/// of tables, and the harness's own (sequences, locks…).
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

/// "read-only: writes are refused by Ewii and data is unchanged"
pub(crate) async fn refused_by_ewii(kit: &Kit<'_>, ro: &dyn Database) -> Check {
    let extra_fp = kit.h.extra_fingerprint();
    let mut attacks: Vec<String> = ATTACKS.iter().map(|s| (*s).to_owned()).collect();
    attacks.extend(kit.h.extra_read_only_attacks());
    let before = fingerprint(ro, &extra_fp).await?;
    for sql in &attacks {
        match call(ro, StandardTool::Query, json!({"sql": sql})).await {
            Ok(v) => return Err(format!("`{sql}` was allowed: {v}")),
            Err(e) => ensure!(!e.to_string().is_empty(), "empty error for `{sql}`"),
        }
    }
    let after = fingerprint(ro, &extra_fp).await?;
    ensure!(before == after, "data changed: {before:?} -> {after:?}");
    Ok(())
}

/// "read-only: the engine refuses writes even without the classifier"
pub(crate) async fn refused_by_engine(kit: &Kit<'_>, ro: &dyn Database) -> Check {
    let extra_fp = kit.h.extra_fingerprint();
    let ro_cfg = kit.config(true, Limits::default());
    let before = fingerprint(ro, &extra_fp).await?;
    for sql in ENGINE_ATTACKS {
        if kit.h.execute_unguarded(&ro_cfg, sql).await.is_ok() {
            return Err(format!(
                "the engine accepted `{sql}` on a read-only session"
            ));
        }
    }
    let after = fingerprint(ro, &extra_fp).await?;
    ensure!(before == after, "data changed: {before:?} -> {after:?}");
    Ok(())
}

/// "explain returns a plan; refuses writes on read-only"
pub(crate) async fn explain(kit: &Kit<'_>, ro: &dyn Database) -> Check {
    let sql = format!(
        "SELECT * FROM kit_orders WHERE customer_id = {}",
        placeholder(kit.dialect(), 1)
    );
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
}
