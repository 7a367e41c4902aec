//! The agent's statements: `query` and `explain`, vetted once in the T-SQL
//! dialect, run in the call's session, stopped on the server (a TDS
//! attention) at the time limit or when the client cancels.

use ewii_driver_core::schema::{
    ColumnInfo, ExplainArgs, ExplainResult, QueryArgs, QueryResult, SqlParam,
};
use ewii_driver_core::{
    CallContext, Next, ResultBuilder, SqlDialect, StatementClass, StatementClasses, ToolError,
    Vetted, vet_with_params,
};
use futures::TryStreamExt;
use serde_json::Value;
use tiberius::{ColumnData, Query, QueryItem};

use crate::MssqlDatabase;
use crate::errors::db_error;
use crate::session::{Session, still_in_transaction};
use crate::values::{cell, type_name};

/// What reading a result produced.
struct Read {
    columns: Vec<ColumnInfo>,
    /// The builder asked to stop before the end of the result.
    stopped: bool,
    affected: Option<u64>,
}

/// Binds the call's parameters as `@P1`, `@P2`, … in order.
pub(crate) fn bind<'a>(sql: &'a str, params: &[SqlParam]) -> Query<'a> {
    let mut q = Query::new(sql);
    for p in params {
        match p {
            SqlParam::Null => q.bind(Option::<String>::None),
            SqlParam::Bool(b) => q.bind(*b),
            SqlParam::Int(i) => q.bind(*i),
            SqlParam::Float(f) => q.bind(*f),
            SqlParam::Text(t) => q.bind(t.clone()),
        }
    }
    q
}

impl MssqlDatabase {
    fn vet(
        &self,
        sql: &str,
        params: &[SqlParam],
        allowed: Option<StatementClasses>,
    ) -> Result<Vetted, ToolError> {
        vet_with_params(
            sql,
            params.len(),
            SqlDialect::MsSql,
            self.read_only,
            allowed,
        )
    }

    /// `query`: runs the statement in its own session, then commits (a
    /// write the call may make) or rolls back.
    pub(crate) async fn run_query(
        &self,
        args: QueryArgs,
        ctx: &CallContext,
    ) -> Result<QueryResult, ToolError> {
        let vetted = self.vet(&args.sql, &args.params, ctx.statements)?;
        let mut s = self.session(vetted.engine_read_only).await?;
        let mut builder = ResultBuilder::for_query(&self.limits, &args);
        let max_bytes = args
            .max_bytes
            .map_or(self.limits.max_bytes, |m| m.min(self.limits.max_bytes));
        let work = read_into(&mut s, &args, vetted, &mut builder, max_bytes);
        let limit = self.limits.timeout;
        let outcome = ctx.interruptible(limit, limit, work).await;
        match outcome {
            Ok(Ok(read)) => {
                if read.stopped {
                    // The server may still be producing rows nobody reads.
                    self.abort(s).await;
                } else {
                    if s.read_only && !still_in_transaction(&mut s.client).await? {
                        tracing::warn!("a statement ended Ewii's transaction on SQL Server");
                        self.finish(s, false).await;
                        return Err(ToolError::Database(
                            "the statement ended Ewii's transaction (COMMIT or ROLLBACK inside \
                             it); this is not allowed on a read-only call"
                                .into(),
                        ));
                    }
                    self.finish(s, true).await;
                }
                Ok(builder.finish(read.columns, read.affected))
            }
            Ok(Err(e)) => {
                self.finish(s, false).await;
                Err(e)
            }
            Err(e) => {
                // Timeout or client cancellation: the future reading the
                // result is gone; tell the server to stop the statement.
                self.abort(s).await;
                Err(e)
            }
        }
    }

    /// `explain`: the estimated plan as SHOWPLAN XML (the statement is
    /// compiled, not run); with `analyze` (read-write databases only) the
    /// statement runs under `SET STATISTICS XML ON` and is rolled back.
    pub(crate) async fn run_explain(
        &self,
        args: ExplainArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        if args.analyze && self.read_only {
            return Err(ToolError::analyze_on_read_only());
        }
        let allowed = ctx.explain_statements(args.analyze);
        let vetted = self.vet(&args.sql, &args.params, allowed)?;
        let read_only = vetted.engine_read_only || !args.analyze;
        let mut s = self.session(read_only).await?;
        let (on, off) = if args.analyze {
            ("SET STATISTICS XML ON", "SET STATISTICS XML OFF")
        } else {
            ("SET SHOWPLAN_XML ON", "SET SHOWPLAN_XML OFF")
        };
        let work = async {
            // SET SHOWPLAN_XML must be alone in its batch.
            s.client
                .simple_query(on)
                .await
                .map_err(db_error)?
                .into_results()
                .await
                .map_err(db_error)?;
            let mut stream = bind(&args.sql, &args.params)
                .query(&mut s.client)
                .await
                .map_err(db_error)?;
            let mut plan = None;
            while let Some(item) = stream.try_next().await.map_err(db_error)? {
                if let QueryItem::Row(row) = item {
                    for (_, data) in row.cells() {
                        if let Some(xml) = plan_xml(data) {
                            plan = Some(xml);
                        }
                    }
                }
            }
            drop(stream);
            s.client
                .simple_query(off)
                .await
                .map_err(db_error)?
                .into_results()
                .await
                .map_err(db_error)?;
            plan.ok_or_else(|| ToolError::Database("SQL Server returned no plan".into()))
        };
        let limit = self.limits.timeout;
        let outcome = ctx.interruptible(limit, limit, work).await;
        match outcome {
            Ok(Ok(xml)) => {
                // An analysed statement really ran: its effects roll back.
                s.read_only = true;
                self.finish(s, false).await;
                Ok(ExplainResult {
                    format: "mssql-showplan-xml".into(),
                    plan: Value::from(xml),
                })
            }
            Ok(Err(e)) => {
                self.finish(s, false).await;
                Err(e)
            }
            Err(e) => {
                self.abort(s).await;
                Err(e)
            }
        }
    }
}

/// A SHOWPLAN XML document in a result cell.
fn plan_xml(data: &ColumnData<'_>) -> Option<String> {
    let text = match data {
        ColumnData::Xml(Some(x)) => x.as_ref().clone().into_string(),
        ColumnData::String(Some(s)) => s.to_string(),
        _ => return None,
    };
    text.contains("ShowPlanXML").then_some(text)
}

/// Runs the statement and feeds its first result set to `builder`.
async fn read_into(
    s: &mut Session,
    args: &QueryArgs,
    vetted: Vetted,
    builder: &mut ResultBuilder,
    max_bytes: u64,
) -> Result<Read, ToolError> {
    let q = bind(&args.sql, &args.params);
    if vetted.class != StatementClass::Read {
        let done = q.execute(&mut s.client).await.map_err(db_error)?;
        return Ok(Read {
            columns: Vec::new(),
            stopped: false,
            affected: vetted.affected_rows(done.total()),
        });
    }
    let mut stream = q.query(&mut s.client).await.map_err(db_error)?;
    let mut columns: Option<Vec<ColumnInfo>> = None;
    let mut stopped = false;
    while let Some(item) = stream.try_next().await.map_err(db_error)? {
        match item {
            QueryItem::Metadata(m) if m.result_index() == 0 => {
                columns = Some(
                    m.columns()
                        .iter()
                        .map(|c| ColumnInfo {
                            name: c.name().to_owned(),
                            type_name: type_name(c.column_type()).to_owned(),
                        })
                        .collect(),
                );
            }
            QueryItem::Row(row) if row.result_index() == 0 => {
                let cells = row.cells().map(|(_, d)| cell(d, max_bytes)).collect();
                if builder.push(cells) == Next::Stop {
                    stopped = true;
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(Read {
        columns: columns.unwrap_or_default(),
        stopped,
        affected: None,
    })
}
