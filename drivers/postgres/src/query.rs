//! The agent's statements: `query` and `explain`, vetted once in the
//! PostgreSQL dialect, run in the call's session, stopped on the server at
//! the time limit or when the client cancels.

use std::time::Duration;

use ewii_driver_core::schema::{ExplainArgs, ExplainResult, QueryArgs, QueryResult, SqlParam};
use ewii_driver_core::sqlx_exec::fetch_into;
use ewii_driver_core::{
    CallContext, ResultBuilder, SqlDialect, StatementClass, StatementClasses, ToolError, Vetted,
    check_param_count, vet_statement,
};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

use crate::PgDatabase;
use crate::errors::{db_error, is_statement_timeout};
use crate::session::Session;
use crate::values::PgRows;

impl PgDatabase {
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

    /// A failed statement: the server's own time limit (or a cancel this
    /// driver sent at it) is a timeout, anything else the engine's error.
    fn statement_error(&self, e: sqlx::Error) -> ToolError {
        if is_statement_timeout(&e) {
            ToolError::Timeout {
                limit: self.limits.timeout,
            }
        } else {
            db_error(e)
        }
    }

    /// `query`: runs the statement in its own session, then ends the
    /// session: committed or rolled back and reset, or closed when the
    /// statement may have left state a reset does not clear.
    pub(crate) async fn run_query(
        &self,
        args: QueryArgs,
        ctx: &CallContext,
    ) -> Result<QueryResult, ToolError> {
        let vetted = self.vet(&args.sql, &args.params, ctx.statements)?;
        let mut s = self.session(ctx).await?;
        let outcome = self.query_in(&mut s, &args, vetted).await;
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
        vetted: Vetted,
    ) -> Result<QueryResult, ToolError> {
        let arguments = self.prepare_args(s, &args.sql, &args.params).await?;
        let mut builder = ResultBuilder::for_query(&self.limits, args);
        let backstop = self.limits.timeout + Duration::from_secs(1);
        let mut rows = PgRows;
        let work = fetch_into(&mut *s.conn, &args.sql, arguments, &mut rows, &mut builder);
        let read = s
            .ctx
            .interruptible(self.limits.timeout, backstop, work)
            .await?
            .map_err(|e| self.statement_error(e))?;
        if read.stopped {
            // The server may still be producing rows nobody will read.
            self.cancel_backend(s.pid).await;
        }
        let affected = vetted.affected_rows(read.done.rows_affected());
        Ok(builder.finish(read.columns.unwrap_or_default(), affected))
    }

    /// `explain`: the plan as PostgreSQL's JSON; with `analyze` (read-write
    /// databases only) the statement really runs and is rolled back.
    pub(crate) async fn run_explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        if args.analyze && self.read_only {
            return Err(ToolError::analyze_on_read_only());
        }
        // A plain EXPLAIN does not run the statement: its plan may be shown
        // whatever its class (the transaction is still read-only for a
        // read-only call).
        let allowed = ctx.explain_statements(args.analyze);
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
                .map_err(|e| self.statement_error(e))?;
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
}
