//! Result types of the standard tools (their `structuredContent`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A column of a result set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ColumnInfo {
    /// Column name as returned by the engine.
    pub name: String,
    /// The engine's type name for the column (may be empty when the engine
    /// does not know it, e.g. SQLite expressions).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Why a result stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TruncationReason {
    /// The row limit was reached.
    MaxRows,
    /// The byte limit was reached.
    MaxBytes,
}

/// Set when a result holds only part of the rows the statement produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Truncation {
    /// Which limit stopped the result.
    pub reason: TruncationReason,
    /// The value of that limit (rows or bytes).
    pub limit: u64,
    /// Pass this as `offset` to read the next page.
    pub next_offset: u64,
    /// The same, in words, for the model.
    pub message: String,
}

/// Result of `<db>_query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueryResult {
    /// Result columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// Rows, each an array of values in column order. Integers are JSON
    /// numbers, text is a string, binary data is base64, NULL is null.
    pub rows: Vec<Vec<Value>>,
    /// Number of rows in `rows`.
    pub row_count: u64,
    /// Offset of the first row in `rows` within the full result.
    pub offset: u64,
    /// Rows changed by a write statement, when the engine reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected_rows: Option<u64>,
    /// Present when the result was cut short; absent when it is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// Result of `<db>_list_schemas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListSchemasResult {
    /// Schema names.
    pub schemas: Vec<String>,
}

/// Kind of a database object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A base table.
    Table,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
    /// A collection (document databases).
    Collection,
}

/// One table or view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TableInfo {
    /// Schema holding the object.
    pub schema: String,
    /// Object name.
    pub name: String,
    /// Table, view…
    pub kind: ObjectKind,
    /// The engine's row estimate, when it keeps one (not an exact count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_estimate: Option<i64>,
}

/// Result of `<db>_list_tables`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListTablesResult {
    /// Tables and views, sorted by schema then name.
    pub tables: Vec<TableInfo>,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ColumnDescription {
    /// Column name.
    pub name: String,
    /// Declared type.
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Default expression, as the engine shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForeignKey {
    /// Constraint name, when the engine names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Referencing columns, in key order.
    pub columns: Vec<String>,
    /// Schema of the referenced table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referenced_schema: Option<String>,
    /// Referenced table.
    pub referenced_table: String,
    /// Referenced columns, in key order.
    pub referenced_columns: Vec<String>,
}

/// An index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// Indexed columns (or expressions), in order.
    pub columns: Vec<String>,
    /// Whether the index enforces uniqueness.
    pub unique: bool,
    /// Whether this index backs the primary key.
    pub primary: bool,
}

/// Result of `<db>_describe_table`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TableDescription {
    /// Schema holding the table.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Table, view…
    pub kind: ObjectKind,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDescription>,
    /// Primary key columns in key order (empty when there is none).
    pub primary_key: Vec<String>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes.
    pub indexes: Vec<IndexInfo>,
}

/// Result of `<db>_explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExplainResult {
    /// Plan format: e.g. `sqlite-query-plan`, `postgres-json`.
    pub format: String,
    /// The plan, as structured JSON.
    pub plan: Value,
}
