//! One call's session: a new connection, inside a transaction that is
//! rolled back unless the call may write and succeeded.
//!
//! SQL Server has no read-only transaction. The engine fence is therefore:
//! every call runs in its own connection (no state survives it), inside
//! `BEGIN TRANSACTION` with `SET XACT_ABORT ON` (any error aborts the whole
//! transaction) and `SET LOCK_TIMEOUT` (a blocked statement fails instead
//! of waiting), and a call that runs read-only is always rolled back — and
//! checked to still be inside Ewii's transaction when its statement ends
//! (`@@TRANCOUNT = 1`), so a statement that committed or rolled back on its
//! own is reported. What a rollback cannot undo (extended procedures, linked
//! servers, files) is refused by the classifier, and the least-privilege
//! login (`db_datareader` only, see `docs/least-privilege.md`) is what holds
//! when both miss.

use std::time::Duration;

use ewii_driver_core::ToolError;
use futures::TryStreamExt;
use serde_json::Value;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, QueryItem};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use tracing::instrument::WithSubscriber;

use crate::MssqlDatabase;
use crate::errors::{connect_error, db_error};
use crate::tls::{self, ServerStream};
use crate::values::cell;

/// How long opening a connection (TCP, TLS, login) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(15);
/// How long ending a session (attention, rollback, close) may take.
const END_LIMIT: Duration = Duration::from_secs(5);

/// The tiberius client over our own stream.
pub(crate) type TdsClient = Client<Compat<Box<dyn ServerStream>>>;

/// One call's connection, inside its transaction.
pub(crate) struct Session {
    pub(crate) client: TdsClient,
    /// The call runs read-only: always rolled back.
    pub(crate) read_only: bool,
}

/// The batch that opens a call's transaction.
pub(crate) fn setup_batch(lock_timeout: Duration) -> String {
    let ms = lock_timeout.as_millis().clamp(1, i32::MAX as u128);
    format!(
        "SET XACT_ABORT ON; SET LOCK_TIMEOUT {ms}; SET IMPLICIT_TRANSACTIONS OFF; \
         SET NOCOUNT OFF; BEGIN TRANSACTION"
    )
}

impl MssqlDatabase {
    /// Connects and logs in (no transaction yet).
    pub(crate) async fn connect(&self) -> Result<TdsClient, ToolError> {
        let t = &self.target;
        let stream = tls::connect(t, self.tls.as_ref(), CONNECT_LIMIT)
            .await
            .map_err(|e| ToolError::Unavailable(e.to_string()))?;
        let mut config = Config::new();
        config.host(&t.host);
        config.port(t.port);
        if let Some(db) = &t.database {
            config.database(db);
        }
        config.authentication(AuthMethod::sql_server(&t.user, t.password.expose()));
        // TLS, when asked for, is already around `stream` (see `tls`):
        // tiberius must not negotiate any of its own.
        config.encryption(EncryptionLevel::NotSupported);
        config.application_name("ewii");
        config.handshake_timeout(Some(CONNECT_LIMIT));
        // tiberius logs a warning that the connection is "not encrypted"
        // whenever it does no TLS itself, which here is every strict
        // connection: silence the handshake's own logs, and warn ourselves
        // (in `tls::connect`) when the connection really is plaintext.
        Client::connect(config, stream.compat())
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await
            .map_err(|e| ToolError::Unavailable(connect_error(&e)))
    }

    /// Connects and opens the call's transaction.
    pub(crate) async fn session(&self, read_only: bool) -> Result<Session, ToolError> {
        let mut client = self.connect().await?;
        client
            .simple_query(setup_batch(self.limits.timeout))
            .await
            .map_err(db_error)?
            .into_results()
            .await
            .map_err(db_error)?;
        Ok(Session { client, read_only })
    }

    /// Ends the call: commits only when the call may write and `ok`,
    /// otherwise rolls back; then closes the connection.
    pub(crate) async fn finish(&self, mut s: Session, ok: bool) {
        let end = if ok && !s.read_only {
            "IF @@TRANCOUNT > 0 COMMIT TRANSACTION"
        } else {
            "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION"
        };
        let ended = async {
            s.client.simple_query(end).await?.into_results().await?;
            Ok::<(), tiberius::error::Error>(())
        };
        match tokio::time::timeout(END_LIMIT, ended).await {
            Ok(Ok(())) => {}
            // Closing the connection rolls back whatever is still open.
            Ok(Err(e)) => tracing::warn!(error = %e, "ending the SQL Server transaction failed"),
            Err(_) => tracing::warn!("ending the SQL Server transaction timed out"),
        }
        let _ = tokio::time::timeout(END_LIMIT, s.client.close()).await;
    }

    /// Stops the statement still running on the session (a TDS attention),
    /// then ends the session rolled back.
    pub(crate) async fn abort(&self, mut s: Session) {
        match tokio::time::timeout(END_LIMIT, s.client.cancel_query()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not cancel a statement on SQL Server"),
            Err(_) => tracing::warn!("cancelling a statement on SQL Server timed out"),
        }
        s.read_only = true;
        self.finish(s, false).await;
    }

    /// Runs trusted catalog SQL with bound text values in a read-only
    /// session; rows as JSON cells.
    pub(crate) async fn catalog_rows(
        &self,
        sql: &'static str,
        values: &[Option<&str>],
    ) -> Result<Vec<Vec<Value>>, ToolError> {
        let mut s = self.session(true).await?;
        let result = async {
            let mut q = tiberius::Query::new(sql);
            for v in values {
                q.bind(v.map(str::to_owned));
            }
            let mut stream = q.query(&mut s.client).await.map_err(db_error)?;
            let mut rows = Vec::new();
            while let Some(item) = stream.try_next().await.map_err(db_error)? {
                if let QueryItem::Row(row) = item {
                    rows.push(row.cells().map(|(_, d)| cell(d, u64::MAX)).collect());
                }
            }
            Ok(rows)
        }
        .await;
        self.finish(s, false).await;
        result
    }
}

/// Whether the call's transaction is still Ewii's own (`@@TRANCOUNT` is 1).
pub(crate) async fn still_in_transaction(client: &mut TdsClient) -> Result<bool, ToolError> {
    let row = client
        .simple_query("SELECT @@TRANCOUNT")
        .await
        .map_err(db_error)?
        .into_row()
        .await
        .map_err(db_error)?;
    Ok(row.and_then(|r| r.get::<i32, _>(0)) == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_aborts_on_error_and_bounds_lock_waits() {
        let batch = setup_batch(Duration::from_secs(30));
        assert!(batch.starts_with("SET XACT_ABORT ON;"), "{batch}");
        assert!(batch.contains("SET LOCK_TIMEOUT 30000;"), "{batch}");
        assert!(batch.ends_with("BEGIN TRANSACTION"), "{batch}");
        assert!(setup_batch(Duration::ZERO).contains("LOCK_TIMEOUT 1;"));
    }
}
