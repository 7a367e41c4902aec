//! `list_databases`, `list_collections`, `describe_collection`,
//! `explain_documents`.

use ewii_driver_core::schema::{
    CollectionDescription, CollectionInfo, DatabaseInfo, DescribeCollectionArgs, DocumentIndex,
    ExplainDocumentsArgs, ExplainResult, ListCollectionsResult, ListDatabasesResult,
};
use ewii_driver_core::{ToolError, fence_pipeline};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use crate::read::{fence_find, refused};
use crate::schema::SchemaInference;
use crate::session::Session;
use crate::values;

/// Default and largest `$sample` of `describe_collection`.
const DEFAULT_SAMPLE: u32 = 100;
const MAX_SAMPLE: u32 = 1000;

/// `list_databases`: what the user may list, the attached one marked.
pub async fn list_databases(session: &Session<'_>) -> Result<ListDatabasesResult, ToolError> {
    let specs = session.run(session.client.list_databases()).await?;
    let mut databases: Vec<DatabaseInfo> = specs
        .into_iter()
        .map(|d| DatabaseInfo {
            attached: d.name == session.database,
            size_on_disk: Some(d.size_on_disk),
            name: d.name,
        })
        .collect();
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ListDatabasesResult { databases })
}

/// The `listCollections` entries, optionally of one collection. Read as
/// plain documents: typed specifications fail on servers that omit fields.
async fn collection_specs(
    session: &Session<'_>,
    name: Option<&str>,
) -> Result<Vec<Document>, ToolError> {
    let mut command = doc! { "listCollections": 1, "cursor": {} };
    if let Some(name) = name {
        command.insert("filter", doc! { "name": name });
    }
    session
        .run(async {
            session
                .database()
                .run_cursor_command(command)
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await
}

fn kind(spec: &Document) -> String {
    spec.get_str("type").unwrap_or("collection").to_owned()
}

/// `list_collections`: collections and views, sorted, `system.*` left out.
pub async fn list_collections(session: &Session<'_>) -> Result<ListCollectionsResult, ToolError> {
    let mut collections: Vec<CollectionInfo> = collection_specs(session, None)
        .await?
        .iter()
        .filter_map(|spec| {
            let name = spec.get_str("name").ok()?;
            (!name.starts_with("system.")).then(|| CollectionInfo {
                name: name.to_owned(),
                kind: kind(spec),
            })
        })
        .collect();
    collections.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ListCollectionsResult { collections })
}

/// `describe_collection`: indexes, validator, and a schema inferred from a
/// `$sample` of at most [`MAX_SAMPLE`] documents.
pub async fn describe_collection(
    session: &Session<'_>,
    args: DescribeCollectionArgs,
) -> Result<CollectionDescription, ToolError> {
    let collection = session.collection(&args.collection, None, None)?;
    let specs = collection_specs(session, Some(&args.collection)).await?;
    // Matched by name here too: not every server applies the filter.
    let Some(spec) = specs
        .iter()
        .find(|s| s.get_str("name") == Ok(args.collection.as_str()))
    else {
        return Err(ToolError::NotFound(format!(
            "collection '{}' in database '{}'; call list_collections for the names",
            args.collection, session.database
        )));
    };
    let validator = spec
        .get_document("options")
        .ok()
        .and_then(|o| o.get("validator").cloned())
        .map(values::bson_to_json);

    let indexes = session
        .run(async {
            session
                .database()
                .run_cursor_command(doc! { "listIndexes": &args.collection, "cursor": {} })
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await
        // A view has no indexes (the server answers with an error).
        .unwrap_or_default()
        .into_iter()
        .map(|ix| DocumentIndex {
            name: ix.get_str("name").unwrap_or_default().to_owned(),
            unique: ix.get_bool("unique").unwrap_or(false),
            keys: ix
                .get("key")
                .cloned()
                .map_or(serde_json::Value::Null, values::bson_to_json),
        })
        .collect();

    let size = args
        .sample_size
        .unwrap_or(DEFAULT_SAMPLE)
        .clamp(1, MAX_SAMPLE);
    let sampled = session
        .run(async {
            collection
                .aggregate([doc! { "$sample": { "size": i64::from(size) } }])
                .max_time(session.max_time())
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
    let mut inference = SchemaInference::default();
    for doc in &sampled {
        inference.add(doc);
    }
    Ok(CollectionDescription {
        collection: args.collection,
        kind: kind(spec),
        indexes,
        validator,
        sampled: sampled.len() as u64,
        fields: inference.finish(),
    })
}

/// `explain_documents`: the `queryPlanner` plan of a find or an aggregate,
/// under `maxTimeMS`. The explained operation is walked like the real one.
pub async fn explain(
    session: &Session<'_>,
    args: ExplainDocumentsArgs,
) -> Result<ExplainResult, ToolError> {
    session.collection(&args.collection, None, None)?;
    let explained = match args.pipeline {
        Some(pipeline) => {
            if args.filter.is_some() || args.sort.is_some() || args.projection.is_some() {
                return Err(ToolError::InvalidArguments(
                    "give either a `pipeline` (an aggregate) or `filter`/`sort`/`projection` \
                     (a find), not both"
                        .into(),
                ));
            }
            fence_pipeline(&pipeline, session.database).map_err(refused)?;
            let stages: Vec<Bson> = values::pipeline(pipeline)?
                .into_iter()
                .map(Bson::Document)
                .collect();
            doc! { "aggregate": &args.collection, "pipeline": stages, "cursor": {} }
        }
        None => {
            fence_find(session, &args.filter, &args.projection, &args.sort)?;
            let mut find = doc! {
                "find": &args.collection,
                "filter": values::document("filter", args.filter)?,
            };
            if args.sort.is_some() {
                find.insert("sort", values::document("sort", args.sort)?);
            }
            if args.projection.is_some() {
                find.insert(
                    "projection",
                    values::document("projection", args.projection)?,
                );
            }
            find
        }
    };
    let command = doc! {
        "explain": explained,
        "verbosity": "queryPlanner",
        "maxTimeMS": session.max_time_ms(),
    };
    let plan = session.run(session.database().run_command(command)).await?;
    Ok(ExplainResult {
        format: "mongodb-explain-queryPlanner".into(),
        plan: values::to_json(plan),
    })
}
