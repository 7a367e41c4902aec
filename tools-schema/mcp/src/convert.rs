//! Between the catalog contract and MCP: tools, call results, and the
//! statement classes a call carries in its `_meta`.
//!
//! The hub writes `_meta["ewii/statements"]` on every call it forwards
//! ([`set_statements`]); the adapter reads it ([`call_statements`]) and
//! the drivers enforce it. A call without it is a local caller's and keeps
//! the database's own mode; a malformed one is refused before anything
//! runs, since a meta the adapter cannot read must not widen what runs.

use std::sync::Arc;

use ewii_driver_core::schema::ToolDescriptor;
use ewii_driver_core::{STATEMENTS_META, StatementClasses, ToolError};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    RequestMetaObject, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Map, Value};

/// Converts a catalog descriptor into an rmcp tool (its `_meta` included).
pub fn to_mcp_tool(d: &ToolDescriptor) -> Tool {
    let mut tool = Tool::new(
        d.name.clone(),
        d.description.clone(),
        Arc::new(d.input_schema.clone()),
    )
    .with_title(d.title.clone())
    .with_raw_output_schema(Arc::new(d.output_schema.clone()))
    .with_annotations(ToolAnnotations::from_raw(
        Some(d.title.clone()),
        Some(d.annotations.read_only_hint),
        Some(d.annotations.destructive_hint),
        Some(d.annotations.idempotent_hint),
        Some(d.annotations.open_world_hint),
    ));
    tool.meta = d.meta.clone().map(Into::into);
    tool
}

/// Turns a tool outcome into the answer to `tools/call`: a name no tool has
/// is a protocol error (JSON-RPC -32602, invalid params), as MCP specifies;
/// everything else is a result ([`to_call_result`]).
pub fn to_call_response(outcome: Result<Value, ToolError>) -> Result<CallToolResponse, ErrorData> {
    match outcome {
        Err(ToolError::UnknownTool(message)) => Err(ErrorData::invalid_params(message, None)),
        outcome => Ok(to_call_result(outcome).into()),
    }
}

/// Turns a tool outcome into an MCP result: structured content plus the same
/// JSON as text (for clients without structured content support), plus an
/// explicit truncation notice; failures become `isError` results whose text
/// tells the model what to fix.
pub fn to_call_result(outcome: Result<Value, ToolError>) -> CallToolResult {
    match outcome {
        Ok(value) => {
            let notice = value
                .get("truncated")
                .and_then(|t| t.get("message"))
                .and_then(Value::as_str)
                .map(|m| format!("TRUNCATED: {m}"));
            let mut result = CallToolResult::structured(value);
            if let Some(n) = notice {
                result.content.push(ContentBlock::text(n));
            }
            result
        }
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
    }
}

/// The allowed statement classes in a `_meta`: `Ok(None)` when absent (a
/// local caller), `Err` with the reason when present but not a list of
/// `read`, `write`, `ddl`, `other`.
pub fn statements_of(meta: &Map<String, Value>) -> Result<Option<StatementClasses>, String> {
    let Some(value) = meta.get(STATEMENTS_META) else {
        return Ok(None);
    };
    let names: Option<Vec<&str>> = value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect());
    let Some(names) = names else {
        return Err(format!(
            "the call's _meta \"{STATEMENTS_META}\" is not a list of statement classes"
        ));
    };
    StatementClasses::from_names(names)
        .map(Some)
        .map_err(|bad| {
            format!(
                "the call's _meta \"{STATEMENTS_META}\" names an unknown statement class \"{bad}\" \
                 (known: read, write, ddl, other)"
            )
        })
}

/// The allowed statement classes of a call, from the request's `_meta` or,
/// where rmcp moved it, the context's; see [`statements_of`].
pub fn call_statements(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<Option<StatementClasses>, String> {
    match request.meta.as_deref() {
        Some(meta) if meta.contains_key(STATEMENTS_META) => statements_of(meta),
        _ => statements_of(&context.meta),
    }
}

/// Writes the statement classes a forwarded call may run into its `_meta`.
pub fn set_statements(meta: &mut RequestMetaObject, classes: StatementClasses) {
    meta.insert(STATEMENTS_META.into(), Value::from(classes.names()));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ewii_driver_core::StatementClass;
    use ewii_driver_core::schema::StandardTool;
    use serde_json::json;

    use super::*;

    #[test]
    fn statements_round_trip_and_refuse_what_they_cannot_read() {
        let mut meta = RequestMetaObject::new();
        assert_eq!(statements_of(&meta), Ok(None));
        let read = StatementClasses::from_classes([StatementClass::Read]);
        set_statements(&mut meta, read);
        assert_eq!(meta.get(STATEMENTS_META), Some(&json!(["read"])));
        assert_eq!(statements_of(&meta), Ok(Some(read)));
        set_statements(&mut meta, StatementClasses::all());
        assert_eq!(statements_of(&meta), Ok(Some(StatementClasses::all())));
        for bad in [
            json!("read"),
            json!([1]),
            json!(["read", "drop"]),
            json!(null),
        ] {
            let mut meta = Map::new();
            meta.insert(STATEMENTS_META.into(), bad.clone());
            assert!(statements_of(&meta).is_err(), "{bad}");
        }
    }

    #[test]
    fn results_carry_structure_truncation_and_errors() {
        let r = to_call_result(Ok(
            json!({"rows": [], "truncated": {"message": "cut at 1 row"}}),
        ));
        assert_eq!(r.is_error, Some(false));
        assert!(r.structured_content.is_some());
        let texts: Vec<String> = r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        assert!(
            texts.iter().any(|t| t == "TRUNCATED: cut at 1 row"),
            "{texts:?}"
        );
        let unknown =
            to_call_response(Err(ToolError::UnknownTool("unknown tool 'x'".into()))).unwrap_err();
        assert_eq!(unknown.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(
            to_call_response(Err(ToolError::NotFound("table x".into()))).is_ok(),
            "a failure of a real tool is a result"
        );
        let e = to_call_result(Err(ToolError::NotFound("table x".into())));
        assert_eq!(e.is_error, Some(true));
    }

    #[test]
    fn tools_keep_their_descriptor() {
        let mut d = StandardTool::Query
            .descriptor("shop", "SQLite", true)
            .unwrap();
        d.meta = Some(Map::from_iter([("ewii/dialect".into(), json!("sqlite"))]));
        let t = to_mcp_tool(&d);
        assert_eq!(t.name, "shop_query");
        assert_eq!(t.title.as_deref(), Some(d.title.as_str()));
        let a = t.annotations.unwrap();
        assert_eq!(a.read_only_hint, Some(true));
        assert_eq!(a.destructive_hint, Some(false));
        assert!(t.output_schema.is_some());
        assert_eq!(
            t.meta.as_deref().and_then(|m| m.get("ewii/dialect")),
            Some(&json!("sqlite"))
        );
    }
}
