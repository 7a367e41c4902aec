//! One call's connection: a pooled connection whose progress handler
//! interrupts the running statement at the deadline or on cancellation,
//! switched to `PRAGMA query_only` for a call that may only read, and
//! closed instead of reused when the call may have left state on it.

use std::time::{Duration, Instant};

use ewii_driver_core::{CallContext, ToolError};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Sqlite};

use crate::SqliteDatabase;

/// How many SQLite VM steps between two checks of the deadline.
const PROGRESS_STEPS: i32 = 1000;

/// A pooled connection with a progress handler that interrupts the running
/// statement at the deadline or on cancellation.
pub(crate) struct GuardedConnection {
    pub(crate) conn: PoolConnection<Sqlite>,
    deadline: Instant,
    pub(crate) ctx: CallContext,
    limit: Duration,
    /// `PRAGMA query_only` was switched on for this call (a read-only call
    /// on a read-write database) and must be switched off after it.
    query_only_set: bool,
    /// The connection goes back to the pool after the call.
    pub(crate) reuse: bool,
}

impl GuardedConnection {
    /// Maps an engine error, telling a timeout or a cancellation apart from
    /// a real SQL error.
    pub(crate) fn map_err(&self, e: sqlx::Error) -> ToolError {
        if self.ctx.cancel.is_cancelled() {
            return ToolError::Cancelled;
        }
        if Instant::now() >= self.deadline {
            return ToolError::Timeout { limit: self.limit };
        }
        db_error(e)
    }

    /// Ends the call: removes the progress handler, switches
    /// `query_only` back off if the call switched it on, and returns the
    /// connection to the pool unless it must be closed.
    pub(crate) async fn release(mut self) {
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

/// An engine error, as the model sees it.
pub(crate) fn db_error(e: sqlx::Error) -> ToolError {
    match e {
        sqlx::Error::Database(d) => ToolError::Database(d.message().to_owned()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ToolError::Unavailable(e.to_string())
        }
        other => ToolError::Database(other.to_string()),
    }
}

impl SqliteDatabase {
    /// Takes a pooled connection and guards it for one call.
    pub(crate) async fn guarded(&self, ctx: &CallContext) -> Result<GuardedConnection, ToolError> {
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

    /// Runs an internal catalog statement (trusted SQL, bound values).
    pub(crate) async fn internal_rows(
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
}
