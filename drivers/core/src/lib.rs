//! The Ewii driver plugin API.
//!
//! A driver turns one kind of database into the standard tools of
//! [`ewii_tools_schema`]. This crate holds everything drivers share, one
//! module per concern:
//!
//! - `driver`: [`Driver`] and [`Database`], the two traits a driver
//!   implements, [`DriverRegistration`], submitted with `inventory::submit!`
//!   so that a new driver is a new crate and nothing else, [`CallContext`]
//!   and [`dispatch`];
//! - `config`: [`DatabaseConfig`] and [`Limits`], what the adapter hands a
//!   driver (its URL a [`SecretString`]);
//! - `catalog`: [`Catalog`], which builds a deployment's tool catalog from
//!   its configured databases and routes `tools/call` to the right one;
//! - `classify`: the statement classifier ([`classify()`],
//!   [`vet_statement`]) that gives clear errors before a read-only engine
//!   refuses a write, and the document tools' fence ([`classify_document_call`]);
//! - `bounded`: [`ResultBuilder`], the one implementation of row/byte limits
//!   and paging;
//! - [`values`]: how engine values JSON has no form for are shown;
//! - `error`: [`ToolError`] and [`DriverError`];
//! - `sqlx_exec` (feature `sqlx`): what the sqlx-based drivers share — the
//!   pool's shape, binding parameters by value type, the engine's
//!   placeholder count, and running a statement into a [`ResultBuilder`].
//!
//! The driver test kit every driver passes is the `ewii-driver-kit` crate
//! (`conformance/driver-kit/`).
#![forbid(unsafe_code)]

mod bounded;
mod catalog;
mod classify;
mod config;
mod driver;
mod error;
#[cfg(feature = "sqlx")]
pub mod sqlx_exec;
pub mod values;

pub use bounded::{Next, ResultBuilder, byte_truncation, row_size};
pub use catalog::{Catalog, CatalogChange, CatalogEntry, ResolvedTool};
pub use classify::{
    Classification, DocumentRefusal, DocumentVerdict, SqlDialect, StatementClass, StatementClasses,
    Vetted, check_param_count, check_read_only, classify, classify_document_call, fence_filter,
    fence_pipeline, vet_statement, vet_with_params,
};
pub use config::{DatabaseConfig, Limits, mask_url};
pub use driver::{
    CallContext, CheckReport, DIALECT_META, Database, Driver, DriverRegistration, KNOWN_DRIVERS,
    STATEMENTS_META, dispatch, find_driver, registered_drivers,
};
pub use error::{DriverError, ToolError};

pub use ewii_tools_schema as schema;
/// The secret type of [`DatabaseConfig::url`], defined with the catalog
/// contract in [`ewii_tools_schema`] so that drivers, adapter and hub share
/// it without the MCP server stack.
pub use ewii_tools_schema::SecretString;
pub use inventory;
