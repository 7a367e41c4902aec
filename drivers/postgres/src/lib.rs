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
#![forbid(unsafe_code)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use ewii_driver_core::schema::{
    ColumnDescription, ColumnInfo, DescribeTableArgs, ExplainArgs, ExplainResult, ForeignKey,
    IndexInfo, ListSchemasArgs, ListSchemasResult, ListTablesArgs, ListTablesResult, ObjectKind,
    QueryArgs, QueryResult, SqlParam, StandardTool, TableDescription, TableInfo,
};
use ewii_driver_core::values;
use ewii_driver_core::{
    CallContext, CheckReport, Database, DatabaseConfig, Driver, DriverError, DriverRegistration,
    Limits, Next, ResultBuilder, SqlDialect, StatementClass, StatementClasses, ToolError, Vetted,
    check_param_count, vet_statement,
};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeInfo};
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Uuid};
use sqlx::{
    Arguments, AssertSqlSafe, Column, ConnectOptions, Connection, Either, Executor, Postgres, Row,
    SqlSafeStr, Statement, TypeInfo, ValueRef,
};

/// The PostgreSQL driver.
pub struct PostgresDriver;

/// The registered instance.
pub static POSTGRES_DRIVER: PostgresDriver = PostgresDriver;

inventory::submit!(DriverRegistration(&POSTGRES_DRIVER));

#[async_trait]
impl Driver for PostgresDriver {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn dialect_name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn example_url(&self) -> &'static str {
        "postgres://reader@db.internal:5432/app?sslmode=require"
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        let options = connect_options(config)?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Some(Duration::from_secs(300)))
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

/// Keeps a URL out of an error message coming from the URL parser.
fn strip_url(message: &str) -> String {
    message
        .split_whitespace()
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

struct PgDatabase {
    pool: PgPool,
    options: PgConnectOptions,
    read_only: bool,
    limits: Limits,
}

/// One call's connection, inside its own transaction.
struct Session {
    conn: PoolConnection<Postgres>,
    pid: i32,
    ctx: CallContext,
    /// The transaction is `READ ONLY` (always rolled back).
    read_only: bool,
}

/// Clears what a statement can leave on a session after its transaction
/// ended (see the module documentation). Each is allowed to any role.
const RESET_SESSION: &str = "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; \
     RESET ALL; DISCARD TEMP; DISCARD SEQUENCES";

fn db_error(e: sqlx::Error) -> ToolError {
    match e {
        sqlx::Error::Database(d) => {
            let mut msg = d.message().to_owned();
            if let Some(hint) = d
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.hint())
            {
                msg.push_str(&format!(" (hint: {hint})"));
            }
            ToolError::Database(msg)
        }
        sqlx::Error::PoolTimedOut => ToolError::Unavailable(
            "no connection became free within 10 s; the database may be overloaded".into(),
        ),
        sqlx::Error::Io(e) => ToolError::Unavailable(format!("connection lost: {e}")),
        other => ToolError::Database(other.to_string()),
    }
}

fn is_statement_timeout(e: &sqlx::Error) -> bool {
    // 57014 = query_canceled (statement_timeout or pg_cancel_backend).
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("57014"))
}

fn connect_error(options: &PgConnectOptions, e: sqlx::Error) -> DriverError {
    let at = format!("{}:{}", options.get_host(), options.get_port());
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message().to_owned();
            let what_to_do = match d.code().as_deref() {
                Some("28P01") | Some("28000") => "check the user name and password",
                Some("3D000") => "check the database name in the URL path",
                _ => "check the URL and the server's pg_hba.conf",
            };
            DriverError::Connect(format!("the server at {at} said: {msg}; {what_to_do}"))
        }
        sqlx::Error::Io(io) => DriverError::Connect(format!(
            "cannot reach a PostgreSQL server at {at} ({io}); check host, port and firewall"
        )),
        sqlx::Error::Tls(t) => DriverError::Connect(format!(
            "TLS with {at} failed ({t}); check sslmode and the server certificate"
        )),
        sqlx::Error::PoolTimedOut => DriverError::Connect(format!(
            "no answer from {at} within 10 s; check host, port and firewall"
        )),
        other => DriverError::Connect(format!("{at}: {other}")),
    }
}

impl PgDatabase {
    /// Acquires a connection and opens the call's transaction.
    async fn session(&self, ctx: &CallContext) -> Result<Session, ToolError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| ToolError::Unavailable(connect_error(&self.options, e).to_string()))?;
        let read_only = ctx.engine_read_only(self.read_only);
        let begin = if read_only {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        };
        let timeout_ms = self.limits.timeout.as_millis().max(1);
        let setup = format!("{begin}; SET LOCAL statement_timeout = {timeout_ms}");
        let started = async {
            sqlx::raw_sql(AssertSqlSafe(setup))
                .execute(&mut *conn)
                .await?;
            // Takes the transaction's snapshot: from here on the access mode
            // can no longer be changed by the agent's statement.
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
        }
        .await;
        match started {
            Ok(pid) => Ok(Session {
                conn,
                pid,
                ctx: ctx.clone(),
                read_only,
            }),
            Err(e) => {
                conn.close_on_drop();
                Err(db_error(e))
            }
        }
    }

    /// Ends the transaction, resets the session and returns the connection
    /// to the pool; closes it instead when `reuse` is false (the statement
    /// may have left state a reset does not clear) or when its state is
    /// unknown.
    async fn finish(&self, mut s: Session, ok: bool, reuse: bool) {
        let end = if ok && !s.read_only {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        if sqlx::raw_sql(end).execute(&mut *s.conn).await.is_err() {
            s.conn.close_on_drop();
            return;
        }
        if !reuse {
            // Closing ends the backend: every lock, setting and prepared
            // statement of the session goes with it.
            s.conn.close_on_drop();
            return;
        }
        let reset = sqlx::raw_sql(RESET_SESSION).execute(&mut *s.conn);
        match tokio::time::timeout(Duration::from_secs(5), reset).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "session reset failed; closing the connection");
                s.conn.close_on_drop();
            }
            Err(_) => {
                tracing::warn!("session reset timed out; closing the connection");
                s.conn.close_on_drop();
            }
        }
    }

    /// Stops the session's running statement from another connection.
    async fn cancel_backend(&self, pid: i32) {
        let attempt = async {
            let mut c = self.options.connect().await?;
            sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&mut c)
                .await?;
            c.close().await
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            tracing::warn!(error = %e, "could not cancel a statement on the server");
        }
    }

    /// Checks the statement before it reaches the engine: one statement,
    /// read-only rules, the call's allowed classes, placeholder count.
    fn vet(
        &self,
        sql: &str,
        params: &[SqlParam],
        allowed: Option<StatementClasses>,
    ) -> Result<Vetted, ToolError> {
        let v = vet_statement(sql, SqlDialect::Postgres, self.read_only, allowed)?;
        if let Some(expected) = v.placeholders {
            check_param_count(expected, params.len())?;
        }
        Ok(v)
    }

    /// Prepares the statement and binds `params` as the types the server
    /// inferred for its placeholders, so `"2026-01-01"` binds to a `date`
    /// and `3` to an `integer` placeholder.
    async fn prepare_args(
        &self,
        s: &mut Session,
        sql: &str,
        params: &[SqlParam],
    ) -> Result<PgArguments, ToolError> {
        let stmt = (&mut *s.conn)
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(db_error)?;
        let types: Vec<PgTypeInfo> = match stmt.parameters() {
            Some(Either::Left(types)) => types.to_vec(),
            _ => Vec::new(),
        };
        check_param_count(types.len(), params.len())?;
        bind_typed(params, &types)
    }

    async fn run_query(
        &self,
        args: QueryArgs,
        ctx: &CallContext,
    ) -> Result<QueryResult, ToolError> {
        let vetted = self.vet(&args.sql, &args.params, ctx.statements)?;
        let mut s = self.session(ctx).await?;
        let outcome = self.query_in(&mut s, &args, vetted.class).await;
        let reuse = vetted.class != StatementClass::Other;
        match &outcome {
            Ok(_) => self.finish(s, true, reuse).await,
            Err(ToolError::Timeout { .. } | ToolError::Cancelled) => {
                self.cancel_backend(s.pid).await;
                s.conn.close_on_drop();
            }
            Err(_) => self.finish(s, false, reuse).await,
        }
        outcome
    }

    async fn query_in(
        &self,
        s: &mut Session,
        args: &QueryArgs,
        class: StatementClass,
    ) -> Result<QueryResult, ToolError> {
        let arguments = self.prepare_args(s, &args.sql, &args.params).await?;
        let mut builder = ResultBuilder::new(&self.limits, args.max_rows, args.offset)
            .with_max_bytes(args.max_bytes);
        let mut columns: Option<Vec<ColumnInfo>> = None;
        let mut affected = 0u64;
        let mut stopped_early = false;
        let cancel = s.ctx.cancel.clone();
        let backstop = self.limits.timeout + Duration::from_secs(1);
        let pid = s.pid;
        let fetched = {
            let work = async {
                let mut stream = (&mut *s.conn).fetch_many(sqlx::query_with(
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
                                stopped_early = true;
                                break;
                            }
                        }
                    }
                }
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                r = tokio::time::timeout(backstop, work) => r,
                _ = cancel.cancelled() => return Err(ToolError::Cancelled),
            }
        };
        match fetched {
            Err(_) => {
                return Err(ToolError::Timeout {
                    limit: self.limits.timeout,
                });
            }
            Ok(Err(e)) if is_statement_timeout(&e) => {
                return Err(ToolError::Timeout {
                    limit: self.limits.timeout,
                });
            }
            Ok(Err(e)) => return Err(db_error(e)),
            Ok(Ok(())) => {}
        }
        if stopped_early {
            // The server may still be producing rows nobody will read.
            self.cancel_backend(pid).await;
        }
        let affected = (!s.read_only && class != StatementClass::Read).then_some(affected);
        Ok(builder.finish(columns.unwrap_or_default(), affected))
    }

    /// Runs trusted catalog SQL with bound text values in a session.
    async fn catalog_rows(
        &self,
        ctx: &CallContext,
        sql: &'static str,
        values: &[Option<&str>],
    ) -> Result<Vec<PgRow>, ToolError> {
        let mut s = self.session(ctx).await?;
        let mut q = sqlx::query(sql);
        for v in values {
            q = q.bind(v.map(str::to_owned));
        }
        let rows = q.fetch_all(&mut *s.conn).await.map_err(db_error);
        self.finish(s, false, true).await;
        rows
    }
}

/// Binds each parameter as the placeholder's server-inferred type.
fn bind_typed(params: &[SqlParam], types: &[PgTypeInfo]) -> Result<PgArguments, ToolError> {
    let mut args = PgArguments::default();
    for (i, (p, t)) in params.iter().zip(types).enumerate() {
        let n = i + 1;
        let ty = t.name();
        let bad = |what: &str| {
            ToolError::InvalidArguments(format!(
                "params[{i}] (placeholder ${n}, type {}): {what}",
                ty.to_lowercase()
            ))
        };
        let text = |p: &SqlParam| match p {
            SqlParam::Text(s) => s.clone(),
            SqlParam::Int(v) => v.to_string(),
            SqlParam::Float(v) => v.to_string(),
            SqlParam::Bool(v) => v.to_string(),
            SqlParam::Null => String::new(),
        };
        let int = |p: &SqlParam| -> Result<i64, ToolError> {
            match p {
                SqlParam::Int(v) => Ok(*v),
                SqlParam::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
                SqlParam::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("'{s}' is not an integer"))),
                other => Err(bad(&format!("expected an integer, got {other:?}"))),
            }
        };
        let float = |p: &SqlParam| -> Result<f64, ToolError> {
            match p {
                SqlParam::Int(v) => Ok(*v as f64),
                SqlParam::Float(f) => Ok(*f),
                SqlParam::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("'{s}' is not a number"))),
                other => Err(bad(&format!("expected a number, got {other:?}"))),
            }
        };
        let parsed = |what: &str| bad(&format!("'{}' is not a valid {what}", text(p)));
        let r = match (ty, p) {
            // NULL needs no encoding of the inferred type.
            (_, SqlParam::Null) => args.add(None::<String>),
            ("BOOL", SqlParam::Bool(b)) => args.add(*b),
            ("BOOL", other) => match text(other).to_lowercase().as_str() {
                "true" | "t" | "1" | "yes" => args.add(true),
                "false" | "f" | "0" | "no" => args.add(false),
                _ => return Err(parsed("boolean")),
            },
            ("INT2", _) => {
                args.add(i16::try_from(int(p)?).map_err(|_| bad("out of range for smallint"))?)
            }
            ("INT4", _) => {
                args.add(i32::try_from(int(p)?).map_err(|_| bad("out of range for integer"))?)
            }
            ("INT8", _) => args.add(int(p)?),
            ("FLOAT4", _) => args.add(float(p)? as f32),
            ("FLOAT8", _) => args.add(float(p)?),
            ("NUMERIC", _) => {
                args.add(BigDecimal::from_str(text(p).trim()).map_err(|_| parsed("number"))?)
            }
            ("DATE", _) => args.add(
                NaiveDate::parse_from_str(text(p).trim(), "%Y-%m-%d")
                    .map_err(|_| parsed("date (YYYY-MM-DD)"))?,
            ),
            ("TIME", _) => args.add(parse_time(&text(p)).ok_or_else(|| parsed("time (HH:MM:SS)"))?),
            ("TIMESTAMP", _) => args.add(
                parse_timestamp(&text(p))
                    .ok_or_else(|| parsed("timestamp (YYYY-MM-DDTHH:MM:SS)"))?,
            ),
            ("TIMESTAMPTZ", _) => args.add(
                parse_timestamptz(&text(p))
                    .ok_or_else(|| parsed("timestamp with time zone (RFC 3339)"))?,
            ),
            ("UUID", _) => args.add(Uuid::parse_str(text(p).trim()).map_err(|_| parsed("UUID"))?),
            ("BYTEA", _) => args.add(
                base64::engine::general_purpose::STANDARD
                    .decode(text(p))
                    .map_err(|_| parsed("base64 string"))?,
            ),
            // JSON's binary form is its text.
            ("JSON", SqlParam::Text(s)) => args.add(s.clone()),
            ("JSON", other) => args.add(text(other)),
            ("JSONB", SqlParam::Text(s)) => {
                args.add(serde_json::from_str::<Value>(s).unwrap_or_else(|_| json!(s)))
            }
            ("JSONB", SqlParam::Int(v)) => args.add(json!(v)),
            ("JSONB", SqlParam::Float(v)) => args.add(json!(v)),
            ("JSONB", SqlParam::Bool(v)) => args.add(json!(v)),
            ("TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CHAR", _) => args.add(text(p)),
            (other, _) => {
                return Err(bad(&format!(
                    "values cannot be bound to a {} placeholder directly; cast it in SQL, e.g. \
                     ${n}::text, and compare with a cast (column::text = ${n})",
                    other.to_lowercase()
                )));
            }
        };
        r.map_err(|e| bad(&format!("cannot bind: {e}")))?;
    }
    Ok(args)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
        .ok()
}

fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

/// RFC 3339, or a timestamp without zone taken as UTC.
fn parse_timestamptz(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| parse_timestamp(s).map(|t| t.and_utc()))
}

fn column_info(row: &PgRow) -> Vec<ColumnInfo> {
    row.columns()
        .iter()
        .map(|c| ColumnInfo {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_lowercase(),
        })
        .collect()
}

fn row_values(row: &PgRow) -> Vec<Value> {
    (0..row.len()).map(|i| value_at(row, i)).collect()
}

fn ts(t: NaiveDateTime) -> Value {
    json!(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn tstz(t: DateTime<Utc>) -> Value {
    json!(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
}

/// Decodes `Option<T>` and maps it, NULL → null, decode failure → a note.
macro_rules! get {
    ($row:expr, $i:expr, $t:ty, $f:expr) => {
        match $row.try_get::<Option<$t>, _>($i) {
            Ok(Some(v)) => $f(v),
            Ok(None) => Value::Null,
            Err(e) => json!(format!("<cannot decode: {e}>")),
        }
    };
}

/// Decodes an array column element by element.
macro_rules! get_array {
    ($row:expr, $i:expr, $t:ty, $f:expr) => {
        get!($row, $i, Vec<Option<$t>>, |v: Vec<Option<$t>>| {
            Value::Array(v.into_iter().map(|e| e.map_or(Value::Null, $f)).collect())
        })
    };
}

fn value_at(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let type_name = row.columns()[i].type_info().name().to_owned();
    match type_name.as_str() {
        "BOOL" => get!(row, i, bool, Value::Bool),
        "INT2" => get!(row, i, i16, Value::from),
        "INT4" => get!(row, i, i32, Value::from),
        "INT8" => get!(row, i, i64, Value::from),
        "OID" => get!(
            row,
            i,
            sqlx::postgres::types::Oid,
            |o: sqlx::postgres::types::Oid| json!(o.0)
        ),
        "FLOAT4" => get!(row, i, f32, values::float32),
        "FLOAT8" => get!(row, i, f64, values::float64),
        "NUMERIC" => numeric(row, i),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" | "CHAR" => {
            get!(row, i, String, Value::from)
        }
        "UUID" => get!(row, i, Uuid, |u: Uuid| json!(u.to_string())),
        "JSON" | "JSONB" => get!(row, i, Value, |v| v),
        "BYTEA" => get!(row, i, Vec<u8>, |b: Vec<u8>| values::bytes(&b)),
        "DATE" => get!(row, i, NaiveDate, |d: NaiveDate| json!(d.to_string())),
        "TIME" => get!(row, i, NaiveTime, |t: NaiveTime| json!(t.to_string())),
        "TIMESTAMP" => get!(row, i, NaiveDateTime, ts),
        "TIMESTAMPTZ" => get!(row, i, DateTime<Utc>, tstz),
        "BOOL[]" => get_array!(row, i, bool, Value::Bool),
        "INT2[]" => get_array!(row, i, i16, Value::from),
        "INT4[]" => get_array!(row, i, i32, Value::from),
        "INT8[]" => get_array!(row, i, i64, Value::from),
        "FLOAT4[]" => get_array!(row, i, f32, values::float32),
        "FLOAT8[]" => get_array!(row, i, f64, values::float64),
        "NUMERIC[]" => get_array!(row, i, BigDecimal, |d: BigDecimal| json!(
            d.normalized().to_plain_string()
        )),
        "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" | "NAME[]" => get_array!(row, i, String, Value::from),
        "UUID[]" => get_array!(row, i, Uuid, |u: Uuid| json!(u.to_string())),
        "JSON[]" | "JSONB[]" => get_array!(row, i, Value, |v| v),
        "DATE[]" => get_array!(row, i, NaiveDate, |d: NaiveDate| json!(d.to_string())),
        "TIMESTAMP[]" => get_array!(row, i, NaiveDateTime, ts),
        "TIMESTAMPTZ[]" => get_array!(row, i, DateTime<Utc>, tstz),
        "BYTEA[]" => get_array!(row, i, Vec<u8>, |b: Vec<u8>| values::bytes(&b)),
        // sqlx reads results in binary format, which is type-specific:
        // ask for a cast rather than guess at bytes.
        other => json!(format!(
            "<{} value: cast it in SQL, e.g. column::text>",
            other.to_lowercase()
        )),
    }
}

/// `numeric` exactly, at the value's own display scale.
///
/// sqlx's conversion pads the scale to whole base-10000 digit groups
/// (`2.5` would read `2.5000`), so the display scale is taken from the wire
/// header (ndigits, weight, sign, dscale: four big-endian u16).
fn numeric(row: &PgRow, i: usize) -> Value {
    let header = row
        .try_get_raw(i)
        .ok()
        .filter(|v| matches!(v.format(), sqlx::postgres::PgValueFormat::Binary))
        .and_then(|v| v.as_bytes().ok())
        .filter(|b| b.len() >= 8)
        .map(|b| {
            (
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]),
            )
        });
    match header {
        Some((0xC000, _)) => json!("NaN"),
        Some((0xD000, _)) => json!("Infinity"),
        Some((0xF000, _)) => json!("-Infinity"),
        _ => get!(row, i, BigDecimal, |d: BigDecimal| {
            let d = match header {
                Some((_, dscale)) => d.with_scale(i64::from(dscale)),
                None => d,
            };
            json!(d.to_plain_string())
        }),
    }
}

fn kind_of(relkind: &str) -> ObjectKind {
    match relkind {
        "v" => ObjectKind::View,
        "m" => ObjectKind::MaterializedView,
        _ => ObjectKind::Table,
    }
}

#[async_trait]
impl Database for PgDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::ALL
    }

    fn dialect_name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn sql_dialect(&self) -> Option<SqlDialect> {
        Some(SqlDialect::Postgres)
    }

    async fn check(&self) -> Result<CheckReport, DriverError> {
        let mut conn = self
            .options
            .connect()
            .await
            .map_err(|e| connect_error(&self.options, e))?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| DriverError::Other(e.to_string()))?;
        let begin = if self.read_only {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        };
        sqlx::raw_sql(begin)
            .execute(&mut conn)
            .await
            .map_err(|e| DriverError::Other(e.to_string()))?;
        let ro: String = sqlx::query_scalar("SHOW transaction_read_only")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| DriverError::Other(e.to_string()))?;
        let (role, can_write): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, \
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                OR EXISTS (SELECT 1 FROM information_schema.table_privileges \
                           WHERE grantee = current_user \
                             AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')) \
                OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                           WHERE c.relkind IN ('r', 'p') \
                             AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                             AND pg_has_role(current_user, c.relowner, 'USAGE')) \
                OR EXISTS (SELECT 1 FROM pg_namespace \
                           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
                             AND has_schema_privilege(oid, 'CREATE'))",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| DriverError::Other(e.to_string()))?;
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
        let _ = conn.close().await;
        let mut warnings = Vec::new();
        if self.read_only && can_write {
            warnings.push(format!(
                "the role '{role}' can write to this database (table privileges, ownership or \
                 CREATE on a schema); Ewii keeps it read-only (read-only transactions and \
                 statement checks), but a least-privilege role is the safer setup: see \
                 docs/least-privilege.md"
            ));
        }
        if !self.read_only {
            warnings.push(
                "this database is attached read-write: agents can change and delete data".into(),
            );
        }
        Ok(CheckReport {
            server_version: format!("PostgreSQL {version}"),
            engine_read_only: self.read_only && ro == "on",
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
        let rows = self
            .catalog_rows(
                ctx,
                "SELECT nspname::text FROM pg_namespace \
                 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' \
                   AND has_schema_privilege(nspname, 'USAGE') \
                 ORDER BY 1",
                &[],
            )
            .await?;
        Ok(ListSchemasResult {
            schemas: rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
        })
    }

    async fn list_tables(
        &self,
        args: ListTablesArgs,
        ctx: &CallContext,
    ) -> Result<ListTablesResult, ToolError> {
        let rows = self
            .catalog_rows(
                ctx,
                "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.reltuples::float8 \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' \
                   AND ($1::text IS NULL OR n.nspname = $1) \
                   AND has_schema_privilege(n.oid, 'USAGE') \
                 ORDER BY 1, 2",
                &[args.schema.as_deref()],
            )
            .await?;
        let mut tables = Vec::new();
        for r in &rows {
            let estimate: f64 = r.try_get(3).map_err(db_error)?;
            let relkind: String = r.try_get(2).map_err(db_error)?;
            tables.push(TableInfo {
                schema: r.try_get(0).map_err(db_error)?,
                name: r.try_get(1).map_err(db_error)?,
                kind: kind_of(&relkind),
                // -1 means "never analysed": no estimate rather than a wrong one.
                row_estimate: (estimate >= 0.0 && relkind != "v").then_some(estimate as i64),
            });
        }
        Ok(ListTablesResult { tables })
    }

    async fn describe_table(
        &self,
        args: DescribeTableArgs,
        ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        let mut s = self.session(ctx).await?;
        let result = describe(&mut s, &args).await;
        self.finish(s, false, true).await;
        result
    }

    async fn explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        if args.analyze && self.read_only {
            return Err(ToolError::Refused {
                reason: "EXPLAIN ANALYZE runs the statement; it is only available on read-write \
                         databases. Call explain without `analyze`"
                    .into(),
            });
        }
        // A plain EXPLAIN does not run the statement: its plan may be shown
        // whatever its class (the transaction is still read-only for a
        // read-only call).
        let allowed = match args.analyze {
            true => ctx.statements,
            false => ctx.statements.map(StatementClasses::for_plain_explain),
        };
        let vetted = self.vet(&args.sql, &args.params, allowed)?;
        let mut s = self.session(ctx).await?;
        let result = async {
            // Types for the EXPLAIN come from preparing the bare statement.
            let arguments = self.prepare_args(&mut s, &args.sql, &args.params).await?;
            let options = if args.analyze {
                "ANALYZE, BUFFERS, FORMAT JSON"
            } else {
                "FORMAT JSON"
            };
            let sql = format!("EXPLAIN ({options}) {}", args.sql);
            let row = sqlx::query_with(AssertSqlSafe(sql), arguments)
                .fetch_one(&mut *s.conn)
                .await
                .map_err(|e| {
                    if is_statement_timeout(&e) {
                        ToolError::Timeout {
                            limit: self.limits.timeout,
                        }
                    } else {
                        db_error(e)
                    }
                })?;
            let plan: Value = row.try_get(0).map_err(db_error)?;
            Ok(ExplainResult {
                format: "postgres-json".into(),
                plan,
            })
        }
        .await;
        // An analysed statement really ran: its effects are rolled back.
        self.finish(s, false, vetted.class != StatementClass::Other)
            .await;
        result
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// (name, columns, referenced schema, referenced table, referenced columns)
type ForeignKeyRow = (String, Vec<String>, String, String, Vec<String>);

async fn describe(
    s: &mut Session,
    args: &DescribeTableArgs,
) -> Result<TableDescription, ToolError> {
    let found: Option<(sqlx::postgres::types::Oid, String, String)> = sqlx::query_as(
        "SELECT c.oid, n.nspname::text, c.relkind::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND (($2::text IS NULL AND pg_table_is_visible(c.oid)) OR n.nspname = $2) \
         LIMIT 1",
    )
    .bind(&args.table)
    .bind(&args.schema)
    .fetch_optional(&mut *s.conn)
    .await
    .map_err(db_error)?;
    let Some((oid, schema, relkind)) = found else {
        let place = args
            .schema
            .as_deref()
            .map(|sc| format!("schema '{sc}'"))
            .unwrap_or_else(|| "the search path".into());
        return Err(ToolError::NotFound(format!(
            "table '{}' does not exist in {place}; call list_tables to see what exists",
            args.table
        )));
    };

    let cols: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
                pg_get_expr(d.adbin, d.adrelid) \
         FROM pg_attribute a \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text \
         FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1 AND i.indisprimary \
         ORDER BY k.ord",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    let fks: Vec<ForeignKeyRow> = sqlx::query_as(
        "SELECT con.conname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, ord) \
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
                      ORDER BY k.ord), \
                fn.nspname::text, fc.relname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, ord) \
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
                      ORDER BY k.ord) \
         FROM pg_constraint con \
         JOIN pg_class fc ON fc.oid = con.confrelid \
         JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
         WHERE con.conrelid = $1 AND con.contype = 'f' \
         ORDER BY con.conname",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    let idx: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT ic.relname::text, i.indisunique, i.indisprimary, \
                ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                      FROM generate_series(1, i.indnkeyatts::int) AS k ORDER BY k) \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         WHERE i.indrelid = $1 \
         ORDER BY ic.relname",
    )
    .bind(oid)
    .fetch_all(&mut *s.conn)
    .await
    .map_err(db_error)?;

    Ok(TableDescription {
        schema,
        name: args.table.clone(),
        kind: kind_of(&relkind),
        columns: cols
            .into_iter()
            .map(|(name, data_type, nullable, default)| ColumnDescription {
                name,
                data_type,
                nullable,
                default,
            })
            .collect(),
        primary_key,
        foreign_keys: fks
            .into_iter()
            .map(|(name, columns, rschema, rtable, rcols)| ForeignKey {
                name: Some(name),
                columns,
                referenced_schema: Some(rschema),
                referenced_table: rtable,
                referenced_columns: rcols,
            })
            .collect(),
        indexes: idx
            .into_iter()
            .map(|(name, unique, primary, columns)| IndexInfo {
                name,
                columns,
                unique,
                primary,
            })
            .collect(),
    })
}
