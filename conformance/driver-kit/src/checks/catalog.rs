//! Registration, the catalog a deployment advertises, and the read-only
//! session the driver's `check` reports.

use ewii_driver_core::{Catalog, Database, Limits, find_driver};

use crate::harness::Kit;
use crate::report::{Check, ensure};

/// "registered and found by name"
pub(crate) async fn registered(kit: &Kit<'_>) -> Check {
    let driver = kit.h.driver().name();
    let found = find_driver(driver).map_err(|e| e.to_string())?;
    ensure!(
        found.name() == driver,
        "find_driver returned {}",
        found.name()
    );
    Ok(())
}

/// "catalog advertises the standard tools"
pub(crate) async fn advertised(kit: &Kit<'_>) -> Check {
    let mut catalog = Catalog::new();
    let change = catalog
        .apply(vec![kit.config(true, Limits::default())])
        .await;
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
}

/// "check reports an engine-enforced read-only session"
pub(crate) async fn engine_read_only(ro: &dyn Database) -> Check {
    let report = ro.check().await.map_err(|e| e.to_string())?;
    ensure!(
        report.engine_read_only,
        "engine_read_only is false: {report:?}"
    );
    ensure!(!report.server_version.is_empty(), "no server version");
    Ok(())
}
