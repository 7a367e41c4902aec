//! One call's session: a pooled connection inside its own transaction
//! (`BEGIN READ ONLY` for a call that runs read-only), with the server's
//! `statement_timeout` set for the transaction, and the reset that clears
//! what a statement left on the connection before it goes back to the pool
//! (see the crate documentation for what is cleared and why).

use std::time::Duration;

use ewii_driver_core::schema::SqlParam;
use ewii_driver_core::{CallContext, ToolError, check_param_count};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo};
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, Either, Executor, Postgres, SqlSafeStr, Statement,
};

use crate::PgDatabase;
use crate::errors::{connect_error, db_error};
use crate::params::bind_typed;

/// One call's connection, inside its own transaction.
pub(crate) struct Session {
    pub(crate) conn: PoolConnection<Postgres>,
    /// The server process running the session, for `pg_cancel_backend`.
    pub(crate) pid: i32,
    pub(crate) ctx: CallContext,
    /// The transaction is `READ ONLY` (always rolled back).
    pub(crate) read_only: bool,
}

/// Clears what a statement can leave on a session after its transaction
/// ended (see the crate documentation). Each is allowed to any role.
const RESET_SESSION: &str = "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; \
     RESET ALL; DISCARD TEMP; DISCARD SEQUENCES";

impl PgDatabase {
    /// Acquires a connection and opens the call's transaction.
    pub(crate) async fn session(&self, ctx: &CallContext) -> Result<Session, ToolError> {
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
    pub(crate) async fn finish(&self, mut s: Session, ok: bool, reuse: bool) {
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
    pub(crate) async fn cancel_backend(&self, pid: i32) {
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

    /// Prepares the statement and binds `params` as the types the server
    /// inferred for its placeholders, so `"2026-01-01"` binds to a `date`
    /// and `3` to an `integer` placeholder.
    pub(crate) async fn prepare_args(
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

    /// Runs trusted catalog SQL with bound text values in a session.
    pub(crate) async fn catalog_rows(
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
