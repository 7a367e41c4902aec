//! MongoDB driver for Ewii (the official `mongodb` crate, rustls/ring).
//!
//! Tools (the document tools of the catalog): `find`, `aggregate`, `count`,
//! `distinct`, `list_databases`, `list_collections`, `describe_collection`,
//! `explain_documents`. None of them writes: there is no write tool, on a
//! read-only or a read-write attachment alike.
//!
//! An attached database is one MongoDB database, the one named in the URL
//! path (`mongodb://reader@db:27017/shop`, or `mongodb+srv://…/shop`).
//!
//! Read-only holds at two fences:
//! - every filter, projection, sort and pipeline is walked before it reaches
//!   the server ([`ewii_driver_core::classify_document_call`]): `$out`,
//!   `$merge`, `$function`, `$accumulator`, `$where`, `mapReduce` and
//!   `$lookup`/`$unionWith` into other databases are refused at any depth,
//!   with a reason the model can act on;
//! - at the engine: each call sets its read concern and read preference,
//!   every operation carries `maxTimeMS` (the database's time limit), a
//!   cancelled or timed-out call drops its cursor (the driver sends
//!   `killCursors`), and `test-database` checks the user's privileges and
//!   warns when it can write.
//!
//! Results are relaxed Extended JSON, bounded by the database's row and
//! byte limits through [`ewii_driver_core::ResultBuilder`], with the same
//! truncation notice as the SQL drivers; the next page is `offset` =
//! `truncated.next_offset`, applied as a server-side skip.
//!
//! # Modules
//!
//! - `connect`: the URL, client options and the attached database's name;
//! - `session`: one call's collection handle (read concern, read
//!   preference), its time limit and cancellation;
//! - `values`: Extended JSON ↔ BSON, BSON type names;
//! - `read`: `find`, `aggregate`, `count`, `distinct`;
//! - `catalog`: `list_databases`, `list_collections`,
//!   `describe_collection` (with the inferred schema), `explain_documents`;
//! - `schema`: the schema inferred from sampled documents;
//! - `check`: the server version and the user's write privileges;
//! - `errors`: server errors → tool errors.
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod connect;
mod errors;
mod read;
mod schema;
mod session;
mod values;

use std::sync::Arc;

use async_trait::async_trait;
use ewii_driver_core::schema::{
    AggregateArgs, CollectionDescription, CountArgs, CountResult, DescribeCollectionArgs,
    DistinctArgs, DistinctResult, DocumentsResult, ExplainDocumentsArgs, ExplainResult, FindArgs,
    ListCollectionsArgs, ListCollectionsResult, ListDatabasesArgs, ListDatabasesResult, QueryArgs,
    QueryResult, StandardTool,
};
use ewii_driver_core::{
    CallContext, CheckReport, Database, DatabaseConfig, Driver, DriverError, DriverRegistration,
    Limits, ToolError,
};

pub use connect::client_options;

/// The MongoDB driver.
pub struct MongoDriver;

/// The registered instance.
pub static MONGO_DRIVER: MongoDriver = MongoDriver;

inventory::submit!(DriverRegistration(&MONGO_DRIVER));

const DIALECT: &str = "MongoDB";

#[async_trait]
impl Driver for MongoDriver {
    fn name(&self) -> &'static str {
        "mongodb"
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    fn example_url(&self) -> &'static str {
        "mongodb://reader@db:27017/shop"
    }

    async fn open(&self, config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
        let (options, database) = client_options(config).await?;
        let client = mongodb::Client::with_options(options)
            .map_err(|e| DriverError::Connect(errors::message(&e)))?;
        Ok(Arc::new(MongoDatabase {
            client,
            database,
            read_only: config.read_only,
            limits: config.limits,
        }))
    }
}

/// One attached MongoDB database.
pub struct MongoDatabase {
    client: mongodb::Client,
    database: String,
    read_only: bool,
    limits: Limits,
}

#[async_trait]
impl Database for MongoDatabase {
    fn tools(&self) -> &'static [StandardTool] {
        &StandardTool::DOCUMENTS
    }

    fn dialect_name(&self) -> &'static str {
        DIALECT
    }

    async fn check(&self) -> Result<CheckReport, DriverError> {
        check::check(&self.client, &self.database, self.read_only).await
    }

    async fn query(&self, _args: QueryArgs, _ctx: &CallContext) -> Result<QueryResult, ToolError> {
        Err(ToolError::UnknownTool(
            "a MongoDB database has no SQL `query` tool; use its `find` or `aggregate` tool".into(),
        ))
    }

    async fn find(&self, args: FindArgs, ctx: &CallContext) -> Result<DocumentsResult, ToolError> {
        read::find(&self.session(ctx)?, args).await
    }

    async fn aggregate(
        &self,
        args: AggregateArgs,
        ctx: &CallContext,
    ) -> Result<DocumentsResult, ToolError> {
        read::aggregate(&self.session(ctx)?, args).await
    }

    async fn count(&self, args: CountArgs, ctx: &CallContext) -> Result<CountResult, ToolError> {
        read::count(&self.session(ctx)?, args).await
    }

    async fn distinct(
        &self,
        args: DistinctArgs,
        ctx: &CallContext,
    ) -> Result<DistinctResult, ToolError> {
        read::distinct(&self.session(ctx)?, args).await
    }

    async fn list_databases(
        &self,
        _args: ListDatabasesArgs,
        ctx: &CallContext,
    ) -> Result<ListDatabasesResult, ToolError> {
        catalog::list_databases(&self.session(ctx)?).await
    }

    async fn list_collections(
        &self,
        _args: ListCollectionsArgs,
        ctx: &CallContext,
    ) -> Result<ListCollectionsResult, ToolError> {
        catalog::list_collections(&self.session(ctx)?).await
    }

    async fn describe_collection(
        &self,
        args: DescribeCollectionArgs,
        ctx: &CallContext,
    ) -> Result<CollectionDescription, ToolError> {
        catalog::describe_collection(&self.session(ctx)?, args).await
    }

    async fn explain_documents(
        &self,
        args: ExplainDocumentsArgs,
        ctx: &CallContext,
    ) -> Result<ExplainResult, ToolError> {
        catalog::explain(&self.session(ctx)?, args).await
    }

    async fn close(&self) {
        self.client.clone().shutdown().immediate(true).await;
    }
}

impl MongoDatabase {
    fn session<'a>(&'a self, ctx: &'a CallContext) -> Result<session::Session<'a>, ToolError> {
        session::Session::new(&self.client, &self.database, self.limits, ctx)
    }
}
