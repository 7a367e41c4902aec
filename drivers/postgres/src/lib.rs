//! PostgreSQL driver for Ewii (sqlx).
//!
//! Tools: `query`, `list_schemas`, `list_tables`, `describe_table`,
//! `explain`.
//!
//! Every call runs in its own transaction: `BEGIN READ ONLY` on read-only
//! databases, and for a call whose agent may only read (the hub's
//! `ewii/statements` meta allows none of `write`, `ddl`, `other`) on a
//! read-write database, so the engine refuses writes whatever the statement
//! is — a user-defined function that deletes rows fails inside the engine.
//! Transactions are opened with
//! `SET LOCAL statement_timeout` so the server itself stops a statement at the
//! limit, and a snapshot taken before the agent's statement so a
//! `SET transaction_read_only = off` cannot flip the transaction. A client
//! cancellation or a missed server timeout sends `pg_cancel_backend` from a
//! separate connection. Read-only transactions are always rolled back.
//!
//! Statements are classified once, in the PostgreSQL dialect
//! ([`ewii_driver_core::vet_statement`]): the class must be one the call is
//! allowed, and a statement the classifier cannot parse is refused unless
//! the call is allowed `other` (a direct call without the hub's meta is
//! refused too).
//!
//! No session state survives a call. After the transaction ends, the
//! connection is reset before it goes back to the pool:
//! `pg_advisory_unlock_all()` (session advisory locks, exclusive and
//! shared), `CLOSE ALL` (cursors `WITH HOLD`), `UNLISTEN *`, `RESET ALL`
//! (settings changed with `set_config(…, false)`), `DISCARD TEMP`
//! (temporary tables) and `DISCARD SEQUENCES` (`currval` state).
//! `DISCARD ALL` is not used: it would also deallocate the prepared
//! statements sqlx keeps cached on the connection. A call whose statement
//! is of class `other` (which may `PREPARE`, `SET ROLE`, `LISTEN`…) or any
//! failed reset closes the connection instead.
//!
//! JSON mapping of result values:
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | `smallint`, `integer`, `bigint`, `oid` | number |
//! | `real`, `double precision` | number (`NaN`/`Infinity` as strings) |
//! | `numeric` | string, exact (no float rounding) |
//! | `boolean` | `true` / `false` |
//! | `text`, `varchar`, `char`, `name`, `citext` | string |
//! | `date` | `"YYYY-MM-DD"` |
//! | `time` | `"HH:MM:SS[.ffffff]"` |
//! | `timestamp` | `"YYYY-MM-DDTHH:MM:SS[.ffffff]"` (no zone) |
//! | `timestamptz` | RFC 3339 in UTC, `"…Z"` |
//! | `json`, `jsonb` | the JSON value itself |
//! | `uuid` | string |
//! | `bytea` | base64 string |
//! | arrays of the above | JSON array (NULL elements as `null`) |
//! | NULL | `null` |
//! | anything else (`interval`, enums, ranges…) | a string asking to cast it, e.g. `col::text` |
//!
//! # Modules
//!
//! - `session`: one call's connection and transaction, and the reset after
//!   it;
//! - `query`: `query` and `explain`, vetted and run in a session;
//! - `params`: binding parameters as the types the server inferred;
//! - `values`: result values → JSON (the table above);
//! - `catalog`: `list_schemas`, `list_tables`, `describe_table`;
//! - `check`: server version, read-only mode and privilege warnings;
//! - `errors`: engine errors as messages that say what to fix.
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod errors;
mod params;
mod query;
mod session;
mod values;

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
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Postgres};

use crate::errors::strip_url;

/// The PostgreSQL driver.
pub struct PostgresDriver;

/// The registered instance.
pub static POSTGRES_DRIVER: PostgresDriver = PostgresDriver;

inventory::submit!(DriverRegistration(&POSTGRES_DRIVER));

const DIALECT: &str = "PostgreSQL";

#[async_trait]
impl Driver for PostgresDriver {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn example_url(&self) -> &'static str {
        "postgres://reader@db.internal:5432/app?sslmode=require"
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        let options = connect_options(config)?;
        let pool = pool_options::<Postgres>()
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone());
        Ok(Arc::new(PgDatabase {
            pool,
            options,
            read_only: config.read_only,
            limits: config.limits,
        }))
    }
}

/// The connection settings the driver uses for `config`.
pub fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, DriverError> {
    let url = config.url.expose();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(DriverError::BadUrl(format!(
            "a PostgreSQL URL starts with postgres:// (e.g. {})",
            POSTGRES_DRIVER.example_url()
        )));
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        DriverError::BadUrl(format!(
            "{}; expected e.g. {}",
            strip_url(&e.to_string()),
            POSTGRES_DRIVER.example_url()
        ))
    })?;
    Ok(options
        .application_name("ewii")
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// One open PostgreSQL database.
pub(crate) struct PgDatabase {
    pub(crate) pool: PgPool,
    pub(crate) options: PgConnectOptions,
    pub(crate) read_only: bool,
    pub(crate) limits: Limits,
}

#[async_trait]
impl Database for PgDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::SQL
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::Postgres)
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
            schemas: catalog::schemas(self, ctx).await?,
        })
    }

    async fn list_tables(
        &self,
        args: ListTablesArgs,
        ctx: &CallContext,
    ) -> Result<ListTablesResult, ToolError> {
        Ok(ListTablesResult {
            tables: catalog::tables(self, ctx, args.schema.as_deref()).await?,
        })
    }

    async fn describe_table(
        &self,
        args: DescribeTableArgs,
        ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        let mut s = self.session(ctx).await?;
        let result = catalog::describe(&mut s, &args).await;
        self.finish(s, false, true).await;
        result
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
