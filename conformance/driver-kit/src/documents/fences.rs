//! The document kit's fence checks: every write or code stage refused at
//! top level and nested, with the data unchanged.

use ewii_driver_core::ToolError;
use serde_json::{Value, json};

use super::DocKit;
use crate::calls::classes;
use crate::report::{Check, ensure};

/// Each refused stage with the operator its refusal must name.
fn forbidden() -> Vec<(&'static str, Value)> {
    vec![
        ("$out", json!({"$out": "kit_copy"})),
        ("$merge", json!({"$merge": {"into": "kit_copy"}})),
        (
            "$function",
            json!({"$addFields": {"x": {"$function": {"body": "function() { return 1 }", "args": [], "lang": "js"}}}}),
        ),
        (
            "$accumulator",
            json!({"$group": {"_id": null, "x": {"$accumulator": {"init": "function() {}", "accumulate": "function() {}", "accumulateArgs": [], "merge": "function() {}", "lang": "js"}}}}),
        ),
        ("$where", json!({"$match": {"$where": "true"}})),
        ("mapReduce", json!({"$match": {"mapReduce": "kit_orders"}})),
        (
            "$lookup",
            json!({"$lookup": {"from": {"db": "admin", "coll": "system.users"}, "as": "u", "pipeline": []}}),
        ),
        (
            "$unionWith",
            json!({"$unionWith": {"db": "admin", "coll": "system.users"}}),
        ),
    ]
}

fn nestings(stage: &Value) -> Vec<(&'static str, Value)> {
    vec![
        ("top level", json!([stage])),
        (
            "$facet",
            json!([{"$facet": {"ok": [{"$count": "n"}], "bad": [stage]}}]),
        ),
        (
            "$lookup.pipeline",
            json!([{"$lookup": {"from": "kit_orders", "as": "o", "pipeline": [stage]}}]),
        ),
        (
            "$unionWith.pipeline",
            json!([{"$unionWith": {"coll": "kit_orders", "pipeline": [stage]}}]),
        ),
    ]
}

pub(super) async fn refused(kit: &DocKit<'_>) -> Check {
    let before = kit.h.raw_state(&kit.config).await?;
    for (op, stage) in forbidden() {
        for (place, pipeline) in nestings(&stage) {
            let r = kit
                .call(
                    "aggregate",
                    json!({"collection": "kit_orders", "pipeline": pipeline}),
                )
                .await;
            ensure!(
                matches!(&r, Err(ToolError::Refused { reason }) if reason.contains(op)),
                "{op} ({place}) not refused naming it: {r:?}"
            );
            let r = kit
                .call(
                    "explain_documents",
                    json!({"collection": "kit_orders", "pipeline": pipeline}),
                )
                .await;
            ensure!(
                matches!(&r, Err(ToolError::Refused { .. })),
                "explain of {op} ({place}): {r:?}"
            );
        }
    }
    for (tool, args) in [
        (
            "find",
            json!({"collection": "kit_orders", "filter": {"$where": "true"}}),
        ),
        (
            "count",
            json!({"collection": "kit_orders", "filter": {"$expr": {"$function": {"body": "f", "args": [], "lang": "js"}}}}),
        ),
        (
            "distinct",
            json!({"collection": "kit_orders", "field": "status", "filter": {"$where": "1"}}),
        ),
        (
            "find",
            json!({"collection": "kit_orders", "projection": {"x": {"$function": {"body": "f", "args": [], "lang": "js"}}}}),
        ),
        (
            "explain_documents",
            json!({"collection": "kit_orders", "filter": {"$where": "1"}}),
        ),
    ] {
        let r = kit.call(tool, args.clone()).await;
        ensure!(
            matches!(&r, Err(ToolError::Refused { .. })),
            "{tool} {args}: {r:?}"
        );
    }
    let after = kit.h.raw_state(&kit.config).await?;
    ensure!(before == after, "data changed: {before:?} → {after:?}");
    Ok(())
}

pub(super) async fn statements(kit: &DocKit<'_>) -> Check {
    let r = kit
        .call_as(
            "count",
            json!({"collection": "kit_orders"}),
            &classes(&["write"]),
        )
        .await;
    ensure!(matches!(r, Err(ToolError::Refused { .. })), "{r:?}");
    let r = kit
        .call_as(
            "count",
            json!({"collection": "kit_orders"}),
            &classes(&["read"]),
        )
        .await;
    ensure!(r.is_ok(), "a read-only agent may read: {r:?}");
    Ok(())
}
