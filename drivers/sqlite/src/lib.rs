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
#![forbid(unsafe_code)]

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ewii_driver_core::schema::{
    ColumnDescription, ColumnInfo, DescribeTableArgs, ExplainArgs, ExplainResult, ForeignKey,
    IndexInfo, ListSchemasArgs, ListSchemasResult, ListTablesArgs, ListTablesResult, ObjectKind,
    QueryArgs, QueryResult, SqlParam, StandardTool, TableDescription, TableInfo,
};
use ewii_driver_core::values;
use ewii_driver_core::{
    CallContext, CheckReport, Database, DatabaseConfig, Driver, DriverError, DriverRegistration,
    Limits, Next, ResultBuilder, SqlDialect, StatementClass, StatementClasses, ToolError,
    vet_statement,
};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{
    Arguments, AssertSqlSafe, Column, Either, Executor, Row, SqlSafeStr, Sqlite, Statement,
    TypeInfo, ValueRef,
};

/// The SQLite driver.
pub struct SqliteDriver;

/// The registered instance.
pub static SQLITE_DRIVER: SqliteDriver = SqliteDriver;

inventory::submit!(DriverRegistration(&SQLITE_DRIVER));

/// How many SQLite VM steps between two checks of the deadline.
const PROGRESS_STEPS: i32 = 1000;

#[async_trait]
impl Driver for SqliteDriver {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn dialect_name(&self) -> &'static str {
        "SQLite"
    }

    fn example_url(&self) -> &'static str {
        "sqlite:///var/lib/app/shop.db"
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        let options = connect_options(config)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_lazy_with(options);
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

struct SqliteDatabase {
    pool: SqlitePool,
    read_only: bool,
    limits: Limits,
}

/// A pooled connection with a progress handler that interrupts the running
/// statement at the deadline or on cancellation.
struct GuardedConnection {
    conn: PoolConnection<Sqlite>,
    deadline: Instant,
    ctx: CallContext,
    limit: Duration,
    /// `PRAGMA query_only` was switched on for this call (a read-only call
    /// on a read-write database) and must be switched off after it.
    query_only_set: bool,
    /// The connection goes back to the pool after the call.
    reuse: bool,
}

impl GuardedConnection {
    /// Maps an engine error, telling a timeout or a cancellation apart from
    /// a real SQL error.
    fn map_err(&self, e: sqlx::Error) -> ToolError {
        if self.ctx.cancel.is_cancelled() {
            return ToolError::Cancelled;
        }
        if Instant::now() >= self.deadline {
            return ToolError::Timeout { limit: self.limit };
        }
        db_error(e)
    }

    async fn release(mut self) {
        if let Ok(mut handle) = self.conn.lock_handle().await {
            handle.remove_progress_handler();
        }
        if self.query_only_set
            && sqlx::raw_sql("PRAGMA query_only = OFF")
                .execute(&mut *self.conn)
                .await
                .is_err()
        {
            self.reuse = false;
        }
        if !self.reuse {
            self.conn.close_on_drop();
        }
    }
}

fn db_error(e: sqlx::Error) -> ToolError {
    match e {
        sqlx::Error::Database(d) => ToolError::Database(d.message().to_owned()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ToolError::Unavailable(e.to_string())
        }
        other => ToolError::Database(other.to_string()),
    }
}

impl SqliteDatabase {
    async fn guarded(&self, ctx: &CallContext) -> Result<GuardedConnection, ToolError> {
        let mut conn =
            self.pool.acquire().await.map_err(|e| {
                ToolError::Unavailable(format!("cannot open the SQLite database: {e}"))
            })?;
        let deadline = Instant::now() + self.limits.timeout;
        let cancel = ctx.cancel.clone();
        let mut handle = conn
            .lock_handle()
            .await
            .map_err(|e| ToolError::Unavailable(e.to_string()))?;
        handle.set_progress_handler(PROGRESS_STEPS, move || {
            // Returning false makes SQLite abort the statement with
            // SQLITE_INTERRUPT.
            !cancel.is_cancelled() && Instant::now() < deadline
        });
        drop(handle);
        let mut g = GuardedConnection {
            conn,
            deadline,
            ctx: ctx.clone(),
            limit: self.limits.timeout,
            query_only_set: false,
            reuse: true,
        };
        if !self.read_only && ctx.engine_read_only(false) {
            // Set before anything of the call runs; a failure leaves the
            // call unrun and the connection closed.
            g.query_only_set = true;
            if let Err(e) = sqlx::raw_sql("PRAGMA query_only = ON")
                .execute(&mut *g.conn)
                .await
            {
                g.reuse = false;
                g.release().await;
                return Err(db_error(e));
            }
        }
        Ok(g)
    }

    /// Checks the statement before it reaches the engine: one statement,
    /// read-only rules, parameter count.
    async fn vet(
        &self,
        g: &mut GuardedConnection,
        sql: &str,
        params: &[SqlParam],
        allowed: Option<StatementClasses>,
    ) -> Result<StatementClass, ToolError> {
        let class = vet_statement(sql, SqlDialect::Sqlite, self.read_only, allowed)?.class;
        if matches!(class, StatementClass::Ddl | StatementClass::Other) {
            // Temporary tables, ATTACH, PRAGMA…: not for the next call.
            g.reuse = false;
        }
        // SQLite binds missing parameters as NULL; a model should hear
        // about the mismatch instead.
        // Agent SQL is dynamic by design: it is vetted above and its values are
        // bound, never interpolated.
        let stmt = (&mut *g.conn)
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(|e| g.map_err(e))?;
        let expected = match stmt.parameters() {
            Some(Either::Right(n)) => n,
            Some(Either::Left(types)) => types.len(),
            None => params.len(),
        };
        if expected != params.len() {
            return Err(ToolError::InvalidArguments(format!(
                "the statement has {expected} placeholder(s) but {} param(s) were given; pass \
                 one value in `params` per `?`",
                params.len()
            )));
        }
        Ok(class)
    }

    async fn run_query(
        &self,
        args: QueryArgs,
        ctx: &CallContext,
    ) -> Result<QueryResult, ToolError> {
        let mut g = self.guarded(ctx).await?;
        let result = self.run_query_on(&mut g, args).await;
        g.release().await;
        result
    }

    async fn run_query_on(
        &self,
        g: &mut GuardedConnection,
        args: QueryArgs,
    ) -> Result<QueryResult, ToolError> {
        let statements = g.ctx.statements;
        let class = self.vet(g, &args.sql, &args.params, statements).await?;
        let arguments = bind(&args.params)?;
        let mut builder = ResultBuilder::new(&self.limits, args.max_rows, args.offset)
            .with_max_bytes(args.max_bytes);
        let mut columns: Option<Vec<ColumnInfo>> = None;
        let mut affected: u64 = 0;
        let backstop = self.limits.timeout + Duration::from_secs(2);
        let work = async {
            let mut stream = (&mut *g.conn).fetch_many(sqlx::query_with(
                AssertSqlSafe(args.sql.as_str()),
                arguments,
            ));
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(done) => affected += done.rows_affected(),
                    Either::Right(row) => {
                        if columns.is_none() {
                            columns = Some(column_info(&row));
                        }
                        if builder.push(row_values(&row)) == Next::Stop {
                            break;
                        }
                    }
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(backstop, work) => r,
            // Cancellation is also enforced by the progress handler; this
            // arm only returns promptly if the engine is between steps.
            _ = g.ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        match outcome {
            Err(_) => {
                return Err(ToolError::Timeout {
                    limit: self.limits.timeout,
                });
            }
            Ok(Err(e)) => return Err(g.map_err(e)),
            Ok(Ok(())) => {}
        }
        let affected = (class != StatementClass::Read && !g.ctx.engine_read_only(self.read_only))
            .then_some(affected);
        Ok(builder.finish(columns.unwrap_or_default(), affected))
    }

    /// Runs an internal catalog statement (trusted SQL, bound values).
    async fn internal_rows(
        &self,
        ctx: &CallContext,
        sql: &str,
        values: &[&str],
    ) -> Result<Vec<SqliteRow>, ToolError> {
        let mut g = self.guarded(ctx).await?;
        // Trusted catalog SQL built by this driver; identifiers are quoted
        // with quote_ident and values bound.
        let mut q = sqlx::query(AssertSqlSafe(sql.to_owned()));
        for v in values {
            q = q.bind(v.to_string());
        }
        let result = q.fetch_all(&mut *g.conn).await.map_err(|e| g.map_err(e));
        g.release().await;
        result
    }

    async fn schemas(&self, ctx: &CallContext) -> Result<Vec<String>, ToolError> {
        let rows = self
            .internal_rows(
                ctx,
                "SELECT name FROM pragma_database_list ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .collect())
    }

    async fn resolve_schema(
        &self,
        ctx: &CallContext,
        schema: Option<String>,
    ) -> Result<String, ToolError> {
        let schema = schema.unwrap_or_else(|| "main".to_owned());
        let known = self.schemas(ctx).await?;
        if known.contains(&schema) {
            Ok(schema)
        } else {
            Err(ToolError::NotFound(format!(
                "schema '{schema}' does not exist; schemas are: {}",
                known.join(", ")
            )))
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn bind(params: &[SqlParam]) -> Result<SqliteArguments, ToolError> {
    let mut args = SqliteArguments::default();
    for p in params {
        let r = match p {
            SqlParam::Null => args.add(None::<i64>),
            SqlParam::Bool(b) => args.add(*b),
            SqlParam::Int(i) => args.add(*i),
            SqlParam::Float(f) => args.add(*f),
            SqlParam::Text(t) => args.add(t.clone()),
        };
        r.map_err(|e| ToolError::InvalidArguments(format!("cannot bind parameter: {e}")))?;
    }
    Ok(args)
}

fn column_info(row: &SqliteRow) -> Vec<ColumnInfo> {
    row.columns()
        .iter()
        .map(|c| ColumnInfo {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_owned(),
        })
        .collect()
}

/// Converts one row to JSON by the *stored* type of each value (SQLite is
/// dynamically typed): INTEGER → number, REAL → number, TEXT → string,
/// BLOB → base64 string, NULL → null.
fn row_values(row: &SqliteRow) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return Value::Null;
            };
            if raw.is_null() {
                return Value::Null;
            }
            let kind = raw.type_info().name().to_owned();
            match kind.as_str() {
                "INTEGER" => row.try_get::<i64, _>(i).map_or(Value::Null, Value::from),
                "REAL" => row
                    .try_get::<f64, _>(i)
                    .map_or(Value::Null, values::float64),
                "BLOB" => row
                    .try_get::<Vec<u8>, _>(i)
                    .map_or(Value::Null, |b| values::bytes(&b)),
                _ => row
                    .try_get::<String, _>(i)
                    .map(Value::from)
                    .or_else(|_| row.try_get::<i64, _>(i).map(Value::from))
                    .unwrap_or(Value::Null),
            }
        })
        .collect()
}

#[async_trait]
impl Database for SqliteDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::ALL
    }

    fn dialect_name(&self) -> &'static str {
        "SQLite"
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::Sqlite)
    }

    async fn check(&self) -> Result<CheckReport, DriverError> {
        let mut conn =
            self.pool.acquire().await.map_err(|e| {
                DriverError::Connect(format!("cannot open the SQLite database: {e}"))
            })?;
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| DriverError::Connect(e.to_string()))?;
        let query_only: i64 = sqlx::query_scalar("PRAGMA query_only")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| DriverError::Other(e.to_string()))?;
        // Reading the schema proves the file is a database, not just a file.
        sqlx::query("SELECT count(*) FROM sqlite_schema")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| {
                DriverError::Connect(format!("the file is not a usable SQLite database: {e}"))
            })?;
        let mut warnings = Vec::new();
        if !self.read_only {
            warnings.push(
                "this database is attached read-write: agents can change and delete data".into(),
            );
        }
        Ok(CheckReport {
            server_version: format!("SQLite {version}"),
            engine_read_only: self.read_only && query_only == 1,
            warnings,
        })
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
        let schemas = match args.schema {
            Some(s) => vec![self.resolve_schema(ctx, Some(s)).await?],
            None => self.schemas(ctx).await?,
        };
        let mut tables = Vec::new();
        for schema in schemas {
            let sql = format!(
                "SELECT name, type FROM {}.sqlite_schema WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
                quote_ident(&schema)
            );
            for row in self.internal_rows(ctx, &sql, &[]).await? {
                let name: String = row.try_get(0).map_err(db_error)?;
                let kind: String = row.try_get(1).map_err(db_error)?;
                tables.push(TableInfo {
                    schema: schema.clone(),
                    name,
                    kind: if kind == "view" {
                        ObjectKind::View
                    } else {
                        ObjectKind::Table
                    },
                    row_estimate: None,
                });
            }
        }
        Ok(ListTablesResult { tables })
    }

    async fn describe_table(
        &self,
        args: DescribeTableArgs,
        ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        let schema = self.resolve_schema(ctx, args.schema).await?;
        let t = args.table.as_str();
        let kind_sql = format!(
            "SELECT type FROM {}.sqlite_schema WHERE name = ?1 AND type IN ('table', 'view')",
            quote_ident(&schema)
        );
        let kind_rows = self.internal_rows(ctx, &kind_sql, &[t]).await?;
        let Some(kind_row) = kind_rows.first() else {
            return Err(ToolError::NotFound(format!(
                "table '{t}' does not exist in schema '{schema}'; call list_tables to see what exists"
            )));
        };
        let kind: String = kind_row.try_get(0).map_err(db_error)?;

        let cols = self
            .internal_rows(
                ctx,
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1, ?2) ORDER BY cid",
                &[t, &schema],
            )
            .await?;
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for row in &cols {
            let name: String = row.try_get(0).map_err(db_error)?;
            let data_type: String = row.try_get(1).map_err(db_error)?;
            let notnull: i64 = row.try_get(2).map_err(db_error)?;
            let default: Option<String> = row.try_get(3).map_err(db_error)?;
            let pk_pos: i64 = row.try_get(4).map_err(db_error)?;
            // An INTEGER PRIMARY KEY is the rowid: never NULL, although
            // table_info reports notnull = 0 for it.
            let rowid_alias = pk_pos > 0 && data_type.eq_ignore_ascii_case("INTEGER");
            if pk_pos > 0 {
                pk.push((pk_pos, name.clone()));
            }
            columns.push(ColumnDescription {
                name,
                data_type,
                nullable: notnull == 0 && !rowid_alias,
                default,
            });
        }
        pk.sort();

        let fk_rows = self
            .internal_rows(
                ctx,
                "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, ?2) ORDER BY id, seq",
                &[t, &schema],
            )
            .await?;
        let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
        for row in &fk_rows {
            let id: i64 = row.try_get(0).map_err(db_error)?;
            let table: String = row.try_get(1).map_err(db_error)?;
            let from: String = row.try_get(2).map_err(db_error)?;
            let to: Option<String> = row.try_get(3).map_err(db_error)?;
            match foreign_keys.last_mut() {
                Some((last, fk)) if *last == id => {
                    fk.columns.push(from);
                    fk.referenced_columns.extend(to);
                }
                _ => foreign_keys.push((
                    id,
                    ForeignKey {
                        name: None,
                        columns: vec![from],
                        referenced_schema: Some(schema.clone()),
                        referenced_table: table,
                        referenced_columns: to.into_iter().collect(),
                    },
                )),
            }
        }

        let idx_rows = self
            .internal_rows(
                ctx,
                "SELECT name, \"unique\", origin FROM pragma_index_list(?1, ?2) ORDER BY name",
                &[t, &schema],
            )
            .await?;
        let mut indexes = Vec::new();
        for row in &idx_rows {
            let name: String = row.try_get(0).map_err(db_error)?;
            let unique: i64 = row.try_get(1).map_err(db_error)?;
            let origin: String = row.try_get(2).map_err(db_error)?;
            let cols = self
                .internal_rows(
                    ctx,
                    "SELECT name FROM pragma_index_info(?1, ?2) ORDER BY seqno",
                    &[&name, &schema],
                )
                .await?;
            let columns = cols
                .iter()
                .map(|r| {
                    r.try_get::<Option<String>, _>(0)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "<expression>".to_owned())
                })
                .collect();
            indexes.push(IndexInfo {
                name,
                columns,
                unique: unique != 0,
                primary: origin == "pk",
            });
        }

        Ok(TableDescription {
            schema,
            name: args.table,
            kind: if kind == "view" {
                ObjectKind::View
            } else {
                ObjectKind::Table
            },
            columns,
            primary_key: pk.into_iter().map(|(_, n)| n).collect(),
            foreign_keys: foreign_keys.into_iter().map(|(_, fk)| fk).collect(),
            indexes,
        })
    }

    async fn explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        if args.analyze {
            return Err(ToolError::InvalidArguments(
                "SQLite has no EXPLAIN ANALYZE; call explain without `analyze`".into(),
            ));
        }
        let mut g = self.guarded(ctx).await?;
        let result = async {
            // EXPLAIN QUERY PLAN does not run the statement.
            let allowed = ctx.statements.map(StatementClasses::for_plain_explain);
            self.vet(&mut g, &args.sql, &args.params, allowed).await?;
            let sql = format!("EXPLAIN QUERY PLAN {}", args.sql);
            let rows = sqlx::query_with(AssertSqlSafe(sql), bind(&args.params)?)
                .fetch_all(&mut *g.conn)
                .await
                .map_err(|e| g.map_err(e))?;
            let mut steps = Vec::new();
            for row in &rows {
                let id: i64 = row.try_get(0).map_err(db_error)?;
                let parent: i64 = row.try_get(1).map_err(db_error)?;
                let detail: String = row.try_get(3).map_err(db_error)?;
                steps.push((id, parent, detail));
            }
            Ok(ExplainResult {
                format: "sqlite-query-plan".into(),
                plan: plan_tree(&steps, 0),
            })
        }
        .await;
        g.release().await;
        result
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Nests `EXPLAIN QUERY PLAN` rows (id, parent, detail) into a tree.
fn plan_tree(steps: &[(i64, i64, String)], parent: i64) -> Value {
    Value::Array(
        steps
            .iter()
            .filter(|(_, p, _)| *p == parent)
            .map(|(id, _, detail)| {
                let children = plan_tree(steps, *id);
                if children.as_array().is_some_and(|c| c.is_empty()) {
                    json!({ "detail": detail })
                } else {
                    json!({ "detail": detail, "children": children })
                }
            })
            .collect(),
    )
}
