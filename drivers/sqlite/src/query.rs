//! The agent's statements: `query` and `explain` (`EXPLAIN QUERY PLAN`),
//! vetted once in the SQLite dialect and run on a guarded connection.

use std::time::Duration;

use ewii_driver_core::schema::{ExplainArgs, ExplainResult, QueryArgs, QueryResult, SqlParam};
use ewii_driver_core::sqlx_exec::{bind_by_value, check_prepared_params, fetch_into};
use ewii_driver_core::{
    CallContext, ResultBuilder, SqlDialect, StatementClass, StatementClasses, ToolError, Vetted,
    vet_statement,
};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Executor, Row, SqlSafeStr, Sqlite};

use crate::SqliteDatabase;
use crate::session::{GuardedConnection, db_error};
use crate::values::SqliteRows;

impl SqliteDatabase {
    /// Checks the statement before it reaches the engine: one statement,
    /// read-only rules, the call's allowed classes, parameter count.
    async fn vet(
        &self,
        g: &mut GuardedConnection,
        sql: &str,
        params: &[SqlParam],
        allowed: Option<StatementClasses>,
    ) -> Result<Vetted, ToolError> {
        let vetted = vet_statement(sql, SqlDialect::Sqlite, self.read_only, allowed)?;
        if matches!(vetted.class, StatementClass::Ddl | StatementClass::Other) {
            // Temporary tables, ATTACH, PRAGMA…: not for the next call.
            g.reuse = false;
        }
        // Agent SQL is dynamic by design: it is vetted above and its values are
        // bound, never interpolated.
        let stmt = (&mut *g.conn)
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(|e| g.map_err(e))?;
        check_prepared_params(&stmt, params.len())?;
        Ok(vetted)
    }

    /// `query`, on its own guarded connection.
    pub(crate) async fn run_query(
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
        let vetted = self.vet(g, &args.sql, &args.params, statements).await?;
        let arguments = bind_by_value::<Sqlite>(&args.params)?;
        let mut builder = ResultBuilder::for_query(&self.limits, &args);
        let backstop = self.limits.timeout + Duration::from_secs(2);
        let mut rows = SqliteRows;
        let work = fetch_into(&mut *g.conn, &args.sql, arguments, &mut rows, &mut builder);
        // Cancellation and the deadline are also enforced by the progress
        // handler; this only returns promptly if the engine is between steps.
        let read = g
            .ctx
            .interruptible(self.limits.timeout, backstop, work)
            .await?
            .map_err(|e| g.map_err(e))?;
        let affected = vetted.affected_rows(read.done.rows_affected());
        Ok(builder.finish(read.columns.unwrap_or_default(), affected))
    }

    /// `explain`: `EXPLAIN QUERY PLAN` as a tree. SQLite has no `ANALYZE`
    /// form.
    pub(crate) async fn run_explain(
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
            let allowed = ctx.explain_statements(false);
            self.vet(&mut g, &args.sql, &args.params, allowed).await?;
            let sql = format!("EXPLAIN QUERY PLAN {}", args.sql);
            let rows = sqlx::query_with(AssertSqlSafe(sql), bind_by_value::<Sqlite>(&args.params)?)
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
