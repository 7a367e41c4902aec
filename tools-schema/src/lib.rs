//! The Ewii tool catalog contract.
//!
//! Every database attached to an adapter contributes a fixed set of
//! *standard tools* ([`StandardTool`]). This crate defines, once for every
//! driver, the hub and the tests:
//!
//! - the argument and result types of each standard tool, deriving
//!   [`schemars::JsonSchema`] so input and output schemas are generated, never
//!   hand-written;
//! - the [`ToolDescriptor`] an MCP server advertises (name, title,
//!   description, inputSchema, outputSchema, annotations);
//! - the naming rules ([`naming`]): tool names match `^[a-zA-Z0-9_-]{1,64}$`
//!   (the strictest rule common MCP clients enforce) and carry the database
//!   name, and at a hub the deployment name ([`ToolName`]);
//! - [`SecretString`] ([`secret`]), the one secret type of drivers, adapter
//!   and hub.
//!
//! Modules: [`naming`], [`secret`]; `args` and `results` hold the argument
//! and result types re-exported here, `documents` those of the document
//! tools (MongoDB: `find`, `aggregate`, …).
//!
//! `schema/tools.schema.json` is a checked-in snapshot of every schema; the
//! test `snapshot_matches_code` fails when the code drifts from it (run it with
//! `EWII_UPDATE_SNAPSHOT=1` to rewrite the snapshot after an intended change).
#![forbid(unsafe_code)]

mod args;
mod documents;
pub mod naming;
mod results;
pub mod secret;

pub use args::{
    DescribeTableArgs, ExplainArgs, ListSchemasArgs, ListTablesArgs, QueryArgs, SqlParam,
};
pub use documents::{
    AggregateArgs, CollectionDescription, CollectionInfo, CountArgs, CountResult, DatabaseInfo,
    DescribeCollectionArgs, DistinctArgs, DistinctResult, DocumentIndex, DocumentsResult,
    ExplainDocumentsArgs, FieldSummary, FindArgs, ListCollectionsArgs, ListCollectionsResult,
    ListDatabasesArgs, ListDatabasesResult, ReadConcernLevel, ReadPreferenceMode, TypeCount,
};
pub use naming::{
    MAX_DATABASE_NAME_LEN, MAX_DEPLOYMENT_NAME_LEN, MAX_TOOL_NAME_LEN, NameError, ToolName,
    split_suffix, validate_database_name, validate_deployment_name, validate_tool_name,
};
pub use results::{
    ColumnDescription, ColumnInfo, ExplainResult, ForeignKey, IndexInfo, ListSchemasResult,
    ListTablesResult, ObjectKind, QueryResult, TableDescription, TableInfo, Truncation,
    TruncationReason,
};
pub use secret::SecretString;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The standard tools a database can contribute to a catalog: the SQL
/// tools (`query` … `explain`) and the document tools (`find` …
/// `explain_documents`).
///
/// The wire name of a tool is `<database>_<suffix>`, e.g. `shop_query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StandardTool {
    /// Run one SQL statement with bound parameters.
    Query,
    /// List the schemas (namespaces) of the database.
    ListSchemas,
    /// List tables and views.
    ListTables,
    /// Describe one table: columns, keys, indexes.
    DescribeTable,
    /// Show the engine's plan for a statement without running it.
    Explain,
    /// Find documents of a collection (document databases).
    Find,
    /// Run a read-only aggregation pipeline (document databases).
    Aggregate,
    /// Count the documents matching a filter (document databases).
    Count,
    /// List the distinct values of a field (document databases).
    Distinct,
    /// List the databases of the server (document databases).
    ListDatabases,
    /// List the collections and views (document databases).
    ListCollections,
    /// Describe one collection: indexes, validator, inferred schema.
    DescribeCollection,
    /// Show the plan of a find or aggregate (document databases).
    ExplainDocuments,
}

impl StandardTool {
    /// Every standard tool, in catalog order.
    pub const ALL: [StandardTool; 13] = [
        StandardTool::Query,
        StandardTool::ListSchemas,
        StandardTool::ListTables,
        StandardTool::DescribeTable,
        StandardTool::Explain,
        StandardTool::Find,
        StandardTool::Aggregate,
        StandardTool::Count,
        StandardTool::Distinct,
        StandardTool::ListDatabases,
        StandardTool::ListCollections,
        StandardTool::DescribeCollection,
        StandardTool::ExplainDocuments,
    ];

    /// The SQL tools (every relational driver), in catalog order.
    pub const SQL: [StandardTool; 5] = [
        StandardTool::Query,
        StandardTool::ListSchemas,
        StandardTool::ListTables,
        StandardTool::DescribeTable,
        StandardTool::Explain,
    ];

    /// The document tools (MongoDB), in catalog order.
    pub const DOCUMENTS: [StandardTool; 8] = [
        StandardTool::Find,
        StandardTool::Aggregate,
        StandardTool::Count,
        StandardTool::Distinct,
        StandardTool::ListDatabases,
        StandardTool::ListCollections,
        StandardTool::DescribeCollection,
        StandardTool::ExplainDocuments,
    ];

    /// The suffix appended to the database name to form the tool name.
    pub fn suffix(self) -> &'static str {
        match self {
            StandardTool::Query => "query",
            StandardTool::ListSchemas => "list_schemas",
            StandardTool::ListTables => "list_tables",
            StandardTool::DescribeTable => "describe_table",
            StandardTool::Explain => "explain",
            StandardTool::Find => "find",
            StandardTool::Aggregate => "aggregate",
            StandardTool::Count => "count",
            StandardTool::Distinct => "distinct",
            StandardTool::ListDatabases => "list_databases",
            StandardTool::ListCollections => "list_collections",
            StandardTool::DescribeCollection => "describe_collection",
            StandardTool::ExplainDocuments => "explain_documents",
        }
    }

    /// Parses a suffix back into a tool.
    pub fn from_suffix(suffix: &str) -> Option<StandardTool> {
        StandardTool::ALL.into_iter().find(|t| t.suffix() == suffix)
    }

    fn title(self) -> &'static str {
        match self {
            StandardTool::Query => "Run a SQL query",
            StandardTool::ListSchemas => "List schemas",
            StandardTool::ListTables => "List tables and views",
            StandardTool::DescribeTable => "Describe a table",
            StandardTool::Explain => "Explain a query plan",
            StandardTool::Find => "Find documents",
            StandardTool::Aggregate => "Run an aggregation pipeline",
            StandardTool::Count => "Count documents",
            StandardTool::Distinct => "List distinct values",
            StandardTool::ListDatabases => "List databases",
            StandardTool::ListCollections => "List collections",
            StandardTool::DescribeCollection => "Describe a collection",
            StandardTool::ExplainDocuments => "Explain a find or aggregate",
        }
    }

    fn description(self, database: &str, dialect: &str, read_only: bool) -> String {
        match self {
            StandardTool::Query => {
                let mode = if read_only {
                    "This database is READ-ONLY: only single SELECT-style statements run; \
                     writes, DDL and stacked statements are refused."
                } else {
                    "This database is read-write: writes and DDL are allowed, one statement per call."
                };
                format!(
                    "Run one {dialect} SQL statement on database '{database}'. Pass values as \
                     bound `params` (placeholders in the statement), never by string \
                     concatenation. {mode} Results are bounded: when `truncated` is set, call \
                     again with `offset` = `truncated.next_offset` to page on."
                )
            }
            StandardTool::ListSchemas => {
                format!("List the schemas (namespaces) of {dialect} database '{database}'.")
            }
            StandardTool::ListTables => format!(
                "List the tables and views of {dialect} database '{database}', optionally \
                 within one schema. Use this first to discover what can be queried."
            ),
            StandardTool::DescribeTable => format!(
                "Describe one table or view of {dialect} database '{database}': columns with \
                 types, nullability and defaults, the primary key, foreign keys and indexes."
            ),
            StandardTool::Explain => format!(
                "Show how {dialect} database '{database}' would execute one statement, without \
                 running it. Use it to check that a query uses an index before running it."
            ),
            StandardTool::Find => format!(
                "Find documents in a collection of {dialect} database '{database}' (read-only). \
                 `filter`, `projection` and `sort` are Extended JSON; `$where` and `$function` \
                 are refused. {DOCUMENT_PAGING}"
            ),
            StandardTool::Aggregate => format!(
                "Run a read-only aggregation pipeline on a collection of {dialect} database \
                 '{database}'. Stages that write or run server-side code (`$out`, `$merge`, \
                 `$function`, `$accumulator`, `$where`) and `$lookup`/`$unionWith` into other \
                 databases are refused at any depth. {DOCUMENT_PAGING}"
            ),
            StandardTool::Count => format!(
                "Count the documents of a collection of {dialect} database '{database}' that \
                 match a filter (Extended JSON)."
            ),
            StandardTool::Distinct => format!(
                "List the distinct values of one field in a collection of {dialect} database \
                 '{database}', optionally among documents matching a filter."
            ),
            StandardTool::ListDatabases => format!(
                "List the databases of the {dialect} server behind '{database}'; the tools \
                 read only the one marked `attached`."
            ),
            StandardTool::ListCollections => format!(
                "List the collections and views of {dialect} database '{database}'. Use this \
                 first to discover what can be read."
            ),
            StandardTool::DescribeCollection => format!(
                "Describe one collection of {dialect} database '{database}': its indexes, its \
                 validator, and a schema inferred from a bounded `$sample` (field paths with \
                 BSON types and how often each occurs)."
            ),
            StandardTool::ExplainDocuments => format!(
                "Show how {dialect} database '{database}' would execute a find (`filter`, \
                 `sort`, `projection`) or an aggregate (`pipeline`): the query planner's \
                 chosen plan, without returning documents."
            ),
        }
    }

    /// Honest MCP annotations for this tool on a database with the given mode.
    pub fn annotations(self, read_only: bool) -> ToolAnnotations {
        match self {
            // A query on a read-write database may delete or overwrite data.
            StandardTool::Query if !read_only => ToolAnnotations {
                read_only_hint: false,
                destructive_hint: true,
                idempotent_hint: false,
                open_world_hint: false,
            },
            _ => ToolAnnotations {
                read_only_hint: true,
                destructive_hint: false,
                idempotent_hint: true,
                open_world_hint: false,
            },
        }
    }

    /// The JSON Schema of this tool's arguments.
    pub fn input_schema(self) -> Map<String, Value> {
        match self {
            StandardTool::Query => schema_object::<QueryArgs>(),
            StandardTool::ListSchemas => schema_object::<ListSchemasArgs>(),
            StandardTool::ListTables => schema_object::<ListTablesArgs>(),
            StandardTool::DescribeTable => schema_object::<DescribeTableArgs>(),
            StandardTool::Explain => schema_object::<ExplainArgs>(),
            StandardTool::Find => schema_object::<FindArgs>(),
            StandardTool::Aggregate => schema_object::<AggregateArgs>(),
            StandardTool::Count => schema_object::<CountArgs>(),
            StandardTool::Distinct => schema_object::<DistinctArgs>(),
            StandardTool::ListDatabases => schema_object::<ListDatabasesArgs>(),
            StandardTool::ListCollections => schema_object::<ListCollectionsArgs>(),
            StandardTool::DescribeCollection => schema_object::<DescribeCollectionArgs>(),
            StandardTool::ExplainDocuments => schema_object::<ExplainDocumentsArgs>(),
        }
    }

    /// The JSON Schema of this tool's `structuredContent`.
    pub fn output_schema(self) -> Map<String, Value> {
        match self {
            StandardTool::Query => schema_object::<QueryResult>(),
            StandardTool::ListSchemas => schema_object::<ListSchemasResult>(),
            StandardTool::ListTables => schema_object::<ListTablesResult>(),
            StandardTool::DescribeTable => schema_object::<TableDescription>(),
            StandardTool::Explain => schema_object::<ExplainResult>(),
            StandardTool::Find | StandardTool::Aggregate => schema_object::<DocumentsResult>(),
            StandardTool::Count => schema_object::<CountResult>(),
            StandardTool::Distinct => schema_object::<DistinctResult>(),
            StandardTool::ListDatabases => schema_object::<ListDatabasesResult>(),
            StandardTool::ListCollections => schema_object::<ListCollectionsResult>(),
            StandardTool::DescribeCollection => schema_object::<CollectionDescription>(),
            StandardTool::ExplainDocuments => schema_object::<ExplainResult>(),
        }
    }

    /// Whether this is a document tool (MongoDB) rather than a SQL tool.
    pub fn is_document_tool(self) -> bool {
        StandardTool::DOCUMENTS.contains(&self)
    }

    /// The full descriptor of this tool for one database.
    ///
    /// `dialect` is a human name for the engine ("SQLite", "PostgreSQL") used
    /// in the description so a model writes the right SQL.
    pub fn descriptor(
        self,
        database: &str,
        dialect: &str,
        read_only: bool,
    ) -> Result<ToolDescriptor, NameError> {
        Ok(ToolDescriptor {
            name: ToolName::new(database, self)?.to_string(),
            title: format!("{} ({database})", self.title()),
            description: self.description(database, dialect, read_only),
            input_schema: self.input_schema(),
            output_schema: self.output_schema(),
            annotations: self.annotations(read_only),
            meta: None,
        })
    }
}

/// How the document tools say to page on.
const DOCUMENT_PAGING: &str = "Results are relaxed Extended JSON, bounded by rows and bytes: \
     when `truncated` is set, call again with `offset` = `truncated.next_offset` (same \
     arguments, sorted on a unique key such as `_id`) to read the next page.";

/// MCP tool annotations (hints to the client; Ewii keeps them honest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    /// The tool does not modify its environment.
    pub read_only_hint: bool,
    /// The tool may perform destructive updates.
    pub destructive_hint: bool,
    /// Calling it twice with the same arguments has no additional effect.
    pub idempotent_hint: bool,
    /// The tool interacts with an open world of external entities.
    pub open_world_hint: bool,
}

/// One tool as advertised in `tools/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolDescriptor {
    /// Tool name, `^[a-zA-Z0-9_-]{1,64}$`, `<database>_<suffix>`.
    pub name: String,
    /// Human-readable title.
    pub title: String,
    /// What the tool does and how a model should use it.
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub input_schema: Map<String, Value>,
    /// JSON Schema of `structuredContent` (an object schema).
    pub output_schema: Map<String, Value>,
    /// Behaviour hints.
    pub annotations: ToolAnnotations,
    /// The tool's `_meta`: the catalog sets `"ewii/dialect"` (`sqlite`,
    /// `postgres`, `mysql`), the dialect the hub classifies the tool's
    /// statements in.
    #[serde(rename = "_meta", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
}

/// Generates the JSON Schema of `T` as a JSON object, inlining nothing the
/// generator does not inline by default (definitions stay under `$defs`).
pub fn schema_object<T: JsonSchema>() -> Map<String, Value> {
    let schema = schemars::schema_for!(T);
    match schema.to_value() {
        Value::Object(map) => map,
        // schemars always produces an object for a struct; keep a valid
        // schema rather than panicking if that ever changes.
        other => {
            let mut map = Map::new();
            map.insert("allOf".into(), Value::Array(vec![other]));
            map
        }
    }
}

/// Every schema of the catalog contract, keyed by type name: the content of
/// the checked-in snapshot `schema/tools.schema.json`.
pub fn contract_snapshot() -> Value {
    let mut all = Map::new();
    let mut put = |name: &str, schema: Map<String, Value>| {
        all.insert(name.to_owned(), Value::Object(schema));
    };
    put("QueryArgs", schema_object::<QueryArgs>());
    put("QueryResult", schema_object::<QueryResult>());
    put("ListSchemasArgs", schema_object::<ListSchemasArgs>());
    put("ListSchemasResult", schema_object::<ListSchemasResult>());
    put("ListTablesArgs", schema_object::<ListTablesArgs>());
    put("ListTablesResult", schema_object::<ListTablesResult>());
    put("DescribeTableArgs", schema_object::<DescribeTableArgs>());
    put("TableDescription", schema_object::<TableDescription>());
    put("ExplainArgs", schema_object::<ExplainArgs>());
    put("ExplainResult", schema_object::<ExplainResult>());
    put("FindArgs", schema_object::<FindArgs>());
    put("AggregateArgs", schema_object::<AggregateArgs>());
    put("DocumentsResult", schema_object::<DocumentsResult>());
    put("CountArgs", schema_object::<CountArgs>());
    put("CountResult", schema_object::<CountResult>());
    put("DistinctArgs", schema_object::<DistinctArgs>());
    put("DistinctResult", schema_object::<DistinctResult>());
    put("ListDatabasesArgs", schema_object::<ListDatabasesArgs>());
    put(
        "ListDatabasesResult",
        schema_object::<ListDatabasesResult>(),
    );
    put(
        "ListCollectionsArgs",
        schema_object::<ListCollectionsArgs>(),
    );
    put(
        "ListCollectionsResult",
        schema_object::<ListCollectionsResult>(),
    );
    put(
        "DescribeCollectionArgs",
        schema_object::<DescribeCollectionArgs>(),
    );
    put(
        "CollectionDescription",
        schema_object::<CollectionDescription>(),
    );
    put(
        "ExplainDocumentsArgs",
        schema_object::<ExplainDocumentsArgs>(),
    );
    put("ToolDescriptor", schema_object::<ToolDescriptor>());
    let mut root = Map::new();
    root.insert(
        "$comment".into(),
        Value::String(
            "Generated by ewii-tools-schema; do not edit. Regenerate with \
             EWII_UPDATE_SNAPSHOT=1 cargo test -p ewii-tools-schema"
                .into(),
        ),
    );
    root.insert("schemas".into(), Value::Object(all));
    Value::Object(root)
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_standard_tool_is_sql_or_document_and_never_both() {
        for tool in StandardTool::ALL {
            assert!(
                StandardTool::SQL.contains(&tool) != tool.is_document_tool(),
                "{tool:?}"
            );
        }
        assert_eq!(
            StandardTool::SQL.len() + StandardTool::DOCUMENTS.len(),
            StandardTool::ALL.len()
        );
    }
    use super::*;

    #[test]
    fn every_descriptor_is_complete_and_validly_named() {
        for read_only in [true, false] {
            for tool in StandardTool::ALL {
                let d = tool
                    .descriptor("shop", "SQLite", read_only)
                    .expect("valid name");
                validate_tool_name(&d.name).expect("valid tool name");
                assert!(!d.title.is_empty() && !d.description.is_empty());
                assert_eq!(d.input_schema.get("type"), Some(&Value::from("object")));
                assert_eq!(d.output_schema.get("type"), Some(&Value::from("object")));
                assert_eq!(StandardTool::from_suffix(tool.suffix()), Some(tool));
            }
        }
    }

    #[test]
    fn annotations_are_honest_about_writes() {
        let rw = StandardTool::Query.annotations(false);
        assert!(!rw.read_only_hint && rw.destructive_hint && !rw.idempotent_hint);
        let ro = StandardTool::Query.annotations(true);
        assert!(ro.read_only_hint && !ro.destructive_hint);
        for tool in [
            StandardTool::ListTables,
            StandardTool::DescribeTable,
            StandardTool::Explain,
        ] {
            assert!(tool.annotations(false).read_only_hint);
        }
        // The document tools never write, whatever the database's mode.
        for tool in StandardTool::DOCUMENTS {
            let a = tool.annotations(false);
            assert!(a.read_only_hint && !a.destructive_hint && a.idempotent_hint);
        }
    }

    #[test]
    fn query_args_schema_requires_sql_only() {
        let schema = StandardTool::Query.input_schema();
        assert_eq!(schema.get("required"), Some(&serde_json::json!(["sql"])));
    }

    #[test]
    fn snapshot_matches_code() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/tools.schema.json");
        let mut generated =
            serde_json::to_string_pretty(&contract_snapshot()).expect("serialisable");
        generated.push('\n');
        if std::env::var_os("EWII_UPDATE_SNAPSHOT").is_some() {
            std::fs::write(&path, &generated).expect("write snapshot");
            return;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        // Compared as JSON values, not text: key order depends on whether the
        // build has serde_json's `preserve_order` (the MongoDB driver's bson
        // turns it on for a whole-workspace build), the content does not.
        let on_disk: Option<Value> = serde_json::from_str(&on_disk).ok();
        assert!(
            on_disk == Some(contract_snapshot()),
            "tools-schema/schema/tools.schema.json is out of date with the code. If the change \
             is intended, run `EWII_UPDATE_SNAPSHOT=1 cargo test -p ewii-tools-schema` and \
             commit the new snapshot (it is the catalog contract drivers and hubs rely on)."
        );
    }
}
