//! MongoDB in the agent policy: the statement class of a document tool
//! call, the statement the audit trail stores for it, and its redaction.
//!
//! A document tool call is classified by the same recursive walk the
//! MongoDB driver runs ([`ewii_driver_core::classify_document_call`]):
//! `read`, unless its filter, projection, sort or pipeline holds `$out` /
//! `$merge` (`write`) or server-side code or a cross-database read
//! (`other`) at any depth. So `statements = ["read"]` holds for MongoDB
//! too, and the refusal says what was found where. The hub does not know
//! which MongoDB database a tool reads, so every `$lookup`/`$unionWith`
//! that names a database counts as `other` here (the driver, which knows,
//! allows its own database).
//!
//! The audit statement is the call as a MongoDB command in JSON
//! (`{"find": "orders", "filter": {…}}`, `{"aggregate": "orders",
//! "pipeline": […]}`); [`redact_command`] replaces its values with `"?"`,
//! keeping operators, field names and `$field` references.

use ewii_driver_core::classify_document_call;
use ewii_driver_core::schema::StandardTool;
use serde_json::{Map, Value};

use super::model::StatementKind;

/// The placeholder a redacted value becomes.
const REDACTED: &str = "?";

/// The document tool of `suffix`, if it is one.
pub(super) fn document_tool(suffix: &str) -> Option<StandardTool> {
    StandardTool::from_suffix(suffix).filter(|t| t.is_document_tool())
}

/// The class of a document tool call and the reason for a refusal
/// ("this call is …").
pub(super) fn classify(
    tool: StandardTool,
    arguments: Option<&Map<String, Value>>,
) -> (StatementKind, String) {
    let empty = Map::new();
    let verdict = classify_document_call(tool, arguments.unwrap_or(&empty), "");
    match verdict.refusal {
        Some(r) => (
            StatementKind::from(r.class),
            format!("this call is {}: {}", kind_word(r.class.into()), r.reason),
        ),
        None => (
            StatementKind::Read,
            format!("`{}` with these arguments is a read", tool.suffix()),
        ),
    }
}

fn kind_word(kind: StatementKind) -> &'static str {
    match kind {
        StatementKind::Read => "a read",
        StatementKind::Write => "a write",
        StatementKind::Ddl => "DDL",
        StatementKind::Other => "`other`",
    }
}

/// The call as a MongoDB command in JSON, for the audit trail: the
/// collection under the command's name and the filter, projection, sort
/// or pipeline as given. `None` for tools with nothing to record.
pub(super) fn statement(
    tool: StandardTool,
    arguments: Option<&Map<String, Value>>,
) -> Option<String> {
    let arguments = arguments?;
    let command = match tool {
        StandardTool::Find => "find",
        StandardTool::Aggregate => "aggregate",
        StandardTool::Count => "count",
        StandardTool::Distinct => "distinct",
        StandardTool::ExplainDocuments => "explain",
        StandardTool::DescribeCollection => "describe",
        _ => return None,
    };
    let mut out = Map::new();
    out.insert(
        command.into(),
        arguments.get("collection").cloned().unwrap_or(Value::Null),
    );
    for key in [
        "field",
        "filter",
        "projection",
        "sort",
        "pipeline",
        "skip",
        "limit",
    ] {
        if let Some(v) = arguments.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Some(Value::Object(out).to_string())
}

/// A document command (a JSON object) with its values replaced by `"?"`;
/// `None` when `text` is not one (then it is SQL).
pub(super) fn redact_command(text: &str) -> Option<String> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let Ok(Value::Object(mut command)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    for (key, value) in command.iter_mut() {
        // The command's own value is the collection name: kept, like a
        // table name in redacted SQL. The field of `distinct` too.
        if !matches!(
            key.as_str(),
            "find" | "aggregate" | "count" | "distinct" | "explain" | "describe" | "field"
        ) {
            redact(value);
        }
    }
    Some(Value::Object(command).to_string())
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => map.values_mut().for_each(redact),
        Value::Array(items) => items.iter_mut().for_each(redact),
        // `$field` references name fields, not data.
        Value::String(s) if s.starts_with('$') => {}
        other => *other = Value::String(REDACTED.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn classes_follow_the_walk_at_any_depth() {
        let a = args(
            json!({"collection": "o", "pipeline": [{"$lookup": {"from": "x", "as": "x", "pipeline": [{"$out": "y"}]}}]}),
        );
        let (kind, why) = classify(StandardTool::Aggregate, Some(&a));
        assert_eq!(kind, StatementKind::Write);
        assert!(
            why.contains("$out") && why.contains("pipeline[0].$lookup.pipeline[0]"),
            "{why}"
        );
        let a = args(json!({"collection": "o", "filter": {"$where": "1"}}));
        assert_eq!(
            classify(StandardTool::Find, Some(&a)).0,
            StatementKind::Other
        );
        let a = args(json!({"collection": "o", "filter": {"a": 1}}));
        assert_eq!(
            classify(StandardTool::Count, Some(&a)).0,
            StatementKind::Read
        );
        assert_eq!(
            classify(StandardTool::ListCollections, None).0,
            StatementKind::Read
        );
    }

    #[test]
    fn audit_statement_and_its_redaction() {
        let a = args(
            json!({"collection": "orders", "filter": {"email": "a@b.c", "n": {"$gt": 5}}, "sort": {"n": -1}, "max_rows": 3}),
        );
        let s = statement(StandardTool::Find, Some(&a)).expect("recorded");
        // Compared as values: key order depends on serde_json's `preserve_order`.
        let parsed = |s: &str| serde_json::from_str::<Value>(s).expect("JSON");
        assert_eq!(
            parsed(&s),
            json!({"find": "orders", "filter": {"email": "a@b.c", "n": {"$gt": 5}}, "sort": {"n": -1}})
        );
        let r = redact_command(&s).expect("a document command");
        assert_eq!(
            parsed(&r),
            json!({"find": "orders", "filter": {"email": "?", "n": {"$gt": "?"}}, "sort": {"n": "?"}})
        );
        let a = args(
            json!({"collection": "o", "pipeline": [{"$group": {"_id": "$city", "n": {"$sum": 1}}}, {"$match": {"secret": "x"}}]}),
        );
        let r =
            redact_command(&statement(StandardTool::Aggregate, Some(&a)).expect("s")).expect("r");
        assert!(
            r.contains(r#""_id":"$city""#) && !r.contains("\"x\"") && r.contains(r#""secret":"?""#),
            "{r}"
        );
        assert_eq!(redact_command("SELECT 1"), None);
    }

    #[test]
    fn a_read_only_agent_policy_holds_for_mongodb() {
        use crate::gateway::policy::{Call, Decision, Policy, Rule};
        let policy = Policy::from_toml("statements = [\"read\"]\nrow_limit = 50").expect("policy");
        let eval = |tool: &str, a: Value| {
            let a = args(a);
            policy.evaluate(&Call {
                deployment: "eu",
                tool,
                arguments: Some(&a),
                dialect: None,
                accepts_max_bytes: true,
            })
        };
        let d = eval(
            "shop_aggregate",
            json!({"collection": "o", "pipeline": [{"$facet": {"a": [{"$merge": "x"}]}}]}),
        );
        let Decision::Deny {
            rule,
            message,
            statement,
            class,
            ..
        } = d
        else {
            panic!("allowed: {d:?}")
        };
        assert_eq!(
            (rule, class),
            (Rule::Statements, Some(StatementKind::Write))
        );
        assert!(
            message.contains("$merge") && message.contains("pipeline[0].$facet.a[0]"),
            "{message}"
        );
        let statement: Value = serde_json::from_str(&statement.expect("audited")).expect("JSON");
        assert_eq!(statement["aggregate"], json!("o"));
        let d = eval(
            "shop_find",
            json!({"collection": "o", "filter": {"a": 1}, "max_rows": 500}),
        );
        let Decision::Allow {
            class,
            statement,
            arguments,
            ..
        } = d
        else {
            panic!("denied: {d:?}")
        };
        assert_eq!(class, Some(StatementKind::Read));
        let statement: Value = serde_json::from_str(&statement.expect("audited")).expect("JSON");
        assert_eq!(statement, json!({"find": "o", "filter": {"a": 1}}));
        // row_limit caps the documents a find returns, as for SQL.
        assert_eq!(arguments.expect("capped")["max_rows"], json!(50));
    }
}
