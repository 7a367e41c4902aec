//! The Ewii MCP layer: what the adapter's and the hub's MCP endpoints
//! share, written once over rmcp.
//!
//! Each endpoint implements one [`ToolBackend`] (the adapter: its catalog;
//! the hub: policy, audit and routing to deployments) and gets the rest
//! from here:
//!
//! - [`server`]: [`ToolServer`], the rmcp `ServerHandler` of one session:
//!   capabilities, protocol versions (2025-06-18, 2025-11-25 and the
//!   stateless 2026-07-28, with everything rmcp knows), session binding to
//!   the caller that opened it, `tools/list` paging, `subscriptions/listen`;
//! - [`list_changed`]: [`ListChanged`], `notifications/tools/list_changed`
//!   to session clients and `listen` subscribers, by group;
//! - [`page`]: the `tools/list` pager;
//! - [`convert`]: catalog descriptors to MCP tools, tool outcomes to MCP
//!   results, the statement classes a call carries in its `_meta`;
//! - [`http`]: the streamable HTTP edge ([`HttpEdge`]: Host and Origin
//!   validation, body limit) and the one HTTP/1.1 serving loop
//!   ([`serve_http`]: header-read deadline, graceful shutdown);
//! - [`in_flight`]: one JSON-RPC id in flight per session (a duplicate is
//!   answered with an error at once, not left to hang);
//! - [`progress`]: `notifications/progress` while a call runs, for a
//!   caller that sent a `progressToken`;
//! - [`origin`]: browser origins compared exactly ([`ExactOrigin`]).
//!
//! The naming rules ([`ToolName`]) and [`SecretString`] live one crate
//! down, in `ewii-tools-schema`, so that drivers use them without this
//! crate's server stack; they are re-exported here.
#![forbid(unsafe_code)]

pub mod convert;
pub mod http;
pub mod in_flight;
pub mod list_changed;
pub mod origin;
pub mod page;
pub mod progress;
pub mod server;

pub use convert::{
    call_statements, set_statements, statements_of, to_call_response, to_call_result, to_mcp_tool,
};
pub use ewii_tools_schema::{NameError, SecretString, ToolName};
pub use http::{AllowedHosts, HttpEdge, serve_http, without_nagle};
pub use list_changed::ListChanged;
pub use origin::{ExactOrigin, InvalidOrigin};
pub use page::{TOOLS_PAGE_SIZE, list_page, tools_page};
pub use progress::{PROGRESS_INTERVAL, with_progress};
pub use server::{SessionCaller, ToolBackend, ToolServer, from_http_request};
