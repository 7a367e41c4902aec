//! The fence of the document tools (MongoDB): a recursive walk over
//! filters and aggregation pipelines that refuses what writes or runs
//! server-side code, at any nesting depth.
//!
//! The walk looks at every key of every object, however deep: inside
//! `$facet`, `$lookup.pipeline`, `$unionWith.pipeline`, `$expr`, `$or`,
//! `$cond`… A key is an operator wherever it appears, so a write stage
//! nested in a sub-pipeline is found like a top-level one. The walk is
//! conservative: an operator name quoted inside `$literal` is refused too
//! (rewrite the literal). It is the *first* fence, for a clear reason; the
//! driver also reads with `maxTimeMS`, a read concern and read preference,
//! and `test-database` warns when the user can write.

use serde_json::{Map, Value};

use crate::StatementClass;
use ewii_tools_schema::StandardTool;

/// Deepest nesting the walk follows; deeper input is refused rather than
/// walked (a bounded stack).
const MAX_DEPTH: usize = 100;

/// Why a filter or pipeline was refused, and what the model can do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRefusal {
    /// The class of what was found: `write` for `$out`/`$merge`, `other` for
    /// code and cross-database reads.
    pub class: StatementClass,
    /// The operator found (`$out`, `$function`, …).
    pub operator: String,
    /// Where it was found, e.g. `pipeline[2].$facet.byCity[0]`.
    pub path: String,
    /// The whole reason, for the refusal message.
    pub reason: String,
}

/// What a document tool call is, for the hub's policy and the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVerdict {
    /// The call's statement class: `read`, unless the walk found something.
    pub class: StatementClass,
    /// What the walk found, if anything: the driver refuses such a call.
    pub refusal: Option<DocumentRefusal>,
}

/// Walks one query filter (`find`, `count`, `distinct`, `explain`).
/// `database` is the attached database (the home of `$lookup`s).
pub fn fence_filter(filter: &Map<String, Value>, database: &str) -> Result<(), DocumentRefusal> {
    walk_object(filter, "filter", database, 0)
}

/// Walks an aggregation pipeline, stage by stage and into every
/// sub-pipeline.
pub fn fence_pipeline(pipeline: &[Value], database: &str) -> Result<(), DocumentRefusal> {
    for (i, stage) in pipeline.iter().enumerate() {
        walk(stage, &format!("pipeline[{i}]"), database, 0)?;
    }
    Ok(())
}

/// Classifies one document tool call from its JSON arguments, as the hub's
/// policy and the driver both do: every filter, sort, projection and
/// pipeline argument is walked. A tool that is not a document tool is
/// `read` with nothing found.
pub fn classify_document_call(
    tool: StandardTool,
    arguments: &Map<String, Value>,
    database: &str,
) -> DocumentVerdict {
    let mut refusal = None;
    if tool.is_document_tool() {
        for key in ["filter", "projection", "sort", "pipeline"] {
            let found = match arguments.get(key) {
                Some(Value::Array(stages)) => fence_pipeline(stages, database),
                Some(value) => walk(value, key, database, 0),
                None => Ok(()),
            };
            if let Err(r) = found {
                refusal = Some(r);
                break;
            }
        }
    }
    DocumentVerdict {
        class: refusal.as_ref().map_or(StatementClass::Read, |r| r.class),
        refusal,
    }
}

fn walk(value: &Value, path: &str, database: &str, depth: usize) -> Result<(), DocumentRefusal> {
    if depth > MAX_DEPTH {
        return Err(DocumentRefusal {
            class: StatementClass::Other,
            operator: String::new(),
            path: path.to_owned(),
            reason: format!(
                "the argument nests deeper than {MAX_DEPTH} levels at {path}; flatten it"
            ),
        });
    }
    match value {
        Value::Object(map) => walk_object(map, path, database, depth),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), database, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn walk_object(
    map: &Map<String, Value>,
    path: &str,
    database: &str,
    depth: usize,
) -> Result<(), DocumentRefusal> {
    for (key, value) in map {
        let here = format!("{path}.{key}");
        if let Some((class, why)) = forbidden(key) {
            return Err(DocumentRefusal {
                class,
                operator: key.clone(),
                path: here.clone(),
                reason: format!("`{key}` (at {here}) {why}"),
            });
        }
        if key == "$lookup" || key == "$unionWith" || key == "$graphLookup" {
            cross_database(key, value, &here, database)?;
        }
        walk(value, &here, database, depth + 1)?;
    }
    Ok(())
}

/// The operators refused anywhere, with their class and what to do instead.
fn forbidden(key: &str) -> Option<(StatementClass, &'static str)> {
    let found = match key {
        "$out" | "$merge" => (
            StatementClass::Write,
            "writes the results into a collection; the document tools only read. Drop the \
             stage and read the results directly (page on with `offset`)",
        ),
        "$function" | "$accumulator" | "$where" => (
            StatementClass::Other,
            "runs server-side JavaScript, which is refused. Express it with query and \
             aggregation operators ($expr, $regexMatch, $reduce, $group accumulators…)",
        ),
        "mapReduce" | "$mapReduce" => (
            StatementClass::Other,
            "runs server-side JavaScript and can write its output. Use an aggregation \
             pipeline with $group instead",
        ),
        _ => return None,
    };
    Some(found)
}

/// `$lookup` / `$unionWith` / `$graphLookup` reading another database
/// (`from: {db, coll}` or `db:`) is refused: the agent was given this
/// database only.
fn cross_database(
    key: &str,
    value: &Value,
    path: &str,
    database: &str,
) -> Result<(), DocumentRefusal> {
    let Value::Object(spec) = value else {
        return Ok(());
    };
    let other_db = spec
        .get("db")
        .or_else(|| spec.get("from").and_then(|f| f.get("db")))
        .and_then(Value::as_str)
        .filter(|db| *db != database);
    match other_db {
        Some(db) => Err(DocumentRefusal {
            class: StatementClass::Other,
            operator: key.to_owned(),
            path: path.to_owned(),
            reason: format!(
                "`{key}` (at {path}) reads database '{db}', but these tools are attached to \
                 database '{database}' only. Read collections of '{database}', or ask the \
                 operator to attach '{db}' as its own database"
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DB: &str = "shop";

    fn pipeline(v: Value) -> Result<(), DocumentRefusal> {
        match v {
            Value::Array(stages) => fence_pipeline(&stages, DB),
            _ => panic!("a pipeline is an array"),
        }
    }

    fn filter(v: Value) -> Result<(), DocumentRefusal> {
        match v {
            Value::Object(map) => fence_filter(&map, DB),
            _ => panic!("a filter is an object"),
        }
    }

    /// Every write or code stage, as a stage of its own.
    fn forbidden_stages() -> Vec<(&'static str, Value, StatementClass)> {
        vec![
            ("$out", json!({"$out": "copy"}), StatementClass::Write),
            (
                "$merge",
                json!({"$merge": {"into": "copy"}}),
                StatementClass::Write,
            ),
            (
                "$function",
                json!({"$addFields": {"x": {"$function": {"body": "function(){}", "args": [], "lang": "js"}}}}),
                StatementClass::Other,
            ),
            (
                "$accumulator",
                json!({"$group": {"_id": null, "x": {"$accumulator": {"init": "function(){}", "accumulate": "f", "accumulateArgs": [], "merge": "f", "lang": "js"}}}}),
                StatementClass::Other,
            ),
            (
                "$where",
                json!({"$match": {"$where": "this.a > 1"}}),
                StatementClass::Other,
            ),
            (
                "mapReduce",
                json!({"mapReduce": "orders"}),
                StatementClass::Other,
            ),
            (
                "$lookup",
                json!({"$lookup": {"from": {"db": "admin", "coll": "system.users"}, "as": "u", "pipeline": []}}),
                StatementClass::Other,
            ),
            (
                "$unionWith",
                json!({"$unionWith": {"db": "other", "coll": "secrets"}}),
                StatementClass::Other,
            ),
        ]
    }

    #[test]
    fn every_write_or_code_stage_is_refused_at_top_level() {
        for (op, stage, class) in forbidden_stages() {
            let r = pipeline(json!([{"$match": {}}, stage])).expect_err(op);
            assert_eq!(r.operator, op);
            assert_eq!(r.class, class, "{op}");
            assert!(r.path.starts_with("pipeline[1]"), "{op}: {}", r.path);
            assert!(r.reason.contains(op), "{op}: {}", r.reason);
        }
    }

    #[test]
    fn every_write_or_code_stage_is_refused_inside_facet_lookup_and_union() {
        for (op, stage, class) in forbidden_stages() {
            let nests = [
                json!([{"$facet": {"a": [{"$match": {}}], "b": [stage.clone()]}}]),
                json!([{"$lookup": {"from": "orders", "as": "o", "pipeline": [stage.clone()]}}]),
                json!([{"$unionWith": {"coll": "orders", "pipeline": [stage.clone()]}}]),
                // Three levels: a facet inside a lookup inside a facet.
                json!([{"$facet": {"x": [{"$lookup": {"from": "o", "as": "o", "pipeline": [
                    {"$facet": {"deep": [stage.clone()]}}
                ]}}]}}]),
            ];
            for nested in nests {
                let r = pipeline(nested.clone()).expect_err(&format!("{op} in {nested}"));
                assert_eq!((r.operator.as_str(), r.class), (op, class), "{nested}");
            }
        }
    }

    #[test]
    fn code_in_filters_and_expr_is_refused() {
        let r = filter(json!({"$where": "sleep(1000)"})).expect_err("$where");
        assert_eq!(
            (r.operator.as_str(), r.path.as_str()),
            ("$where", "filter.$where")
        );
        let r = filter(json!({"$and": [{"a": 1}, {"$expr": {"$function": {"body": "f", "args": [], "lang": "js"}}}]}))
            .expect_err("$function in $expr");
        assert_eq!(r.path, "filter.$and[1].$expr.$function");
        assert!(r.reason.contains("server-side JavaScript"));
    }

    #[test]
    fn reads_pass() {
        pipeline(json!([
            {"$match": {"status": "open", "total": {"$gt": 10}, "$expr": {"$eq": ["$a", "$b"]}}},
            {"$lookup": {"from": "customers", "localField": "c", "foreignField": "_id", "as": "c"}},
            {"$lookup": {"from": {"db": DB, "coll": "x"}, "as": "x", "pipeline": [{"$match": {}}]}},
            {"$unionWith": {"coll": "archive", "pipeline": [{"$project": {"a": 1}}]}},
            {"$unionWith": "archive2"},
            {"$facet": {"n": [{"$count": "n"}], "top": [{"$sort": {"t": -1}}, {"$limit": 3}]}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}, "where": {"$first": "$out"}}},
            {"$unwind": "$items"}, {"$addFields": {"out": "$merge"}}, {"$sample": {"size": 5}}
        ]))
        .expect("reads pass");
        filter(json!({"name": {"$regex": "^a"}, "tags": {"$in": ["$out"]}, "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"}}))
            .expect("a filter that reads passes, operator names as values are data");
    }

    #[test]
    fn hub_and_driver_classify_the_same_way() {
        let args = json!({"collection": "o", "pipeline": [{"$facet": {"a": [{"$merge": "x"}]}}]});
        let Value::Object(args) = args else { panic!() };
        let v = classify_document_call(StandardTool::Aggregate, &args, DB);
        assert_eq!(v.class, StatementClass::Write);
        assert_eq!(
            v.refusal.expect("found").path,
            "pipeline[0].$facet.a[0].$merge"
        );
        let args = json!({"collection": "o", "filter": {"a": 1}});
        let Value::Object(args) = args else { panic!() };
        let v = classify_document_call(StandardTool::Find, &args, DB);
        assert_eq!((v.class, v.refusal), (StatementClass::Read, None));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut v = json!({"a": 1});
        for _ in 0..150 {
            v = json!({"$and": [v]});
        }
        let Value::Object(map) = v else { panic!() };
        let r = fence_filter(&map, DB).expect_err("too deep");
        assert!(r.reason.contains("nests deeper"));
    }
}
