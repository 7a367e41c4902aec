//! Row and byte limits: truncation notices and `offset` paging, the same
//! for every driver because every driver feeds `ResultBuilder`.

use ewii_driver_core::Limits;
use ewii_driver_core::schema::StandardTool;
use serde_json::{Value, json};

use crate::calls::call;
use crate::harness::Kit;
use crate::report::{Check, ensure};

/// "max_rows truncates with a notice and offset pages on"
pub(crate) async fn max_rows(kit: &Kit<'_>) -> Check {
    let db = kit
        .open(
            true,
            Limits {
                max_rows: 10,
                ..Limits::default()
            },
        )
        .await?;
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
}

/// "max_bytes truncates with a notice"
pub(crate) async fn max_bytes(kit: &Kit<'_>) -> Check {
    let db = kit
        .open(
            true,
            Limits {
                max_bytes: 300,
                ..Limits::default()
            },
        )
        .await?;
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
}
