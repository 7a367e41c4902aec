//! `list_tables` and `describe_table` on the fixture: names, kinds,
//! columns, nullability, defaults, keys and indexes.

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{Database, ToolError};
use serde_json::json;

use crate::calls::call;
use crate::report::{Check, ensure};

/// "list_tables lists the fixture"
pub(crate) async fn list_tables(ro: &dyn Database) -> Check {
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
}

/// "describe_table: columns, keys, indexes"
pub(crate) async fn describe_table(ro: &dyn Database) -> Check {
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
}

/// "describe_table of a missing table is NotFound"
pub(crate) async fn describe_missing(ro: &dyn Database) -> Check {
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
}
