//! Oracle Database driver for Ewii (the `oracle` crate over ODPI-C).
//!
//! Oracle Client libraries are loaded at run time: install Oracle Instant
//! Client (Basic or Basic Light) and set `LD_LIBRARY_PATH` to its directory
//! (or `ORACLE_HOME` to a full client). Without it, every call and
//! `test-database` fail with an error that says exactly that (DPI-1047).
//!
//! Tools: `query` (parameters `:1`, `:2`, … or `:name`; each distinct name
//! is one parameter, in order of first appearance), `list_schemas`,
//! `list_tables`, `describe_table`, `explain` (`EXPLAIN PLAN` +
//! `DBMS_XPLAN.DISPLAY`, rolled back; `analyze` on read-write databases runs
//! the statement and shows `DBMS_XPLAN.DISPLAY_CURSOR`).
//!
//! URL: `oracle://USER@HOST[:1521]/SERVICE_NAME[?protocol=tcps]` (see
//! `url`); the password goes on standard input with `add-database
//! --password-stdin`.
//!
//! Read-only, two fences, each on its own:
//! - the classifier, in the Oracle dialect (`SqlDialect::Oracle`): PL/SQL
//!   blocks, `CALL`, `EXECUTE IMMEDIATE`, `SELECT … FOR UPDATE`,
//!   `DBMS_…`/`UTL_…` packages, database links and every function that is
//!   not an allow-listed built-in (an autonomous-transaction function would
//!   commit) are refused;
//! - the engine: every call runs on its own connection in `SET TRANSACTION
//!   READ ONLY`, always rolled back.
//!
//! Time limit and cancellation: the Oracle call timeout is set to the
//! database's limit, and a client cancellation or the backstop sends a
//! break (`Connection::break_execution`) that stops the statement.
//!
//! # Modules
//!
//! - `url`: the URL and its Easy Connect string;
//! - `client`: the Oracle Client (the DPI-1047 message), one call's
//!   session on a blocking thread, break and call timeout;
//! - `query`: `query` and `explain`;
//! - `values`: Oracle values → JSON (the table is in that module);
//! - `catalog`: `list_schemas`, `list_tables`, `describe_table`;
//! - `check`: version and the user's privileges.
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod client;
mod query;
pub mod url;
mod values;

use std::sync::Arc;

use async_trait::async_trait;
use ewii_driver_core::schema::{
    DescribeTableArgs, ExplainArgs, ExplainResult, ListSchemasArgs, ListSchemasResult,
    ListTablesArgs, ListTablesResult, QueryArgs, QueryResult, StandardTool, TableDescription,
};
use ewii_driver_core::{
    CallContext, CheckReport, Database, DatabaseConfig, Driver, DriverError, DriverRegistration,
    Limits, SqlDialect, ToolError,
};

/// The Oracle driver.
pub struct OracleDriver;

/// The registered instance.
pub static ORACLE_DRIVER: OracleDriver = OracleDriver;

inventory::submit!(DriverRegistration(&ORACLE_DRIVER));

const DIALECT: &str = "Oracle SQL";

#[async_trait]
impl Driver for OracleDriver {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn example_url(&self) -> &'static str {
        url::EXAMPLE_URL
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        Ok(Arc::new(OracleDatabase {
            target: url::parse(config.url.expose())?,
            read_only: config.read_only,
            limits: config.limits,
        }))
    }
}

/// Runs `sql` on exactly the session a read-only call of `config` gets —
/// its own connection in `SET TRANSACTION READ ONLY`, rolled back — without
/// the classifier: the driver test kit's proof of the engine fence. `Err`
/// is the engine's refusal.
pub async fn run_unguarded_read_only(config: &DatabaseConfig, sql: &str) -> Result<(), String> {
    let target = url::parse(config.url.expose()).map_err(|e| e.to_string())?;
    let limit = config.limits.timeout;
    let sql = sql.to_owned();
    client::with_session(&target, &CallContext::default(), limit, true, move |conn| {
        conn.execute(&sql, &[])
            .map(|_| ((), false))
            .map_err(|e| client::statement_error(&e, limit))
    })
    .await
    .map_err(|e| e.to_string())
}

/// One attached Oracle database. Connections are opened per call.
pub(crate) struct OracleDatabase {
    pub(crate) target: url::Target,
    pub(crate) read_only: bool,
    pub(crate) limits: Limits,
}

#[async_trait]
impl Database for OracleDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::SQL
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::Oracle)
    }

    async fn check(&self) -> Result<CheckReport, DriverError> {
        self.check_database().await
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
        self.describe(ctx, args).await
    }

    async fn explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        self.run_explain(args, ctx).await
    }
}
