//! Microsoft SQL Server driver for Ewii (tiberius, TDS 8.0 over rustls/ring).
//!
//! Tools: `query` (parameters `@P1`, `@P2`, … bound in order), `list_schemas`,
//! `list_tables`, `describe_table`, `explain` (the estimated plan as SHOWPLAN
//! XML; `analyze` on read-write databases runs the statement under
//! `SET STATISTICS XML ON` and rolls it back).
//!
//! URL: `mssql://USER@HOST[:1433]/DATABASE[?encrypt=strict|false&ca=…&server_name=…]`
//! (see `url`); the password goes on standard input with
//! `add-database --password-stdin`. SQL Server authentication only.
//!
//! Transport: TDS 8.0 strict encryption by default — TLS 1.3 (ring) with ALPN
//! `tds/8.0` before the first TDS byte, the certificate verified; plaintext
//! only with an explicit `encrypt=false`, warned about on every connection
//! and by `test-database`. Why this crate wraps the stream itself instead of
//! using tiberius's `rustls` feature: that feature compiles aws-lc-rs, a
//! second crypto provider, into every binary (see `tls`).
//!
//! Read-only, two fences, each on its own:
//! - the classifier, in the T-SQL dialect ([`ewii_driver_core::vet_statement`]
//!   with `SqlDialect::MsSql`): one statement, a plain read; `EXEC`, `xp_`/
//!   `sp_` procedures, `OPENROWSET`/`OPENQUERY`/`OPENDATASOURCE`, `SELECT …
//!   INTO`, `BULK INSERT`, `WAITFOR`, stacked batches and `GO` refused;
//! - the engine: SQL Server has no read-only transaction, so every call runs
//!   on its own connection inside a transaction with `SET XACT_ABORT ON` and
//!   `SET LOCK_TIMEOUT`, always rolled back for a read-only call; and
//!   `test-database` warns unless the login holds nothing beyond
//!   `db_datareader` (`IS_ROLEMEMBER`, `fn_my_permissions`) — the login is
//!   what holds against what a rollback cannot undo.
//!
//! Time limit and cancellation: the call's future is dropped at the limit
//! or on cancellation, and a TDS attention (`Client::cancel_query`) stops the
//! statement on the server; a result cut at the row or byte limit is
//! stopped the same way. Lock waits end at `LOCK_TIMEOUT`.
//!
//! # Modules
//!
//! - `url`: the URL and its parameters;
//! - `tls`: TCP and TDS 8.0 strict TLS (ring);
//! - `session`: one call's connection and transaction, attention, the end;
//! - `query`: `query` and `explain`;
//! - `values`: `ColumnData` → JSON (the table is in that module);
//! - `catalog`: `list_schemas`, `list_tables`, `describe_table`;
//! - `check`: version and the login's privileges;
//! - `errors`: engine errors as messages that say what to fix.
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod errors;
mod query;
mod session;
mod tls;
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
use rustls::ClientConfig;

/// The SQL Server driver.
pub struct MssqlDriver;

/// The registered instance.
pub static MSSQL_DRIVER: MssqlDriver = MssqlDriver;

inventory::submit!(DriverRegistration(&MSSQL_DRIVER));

const DIALECT: &str = "T-SQL (SQL Server)";

#[async_trait]
impl Driver for MssqlDriver {
    fn name(&self) -> &'static str {
        "mssql"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn example_url(&self) -> &'static str {
        url::EXAMPLE_URL
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        Ok(Arc::new(MssqlDatabase::new(config)?))
    }
}

/// Runs `sql` on exactly the session a read-only call of `config` gets —
/// its own connection, `SET XACT_ABORT ON`, `SET LOCK_TIMEOUT`, a
/// transaction that is rolled back — without the classifier: the driver
/// test kit's proof of the engine fence. `Err` when the engine refused the
/// statement or the rollback held it (the transaction was still Ewii's when
/// it ended); `Ok` only when the statement escaped the transaction.
pub async fn run_unguarded_read_only(config: &DatabaseConfig, sql: &str) -> Result<(), String> {
    let db = MssqlDatabase::new(config).map_err(|e| e.to_string())?;
    let mut s = db.session(true).await.map_err(|e| e.to_string())?;
    let ran = async {
        let stream = s.client.simple_query(sql).await?;
        stream.into_results().await.map(|_| ())
    }
    .await
    .map_err(|e| e.to_string());
    let held = session::still_in_transaction(&mut s.client)
        .await
        .unwrap_or(false);
    db.finish(s, false).await;
    match (ran, held) {
        (Err(e), _) => Err(e),
        (Ok(()), true) => Err("ran inside the call's transaction and was rolled back".into()),
        (Ok(()), false) => Ok(()),
    }
}

/// One attached SQL Server database. Connections are opened per call.
pub(crate) struct MssqlDatabase {
    pub(crate) target: url::Target,
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) read_only: bool,
    pub(crate) limits: Limits,
}

impl MssqlDatabase {
    /// The database of `config`: its URL parsed, its TLS configuration built.
    fn new(config: &DatabaseConfig) -> Result<MssqlDatabase, DriverError> {
        let target = url::parse(config.url.expose())?;
        let tls = match target.encryption {
            url::Encryption::Strict => Some(tls::client_config(&target)?),
            url::Encryption::Plaintext => None,
        };
        Ok(MssqlDatabase {
            target,
            tls,
            read_only: config.read_only,
            limits: config.limits,
        })
    }
}

#[async_trait]
impl Database for MssqlDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::SQL
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::MsSql)
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
        _ctx: &CallContext,
    ) -> Result<ListSchemasResult, ToolError> {
        Ok(ListSchemasResult {
            schemas: self.schemas().await?,
        })
    }

    async fn list_tables(
        &self,
        args: ListTablesArgs,
        _ctx: &CallContext,
    ) -> Result<ListTablesResult, ToolError> {
        Ok(ListTablesResult {
            tables: self.tables(args.schema.as_deref()).await?,
        })
    }

    async fn describe_table(
        &self,
        args: DescribeTableArgs,
        _ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        self.describe(&args).await
    }

    async fn explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        self.run_explain(args, ctx).await
    }
}
