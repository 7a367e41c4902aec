//! The driver test kit: one fixture and the behaviour every driver must show.
//!
//! A driver crate implements [`KitHarness`] in its tests (how to create an
//! empty database, how to run SQL on its read-only session *without* Ewii's
//! classifier) and calls [`run`]:
//!
//! ```text
//! #[tokio::test]
//! async fn driver_test_kit() {
//!     ewii_driver_kit::run(&MyHarness::new()).await.assert_passed();
//! }
//! ```
//!
//! The kit loads its fixture through the driver's own read-write `query`
//! tool, then checks every standard tool, limits and paging, read-only mode
//! at both fences, error messages, timeouts and cancellation. Every check
//! runs even when an earlier one fails, and the report names each failure.
//!
//! Modules:
//! - `harness`: [`KitHarness`], what a driver's tests tell the kit;
//! - `fixture`: the kit's tables and rows ([`fixture_statements`]) and how
//!   they are loaded;
//! - `checks`: the checks, one file per topic (catalog, schema, query,
//!   limits, read-only, cancellation), run in order by [`run`];
//! - `report`: [`KitReport`], each check's outcome;
//! - `calls`: tool-call shorthands the kit and drivers' own tests share
//!   ([`call`], [`query`], [`query_as`], [`classes`], [`database_config`],
//!   [`assert_unparsable_needs_other`]);
//! - [`documents`]: the document-driver kit (MongoDB):
//!   [`documents::DocumentKitHarness`] and [`documents::run_documents`];
//! - `server`: the test database servers: [`server_url`] (skip outside CI,
//!   fail under CI), [`ServerDatabase`] (a throwaway database dropped on
//!   drop), [`with_database`], [`unique_name`], [`block_on_own_thread`].
#![forbid(unsafe_code)]

mod calls;
mod checks;
pub mod documents;
mod fixture;
mod harness;
mod report;
mod server;

pub use calls::{
    assert_unparsable_needs_other, call, classes, database_config, placeholder, query, query_as,
};
pub use fixture::fixture_statements;
pub use harness::KitHarness;
pub use report::KitReport;
pub use server::{
    ServerDatabase, ServerError, block_on_own_thread, server_url, unique_name, with_database,
};

use ewii_driver_core::Limits;

use checks::{cancel, catalog, limits, query as queries, read_only, schema};
use harness::Kit;

/// Runs the whole kit against a driver.
pub async fn run(h: &dyn KitHarness) -> KitReport {
    let mut report = KitReport::new(h.driver().name());
    let base = match h.create_empty().await {
        Ok(c) => c,
        Err(e) => {
            report.push("create empty database", Err(e));
            return report;
        }
    };
    let kit = Kit { h, base };

    report.push("load fixture (read-write query)", fixture::load(&kit).await);
    if report.any_failed() {
        return report;
    }
    let ro = match kit.open(true, Limits::default()).await {
        Ok(db) => db,
        Err(e) => {
            report.push("open read-only", Err(e));
            return report;
        }
    };
    let ro = ro.as_ref();
    let r = &mut report;

    r.record("registered and found by name", catalog::registered(&kit))
        .await;
    r.record(
        "catalog advertises the standard tools",
        catalog::advertised(&kit),
    )
    .await;
    r.record(
        "check reports an engine-enforced read-only session",
        catalog::engine_read_only(ro),
    )
    .await;
    r.record("list_tables lists the fixture", schema::list_tables(ro))
        .await;
    r.record(
        "describe_table: columns, keys, indexes",
        schema::describe_table(ro),
    )
    .await;
    r.record(
        "describe_table of a missing table is NotFound",
        schema::describe_missing(ro),
    )
    .await;
    r.record(
        "query binds parameters and returns the right rows",
        queries::binds_parameters(&kit, ro),
    )
    .await;
    r.record(
        "NULL, text, integer and real map to JSON",
        queries::json_values(ro),
    )
    .await;
    r.record(
        "max_rows truncates with a notice and offset pages on",
        limits::max_rows(&kit),
    )
    .await;
    r.record("max_bytes truncates with a notice", limits::max_bytes(&kit))
        .await;
    r.record(
        "read-only: writes are refused by Ewii and data is unchanged",
        read_only::refused_by_ewii(&kit, ro),
    )
    .await;
    r.record(
        "read-only: the engine refuses writes even without the classifier",
        read_only::refused_by_engine(&kit, ro),
    )
    .await;
    r.record(
        "explain returns a plan; refuses writes on read-only",
        read_only::explain(&kit, ro),
    )
    .await;
    r.record("errors say what to fix", queries::errors(&kit, ro))
        .await;
    r.record(
        "read-write: writes run and report affected rows",
        queries::writes(&kit),
    )
    .await;
    r.record(
        "timeout cancels the statement on the server",
        cancel::timeout_and_cancel(&kit),
    )
    .await;

    ro.close().await;
    report
}
