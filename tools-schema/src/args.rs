//! Argument types of the standard tools.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value bound to a statement placeholder.
///
/// Only scalars are accepted: binding keeps values out of the SQL text, so a
/// model never has to quote or escape them.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (also use this for dates, decimals and UUIDs).
    Text(String),
}

impl Serialize for SqlParam {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SqlParam::Null => s.serialize_none(),
            SqlParam::Bool(b) => s.serialize_bool(*b),
            SqlParam::Int(i) => s.serialize_i64(*i),
            SqlParam::Float(f) => s.serialize_f64(*f),
            SqlParam::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for SqlParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SqlParam;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a SQL parameter: null, a boolean, a number or a string \
                     (arrays and objects cannot be bound; pass JSON as a string)",
                )
            }
            fn visit_unit<E>(self) -> Result<SqlParam, E> {
                Ok(SqlParam::Null)
            }
            fn visit_none<E>(self) -> Result<SqlParam, E> {
                Ok(SqlParam::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<SqlParam, E> {
                Ok(SqlParam::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<SqlParam, E> {
                Ok(SqlParam::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SqlParam, E> {
                i64::try_from(v).map(SqlParam::Int).map_err(|_| {
                    E::custom(format!(
                        "integer {v} does not fit in 64 bits; pass it as a string"
                    ))
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<SqlParam, E> {
                Ok(SqlParam::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<SqlParam, E> {
                Ok(SqlParam::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<SqlParam, E> {
                Ok(SqlParam::Text(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for SqlParam {
    fn schema_name() -> Cow<'static, str> {
        "SqlParam".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A value bound to a placeholder: null, boolean, number or string.",
            "type": ["null", "boolean", "integer", "number", "string"]
        })
    }
}

/// Arguments of `<db>_query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// Exactly one SQL statement. Use the database's placeholders for values
    /// (`?` for SQLite and MySQL, `$1`, `$2`… for PostgreSQL).
    pub sql: String,
    /// Values bound to the placeholders, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SqlParam>,
    /// Return at most this many rows (capped by the database's configured
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<u32>,
    /// Return at most this many bytes of row data (as JSON); capped by the
    /// database's configured limit. The hub sets it from the agent's
    /// policy (`max_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// Skip this many rows first: pass `truncated.next_offset` of the previous
    /// result to read the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// Arguments of `<db>_list_schemas` (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSchemasArgs {}

/// Arguments of `<db>_list_tables`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTablesArgs {
    /// Only list objects of this schema (default: every schema visible to
    /// the connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// Arguments of `<db>_describe_table`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeTableArgs {
    /// Table or view name, as listed by `<db>_list_tables`.
    pub table: String,
    /// Schema of the table (default: the connection's default schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// Arguments of `<db>_explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainArgs {
    /// The statement to explain (it is not run).
    pub sql: String,
    /// Values for its placeholders, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SqlParam>,
    /// Also run the statement and report real timings (EXPLAIN ANALYZE).
    /// Only on read-write databases, and the statement's effects are rolled
    /// back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub analyze: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_accept_scalars_only() {
        let args: QueryArgs =
            serde_json::from_value(json!({"sql": "x", "params": [null, true, 3, 2.5, "s"]}))
                .expect("scalars");
        assert_eq!(
            args.params,
            vec![
                SqlParam::Null,
                SqlParam::Bool(true),
                SqlParam::Int(3),
                SqlParam::Float(2.5),
                SqlParam::Text("s".into())
            ]
        );
        let err = serde_json::from_value::<QueryArgs>(json!({"sql": "x", "params": [[1]]}))
            .expect_err("array refused");
        assert!(
            err.to_string()
                .contains("arrays and objects cannot be bound")
        );
        let err = serde_json::from_value::<QueryArgs>(json!({"sql": "x", "params": [u64::MAX]}))
            .expect_err("too big");
        assert!(err.to_string().contains("pass it as a string"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_value::<QueryArgs>(json!({"sql": "x", "limit": 3}))
            .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `limit`"));
    }
}
