//! The two traits a driver implements, and driver registration.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ewii_tools_schema::{
    AggregateArgs, CollectionDescription, CountArgs, CountResult, DescribeCollectionArgs,
    DescribeTableArgs, DistinctArgs, DistinctResult, DocumentsResult, ExplainArgs,
    ExplainDocumentsArgs, ExplainResult, FindArgs, ListCollectionsArgs, ListCollectionsResult,
    ListDatabasesArgs, ListDatabasesResult, ListSchemasArgs, ListSchemasResult, ListTablesArgs,
    ListTablesResult, QueryArgs, QueryResult, StandardTool, TableDescription,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{DatabaseConfig, DriverError, SqlDialect, StatementClasses, ToolError};

/// Every driver name Ewii knows, built into this binary or not. `aliases`
/// of a registered driver must be drawn from this list.
pub const KNOWN_DRIVERS: &[&str] = &[
    "sqlite", "postgres", "mysql", "mariadb", "mssql", "oracle", "mongodb",
];

/// A kind of database. One static value per driver crate, registered with
/// `inventory::submit!(DriverRegistration(&MY_DRIVER))`.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Canonical name, e.g. `sqlite`.
    fn name(&self) -> &'static str;

    /// Other names that select this driver (e.g. `mariadb` for `mysql`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Human name of the SQL dialect, used in tool descriptions.
    fn dialect_name(&self) -> &'static str;

    /// An example URL, shown in `--help` and in URL errors.
    fn example_url(&self) -> &'static str;

    /// Opens (lazily or eagerly) a database. Must not log the URL.
    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError>;
}

/// What `check` found out about a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Engine name and version, e.g. `SQLite 3.51.0`.
    pub server_version: String,
    /// Whether the engine itself refuses writes on this connection.
    pub engine_read_only: bool,
    /// Warnings for the admin (e.g. a read-only database whose role can write).
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// The warning every driver's `check` gives for a database attached
    /// read-write, in one wording.
    pub const READ_WRITE_WARNING: &str =
        "this database is attached read-write: agents can change and delete data";
}

/// The tool `_meta` key naming the classifier dialect of the tool's
/// database (`sqlite`, `postgres`, `mysql`; see [`SqlDialect::as_str`]).
pub const DIALECT_META: &str = "ewii/dialect";

/// The `tools/call` `_meta` key the hub sends with the statement classes
/// the calling agent may run (`["read", "write", "ddl", "other"]`).
pub const STATEMENTS_META: &str = "ewii/statements";

/// Per-call context handed to a driver.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Cancelled when the client cancels the call (`notifications/cancelled`)
    /// or disconnects; the driver must then cancel the statement on the server.
    pub cancel: CancellationToken,
    /// The statement classes this call may run, as the hub sent them
    /// ([`STATEMENTS_META`]). `None`: the call did not come from the hub
    /// (a local client), and the database's own mode applies. A call that
    /// may only read runs in the engine's read-only mode even on a
    /// read-write database; see [`crate::vet_statement`].
    pub statements: Option<StatementClasses>,
}

impl CallContext {
    /// Whether the call must run in the engine's read-only mode on a
    /// database whose own mode is `read_only`.
    pub fn engine_read_only(&self, read_only: bool) -> bool {
        read_only || self.statements.is_some_and(StatementClasses::read_only)
    }

    /// Runs `work` (a statement on the engine) until it ends, the client
    /// cancels ([`ToolError::Cancelled`]) or `backstop` passes
    /// ([`ToolError::Timeout`] naming the database's `limit`). The backstop
    /// is the client-side guard behind the engine's own time limit, set a
    /// little past `limit`. Dropping `work` does not stop the statement on
    /// the server: the driver does that (cancel request, progress handler).
    pub async fn interruptible<T>(
        &self,
        limit: Duration,
        backstop: Duration,
        work: impl Future<Output = T>,
    ) -> Result<T, ToolError> {
        tokio::select! {
            outcome = tokio::time::timeout(backstop, work) => {
                outcome.map_err(|_| ToolError::Timeout { limit })
            }
            () = self.cancel.cancelled() => Err(ToolError::Cancelled),
        }
    }

    /// The classes an `explain` call may show the plan of: the call's own
    /// for `EXPLAIN ANALYZE`, which runs the statement; for a plain
    /// `EXPLAIN`, which does not, writes and DDL too
    /// ([`StatementClasses::for_plain_explain`]).
    pub fn explain_statements(&self, analyze: bool) -> Option<StatementClasses> {
        match analyze {
            true => self.statements,
            false => self.statements.map(StatementClasses::for_plain_explain),
        }
    }
}

/// One open database. Tools a driver does not support keep the default
/// implementation, which refuses with a clear message.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    /// The standard tools this database offers.
    fn tools(&self) -> &'static [StandardTool];

    /// Human name of the SQL dialect, used in tool descriptions.
    fn dialect_name(&self) -> &'static str;

    /// The dialect its statements are classified in, advertised with each
    /// tool as `_meta["ewii/dialect"]` so the hub classifies a statement in
    /// the same dialect. `None` for a database that does not speak SQL: the
    /// hub then counts its statements as `other`.
    fn sql_dialect(&self) -> Option<SqlDialect> {
        None
    }

    /// Connects and reports the server version and effective mode.
    async fn check(&self) -> Result<CheckReport, DriverError>;

    /// `<db>_query`.
    async fn query(&self, args: QueryArgs, ctx: &CallContext) -> Result<QueryResult, ToolError>;

    /// `<db>_list_schemas`.
    async fn list_schemas(
        &self,
        _args: ListSchemasArgs,
        _ctx: &CallContext,
    ) -> Result<ListSchemasResult, ToolError> {
        Err(unsupported(StandardTool::ListSchemas))
    }

    /// `<db>_list_tables`.
    async fn list_tables(
        &self,
        _args: ListTablesArgs,
        _ctx: &CallContext,
    ) -> Result<ListTablesResult, ToolError> {
        Err(unsupported(StandardTool::ListTables))
    }

    /// `<db>_describe_table`.
    async fn describe_table(
        &self,
        _args: DescribeTableArgs,
        _ctx: &CallContext,
    ) -> Result<TableDescription, ToolError> {
        Err(unsupported(StandardTool::DescribeTable))
    }

    /// `<db>_explain`.
    async fn explain(
        &self,
        _args: ExplainArgs,
        _ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        Err(unsupported(StandardTool::Explain))
    }

    /// `<db>_find` (document databases).
    async fn find(
        &self,
        _args: FindArgs,
        _ctx: &CallContext,
    ) -> Result<DocumentsResult, ToolError> {
        Err(unsupported(StandardTool::Find))
    }

    /// `<db>_aggregate` (document databases).
    async fn aggregate(
        &self,
        _args: AggregateArgs,
        _ctx: &CallContext,
    ) -> Result<DocumentsResult, ToolError> {
        Err(unsupported(StandardTool::Aggregate))
    }

    /// `<db>_count` (document databases).
    async fn count(&self, _args: CountArgs, _ctx: &CallContext) -> Result<CountResult, ToolError> {
        Err(unsupported(StandardTool::Count))
    }

    /// `<db>_distinct` (document databases).
    async fn distinct(
        &self,
        _args: DistinctArgs,
        _ctx: &CallContext,
    ) -> Result<DistinctResult, ToolError> {
        Err(unsupported(StandardTool::Distinct))
    }

    /// `<db>_list_databases` (document databases).
    async fn list_databases(
        &self,
        _args: ListDatabasesArgs,
        _ctx: &CallContext,
    ) -> Result<ListDatabasesResult, ToolError> {
        Err(unsupported(StandardTool::ListDatabases))
    }

    /// `<db>_list_collections` (document databases).
    async fn list_collections(
        &self,
        _args: ListCollectionsArgs,
        _ctx: &CallContext,
    ) -> Result<ListCollectionsResult, ToolError> {
        Err(unsupported(StandardTool::ListCollections))
    }

    /// `<db>_describe_collection` (document databases).
    async fn describe_collection(
        &self,
        _args: DescribeCollectionArgs,
        _ctx: &CallContext,
    ) -> Result<CollectionDescription, ToolError> {
        Err(unsupported(StandardTool::DescribeCollection))
    }

    /// `<db>_explain_documents` (document databases).
    async fn explain_documents(
        &self,
        _args: ExplainDocumentsArgs,
        _ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        Err(unsupported(StandardTool::ExplainDocuments))
    }

    /// Closes pools and connections. Called when the database is removed.
    async fn close(&self) {}
}

fn unsupported(tool: StandardTool) -> ToolError {
    ToolError::UnknownTool(format!(
        "this database does not offer the '{}' tool",
        tool.suffix()
    ))
}

/// Parses `arguments` for `tool`, runs it on `db` and returns the
/// `structuredContent`. The one place argument errors are worded.
pub async fn dispatch(
    db: &dyn Database,
    tool: StandardTool,
    arguments: Value,
    ctx: &CallContext,
) -> Result<Value, ToolError> {
    if !db.tools().contains(&tool) {
        return Err(unsupported(tool));
    }
    match tool {
        StandardTool::Query => to_value(db.query(parse_args(arguments)?, ctx).await?),
        StandardTool::ListSchemas => to_value(db.list_schemas(parse_args(arguments)?, ctx).await?),
        StandardTool::ListTables => to_value(db.list_tables(parse_args(arguments)?, ctx).await?),
        StandardTool::DescribeTable => {
            to_value(db.describe_table(parse_args(arguments)?, ctx).await?)
        }
        StandardTool::Explain => to_value(db.explain(parse_args(arguments)?, ctx).await?),
        StandardTool::Find => to_value(db.find(parse_args(arguments)?, ctx).await?),
        StandardTool::Aggregate => to_value(db.aggregate(parse_args(arguments)?, ctx).await?),
        StandardTool::Count => to_value(db.count(parse_args(arguments)?, ctx).await?),
        StandardTool::Distinct => to_value(db.distinct(parse_args(arguments)?, ctx).await?),
        StandardTool::ListDatabases => {
            to_value(db.list_databases(parse_args(arguments)?, ctx).await?)
        }
        StandardTool::ListCollections => {
            to_value(db.list_collections(parse_args(arguments)?, ctx).await?)
        }
        StandardTool::DescribeCollection => {
            to_value(db.describe_collection(parse_args(arguments)?, ctx).await?)
        }
        StandardTool::ExplainDocuments => {
            to_value(db.explain_documents(parse_args(arguments)?, ctx).await?)
        }
    }
}

fn parse_args<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    let arguments = match arguments {
        Value::Null => Value::Object(Default::default()),
        other => other,
    };
    serde_json::from_value(arguments).map_err(|e| {
        ToolError::InvalidArguments(format!(
            "{e}. Check the tool's inputSchema for the field names and types."
        ))
    })
}

fn to_value<T: Serialize>(result: T) -> Result<Value, ToolError> {
    serde_json::to_value(result)
        .map_err(|e| ToolError::Database(format!("result could not be encoded as JSON: {e}")))
}

/// Registration record a driver crate submits with `inventory::submit!`.
pub struct DriverRegistration(pub &'static dyn Driver);

inventory::collect!(DriverRegistration);

/// Every driver linked into this binary, sorted by name.
///
/// A driver crate that is a dependency but never named in code is not
/// linked and does not appear here: name each driver crate once
/// (`use ewii_driver_x as _;`) in the binary that should carry it.
pub fn registered_drivers() -> Vec<&'static dyn Driver> {
    let mut drivers: Vec<&'static dyn Driver> = inventory::iter::<DriverRegistration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    drivers.sort_by_key(|d| d.name());
    drivers
}

/// Finds the driver for `name` (canonical name or alias).
pub fn find_driver(name: &str) -> Result<&'static dyn Driver, DriverError> {
    let drivers = registered_drivers();
    if let Some(d) = drivers
        .iter()
        .find(|d| d.name() == name || d.aliases().contains(&name))
    {
        return Ok(*d);
    }
    if KNOWN_DRIVERS.contains(&name) {
        let built_in: Vec<&str> = drivers.iter().map(|d| d.name()).collect();
        Err(DriverError::NotBuiltIn {
            name: name.to_owned(),
            built_in: if built_in.is_empty() {
                "none".into()
            } else {
                built_in.join(", ")
            },
        })
    } else {
        Err(DriverError::Unknown {
            name: name.to_owned(),
            known: KNOWN_DRIVERS.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn interruptible_work_ends_at_cancellation_or_the_backstop() {
        let ctx = CallContext::default();
        let limit = Duration::from_secs(30);
        let short = Duration::from_millis(20);
        assert_eq!(ctx.interruptible(limit, short, async { 7 }).await, Ok(7));
        let never = std::future::pending::<()>();
        assert_eq!(
            ctx.interruptible(limit, short, never).await,
            Err(ToolError::Timeout { limit })
        );
        ctx.cancel.cancel();
        let never = std::future::pending::<()>();
        assert_eq!(
            ctx.interruptible(limit, Duration::from_secs(60), never)
                .await,
            Err(ToolError::Cancelled)
        );
    }
}
