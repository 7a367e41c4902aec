//! Argument and result types of the document tools (MongoDB): `find`,
//! `aggregate`, `count`, `distinct`, `list_databases`, `list_collections`,
//! `describe_collection`, `explain_documents`.
//!
//! Filters, projections, sorts and pipelines are MongoDB Extended JSON
//! (relaxed or canonical: `{"$oid": "…"}`, `{"$date": "…"}`); documents come
//! back as relaxed Extended JSON so ObjectIds, dates, decimals and binary
//! data keep their types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Truncation;

/// Which members of a replica set may answer a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReadPreferenceMode {
    /// The primary only (the default).
    Primary,
    /// The primary, or a secondary when no primary is available.
    PrimaryPreferred,
    /// Secondaries only.
    Secondary,
    /// A secondary, or the primary when no secondary is available.
    SecondaryPreferred,
    /// The member with the lowest latency.
    Nearest,
}

/// How durable the data a read returns must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReadConcernLevel {
    /// The member's most recent data (the default).
    Local,
    /// Like `local`, also on sharded orphans (fastest).
    Available,
    /// Only data acknowledged by a majority of the replica set.
    Majority,
}

/// Arguments of `<db>_find`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindArgs {
    /// Collection name, as listed by `<db>_list_collections`.
    pub collection: String,
    /// Query filter (Extended JSON), e.g. `{"status": "open", "total": {"$gt": 10}}`.
    /// `$where` and `$function` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Map<String, Value>>,
    /// Fields to return, e.g. `{"name": 1, "_id": 0}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Map<String, Value>>,
    /// Sort order, e.g. `{"created": -1}`. Sort on a unique key (such as
    /// `_id`) when paging, so pages do not overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<Map<String, Value>>,
    /// Skip this many matching documents (part of the query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<u64>,
    /// Match at most this many documents (part of the query; the result is
    /// also bounded by the database's row and byte limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// Return at most this many documents (capped by the database's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<u32>,
    /// Return at most this many bytes of documents (as JSON); capped by the
    /// database's limit. The hub sets it from the agent's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// Paging: pass `truncated.next_offset` of the previous result to read
    /// the next page (same filter and sort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Which replica set members may answer (default `primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_preference: Option<ReadPreferenceMode>,
    /// How durable the returned data must be (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_concern: Option<ReadConcernLevel>,
}

/// Arguments of `<db>_aggregate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateArgs {
    /// Collection name.
    pub collection: String,
    /// Aggregation pipeline (Extended JSON stages), e.g.
    /// `[{"$match": {…}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]`.
    /// Stages that write or run code (`$out`, `$merge`, `$function`,
    /// `$accumulator`, `$where`) are refused at any depth.
    pub pipeline: Vec<Value>,
    /// Return at most this many documents (capped by the database's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<u32>,
    /// Return at most this many bytes of documents (as JSON); capped by the
    /// database's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// Paging: pass `truncated.next_offset` of the previous result (same
    /// pipeline, ending in a `$sort` on a unique key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Which replica set members may answer (default `primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_preference: Option<ReadPreferenceMode>,
    /// How durable the returned data must be (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_concern: Option<ReadConcernLevel>,
}

/// Arguments of `<db>_count`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountArgs {
    /// Collection name.
    pub collection: String,
    /// Query filter (Extended JSON); omit to count every document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Map<String, Value>>,
    /// Which replica set members may answer (default `primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_preference: Option<ReadPreferenceMode>,
    /// How durable the returned data must be (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_concern: Option<ReadConcernLevel>,
}

/// Arguments of `<db>_distinct`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistinctArgs {
    /// Collection name.
    pub collection: String,
    /// Field path whose distinct values to list, e.g. `address.city`.
    pub field: String,
    /// Query filter (Extended JSON) selecting the documents considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Map<String, Value>>,
    /// Return at most this many values (capped by the database's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_rows: Option<u32>,
    /// Return at most this many bytes of values (as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// Which replica set members may answer (default `primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_preference: Option<ReadPreferenceMode>,
    /// How durable the returned data must be (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_concern: Option<ReadConcernLevel>,
}

/// Arguments of `<db>_list_databases` (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDatabasesArgs {}

/// Arguments of `<db>_list_collections` (none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCollectionsArgs {}

/// Arguments of `<db>_describe_collection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeCollectionArgs {
    /// Collection name.
    pub collection: String,
    /// How many documents to `$sample` for the inferred schema (default
    /// 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub sample_size: Option<u32>,
}

/// Arguments of `<db>_explain_documents`: the plan of a find (give
/// `filter`, and optionally `sort`/`projection`) or of an aggregate (give
/// `pipeline`); the operation is not run for its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainDocumentsArgs {
    /// Collection name.
    pub collection: String,
    /// Explain a find with this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Map<String, Value>>,
    /// The find's projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Map<String, Value>>,
    /// The find's sort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<Map<String, Value>>,
    /// Explain an aggregate with this pipeline instead of a find.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Vec<Value>>,
}

/// Result of `<db>_find` and `<db>_aggregate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocumentsResult {
    /// The documents, as relaxed Extended JSON.
    pub documents: Vec<Value>,
    /// How many documents this page holds.
    pub returned: u64,
    /// The offset this page starts at.
    pub offset: u64,
    /// Set when more documents exist than this page holds: call again with
    /// `offset` = `next_offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// Result of `<db>_count`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CountResult {
    /// Number of matching documents.
    pub count: u64,
}

/// Result of `<db>_distinct`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DistinctResult {
    /// The distinct values, as relaxed Extended JSON.
    pub values: Vec<Value>,
    /// How many values are listed.
    pub returned: u64,
    /// Set when more values exist than are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// One database of `<db>_list_databases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseInfo {
    /// Database name.
    pub name: String,
    /// Size on disk in bytes, when the server reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_on_disk: Option<u64>,
    /// Whether this is the database the tools read (the others are listed
    /// for orientation; attach them separately to read them).
    pub attached: bool,
}

/// Result of `<db>_list_databases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListDatabasesResult {
    /// The databases the connection's user may list.
    pub databases: Vec<DatabaseInfo>,
}

/// One collection of `<db>_list_collections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CollectionInfo {
    /// Collection name.
    pub name: String,
    /// `collection`, `view` or `timeseries`.
    pub kind: String,
}

/// Result of `<db>_list_collections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListCollectionsResult {
    /// The database's collections and views, sorted by name.
    pub collections: Vec<CollectionInfo>,
}

/// One index of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocumentIndex {
    /// Index name.
    pub name: String,
    /// Key pattern, e.g. `{"email": 1}`.
    pub keys: Value,
    /// Whether the index is unique.
    pub unique: bool,
}

/// How often one BSON type was seen at a field path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TypeCount {
    /// BSON type name (`string`, `int`, `long`, `double`, `decimal`,
    /// `objectId`, `date`, `bool`, `null`, `object`, `array`, `binData`, …).
    pub bson_type: String,
    /// Number of sampled documents holding this type at the path.
    pub count: u64,
}

/// One field path of the inferred schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldSummary {
    /// Dotted path; array elements are `path.[]`.
    pub path: String,
    /// Types seen, most frequent first.
    pub types: Vec<TypeCount>,
    /// Number of sampled documents holding the path.
    pub present_in: u64,
}

/// Result of `<db>_describe_collection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CollectionDescription {
    /// Collection name.
    pub collection: String,
    /// `collection`, `view` or `timeseries`.
    pub kind: String,
    /// Its indexes.
    pub indexes: Vec<DocumentIndex>,
    /// Its validator (`$jsonSchema` or query), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<Value>,
    /// How many documents the inferred schema was built from (a `$sample`).
    pub sampled: u64,
    /// The inferred schema: field paths with their BSON types and frequencies.
    pub fields: Vec<FieldSummary>,
}
