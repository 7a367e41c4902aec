//! The document-driver kit (MongoDB): the behaviour every document driver
//! must show, run against a live server through the driver's catalog.
//!
//! A document driver has no write tool, so the harness loads the fixture
//! itself ([`DocumentKitHarness::insert`]) and reports what the server
//! holds without Ewii ([`DocumentKitHarness::raw_state`]), which the kit
//! compares before and after the refused calls.
//!
//! A wire-compatible stand-in (nx-27017) cannot show everything; the
//! harness names it ([`DocumentKitHarness::stand_in`]) and the kit reports
//! the checks it cannot pass there as skipped, with the reason, never as
//! passed.
//!
//! Files: this one (the harness, the fixture, [`run_documents`]);
//! `checks` (catalog, reads, limits, errors, cancellation); `fences` (the
//! refused stages at every depth, data unchanged); `stand_in` ([`StandIn`],
//! the nx-27017 process a test starts on a free port).

mod checks;
mod fences;
mod stand_in;

pub use stand_in::{NX27017_VERSION, StandIn};

use async_trait::async_trait;
use ewii_driver_core::{CallContext, Catalog, DatabaseConfig, Driver, Limits, ToolError};
use serde_json::{Value, json};

use crate::KitReport;

/// What a document driver's tests tell the kit.
#[async_trait]
pub trait DocumentKitHarness: Send + Sync {
    /// The driver under test.
    fn driver(&self) -> &'static dyn Driver;

    /// A fresh, empty database on the server (read-only, default limits).
    async fn create_empty(&self) -> Result<DatabaseConfig, String>;

    /// Inserts `docs` (Extended JSON) into `collection`, without Ewii.
    async fn insert(
        &self,
        config: &DatabaseConfig,
        collection: &str,
        docs: Vec<Value>,
    ) -> Result<(), String>;

    /// Every collection of the database with its document count, sorted,
    /// read without Ewii.
    async fn raw_state(&self, config: &DatabaseConfig) -> Result<Vec<(String, u64)>, String>;

    /// `Some(name)` when the server is a stand-in, not the real engine.
    fn stand_in(&self) -> Option<&'static str> {
        None
    }
}

/// The kit's database name in the catalog (the tool prefix).
pub(crate) const DB: &str = "kitdocs";

/// The kit's customers: nested documents, arrays, ObjectIds, dates,
/// 64-bit integers, binary data and a null.
pub fn customers() -> Vec<Value> {
    let cities = ["Lyon", "Oslo", "Lyon", "Porto", "Oslo"];
    (0..5)
        .map(|i| {
            json!({
                "_id": {"$oid": format!("65a1b2c3d4e5f6071829300{i}")},
                "name": format!("customer {i}"),
                "email": if i == 3 { Value::Null } else { json!(format!("c{i}@example.com")) },
                "address": {"city": cities[i], "zip": format!("{}000", 10 + i)},
                "tags": if i % 2 == 0 { json!(["vip", "eu"]) } else { json!(["eu"]) },
                "since": {"$date": format!("2024-0{}-15T08:30:00Z", i + 1)},
                "visits": {"$numberLong": format!("{}", 5_000_000_000_i64 + i as i64)},
                "avatar": {"$binary": {"base64": "AP8Q", "subType": "00"}},
            })
        })
        .collect()
}

/// The kit's orders: 20 documents, 4 per customer, `total` = 10 × n.
pub fn orders() -> Vec<Value> {
    (0..20)
        .map(|n| {
            let status = ["open", "paid", "shipped", "paid"][n % 4];
            json!({
                "_id": n,
                "customer": {"$oid": format!("65a1b2c3d4e5f6071829300{}", n % 5)},
                "status": status,
                "total": 10 * n,
            })
        })
        .collect()
}

/// The open database and how to call its tools.
pub(crate) struct DocKit<'a> {
    pub h: &'a dyn DocumentKitHarness,
    pub config: DatabaseConfig,
    pub catalog: Catalog,
}

impl DocKit<'_> {
    /// Calls `<DB>_<suffix>` through the catalog, as the adapter does.
    pub async fn call(&self, suffix: &str, args: Value) -> Result<Value, ToolError> {
        self.call_as(suffix, args, &CallContext::default()).await
    }

    /// Like [`DocKit::call`] with a given context.
    pub async fn call_as(
        &self,
        suffix: &str,
        args: Value,
        ctx: &CallContext,
    ) -> Result<Value, ToolError> {
        self.catalog
            .resolve(&format!("{DB}_{suffix}"))?
            .call(args, ctx)
            .await
    }

    /// The database reopened with other limits, in its own catalog.
    pub async fn with_limits(&self, limits: Limits) -> Result<Catalog, String> {
        let mut catalog = Catalog::new();
        let config = DatabaseConfig {
            limits,
            ..self.config.clone()
        };
        let change = catalog.apply(vec![config]).await;
        match change.failed.first() {
            Some((_, e)) => Err(format!("reopen with limits: {e}")),
            None => Ok(catalog),
        }
    }
}

/// Runs the document kit against a driver.
pub async fn run_documents(h: &dyn DocumentKitHarness) -> KitReport {
    let mut report = KitReport::new(h.driver().name());
    if let Some(name) = h.stand_in() {
        println!(
            "document kit: running against {name}, a wire-compatible stand-in, NOT MongoDB; \
             checks it cannot show are reported as SKIPPED"
        );
    }
    let config = match h.create_empty().await {
        Ok(c) => DatabaseConfig {
            name: DB.into(),
            ..c
        },
        Err(e) => {
            report.push("create empty database", Err(e));
            return report;
        }
    };
    let loaded = async {
        h.insert(&config, "kit_customers", customers()).await?;
        h.insert(&config, "kit_orders", orders()).await
    };
    report.push("load fixture (without Ewii)", loaded.await);
    let mut catalog = Catalog::new();
    let change = catalog.apply(vec![config.clone()]).await;
    if let Some((_, e)) = change.failed.first() {
        report.push("open read-only", Err(e.to_string()));
    }
    if report.any_failed() {
        return report;
    }
    let kit = DocKit { h, config, catalog };
    let r = &mut report;
    r.record(
        "registered; advertises the document tools with honest annotations",
        checks::catalog(&kit),
    )
    .await;
    r.record(
        "check reports the server version and warns",
        checks::check(&kit),
    )
    .await;
    r.record(
        "list_collections lists the fixture",
        checks::list_collections(&kit),
    )
    .await;
    r.record(
        "describe_collection: indexes and inferred schema",
        checks::describe(&kit),
    )
    .await;
    r.record(
        "find: filter, projection, sort, skip, limit",
        checks::find(&kit),
    )
    .await;
    r.record(
        "types survive as relaxed Extended JSON",
        checks::types(&kit),
    )
    .await;
    r.record(
        "count, distinct, aggregate",
        checks::count_distinct_aggregate(&kit),
    )
    .await;
    r.record(
        "max_rows truncates with a notice and offset pages on",
        checks::max_rows(&kit),
    )
    .await;
    r.record("max_bytes truncates with a notice", checks::max_bytes(&kit))
        .await;
    r.record(
        "explain_documents of a find and an aggregate",
        checks::explain(&kit),
    )
    .await;
    r.record("errors say what to fix", checks::errors(&kit))
        .await;
    r.record(
        "write and code stages refused at any depth, data unchanged",
        fences::refused(&kit),
    )
    .await;
    r.record(
        "an agent that may not read is refused",
        fences::statements(&kit),
    )
    .await;
    r.record("cancellation ends the call", checks::cancelled(&kit))
        .await;
    r.record(
        "read_concern and read_preference per call",
        checks::read_options(&kit),
    )
    .await;
    if h.stand_in().is_none() {
        r.record(
            "Decimal128 survives as $numberDecimal",
            checks::decimal(&kit),
        )
        .await;
        r.record(
            "maxTimeMS stops a slow aggregate on the server",
            checks::max_time(&kit),
        )
        .await;
    } else {
        r.skip(
            "Decimal128 survives as $numberDecimal",
            "the stand-in rejects Decimal128 values",
        );
        r.skip(
            "maxTimeMS stops a slow aggregate on the server",
            "the stand-in ignores maxTimeMS (and has no $range); its client-side backstop is \
             tested by the driver's own tests",
        );
    }
    let DocKit { mut catalog, .. } = kit;
    catalog.close().await;
    report
}
