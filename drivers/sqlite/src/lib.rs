//! SQLite driver for Ewii (sqlx, SQLite bundled).
//!
//! Tools: `query`, `list_schemas`, `list_tables`, `describe_table`,
//! `explain`.
//!
//! Read-only databases are held read-only by the engine, not only by the
//! statement classifier: the file is opened with `SQLITE_OPEN_READONLY`
//! and every connection runs `PRAGMA query_only = ON`. Time limits and
//! client cancellation interrupt the running statement through SQLite's
//! progress handler, so a cancelled statement stops inside the engine.
//!
//! A call from the hub whose agent may only read (its `ewii/statements`
//! meta allows none of `write`, `ddl`, `other`) runs with
//! `PRAGMA query_only = ON` on a read-write database too, set for that call
//! and reset after it; a trigger or anything else that would write fails
//! in the engine. If the reset fails, the connection is closed.
//!
//! Statements are classified once, in the SQLite dialect
//! ([`ewii_driver_core::vet_statement`]): the class must be one the call is
//! allowed, and what the classifier cannot parse is refused unless the call
//! is allowed `other` (a direct call without the hub's meta is refused too).
//!
//! No state survives a call: a statement of class `ddl` or `other` (a
//! temporary table, `ATTACH`, a `PRAGMA`) closes its connection after the
//! call instead of returning it to the pool.
//!
//! # Modules
//!
//! - `session`: one call's guarded connection (progress handler,
//!   `query_only`, reuse or close);
//! - `query`: `query` and `explain`, vetted and run on a guarded
//!   connection;
//! - `values`: result values → JSON by their stored type;
//! - `catalog`: `list_schemas`, `list_tables`, `describe_table`;
//! - `check`: the SQLite version and the engine's read-only mode.
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod query;
mod session;
mod values;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ewii_driver_core::schema::{
    DescribeTableArgs, ExplainArgs, ExplainResult, ListSchemasArgs, ListSchemasResult,
    ListTablesArgs, ListTablesResult, QueryArgs, QueryResult, StandardTool, TableDescription,
};
use ewii_driver_core::sqlx_exec::pool_options;
use ewii_driver_core::{
    CallContext, CheckReport, Database, DatabaseConfig, Driver, DriverError, DriverRegistration,
    Limits, SqlDialect, ToolError,
};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

/// The SQLite driver.
pub struct SqliteDriver;

/// The registered instance.
pub static SQLITE_DRIVER: SqliteDriver = SqliteDriver;

inventory::submit!(DriverRegistration(&SQLITE_DRIVER));

const DIALECT: &str = "SQLite";

#[async_trait]
impl Driver for SqliteDriver {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn example_url(&self) -> &'static str {
        "sqlite:///var/lib/app/shop.db"
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        let options = connect_options(config)?;
        let pool = pool_options::<Sqlite>().connect_lazy_with(options);
        Ok(Arc::new(SqliteDatabase {
            pool,
            read_only: config.read_only,
            limits: config.limits,
        }))
    }
}

/// The exact engine settings the driver opens `config` with: read-only
/// configurations get `SQLITE_OPEN_READONLY` and `PRAGMA query_only = ON`.
///
/// Public so that tests can prove the engine refuses writes on its own.
pub fn connect_options(config: &DatabaseConfig) -> Result<SqliteConnectOptions, DriverError> {
    let url = config.url.expose();
    let spec = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            DriverError::BadUrl(format!(
                "a SQLite URL starts with sqlite:// (e.g. {})",
                SQLITE_DRIVER.example_url()
            ))
        })?;
    let path_part = spec.split('?').next().unwrap_or_default();
    if path_part.is_empty() || path_part == ":memory:" || spec.contains("mode=memory") {
        return Err(DriverError::BadUrl(
            "an in-memory SQLite database holds no data to serve; give the path of a database \
             file (e.g. sqlite:///var/lib/app/shop.db)"
                .into(),
        ));
    }
    let options =
        SqliteConnectOptions::from_str(url).map_err(|e| DriverError::BadUrl(format!("{e}")))?;
    let file = options.get_filename();
    if !Path::new(file).exists() {
        return Err(DriverError::Connect(format!(
            "the database file {} does not exist; check the path (Ewii never creates a database \
             file)",
            file.display()
        )));
    }
    let mut options = options
        .create_if_missing(false)
        .read_only(config.read_only)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    if config.read_only {
        options = options.pragma("query_only", "ON");
    }
    Ok(options)
}

/// One open SQLite database file.
pub(crate) struct SqliteDatabase {
    pub(crate) pool: SqlitePool,
    pub(crate) read_only: bool,
    pub(crate) limits: Limits,
}

#[async_trait]
impl Database for SqliteDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::SQL
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::Sqlite)
    }

    async fn check(&self) -> Result<CheckReport, DriverError> {
        check::check(self).await
    }

    async fn query(&self, args: QueryArgs, ctx: &CallContext) -> Result<QueryResult, ToolError> {
        self.run_query(args, ctx).await
    }

    async fn list_schemas(
        &self,
        _args: ListSchemasArgs,
        ctx: &CallContext,
    ) -> Result<ListSchemasResult, ToolError> {
        Ok(ListSchemasResult {
            schemas: self.schemas(ctx).await?,
        })
    }

    async fn list_tables(
        &self,
        args: ListTablesArgs,
        ctx: &CallContext,
    ) -> Result<ListTablesResult, ToolError> {
        Ok(ListTablesResult {
            tables: self.tables(ctx, args.schema).await?,
        })
    }

    async fn describe_table(
        &self,
        args: DescribeTableArgs,
        ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        self.describe(args, ctx).await
    }

    async fn explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        self.run_explain(args, ctx).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
