//! One call's view of the database: the collection handle with the call's
//! read concern and read preference, and its time limit and cancellation.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use ewii_driver_core::schema::{ReadConcernLevel, ReadPreferenceMode};
use ewii_driver_core::{CallContext, Limits, StatementClass, ToolError};
use mongodb::bson::Document;
use mongodb::options::{CollectionOptions, ReadConcern, ReadPreference, SelectionCriteria};
use mongodb::{Client, Collection};

/// How long past the database's limit the client-side backstop waits for
/// the server's own `maxTimeMS` to end an operation.
const BACKSTOP_GRACE: Duration = Duration::from_secs(2);

/// One tool call on one attached database.
pub struct Session<'a> {
    /// The client (shared by every call of the database).
    pub client: &'a Client,
    /// The attached database's name.
    pub database: &'a str,
    /// The database's limits.
    pub limits: Limits,
    ctx: &'a CallContext,
}

impl<'a> Session<'a> {
    /// Starts a call. A hub call whose agent may not read is refused (the
    /// document tools only read).
    pub fn new(
        client: &'a Client,
        database: &'a str,
        limits: Limits,
        ctx: &'a CallContext,
    ) -> Result<Self, ToolError> {
        if let Some(allowed) = ctx.statements
            && !allowed.contains(StatementClass::Read)
        {
            return Err(ToolError::Refused {
                reason: "this call may not read, and every MongoDB tool reads".into(),
            });
        }
        Ok(Session {
            client,
            database,
            limits,
            ctx,
        })
    }

    /// The time limit every operation carries as `maxTimeMS`.
    pub fn max_time(&self) -> Duration {
        self.limits.timeout
    }

    /// The limit in milliseconds, for commands built by hand.
    pub fn max_time_ms(&self) -> i64 {
        i64::try_from(self.limits.timeout.as_millis()).unwrap_or(i64::MAX)
    }

    /// A handle on `collection` reading with the call's read concern and
    /// read preference (default `local`, `primary`).
    pub fn collection(
        &self,
        collection: &str,
        preference: Option<ReadPreferenceMode>,
        concern: Option<ReadConcernLevel>,
    ) -> Result<Collection<Document>, ToolError> {
        if collection.is_empty() || collection.contains('\0') || collection.starts_with("system.") {
            return Err(ToolError::InvalidArguments(format!(
                "'{collection}' is not a readable collection name; call list_collections"
            )));
        }
        let options = CollectionOptions::builder()
            .selection_criteria(selection_criteria(preference))
            .read_concern(read_concern(concern))
            .build();
        Ok(self
            .client
            .database(self.database)
            .collection_with_options(collection, options))
    }

    /// The database handle (catalog commands), with the default read
    /// preference and concern.
    pub fn database(&self) -> mongodb::Database {
        self.client.database(self.database)
    }

    /// Runs one operation until it ends, the client cancels, or a backstop
    /// a little past the time limit passes. Dropping the operation drops its
    /// cursor, and the crate then sends `killCursors` for it; the server's
    /// `maxTimeMS` ends an operation still running there.
    pub async fn run<T>(
        &self,
        work: impl IntoFuture<Output = Result<T, mongodb::error::Error>>,
    ) -> Result<T, ToolError> {
        let limit = self.limits.timeout;
        self.ctx
            .interruptible(limit, limit + BACKSTOP_GRACE, work.into_future())
            .await?
            .map_err(|e| super::errors::tool_error(&e, limit))
    }

    /// Like [`Session::run`], for work that already maps its own errors.
    pub async fn run_tool<T>(
        &self,
        work: impl Future<Output = Result<T, ToolError>>,
    ) -> Result<T, ToolError> {
        let limit = self.limits.timeout;
        self.ctx
            .interruptible(limit, limit + BACKSTOP_GRACE, work)
            .await?
    }
}

fn selection_criteria(mode: Option<ReadPreferenceMode>) -> SelectionCriteria {
    let preference = match mode.unwrap_or(ReadPreferenceMode::Primary) {
        ReadPreferenceMode::Primary => ReadPreference::Primary,
        ReadPreferenceMode::PrimaryPreferred => ReadPreference::PrimaryPreferred { options: None },
        ReadPreferenceMode::Secondary => ReadPreference::Secondary { options: None },
        ReadPreferenceMode::SecondaryPreferred => {
            ReadPreference::SecondaryPreferred { options: None }
        }
        ReadPreferenceMode::Nearest => ReadPreference::Nearest { options: None },
    };
    SelectionCriteria::ReadPreference(preference)
}

fn read_concern(level: Option<ReadConcernLevel>) -> ReadConcern {
    match level.unwrap_or(ReadConcernLevel::Local) {
        ReadConcernLevel::Local => ReadConcern::local(),
        ReadConcernLevel::Available => ReadConcern::available(),
        ReadConcernLevel::Majority => ReadConcern::majority(),
    }
}
