//! The adapter's live catalog and its MCP backend ([`ToolBackend`] on the
//! shared [`ewii_mcp`] layer).
//!
//! Every advertised tool carries `_meta["ewii/dialect"]`, the classifier
//! dialect of its database, so the hub classifies statements in the
//! dialect the engine speaks. Every `tools/call` from the hub carries
//! `_meta["ewii/statements"]`, the agent's allowed statement classes; the
//! drivers enforce them (classifier and engine read-only mode, see
//! [`ewii_driver_core::vet_statement`]). A call without it is a local
//! caller's and keeps the database's own mode; a malformed one is refused
//! before anything runs.
//!
//! The adapter has one caller, its Ewii client (the HTTP gate in
//! [`crate::access`] admits no one else), and so one `list_changed` group.

use std::sync::Arc;
use std::time::Instant;

use ewii_driver_core::schema::ToolDescriptor;
use ewii_driver_core::{CallContext, Catalog, CatalogChange, DatabaseConfig, ToolError};
use ewii_mcp::{ListChanged, SessionCaller, ToolBackend, to_call_response, to_mcp_tool};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Extensions,
    Implementation, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;
use tokio::sync::RwLock;

/// The MCP session handler of the adapter.
pub type McpService = ewii_mcp::ToolServer<Adapter>;

/// The adapter's live state: the catalog of attached databases and the
/// connected MCP clients to tell when it changes.
pub struct Adapter {
    catalog: RwLock<Catalog>,
    list_changed: ListChanged,
}

impl Adapter {
    /// An adapter serving `configs`. Databases that fail to open are
    /// reported in the returned change and left out.
    pub async fn new(configs: Vec<DatabaseConfig>) -> (Arc<Adapter>, CatalogChange) {
        let mut catalog = Catalog::new();
        let change = catalog.apply(configs).await;
        let adapter = Arc::new(Adapter {
            catalog: RwLock::new(catalog),
            list_changed: ListChanged::new(),
        });
        (adapter, change)
    }

    /// Brings the catalog to `configs` and, if the tools changed, sends
    /// `notifications/tools/list_changed` to every connected client.
    pub async fn apply(&self, configs: Vec<DatabaseConfig>) -> CatalogChange {
        let change = self.catalog.write().await.apply(configs).await;
        for (name, e) in &change.failed {
            tracing::warn!(database = %name, error = %e, "database left out of the catalog");
        }
        if change.tools_changed() {
            tracing::info!(
                added = ?change.added, removed = ?change.removed, changed = ?change.changed,
                "catalog changed"
            );
            self.list_changed.notify(None).await;
        }
        change
    }

    /// The advertised tools.
    pub async fn tools(&self) -> Vec<ToolDescriptor> {
        self.catalog.read().await.tools().to_vec()
    }

    /// Runs one tool. The catalog lock is released before the database is
    /// called, so a slow query never blocks a catalog change.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<Value, ToolError> {
        let resolved = self.catalog.read().await.resolve(name)?;
        resolved.call(arguments, ctx).await
    }

    /// Closes every database.
    pub async fn close(&self) {
        self.catalog.write().await.close().await;
    }
}

/// The adapter's one caller: its Ewii client, or a local stdio client.
#[derive(Debug, Clone, Copy)]
pub struct LocalCaller;

impl SessionCaller for LocalCaller {
    fn owner(&self) -> &str {
        "local"
    }

    fn group(&self) -> &str {
        "local"
    }
}

impl ToolBackend for Adapter {
    type Caller = LocalCaller;

    fn implementation(&self) -> Implementation {
        Implementation::new("ewii-adapter", env!("CARGO_PKG_VERSION"))
            .with_title("Ewii MCP adapter")
    }

    fn instructions(&self) -> &'static str {
        "Each attached database contributes tools named <database>_<tool>. Start with \
         <database>_list_tables and <database>_describe_table, then run one statement per \
         <database>_query call with bound params. Results are bounded: follow \
         truncated.next_offset to page."
    }

    fn list_changed(&self) -> &ListChanged {
        &self.list_changed
    }

    /// Whoever passed the HTTP gate (or holds the stdio pipe) is the
    /// adapter's client.
    fn caller(&self, _extensions: &Extensions) -> Result<LocalCaller, ErrorData> {
        Ok(LocalCaller)
    }

    async fn tools(&self, _caller: &LocalCaller) -> Vec<Tool> {
        self.catalog
            .read()
            .await
            .tools()
            .iter()
            .map(to_mcp_tool)
            .collect()
    }

    async fn call_tool(
        &self,
        _caller: LocalCaller,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let statements = match ewii_mcp::call_statements(&request, &context) {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(tool = %request.name, %reason, "call refused");
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "refused: {reason}; nothing ran. Update the hub and the adapter to \
                     matching versions"
                ))])
                .into());
            }
        };
        let ctx = CallContext {
            cancel: context.ct.clone(),
            statements,
        };
        let arguments = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let outcome = self.call(&request.name, arguments, &ctx).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Ok(_) => tracing::info!(tool = %request.name, ms, "tool call"),
            Err(e) => tracing::info!(tool = %request.name, ms, error = %e, "tool call failed"),
        }
        to_call_response(outcome)
    }
}
