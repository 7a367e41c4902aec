//! MySQL and MariaDB driver for Ewii (sqlx), selected by `--driver mysql` or
//! `--driver mariadb`.
//!
//! Tools: `query`, `list_schemas`, `list_tables`, `describe_table`,
//! `explain` (`EXPLAIN FORMAT=JSON`, format `mysql-json`; with `analyze`,
//! on read-write databases and for reads only: MariaDB `ANALYZE
//! FORMAT=JSON`, format `mariadb-analyze-json`, or MySQL `EXPLAIN ANALYZE`,
//! format `mysql-analyze-tree` with the text tree as a JSON string). A
//! schema is a MySQL database; without an explicit `schema`, tools work on
//! the URL's database.
//!
//! # Read-only databases
//!
//! The engine holds a read-only database read-only, not only the statement
//! classifier: every call runs inside `START TRANSACTION READ ONLY` with the
//! session's default transaction mode also set to `READ ONLY` (a DDL
//! statement implicitly commits the open transaction and runs outside it;
//! with the session default read-only, the server refuses it too), and ends
//! with `ROLLBACK`. In front of that, Ewii's classifier refuses anything but
//! a single read, and a MySQL-specific check refuses what a read-only
//! transaction does not stop: server file access (`INTO OUTFILE`,
//! `LOAD_FILE()`, `LOAD DATA INFILE`), user locks (`GET_LOCK()`) and
//! executable comments (`/*! … */`, `/*M! … */`). Sessions also clear the
//! `sql_mode` flags that change how the server splits SQL into tokens
//! (`NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`), so the server reads a statement
//! exactly as the classifier did. `check` warns when the account of a
//! read-only database holds write privileges.
//!
//! # Calls that may only read, on read-write databases
//!
//! A call from the hub carries the agent's allowed statement classes
//! (`ewii/statements`). When they allow none of `write`, `ddl` and `other`,
//! the call runs exactly like one on a read-only database: read-only
//! session default and `START TRANSACTION READ ONLY`, rolled back, and the
//! file/lock word check above. A stored function that deletes rows then
//! fails inside the server (error 1792). Other calls on a read-write
//! database set the session default back to `READ WRITE` first, so a
//! pooled connection never carries one call's mode into the next.
//!
//! Statements are classified once, in the MySQL dialect
//! ([`ewii_driver_core::vet_statement`]): the class must be one the call is
//! allowed, and what the classifier cannot parse is refused unless the call
//! is allowed `other` (a direct call without the hub's meta is refused too).
//!
//! # No state survives a call
//!
//! sqlx exposes no `COM_RESET_CONNECTION`, and nothing short of it clears
//! user variables, temporary tables, user locks (`GET_LOCK()`), prepared
//! statements and session settings together. So the connection that ran
//! an agent's statement (`query`, `explain`) is closed after the call, not
//! returned to the pool: whatever the statement left on the session ends
//! with it. Only connections that ran Ewii's own catalog queries are
//! reused.
//!
//! # Time limits and cancellation
//!
//! Each call sets the server's own statement limit (`max_statement_time` on
//! MariaDB, `max_execution_time` on MySQL, which covers `SELECT` only) and
//! keeps a client-side backstop: if the client cancels, or the statement
//! is still running shortly after the deadline, `KILL QUERY` is sent from
//! a separate connection and the call's connection is closed instead of
//! being returned to the pool.
//!
//! # Values
//!
//! Statements run as prepared statements (which also means the server
//! accepts exactly one statement per call); values are bound, never
//! spliced into the SQL. Results map to JSON as follows:
//!
//! | MySQL / MariaDB type                             | JSON                                             |
//! |--------------------------------------------------|--------------------------------------------------|
//! | `TINYINT` … `BIGINT`, signed or unsigned          | number; an unsigned value above 2^63−1 is a string |
//! | `BOOL` / `BOOLEAN` (= `TINYINT(1)`)               | number `0`/`1` (the column can hold −128…127)    |
//! | `BIT(n)`                                         | number (the bits as an unsigned integer)         |
//! | `YEAR`                                           | number                                           |
//! | `DECIMAL` / `NUMERIC`                            | string, the server's exact digits (`"12.3400"`)  |
//! | `FLOAT`                                          | number, shortest form (`0.1`)                    |
//! | `DOUBLE`                                         | number                                           |
//! | `DATE`                                           | string `"YYYY-MM-DD"`                            |
//! | `DATETIME`                                       | string `"YYYY-MM-DDTHH:MM:SS[.ffffff]"` (no zone) |
//! | `TIMESTAMP`                                      | string `"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"` (UTC)   |
//! | `TIME`                                           | string `"[-]HH:MM:SS[.ffffff]"` (hours may exceed 24) |
//! | `JSON` (MySQL type or MariaDB JSON column)       | the JSON value itself                            |
//! | `CHAR`, `VARCHAR`, `TEXT`, `ENUM`, `SET`, `UUID`, `INET6` | string                                  |
//! | `BINARY`, `VARBINARY`, `BLOB`, `GEOMETRY`         | string, base64                                   |
//! | `NULL`                                           | `null`                                           |
//!
//! Zero dates show as `0000-00-00`. A UUID kept in `BINARY(16)` is binary
//! data (base64); `BIN_TO_UUID()`/`HEX()` give text. On MariaDB, JSON
//! *functions* (`JSON_OBJECT()` …) return text, which stays a string: only
//! JSON columns are recognised (by their `json_valid` check).
//!
//! Parameters bind as: `null` → NULL, boolean → `TINYINT` 1/0, integer →
//! `BIGINT`, number → `DOUBLE`, string → `VARCHAR` (also for dates,
//! decimals and UUIDs).
//!
//! # Modules
//!
//! - `session`: one call's connection — the statement time limit, the
//!   read-only transaction, `KILL QUERY` at the deadline or on
//!   cancellation, reuse or close;
//! - `fence`: the MySQL-specific check of file and lock words for calls
//!   that run read-only;
//! - `values`: result values → JSON (the table above);
//! - `catalog`: `list_schemas`, `list_tables`, `describe_table` from
//!   `information_schema`;
//! - `check`: server version, read-only probe and privilege warnings;
//! - `errors`: engine errors as messages that say what to fix.
//!
//! This file holds the driver, its connection settings and session setup
//! (`init_connection`, `begin_read_only`, `session_read_write`), the server
//! flavour, and the `Database` implementation (`query`, `explain`).
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod errors;
mod fence;
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
use ewii_driver_core::sqlx_exec::{bind_by_value, pool_options};
use ewii_driver_core::{
    CallContext, CheckReport, Database, DatabaseConfig, Driver, DriverError, DriverRegistration,
    Limits, ResultBuilder, SecretString, SqlDialect, StatementClass, StatementClasses, ToolError,
    Vetted, vet_statement,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, Column, MySql, Row, Type};
use tokio::sync::OnceCell;

use crate::session::Session;

/// The MySQL/MariaDB driver.
pub struct MySqlDriver;

/// The registered instance.
pub static MYSQL_DRIVER: MySqlDriver = MySqlDriver;

inventory::submit!(DriverRegistration(&MYSQL_DRIVER));

const DIALECT: &str = "MySQL/MariaDB";
const EXAMPLE_URL: &str = "mysql://reader:secret@db:3306/app";

/// Longest a call waits for a pooled connection (connecting included).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// `sql_mode` flags that change how the server tokenises SQL. With them
/// the server could read as code what the classifier read as a string
/// (`'a\' …'` without backslash escapes; `"…"` as an identifier), so every
/// session clears them. `ANSI` and the other combination modes include
/// `ANSI_QUOTES` and would bring it back.
const TOKENIZER_MODES: &[&str] = &[
    "NO_BACKSLASH_ESCAPES",
    "ANSI_QUOTES",
    "ANSI",
    "DB2",
    "MAXDB",
    "MSSQL",
    "ORACLE",
    "POSTGRESQL",
];

#[async_trait]
impl Driver for MySqlDriver {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["mariadb"]
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn example_url(&self) -> &'static str {
        EXAMPLE_URL
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        let options = connect_options(config)?;
        let pool = pool_options::<MySql>()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| Box::pin(async move { init_connection(conn).await }))
            .connect_lazy_with(options.clone());
        Ok(Arc::new(MySqlDatabase {
            pool,
            options: Arc::new(options),
            read_only: config.read_only,
            limits: config.limits,
            flavor: OnceCell::new(),
        }))
    }
}

/// The connection settings the driver derives from `config.url`
/// (`mysql://` or `mariadb://`). `TIMESTAMP` values are read in UTC.
///
/// Public so that tests can open sessions exactly like the driver's.
pub fn connect_options(config: &DatabaseConfig) -> Result<MySqlConnectOptions, DriverError> {
    let url = config.url.expose();
    let rest = ["mysql://", "mariadb://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| {
            DriverError::BadUrl(format!(
                "a MySQL/MariaDB URL starts with mysql:// or mariadb:// (e.g. {EXAMPLE_URL})"
            ))
        })?;
    // sqlx knows only the mysql scheme. The copy holds the password, so it
    // lives in a SecretString (zeroised on drop).
    let normalized = SecretString::new(format!("mysql://{rest}"));
    let options = MySqlConnectOptions::from_str(normalized.expose()).map_err(|e| {
        // sqlx's URL errors name the problem ("invalid port number"), never
        // the URL itself.
        DriverError::BadUrl(errors::one_line(&format!(
            "{e}; the expected form is {EXAMPLE_URL}"
        )))
    })?;
    Ok(options.timezone(Some("+00:00".to_owned())))
}

/// Runs on every new connection: clears the `sql_mode` flags that would
/// make the server tokenise SQL differently from Ewii's classifier.
pub async fn init_connection(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    let row = sqlx::query("SELECT @@SESSION.sql_mode")
        .fetch_one(&mut *conn)
        .await?;
    let mode = text(&row, 0).unwrap_or_default();
    let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
    let kept: Vec<&str> = modes
        .iter()
        .copied()
        .filter(|m| !TOKENIZER_MODES.iter().any(|t| t.eq_ignore_ascii_case(m)))
        .collect();
    if kept.len() != modes.len() {
        sqlx::query("SET SESSION sql_mode = ?")
            .bind(kept.join(","))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Opens the read-only transaction every call on a read-only database runs
/// in. The session default is set to READ ONLY as well: a DDL statement
/// implicitly commits the open transaction and runs outside it, and only
/// the session default makes the server refuse it then.
pub async fn begin_read_only(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("SET SESSION TRANSACTION READ ONLY; START TRANSACTION READ ONLY")
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets the session default back to read-write for a call that may write:
/// a pooled connection may come from a read-only call.
pub async fn session_read_write(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("SET SESSION TRANSACTION READ WRITE")
        .execute(conn)
        .await?;
    Ok(())
}

/// MySQL or MariaDB: they differ in the statement time limit and in how
/// JSON columns are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// MariaDB.
    MariaDb,
    /// MySQL (and compatible servers).
    MySql,
}

impl Flavor {
    /// The flavour of a `SELECT VERSION()` answer.
    pub(crate) fn of(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }

    /// `MariaDB 10.11.6` / `MySQL 8.0.36`.
    pub(crate) fn server_version(self, version: &str) -> String {
        let number = version.split('-').next().unwrap_or(version);
        match self {
            Flavor::MariaDb => format!("MariaDB {number}"),
            Flavor::MySql => format!("MySQL {number}"),
        }
    }

    /// The statement that makes the server stop statements at `limit`.
    pub(crate) fn time_limit_sql(self, limit: Duration) -> String {
        match self {
            // Seconds with microsecond precision; 0 would mean "no limit".
            Flavor::MariaDb => format!(
                "SET SESSION max_statement_time = {:.3}",
                limit.as_secs_f64().max(0.001)
            ),
            // Milliseconds, SELECT only: the client-side KILL covers the rest.
            Flavor::MySql => format!(
                "SET SESSION max_execution_time = {}",
                limit.as_millis().clamp(1, u128::from(u32::MAX))
            ),
        }
    }
}

/// One open MySQL/MariaDB database.
pub(crate) struct MySqlDatabase {
    pub(crate) pool: MySqlPool,
    pub(crate) options: Arc<MySqlConnectOptions>,
    pub(crate) read_only: bool,
    pub(crate) limits: Limits,
    flavor: OnceCell<Flavor>,
}

impl MySqlDatabase {
    /// The server flavour, asked once.
    pub(crate) async fn flavor(&self, conn: &mut MySqlConnection) -> Result<Flavor, sqlx::Error> {
        self.flavor
            .get_or_try_init(async || {
                let row = sqlx::query("SELECT VERSION()").fetch_one(conn).await?;
                Ok(Flavor::of(&text(&row, 0).unwrap_or_default()))
            })
            .await
            .copied()
    }

    /// Runs Ewii's own catalog queries in a session of their own.
    async fn in_session<T>(
        &self,
        ctx: &CallContext,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, ToolError>,
    ) -> Result<T, ToolError> {
        let mut session = Session::open(self, ctx).await?;
        let outcome = work(&mut session).await;
        session.finish().await;
        outcome
    }

    pub(crate) fn remember_flavor(&self, flavor: Flavor) {
        // Already known: it cannot have changed for the same server.
        let _ = self.flavor.set(flavor);
    }

    /// EXPLAIN ANALYZE runs the statement: only reads, and only on
    /// read-write databases. A write is not offered because MySQL cannot
    /// promise to roll it back (DDL commits implicitly; MyISAM and Aria
    /// tables are not transactional).
    fn refuse_unsafe_analyze(&self, class: StatementClass) -> Result<(), ToolError> {
        if self.read_only {
            return Err(ToolError::analyze_on_read_only());
        }
        if class != StatementClass::Read {
            return Err(ToolError::Refused {
                reason: "EXPLAIN ANALYZE runs the statement, and MySQL/MariaDB cannot promise to \
                         roll a write back (DDL commits implicitly; MyISAM and Aria tables are \
                         not transactional): analyze only SELECT statements, or call explain \
                         without `analyze`"
                    .into(),
            });
        }
        Ok(())
    }

    /// Checks a statement before it reaches the engine: the file and lock
    /// words for calls that run read-only, then the shared classifier with
    /// the call's allowed classes.
    fn vet(
        &self,
        sql: &str,
        allowed: Option<StatementClasses>,
        engine_read_only: bool,
    ) -> Result<Vetted, ToolError> {
        if engine_read_only {
            fence::refuse_server_side_effects(sql)?;
        }
        vet_statement(sql, SqlDialect::MySql, self.read_only, allowed)
    }
}

#[async_trait]
impl Database for MySqlDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::SQL
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::MySql)
    }

    async fn check(&self) -> Result<CheckReport, DriverError> {
        check::check(self).await
    }

    async fn query(&self, args: QueryArgs, ctx: &CallContext) -> Result<QueryResult, ToolError> {
        let read_only = ctx.engine_read_only(self.read_only);
        let vetted = self.vet(&args.sql, ctx.statements, read_only)?;
        let mut session = Session::open(self, ctx).await?;
        // The agent's statement may leave state on the session (see the
        // module documentation): the connection is closed after the call.
        session.discard();
        let mut builder = ResultBuilder::for_query(&self.limits, &args);
        let outcome = session.execute(&args.sql, &args.params, &mut builder).await;
        session.finish().await;
        let (columns, affected) = outcome?;
        Ok(builder.finish(columns, vetted.affected_rows(affected)))
    }

    async fn list_schemas(
        &self,
        _args: ListSchemasArgs,
        ctx: &CallContext,
    ) -> Result<ListSchemasResult, ToolError> {
        let schemas = self
            .in_session(ctx, async |s| catalog::schemas(s).await)
            .await?;
        Ok(ListSchemasResult { schemas })
    }

    async fn list_tables(
        &self,
        args: ListTablesArgs,
        ctx: &CallContext,
    ) -> Result<ListTablesResult, ToolError> {
        let tables = self
            .in_session(ctx, async |s| catalog::tables(s, args.schema).await)
            .await?;
        Ok(ListTablesResult { tables })
    }

    async fn describe_table(
        &self,
        args: DescribeTableArgs,
        ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        self.in_session(ctx, async |s| {
            catalog::describe(s, args.table, args.schema).await
        })
        .await
    }

    async fn explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        // The statement is vetted like a query: on a read-only database only
        // reads are explained, and plain EXPLAIN does not run it.
        let read_only = ctx.engine_read_only(self.read_only);
        // A plain EXPLAIN does not run the statement: its plan may be shown
        // whatever its class (the session is still read-only for a
        // read-only call).
        let allowed = ctx.explain_statements(args.analyze);
        let class = self.vet(&args.sql, allowed, read_only)?.class;
        if args.analyze {
            self.refuse_unsafe_analyze(class)?;
        }
        let mut session = Session::open(self, ctx).await?;
        session.discard();
        let plan = explain_on(&mut session, &args).await;
        session.finish().await;
        plan
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

async fn explain_on(session: &mut Session, args: &ExplainArgs) -> Result<ExplainResult, ToolError> {
    let (sql, format) = match (args.analyze, session.flavor()) {
        (false, _) => (format!("EXPLAIN FORMAT=JSON {}", args.sql), "mysql-json"),
        (true, Flavor::MariaDb) => (
            format!("ANALYZE FORMAT=JSON {}", args.sql),
            "mariadb-analyze-json",
        ),
        // MySQL's EXPLAIN ANALYZE only speaks its text tree format.
        (true, Flavor::MySql) => (
            format!("EXPLAIN ANALYZE {}", args.sql),
            "mysql-analyze-tree",
        ),
    };
    session.prepare(&sql, &args.params).await?;
    let arguments = bind_by_value::<MySql>(&args.params)?;
    let rows = session
        .run(async |conn| {
            sqlx::query_with(AssertSqlSafe(sql.as_str()), arguments)
                .fetch_all(conn)
                .await
        })
        .await?;
    let text = rows
        .first()
        .and_then(|r| text(r, 0))
        .ok_or_else(|| ToolError::Database("EXPLAIN returned no plan".into()))?;
    let plan = if format.ends_with("json") {
        serde_json::from_str(&text).map_err(|e| {
            ToolError::Database(format!("EXPLAIN returned a plan that is not JSON: {e}"))
        })?
    } else {
        serde_json::Value::String(text)
    };
    Ok(ExplainResult {
        format: format.into(),
        plan,
    })
}

/// Column `i` of a catalog row as text (NULL → `None`).
pub(crate) fn text(row: &MySqlRow, i: usize) -> Option<String> {
    row.try_get_unchecked::<Option<String>, _>(i).ok().flatten()
}

/// Column `i` of a catalog row as an integer, whatever its integer type
/// (NULL → `None`).
pub(crate) fn number(row: &MySqlRow, i: usize) -> Option<i64> {
    let type_info = row.columns().get(i)?.type_info();
    if <u64 as Type<MySql>>::compatible(type_info) {
        let n = row.try_get_unchecked::<Option<u64>, _>(i).ok()??;
        Some(i64::try_from(n).unwrap_or(i64::MAX))
    } else if <i64 as Type<MySql>>::compatible(type_info) {
        row.try_get_unchecked::<Option<i64>, _>(i).ok()?
    } else {
        text(row, i)?.trim().parse().ok()
    }
}
