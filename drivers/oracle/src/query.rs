//! The agent's statements: `query` and `explain`, vetted once in the Oracle
//! dialect, run in the call's session on a blocking thread.
//!
//! Parameters: each distinct bind name (`:1`, `:2`, `:id`) is one
//! parameter, bound by name in order of first appearance (a name used twice
//! takes one value).

use ewii_driver_core::schema::{
    ColumnInfo, ExplainArgs, ExplainResult, QueryArgs, QueryResult, SqlParam,
};
use ewii_driver_core::{
    CallContext, Next, ResultBuilder, SqlDialect, StatementClass, StatementClasses, ToolError,
    Vetted, check_param_count, vet_with_params,
};
use oracle::sql_type::{OracleType, ToSql};
use oracle::{Connection, Statement};
use serde_json::Value;

use crate::OracleDatabase;
use crate::client::{statement_error, with_session};
use crate::values::{cell, type_name};

/// A parameter as the Oracle type it binds as. Booleans bind as 1/0 (SQL
/// has no BOOLEAN before 23ai); NULL binds as a NULL `VARCHAR2`.
fn to_sql(p: &SqlParam) -> Box<dyn ToSql> {
    match p {
        SqlParam::Null => Box::new(OracleType::Varchar2(1)),
        SqlParam::Bool(b) => Box::new(i64::from(*b)),
        SqlParam::Int(i) => Box::new(*i),
        SqlParam::Float(f) => Box::new(*f),
        SqlParam::Text(t) => Box::new(t.clone()),
    }
}

/// Binds `params` to the statement's distinct bind names, in order.
fn bind_all(stmt: &mut Statement, params: &[SqlParam]) -> Result<(), ToolError> {
    let names: Vec<String> = stmt.bind_names().iter().map(|n| (*n).to_owned()).collect();
    check_param_count(names.len(), params.len())?;
    for (name, p) in names.iter().zip(params) {
        stmt.bind(name.as_str(), to_sql(p).as_ref())
            .map_err(|e| ToolError::InvalidArguments(format!("parameter :{name}: {e}")))?;
    }
    Ok(())
}

impl OracleDatabase {
    fn vet(
        &self,
        sql: &str,
        params: &[SqlParam],
        allowed: Option<StatementClasses>,
    ) -> Result<Vetted, ToolError> {
        vet_with_params(
            sql,
            params.len(),
            SqlDialect::Oracle,
            self.read_only,
            allowed,
        )
    }

    /// `query`: runs the statement in its own session (read-only
    /// transaction for a read-only call), then commits (a write the call
    /// may make) or rolls back.
    pub(crate) async fn run_query(
        &self,
        args: QueryArgs,
        ctx: &CallContext,
    ) -> Result<QueryResult, ToolError> {
        let vetted = self.vet(&args.sql, &args.params, ctx.statements)?;
        let limits = self.limits;
        let max_bytes = args
            .max_bytes
            .map_or(limits.max_bytes, |m| m.min(limits.max_bytes));
        let limit = limits.timeout;
        with_session(
            &self.target,
            ctx,
            limit,
            vetted.engine_read_only,
            move |conn| {
                let mut builder = ResultBuilder::for_query(&limits, &args);
                let sql = args.sql.trim_end().trim_end_matches(';');
                let mut stmt = conn
                    .statement(sql)
                    .build()
                    .map_err(|e| statement_error(&e, limit))?;
                bind_all(&mut stmt, &args.params)?;
                if vetted.class != StatementClass::Read || !stmt.is_query() {
                    stmt.execute(&[]).map_err(|e| statement_error(&e, limit))?;
                    let affected = stmt.row_count().unwrap_or(0);
                    let result = builder.finish(Vec::new(), vetted.affected_rows(affected));
                    return Ok((result, true));
                }
                let rows = stmt.query(&[]).map_err(|e| statement_error(&e, limit))?;
                let columns = rows
                    .column_info()
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name().to_owned(),
                        type_name: type_name(c.oracle_type()),
                    })
                    .collect();
                for row in rows {
                    let row = row.map_err(|e| statement_error(&e, limit))?;
                    let cells = row
                        .sql_values()
                        .iter()
                        .map(|v| cell(v, max_bytes))
                        .collect();
                    if builder.push(cells) == Next::Stop {
                        break;
                    }
                }
                Ok((builder.finish(columns, None), true))
            },
        )
        .await
    }

    /// `explain`: `EXPLAIN PLAN` into the session's plan table (the
    /// statement is not run), shown with `DBMS_XPLAN.DISPLAY` and rolled
    /// back; with `analyze` (read-write databases only) the statement runs,
    /// its cursor's actual plan comes from `DBMS_XPLAN.DISPLAY_CURSOR`, and
    /// it is rolled back.
    pub(crate) async fn run_explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        if args.analyze && self.read_only {
            return Err(ToolError::analyze_on_read_only());
        }
        let allowed = ctx.explain_statements(args.analyze);
        self.vet(&args.sql, &args.params, allowed)?;
        let limit = self.limits.timeout;
        // EXPLAIN PLAN writes the plan table, which a read-only transaction
        // refuses; the statement itself is not run, and the session is
        // rolled back.
        with_session(&self.target, ctx, limit, false, move |conn| {
            let sql = args.sql.trim_end().trim_end_matches(';');
            let lines = if args.analyze {
                let mut stmt = conn
                    .statement(&format!(
                        "SELECT /*+ gather_plan_statistics */ * FROM ({sql})"
                    ))
                    .build()
                    .map_err(|e| statement_error(&e, limit))?;
                bind_all(&mut stmt, &args.params)?;
                for row in stmt.query(&[]).map_err(|e| statement_error(&e, limit))? {
                    row.map_err(|e| statement_error(&e, limit))?;
                }
                plan_lines(
                    conn,
                    "SELECT plan_table_output FROM \
                     TABLE(DBMS_XPLAN.DISPLAY_CURSOR(NULL, NULL, 'ALLSTATS LAST'))",
                    limit,
                )?
            } else {
                conn.execute(
                    &format!("EXPLAIN PLAN SET STATEMENT_ID = 'ewii' FOR {sql}"),
                    &[],
                )
                .map_err(|e| statement_error(&e, limit))?;
                plan_lines(
                    conn,
                    "SELECT plan_table_output FROM \
                     TABLE(DBMS_XPLAN.DISPLAY('PLAN_TABLE', 'ewii', 'TYPICAL'))",
                    limit,
                )?
            };
            // Never commit: the plan table rows and anything analysed go.
            Ok((
                ExplainResult {
                    format: "oracle-dbms-xplan".into(),
                    plan: Value::from(lines),
                },
                false,
            ))
        })
        .await
    }
}

fn plan_lines(
    conn: &Connection,
    sql: &str,
    limit: std::time::Duration,
) -> Result<Vec<String>, ToolError> {
    let rows = conn
        .query_as::<Option<String>>(sql, &[])
        .map_err(|e| statement_error(&e, limit))?;
    let mut lines = Vec::new();
    for line in rows {
        lines.push(
            line.map_err(|e| statement_error(&e, limit))?
                .unwrap_or_default(),
        );
    }
    Ok(lines)
}
