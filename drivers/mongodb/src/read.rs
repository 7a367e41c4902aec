//! `find`, `aggregate`, `count`, `distinct`: fenced, bounded, under
//! `maxTimeMS`.

use ewii_driver_core::schema::{
    AggregateArgs, CountArgs, CountResult, DistinctArgs, DistinctResult, DocumentsResult, FindArgs,
    QueryResult,
};
use ewii_driver_core::{Next, ResultBuilder, ToolError, fence_filter, fence_pipeline};
use futures::TryStreamExt;
use mongodb::Cursor;
use mongodb::bson::{Document, doc};
use serde_json::{Map, Value};

use crate::session::Session;
use crate::values;

/// Most documents fetched per server round trip.
const MAX_BATCH: u32 = 500;

/// Walks the filter-like arguments of a call (the first fence).
pub fn fence_objects(
    session: &Session<'_>,
    objects: &[(&str, &Option<Map<String, Value>>)],
) -> Result<(), ToolError> {
    for (_, object) in objects {
        if let Some(map) = object {
            fence_filter(map, session.database).map_err(refused)?;
        }
    }
    Ok(())
}

/// Walks the filter, projection and sort of a find (or of its explain).
pub fn fence_find(
    session: &Session<'_>,
    filter: &Option<Map<String, Value>>,
    projection: &Option<Map<String, Value>>,
    sort: &Option<Map<String, Value>>,
) -> Result<(), ToolError> {
    fence_objects(
        session,
        &[
            ("filter", filter),
            ("projection", projection),
            ("sort", sort),
        ],
    )
}

/// The walk's refusal as a tool error.
pub fn refused(r: ewii_driver_core::DocumentRefusal) -> ToolError {
    ToolError::Refused { reason: r.reason }
}

/// The page size of a call: its `max_rows` within the database's limit.
fn page_size(session: &Session<'_>, requested: Option<u32>) -> u64 {
    let configured = u64::from(session.limits.max_rows.max(1));
    requested.map_or(configured, |r| u64::from(r.max(1)).min(configured))
}

/// `find`: the filter, projection and sort walked, then a server-side
/// skip of `skip + offset` and a limit of one page plus one document (the
/// one that tells a full page from a truncated one).
pub async fn find(session: &Session<'_>, args: FindArgs) -> Result<DocumentsResult, ToolError> {
    fence_find(session, &args.filter, &args.projection, &args.sort)?;
    let collection =
        session.collection(&args.collection, args.read_preference, args.read_concern)?;
    let offset = args.offset.unwrap_or(0);
    let page = page_size(session, args.max_rows);
    let remaining = match args.limit {
        Some(limit) => limit.saturating_sub(offset),
        None => u64::MAX,
    };
    let builder = ResultBuilder::new(&session.limits, args.max_rows, None)
        .with_max_bytes(args.max_bytes)
        .skipped_by_engine(offset);
    if remaining == 0 {
        return Ok(documents(builder.finish(Vec::new(), None)));
    }
    let fetch = remaining.min(page + 1);
    let filter = values::document("filter", args.filter)?;
    let mut find = collection
        .find(filter)
        .skip(args.skip.unwrap_or(0).saturating_add(offset))
        .limit(i64::try_from(fetch).unwrap_or(i64::MAX))
        .batch_size(batch_size(fetch))
        .max_time(session.max_time());
    if args.projection.is_some() {
        find = find.projection(values::document("projection", args.projection)?);
    }
    if args.sort.is_some() {
        find = find.sort(values::document("sort", args.sort)?);
    }
    session
        .run_tool(async {
            let cursor = find
                .await
                .map_err(|e| crate::errors::tool_error(&e, session.max_time()))?;
            fill(session, cursor, builder).await
        })
        .await
}

/// `aggregate`: the pipeline walked at every depth, then run with
/// `$skip: offset` and `$limit: page + 1` appended.
pub async fn aggregate(
    session: &Session<'_>,
    args: AggregateArgs,
) -> Result<DocumentsResult, ToolError> {
    fence_pipeline(&args.pipeline, session.database).map_err(refused)?;
    let collection =
        session.collection(&args.collection, args.read_preference, args.read_concern)?;
    let offset = args.offset.unwrap_or(0);
    let page = page_size(session, args.max_rows);
    let mut pipeline = values::pipeline(args.pipeline)?;
    if offset > 0 {
        pipeline.push(doc! { "$skip": i64::try_from(offset).unwrap_or(i64::MAX) });
    }
    pipeline.push(doc! { "$limit": i64::try_from(page + 1).unwrap_or(i64::MAX) });
    let builder = ResultBuilder::new(&session.limits, args.max_rows, None)
        .with_max_bytes(args.max_bytes)
        .skipped_by_engine(offset);
    let aggregate = collection
        .aggregate(pipeline)
        .batch_size(batch_size(page + 1))
        .max_time(session.max_time());
    session
        .run_tool(async {
            let cursor = aggregate
                .await
                .map_err(|e| crate::errors::tool_error(&e, session.max_time()))?;
            fill(session, cursor, builder).await
        })
        .await
}

/// `count`: `countDocuments` under `maxTimeMS`.
pub async fn count(session: &Session<'_>, args: CountArgs) -> Result<CountResult, ToolError> {
    fence_objects(session, &[("filter", &args.filter)])?;
    let collection =
        session.collection(&args.collection, args.read_preference, args.read_concern)?;
    let filter = values::document("filter", args.filter)?;
    let count = session
        .run(
            collection
                .count_documents(filter)
                .max_time(session.max_time()),
        )
        .await?;
    Ok(CountResult { count })
}

/// `distinct`: the server's answer (one reply), bounded like a result.
pub async fn distinct(
    session: &Session<'_>,
    args: DistinctArgs,
) -> Result<DistinctResult, ToolError> {
    fence_objects(session, &[("filter", &args.filter)])?;
    if args.field.is_empty() || args.field.starts_with('$') {
        return Err(ToolError::InvalidArguments(
            "`field` is a field path such as `address.city` (no leading `$`)".into(),
        ));
    }
    let collection =
        session.collection(&args.collection, args.read_preference, args.read_concern)?;
    let filter = values::document("filter", args.filter)?;
    let found = session
        .run(
            collection
                .distinct(&args.field, filter)
                .max_time(session.max_time()),
        )
        .await?;
    let mut builder =
        ResultBuilder::new(&session.limits, args.max_rows, None).with_max_bytes(args.max_bytes);
    for value in found {
        if builder.push(vec![values::bson_to_json(value)]) == Next::Stop {
            break;
        }
    }
    let page = documents(builder.finish(Vec::new(), None));
    Ok(DistinctResult {
        values: page.documents,
        returned: page.returned,
        truncated: page.truncated,
    })
}

/// Reads `cursor` into `builder` until the result is full or the cursor
/// ends. Returning drops the cursor: the crate kills it on the server if
/// it is still open.
async fn fill(
    session: &Session<'_>,
    mut cursor: Cursor<Document>,
    mut builder: ResultBuilder,
) -> Result<DocumentsResult, ToolError> {
    while let Some(doc) = cursor
        .try_next()
        .await
        .map_err(|e| crate::errors::tool_error(&e, session.max_time()))?
    {
        if builder.push(vec![values::to_json(doc)]) == Next::Stop {
            break;
        }
    }
    Ok(documents(builder.finish(Vec::new(), None)))
}

fn documents(result: QueryResult) -> DocumentsResult {
    DocumentsResult {
        returned: result.row_count,
        offset: result.offset,
        documents: result
            .rows
            .into_iter()
            .filter_map(|mut row| row.pop())
            .collect(),
        truncated: result.truncated,
    }
}

fn batch_size(fetch: u64) -> u32 {
    u32::try_from(fetch).unwrap_or(u32::MAX).clamp(1, MAX_BATCH)
}
