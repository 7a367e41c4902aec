//! Extended JSON ↔ BSON, and BSON type names.
//!
//! Arguments are Extended JSON (relaxed or canonical), so a model writes
//! `{"$oid": "…"}` or `{"$date": "2024-01-01T00:00:00Z"}`; documents come
//! back as relaxed Extended JSON, where ObjectIds, dates, decimals and
//! binary data keep their types.

use ewii_driver_core::ToolError;
use mongodb::bson::{Bson, Document};
use serde_json::{Map, Value};

/// An argument object (`filter`, `sort`, `projection`) as a BSON document.
pub fn document(what: &str, map: Option<Map<String, Value>>) -> Result<Document, ToolError> {
    match map {
        None => Ok(Document::new()),
        Some(map) => match Bson::try_from(Value::Object(map)) {
            Ok(Bson::Document(d)) => Ok(d),
            Ok(_) => Err(bad(what, "an object")),
            Err(e) => Err(ToolError::InvalidArguments(format!(
                "`{what}` is not valid Extended JSON: {e}"
            ))),
        },
    }
}

/// A pipeline as BSON stages.
pub fn pipeline(stages: Vec<Value>) -> Result<Vec<Document>, ToolError> {
    stages
        .into_iter()
        .enumerate()
        .map(|(i, stage)| match Bson::try_from(stage) {
            Ok(Bson::Document(d)) => Ok(d),
            Ok(_) => Err(bad(&format!("pipeline[{i}]"), "an object (one stage)")),
            Err(e) => Err(ToolError::InvalidArguments(format!(
                "`pipeline[{i}]` is not valid Extended JSON: {e}"
            ))),
        })
        .collect()
}

fn bad(what: &str, expected: &str) -> ToolError {
    ToolError::InvalidArguments(format!("`{what}` must be {expected}"))
}

/// A document as relaxed Extended JSON.
pub fn to_json(doc: Document) -> Value {
    Bson::Document(doc).into_relaxed_extjson()
}

/// A value as relaxed Extended JSON.
pub fn bson_to_json(value: Bson) -> Value {
    value.into_relaxed_extjson()
}

/// The `$type` name of a BSON value (`string`, `int`, `objectId`, …).
pub fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Array(_) => "array",
        Bson::Document(_) => "object",
        Bson::Boolean(_) => "bool",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Timestamp(_) => "timestamp",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::DateTime(_) => "date",
        Bson::Symbol(_) => "symbol",
        Bson::Decimal128(_) => "decimal",
        Bson::Undefined => "undefined",
        Bson::MaxKey => "maxKey",
        Bson::MinKey => "minKey",
        Bson::DbPointer(_) => "dbPointer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extended_json_round_trips_with_types() {
        let Value::Object(filter) = json!({
            "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"},
            "at": {"$date": "2024-01-02T03:04:05Z"},
            "n": {"$numberLong": "5"},
            "price": {"$numberDecimal": "1.10"},
            "blob": {"$binary": {"base64": "AP8=", "subType": "00"}}
        }) else {
            panic!()
        };
        let doc = document("filter", Some(filter)).expect("valid");
        assert_eq!(type_name(doc.get("_id").expect("id")), "objectId");
        assert_eq!(type_name(doc.get("at").expect("at")), "date");
        assert_eq!(type_name(doc.get("n").expect("n")), "long");
        assert_eq!(type_name(doc.get("price").expect("price")), "decimal");
        let back = to_json(doc);
        assert_eq!(back["_id"], json!({"$oid": "65a1b2c3d4e5f60718293a4b"}));
        assert_eq!(back["at"], json!({"$date": "2024-01-02T03:04:05Z"}));
        assert_eq!(back["n"], json!(5));
        assert_eq!(back["price"], json!({"$numberDecimal": "1.10"}));
        assert_eq!(
            back["blob"],
            json!({"$binary": {"base64": "AP8=", "subType": "00"}})
        );
    }

    #[test]
    fn a_stage_must_be_an_object() {
        let err = pipeline(vec![json!({"$match": {}}), json!(3)]).expect_err("not a stage");
        assert!(err.to_string().contains("pipeline[1]"));
    }
}
