//! The document kit's checks of the catalog, the reads, limits, errors and
//! cancellation.

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{CallContext, Limits, ToolError, find_driver};
use serde_json::{Value, json};

use super::{DB, DocKit};
use crate::report::{Check, ensure};

fn docs(result: &Value) -> Vec<Value> {
    result["documents"].as_array().cloned().unwrap_or_default()
}

fn ok<T>(what: &str, r: Result<T, ToolError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

pub(super) async fn catalog(kit: &DocKit<'_>) -> Check {
    let name = kit.h.driver().name();
    ensure!(find_driver(name).is_ok(), "driver '{name}' not registered");
    let tools = kit.catalog.tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    for tool in StandardTool::DOCUMENTS {
        let want = format!("{DB}_{}", tool.suffix());
        ensure!(
            names.contains(&want.as_str()),
            "{want} not advertised: {names:?}"
        );
    }
    ensure!(
        !names.contains(&"kitdocs_query"),
        "a document database must not offer SQL `query`"
    );
    for t in tools {
        let a = t.annotations;
        ensure!(
            a.read_only_hint && !a.destructive_hint && a.idempotent_hint && !a.open_world_hint,
            "{} is not annotated read-only/non-destructive: {a:?}",
            t.name
        );
        ensure!(
            t.input_schema.get("type") == Some(&json!("object")),
            "{} schema",
            t.name
        );
    }
    Ok(())
}

pub(super) async fn check(kit: &DocKit<'_>) -> Check {
    let entry = kit.catalog.entries().get(DB).ok_or("not open")?;
    let report = entry.database.check().await.map_err(|e| e.to_string())?;
    ensure!(
        report.server_version.starts_with("MongoDB "),
        "server version: {}",
        report.server_version
    );
    // The kit's server lets anyone write or cannot say: either way a warning.
    ensure!(
        report.engine_read_only || !report.warnings.is_empty(),
        "no warning although the user's write privileges were not ruled out: {report:?}"
    );
    Ok(())
}

pub(super) async fn list_collections(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "list_collections",
        kit.call("list_collections", json!({})).await,
    )?;
    let names: Vec<&str> = r["collections"]
        .as_array()
        .ok_or("no collections array")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(
        names == ["kit_customers", "kit_orders"],
        "collections: {names:?}"
    );
    let r = ok(
        "list_databases",
        kit.call("list_databases", json!({})).await,
    )?;
    let attached: Vec<&Value> = r["databases"]
        .as_array()
        .ok_or("no databases array")?
        .iter()
        .filter(|d| d["attached"] == json!(true))
        .collect();
    ensure!(attached.len() == 1, "exactly one attached database: {r}");
    Ok(())
}

pub(super) async fn describe(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "describe_collection",
        kit.call(
            "describe_collection",
            json!({"collection": "kit_customers"}),
        )
        .await,
    )?;
    ensure!(r["sampled"] == json!(5), "sampled: {}", r["sampled"]);
    let indexes = r["indexes"].as_array().ok_or("no indexes")?;
    ensure!(
        indexes.iter().any(|i| i["keys"] == json!({"_id": 1})),
        "no _id index: {indexes:?}"
    );
    let field = |path: &str| {
        r["fields"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["path"] == json!(path)).cloned())
    };
    let city = field("address.city").ok_or("no address.city path")?;
    ensure!(
        city["types"][0] == json!({"bson_type": "string", "count": 5}),
        "{city}"
    );
    let email = field("email").ok_or("no email path")?;
    ensure!(
        email["present_in"] == json!(5) && email["types"].as_array().map(Vec::len) == Some(2),
        "{email}"
    );
    ensure!(field("tags.[]").is_some(), "array elements not described");
    let id = field("_id").ok_or("no _id")?;
    ensure!(id["types"][0]["bson_type"] == json!("objectId"), "{id}");
    let missing = kit
        .call("describe_collection", json!({"collection": "kit_nothing"}))
        .await;
    ensure!(
        matches!(missing, Err(ToolError::NotFound(_))),
        "missing collection: {missing:?}"
    );
    Ok(())
}

pub(super) async fn find(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "find",
        kit.call(
            "find",
            json!({"collection": "kit_orders", "filter": {"status": "paid", "total": {"$gte": 50}},
                   "projection": {"total": 1, "_id": 0}, "sort": {"total": -1}, "skip": 1, "limit": 3}),
        )
        .await,
    )?;
    let totals: Vec<Value> = docs(&r).iter().map(|d| d["total"].clone()).collect();
    ensure!(
        totals == [json!(170), json!(150), json!(130)],
        "totals: {totals:?} in {r}"
    );
    ensure!(docs(&r)[0].get("_id").is_none(), "projection not applied");
    ensure!(r["truncated"].is_null() && r["returned"] == json!(3), "{r}");
    Ok(())
}

pub(super) async fn types(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "find",
        kit.call(
            "find",
            json!({"collection": "kit_customers", "filter": {"_id": {"$oid": "65a1b2c3d4e5f60718293002"}}}),
        )
        .await,
    )?;
    let d = docs(&r)
        .first()
        .cloned()
        .ok_or(format!("ObjectId filter matched nothing: {r}"))?;
    ensure!(
        d["_id"] == json!({"$oid": "65a1b2c3d4e5f60718293002"}),
        "{d}"
    );
    ensure!(
        d["since"] == json!({"$date": "2024-03-15T08:30:00Z"}),
        "date: {}",
        d["since"]
    );
    ensure!(
        d["visits"] == json!(5_000_000_002_i64),
        "64-bit integer: {}",
        d["visits"]
    );
    ensure!(
        d["avatar"] == json!({"$binary": {"base64": "AP8Q", "subType": "00"}}),
        "binary: {}",
        d["avatar"]
    );
    ensure!(
        d["address"]["city"] == json!("Lyon") && d["tags"] == json!(["vip", "eu"]),
        "{d}"
    );
    // A date filter in Extended JSON.
    let r = ok(
        "count",
        kit.call(
            "count",
            json!({"collection": "kit_customers", "filter": {"since": {"$gte": {"$date": "2024-03-01T00:00:00Z"}}}}),
        )
        .await,
    )?;
    ensure!(r["count"] == json!(3), "date filter count: {r}");
    Ok(())
}

pub(super) async fn count_distinct_aggregate(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "count",
        kit.call(
            "count",
            json!({"collection": "kit_orders", "filter": {"status": "paid"}}),
        )
        .await,
    )?;
    ensure!(r["count"] == json!(10), "count: {r}");
    let r = ok(
        "count all",
        kit.call("count", json!({"collection": "kit_orders"})).await,
    )?;
    ensure!(r["count"] == json!(20), "count all: {r}");
    let r = ok(
        "distinct",
        kit.call(
            "distinct",
            json!({"collection": "kit_customers", "field": "address.city"}),
        )
        .await,
    )?;
    let mut cities: Vec<String> = r["values"]
        .as_array()
        .ok_or("no values")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    cities.sort();
    ensure!(cities == ["Lyon", "Oslo", "Porto"], "distinct: {r}");
    let r = ok(
        "aggregate",
        kit.call(
            "aggregate",
            json!({"collection": "kit_orders", "pipeline": [
                {"$group": {"_id": "$status", "n": {"$sum": 1}, "sum": {"$sum": "$total"}}},
                {"$sort": {"_id": 1}}
            ]}),
        )
        .await,
    )?;
    let groups = docs(&r);
    ensure!(
        groups.first() == Some(&json!({"_id": "open", "n": 5, "sum": 400})) && groups.len() == 3,
        "groups: {groups:?}"
    );
    let r = ok(
        "aggregate $lookup (same database)",
        kit.call(
            "aggregate",
            json!({"collection": "kit_customers", "pipeline": [
                {"$match": {"name": "customer 1"}},
                {"$lookup": {"from": "kit_orders", "localField": "_id", "foreignField": "customer", "as": "orders"}},
                {"$project": {"n": {"$size": "$orders"}}}
            ]}),
        )
        .await,
    )?;
    ensure!(
        docs(&r).first().map(|d| d["n"].clone()) == Some(json!(4)),
        "lookup: {r}"
    );
    Ok(())
}

pub(super) async fn max_rows(kit: &DocKit<'_>) -> Check {
    let limits = Limits {
        max_rows: 6,
        ..Limits::default()
    };
    let catalog = kit.with_limits(limits).await?;
    let tool = catalog
        .resolve(&format!("{DB}_find"))
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut offset = 0;
    for page in 0..5 {
        let r = ok(
            "find page",
            tool.call(
                json!({"collection": "kit_orders", "sort": {"total": 1}, "offset": offset}),
                &CallContext::default(),
            )
            .await,
        )?;
        seen.extend(docs(&r).iter().map(|d| d["_id"].clone()));
        match r["truncated"].as_object() {
            Some(t) => {
                ensure!(
                    t["reason"] == json!("max_rows") && t["limit"] == json!(6),
                    "{r}"
                );
                let message = t["message"].as_str().unwrap_or_default();
                ensure!(
                    message.contains(&format!("offset={}", offset + 6)),
                    "notice: {message}"
                );
                offset = t["next_offset"].as_u64().ok_or("no next_offset")?;
            }
            None => {
                ensure!(page == 3, "the last page came at page {page}: {r}");
                break;
            }
        }
    }
    let want: Vec<Value> = (0..20).map(|i| json!(i)).collect();
    ensure!(
        seen == want,
        "pages did not cover the collection exactly once: {seen:?}"
    );
    // A call can lower the limit, not raise it.
    let r = ok(
        "find max_rows",
        kit.call("find", json!({"collection": "kit_orders", "max_rows": 2}))
            .await,
    )?;
    ensure!(
        r["returned"] == json!(2) && r["truncated"]["next_offset"] == json!(2),
        "{r}"
    );
    Ok(())
}

pub(super) async fn max_bytes(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "find max_bytes",
        kit.call(
            "find",
            json!({"collection": "kit_customers", "max_bytes": 600}),
        )
        .await,
    )?;
    let t = &r["truncated"];
    ensure!(
        t["reason"] == json!("max_bytes") && t["limit"] == json!(600),
        "{r}"
    );
    let bytes = serde_json::to_vec(&r["documents"]).map_or(0, |v| v.len());
    ensure!(bytes <= 600 + 16, "page holds {bytes} bytes");
    ensure!(t["next_offset"] == r["returned"], "{r}");
    Ok(())
}

pub(super) async fn explain(kit: &DocKit<'_>) -> Check {
    let r = ok(
        "explain find",
        kit.call(
            "explain_documents",
            json!({"collection": "kit_orders", "filter": {"status": "paid"}}),
        )
        .await,
    )?;
    ensure!(r["plan"].get("queryPlanner").is_some(), "find plan: {r}");
    let r = ok(
        "explain aggregate",
        kit.call(
            "explain_documents",
            json!({"collection": "kit_orders", "pipeline": [{"$match": {"status": "paid"}}]}),
        )
        .await,
    )?;
    ensure!(r["plan"].is_object(), "aggregate plan: {r}");
    let both = kit
        .call(
            "explain_documents",
            json!({"collection": "kit_orders", "filter": {}, "pipeline": []}),
        )
        .await;
    ensure!(
        matches!(both, Err(ToolError::InvalidArguments(_))),
        "{both:?}"
    );
    Ok(())
}

pub(super) async fn errors(kit: &DocKit<'_>) -> Check {
    let e = kit
        .call("find", json!({"collection": "kit_orders", "where": {}}))
        .await;
    ensure!(
        matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("unknown field `where`")),
        "{e:?}"
    );
    let e = kit
        .call(
            "find",
            json!({"collection": "kit_orders", "filter": {"_id": {"$oid": "nope"}}}),
        )
        .await;
    ensure!(
        matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("Extended JSON")),
        "{e:?}"
    );
    let e = kit
        .call(
            "aggregate",
            json!({"collection": "kit_orders", "pipeline": [3]}),
        )
        .await;
    ensure!(
        matches!(&e, Err(ToolError::InvalidArguments(m)) if m.contains("pipeline[0]")),
        "{e:?}"
    );
    let e = kit
        .call("find", json!({"collection": "system.users"}))
        .await;
    ensure!(matches!(&e, Err(ToolError::InvalidArguments(_))), "{e:?}");
    let e = kit
        .call(
            "distinct",
            json!({"collection": "kit_orders", "field": "$status"}),
        )
        .await;
    ensure!(matches!(&e, Err(ToolError::InvalidArguments(_))), "{e:?}");
    Ok(())
}

pub(super) async fn cancelled(kit: &DocKit<'_>) -> Check {
    let ctx = CallContext::default();
    ctx.cancel.cancel();
    let e = kit
        .call_as("find", json!({"collection": "kit_orders"}), &ctx)
        .await;
    ensure!(matches!(e, Err(ToolError::Cancelled)), "{e:?}");
    Ok(())
}

pub(super) async fn read_options(kit: &DocKit<'_>) -> Check {
    for (preference, concern) in [
        ("primary", "local"),
        ("primaryPreferred", "available"),
        ("nearest", "majority"),
    ] {
        let r = ok(
            &format!("count with {preference}/{concern}"),
            kit.call(
                "count",
                json!({"collection": "kit_orders", "read_preference": preference, "read_concern": concern}),
            )
            .await,
        )?;
        ensure!(r["count"] == json!(20), "{r}");
    }
    let e = kit
        .call(
            "find",
            json!({"collection": "kit_orders", "read_concern": "snapshot"}),
        )
        .await;
    ensure!(matches!(e, Err(ToolError::InvalidArguments(_))), "{e:?}");
    Ok(())
}

pub(super) async fn decimal(kit: &DocKit<'_>) -> Check {
    let price = json!({"$numberDecimal": "1.10"});
    kit.h
        .insert(
            &kit.config,
            "kit_types",
            vec![json!({"_id": 1, "price": price})],
        )
        .await?;
    let r = ok(
        "find decimal",
        kit.call("find", json!({"collection": "kit_types"})).await,
    )?;
    ensure!(
        docs(&r).first().map(|d| d["price"].clone()) == Some(price),
        "{r}"
    );
    Ok(())
}

pub(super) async fn max_time(kit: &DocKit<'_>) -> Check {
    let limits = Limits {
        timeout: std::time::Duration::from_millis(300),
        ..Limits::default()
    };
    let catalog = kit.with_limits(limits).await?;
    let slow = json!({"collection": "kit_orders", "pipeline": [
        {"$project": {"x": {"$reduce": {"input": {"$range": [0, 5000000]}, "initialValue": 0,
                                         "in": {"$add": ["$$value", "$$this"]}}}}}
    ]});
    let started = std::time::Instant::now();
    let tool = catalog
        .resolve(&format!("{DB}_aggregate"))
        .map_err(|e| e.to_string())?;
    let r = tool.call(slow, &CallContext::default()).await;
    ensure!(matches!(r, Err(ToolError::Timeout { .. })), "{r:?}");
    // Before the client-side backstop (limit + 2 s): the server stopped it.
    ensure!(
        started.elapsed() < std::time::Duration::from_millis(1800),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}
