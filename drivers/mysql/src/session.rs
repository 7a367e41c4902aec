//! One tool call's connection: set up, guarded, and cleaned up.
//!
//! Every call takes a pooled connection and, before running anything:
//! - sets the server-side statement limit (`max_statement_time` on MariaDB,
//!   `max_execution_time` on MySQL) to the database's time limit;
//! - notes `CONNECTION_ID()`, so that a statement can be stopped from
//!   another connection with `KILL QUERY`;
//! - on a read-only database, and for a call that may only read, opens a
//!   read-only transaction ([`begin_read_only`](crate::begin_read_only));
//!   otherwise sets the session default to read-write.
//!
//! Each step then runs under a [`Guard`]: if the client cancels, or the
//! server-side limit has not stopped the statement shortly after the
//! deadline, the guard sends `KILL QUERY` and the connection is closed
//! rather than returned to the pool in an unknown state.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ewii_driver_core::schema::{ColumnInfo, SqlParam};
use ewii_driver_core::sqlx_exec::{bind_by_value, check_prepared_params, fetch_into};
use ewii_driver_core::{CallContext, ResultBuilder, ToolError};
use sqlx::mysql::{MySqlColumn, MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Executor, MySql, Row, SqlSafeStr, Statement,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::errors::{
    ER_QUERY_INTERRUPTED, ER_QUERY_TIMEOUT, ER_STATEMENT_TIMEOUT, connection_survives,
    error_number, tool_error, unavailable,
};
use crate::values::{self, MySqlRows};
use crate::{Flavor, MySqlDatabase, begin_read_only, session_read_write};

/// How long after the deadline the client gives up on the server-side limit
/// and sends `KILL QUERY` itself.
const KILL_GRACE: Duration = Duration::from_millis(500);

/// Longest wait for the side connection that sends `KILL QUERY`, and for
/// the closing `ROLLBACK`.
const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a guarded step did not finish.
pub(crate) enum Failure {
    /// The deadline passed or the client cancelled; the statement was
    /// killed on the server.
    Interrupted(ToolError),
    /// The step itself failed.
    Sql(sqlx::Error),
}

/// Enforces the time limit and client cancellation on the server.
pub(crate) struct Guard {
    connection_id: Option<u64>,
    deadline: Instant,
    limit: Duration,
    cancel: CancellationToken,
    options: Arc<MySqlConnectOptions>,
}

impl Guard {
    /// Runs `work`, stopping it (and the statement on the server) at the
    /// deadline or when the client cancels.
    pub(crate) async fn race<T>(
        &self,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Failure> {
        let interrupt = tokio::select! {
            outcome = work => return outcome.map_err(Failure::Sql),
            () = tokio::time::sleep_until(self.deadline + KILL_GRACE) => {
                ToolError::Timeout { limit: self.limit }
            }
            () = self.cancel.cancelled() => ToolError::Cancelled,
        };
        // `work` has been dropped, but the server may still be running the
        // statement: stop it there too.
        self.kill().await;
        Err(Failure::Interrupted(interrupt))
    }

    /// Sends `KILL QUERY` for this call's connection from a separate
    /// connection (the call's own one is busy waiting for the statement).
    async fn kill(&self) {
        let Some(id) = self.connection_id else {
            return;
        };
        let kill = async {
            let mut side = self.options.connect().await?;
            side.execute(AssertSqlSafe(format!("KILL QUERY {id}")))
                .await?;
            side.close().await
        };
        match tokio::time::timeout(HOUSEKEEPING_TIMEOUT, kill).await {
            Ok(Ok(())) => tracing::debug!(connection_id = id, "statement killed"),
            Ok(Err(e)) => tracing::warn!(
                connection_id = id,
                error = %e,
                "KILL QUERY failed; the server-side statement limit still applies"
            ),
            Err(_) => tracing::warn!(
                connection_id = id,
                "KILL QUERY timed out; the server-side statement limit still applies"
            ),
        }
    }

    /// Maps a failed step, telling the server's own time limit and a kill
    /// apart from a real SQL error.
    fn sql_error(&self, e: sqlx::Error) -> ToolError {
        match error_number(&e) {
            Some(ER_STATEMENT_TIMEOUT | ER_QUERY_TIMEOUT) => {
                ToolError::Timeout { limit: self.limit }
            }
            Some(ER_QUERY_INTERRUPTED) if self.cancel.is_cancelled() => ToolError::Cancelled,
            Some(ER_QUERY_INTERRUPTED) => ToolError::Timeout { limit: self.limit },
            _ => tool_error(e),
        }
    }
}

/// A pooled connection set up for one call.
pub(crate) struct Session {
    conn: PoolConnection<MySql>,
    guard: Guard,
    flavor: Flavor,
    read_only: bool,
    /// Whether the connection may go back to the pool after the call.
    reusable: bool,
    /// Set by [`Session::finish`]; a session dropped without it (an early
    /// return) closes its connection instead of returning it to the pool.
    finished: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if !(self.finished && self.reusable) {
            self.conn.close_on_drop();
        }
    }
}

impl Session {
    /// Takes a connection and sets it up for one call of `db`.
    pub(crate) async fn open(db: &MySqlDatabase, ctx: &CallContext) -> Result<Session, ToolError> {
        let guard = Guard {
            connection_id: None,
            deadline: Instant::now() + db.limits.timeout,
            limit: db.limits.timeout,
            cancel: ctx.cancel.clone(),
            options: db.options.clone(),
        };
        let conn = match guard.race(db.pool.acquire()).await {
            Ok(conn) => conn,
            Err(Failure::Sql(e)) => return Err(unavailable(&e, &db.options)),
            // No statement ran yet: a deadline here means the server is
            // unreachable or busy, not that the statement was slow.
            Err(Failure::Interrupted(ToolError::Timeout { .. })) => {
                return Err(unavailable(&sqlx::Error::PoolTimedOut, &db.options));
            }
            Err(Failure::Interrupted(e)) => return Err(e),
        };
        let mut session = Session {
            conn,
            guard,
            // Replaced right below, once the connection can be asked.
            flavor: Flavor::MariaDb,
            read_only: ctx.engine_read_only(db.read_only),
            reusable: true,
            finished: false,
        };
        session.flavor = session.run(async |conn| db.flavor(conn).await).await?;
        let setup = format!(
            "{}; SELECT CONNECTION_ID()",
            session.flavor.time_limit_sql(db.limits.timeout)
        );
        let id = session
            .run(async |conn| {
                let rows = sqlx::raw_sql(AssertSqlSafe(setup)).fetch_all(conn).await?;
                match rows.first() {
                    Some(row) => row.try_get::<u64, _>(0),
                    None => Err(sqlx::Error::RowNotFound),
                }
            })
            .await?;
        session.guard.connection_id = Some(id);
        if session.read_only {
            session
                .run(async |conn| begin_read_only(conn).await)
                .await?;
        } else {
            session
                .run(async |conn| session_read_write(conn).await)
                .await?;
        }
        Ok(session)
    }

    /// The server flavour of this connection.
    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Runs one guarded step on the connection.
    pub(crate) async fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, ToolError> {
        let outcome = self.guard.race(work(&mut self.conn)).await;
        match outcome {
            Ok(value) => Ok(value),
            Err(Failure::Interrupted(e)) => {
                self.reusable = false;
                Err(e)
            }
            Err(Failure::Sql(e)) => {
                if !connection_survives(&e) {
                    self.reusable = false;
                }
                Err(self.guard.sql_error(e))
            }
        }
    }

    /// Closes the connection after the call instead of reusing it (the
    /// statement may have changed session state).
    pub(crate) fn discard(&mut self) {
        self.reusable = false;
    }

    /// Runs trusted catalog SQL with bound text values.
    pub(crate) async fn rows(
        &mut self,
        sql: impl SqlSafeStr,
        values: &[&str],
    ) -> Result<Vec<MySqlRow>, ToolError> {
        let mut query = sqlx::query(sql);
        for v in values {
            query = query.bind(v.to_string());
        }
        self.run(async |conn| query.fetch_all(conn).await).await
    }

    /// Prepares `sql` and checks the number of placeholders against the
    /// parameters. Returns the result columns the server announces.
    pub(crate) async fn prepare(
        &mut self,
        sql: &str,
        params: &[SqlParam],
    ) -> Result<Vec<MySqlColumn>, ToolError> {
        let statement = self
            .run(async |conn| conn.prepare(AssertSqlSafe(sql).into_sql_str()).await)
            .await?;
        // The server's count, so `?` inside strings and comments never
        // confuses it.
        check_prepared_params(&statement, params.len())?;
        Ok(statement.columns().to_vec())
    }

    /// Runs the agent's statement, feeding rows to `builder` until it is
    /// full. Returns the result columns and the affected row count.
    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        params: &[SqlParam],
        builder: &mut ResultBuilder,
    ) -> Result<(Vec<ColumnInfo>, u64), ToolError> {
        let announced = self.prepare(sql, params).await?;
        let json_columns = self.json_columns(&announced).await;
        let arguments = bind_by_value::<MySql>(params)?;
        let mut rows = MySqlRows::new(&json_columns);
        let read = self
            .run(async |conn| fetch_into(conn, sql, arguments, &mut rows, builder).await)
            .await?;
        if read.stopped {
            // Unread rows are still on the wire: closing is cheaper and
            // safer than draining a huge result.
            self.discard();
        }
        let columns = read.columns.unwrap_or_else(|| {
            values::column_info(&announced, &values::kinds_of(&announced, &json_columns))
        });
        Ok((columns, read.done.rows_affected()))
    }

    /// Ordinals of MariaDB JSON columns among `columns`. MariaDB sends a
    /// JSON column as LONGTEXT; only its `json_valid` check constraint tells
    /// it apart, so the catalog is asked. Best effort: on any failure the
    /// values are shown as text.
    async fn json_columns(&mut self, columns: &[MySqlColumn]) -> HashSet<usize> {
        if self.flavor != Flavor::MariaDb {
            return HashSet::new();
        }
        let candidates: Vec<(usize, String, String)> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| values::may_be_json_column(c))
            .filter_map(|(i, c)| {
                let origin = c.origin();
                let t = origin.table_column()?;
                Some((i, t.table.to_string(), t.name.to_string()))
            })
            .collect();
        if candidates.is_empty() {
            return HashSet::new();
        }
        let tables: Vec<&str> = candidates.iter().map(|(_, t, _)| t.as_str()).collect();
        let placeholders = vec!["?"; tables.len()].join(", ");
        // Trusted SQL: only placeholders are spliced in; names are bound.
        let sql = format!(
            "SELECT CONCAT(CONSTRAINT_SCHEMA, '.', TABLE_NAME), CHECK_CLAUSE \
             FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CHECK_CLAUSE LIKE 'json\\_valid(%' \
             AND CONCAT(CONSTRAINT_SCHEMA, '.', TABLE_NAME) IN ({placeholders})"
        );
        let checks: HashSet<(String, String)> = match self.rows(AssertSqlSafe(sql), &tables).await {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| Some((crate::text(r, 0)?, crate::text(r, 1)?)))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "JSON column lookup failed; showing text");
                return HashSet::new();
            }
        };
        candidates
            .into_iter()
            .filter(|(_, table, name)| checks.contains(&(table.clone(), json_check(name))))
            .map(|(i, _, _)| i)
            .collect()
    }

    /// Ends the call: rolls back the read-only transaction and returns the
    /// connection to the pool, or closes it when its state is unknown.
    pub(crate) async fn finish(mut self) {
        if self.reusable && self.read_only {
            // Nothing in a read-only transaction can need committing.
            let rollback = (&mut *self.conn).execute("ROLLBACK");
            match tokio::time::timeout(HOUSEKEEPING_TIMEOUT, rollback).await {
                Ok(Ok(_)) => {}
                _ => self.reusable = false,
            }
        }
        self.finished = true;
        // Drop returns the connection to the pool, or closes it.
    }
}

/// The check clause MariaDB stores for a JSON column named `column`.
pub(crate) fn json_check(column: &str) -> String {
    format!("json_valid(`{}`)", column.replace('`', "``"))
}
