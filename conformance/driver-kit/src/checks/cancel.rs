//! Time limits and client cancellation stop the statement on the server,
//! quickly, and leave the database usable.

use std::time::{Duration, Instant};

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{CallContext, Limits, ToolError, dispatch};
use serde_json::json;

use crate::calls::{as_i64, call, rows};
use crate::fixture::CUSTOMERS;
use crate::harness::Kit;
use crate::report::{Check, ensure};

/// "timeout cancels the statement on the server"
pub(crate) async fn timeout_and_cancel(kit: &Kit<'_>) -> Check {
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let db = kit.open(true, limits).await?;
    let slow_cfg = kit.config(true, limits);
    let slow = kit.h.slow_query();

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
        !kit.h.statement_still_running(&slow_cfg, &slow).await,
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
}
