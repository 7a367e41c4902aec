//! Single duties: work exactly one replica does at a time (the audit
//! exporters, the webhook deliveries).
//!
//! On PostgreSQL the replicas contend for a session-level advisory lock
//! (`pg_try_advisory_lock`) on a connection of their own. The holder runs
//! the duties and checks its connection every [`CHECK_EVERY`]; the others
//! try again as often. The lock lives exactly as long as the holder's
//! session, so when its replica dies (`kill -9`, a lost host) PostgreSQL
//! ends the session and another replica takes over within about one
//! interval. A holder that loses its connection stops its duties at once,
//! before anyone else can hold the lock for longer than one check.
//!
//! Delivery stays at-least-once across a failover: the duties keep their
//! progress in the store (an exporter's cursor, a delivery's state) and the
//! new holder resumes from there, so a batch the old holder had sent but
//! not yet recorded when it died is sent again. In steady state one
//! replica alone sends, so nothing is sent twice.
//!
//! An SQLite store has one process: it just runs the duties.

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The advisory lock key of the audit exporters and webhook deliveries
/// (`ewii` in ASCII, then 1).
pub const EXPORT_DUTY: i64 = 0x6577_6969_0000_0001;

/// The `application_name` of a duty connection.
pub const DUTY_APPLICATION_NAME: &str = "ewii-hub-duty";

/// How often the holder checks its session and the others try the lock.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Runs the duties `start` spawns (given a token that stops them) on this
/// replica while it holds the lock `key` of the PostgreSQL store at
/// `postgres_url` (always, without one), until `cancel`.
pub async fn run_exclusively<F>(
    postgres_url: Option<String>,
    key: i64,
    cancel: CancellationToken,
    start: F,
) where
    F: Fn(CancellationToken) -> Vec<JoinHandle<()>>,
{
    let Some(url) = postgres_url else {
        let tasks = start(cancel.clone());
        cancel.cancelled().await;
        join(tasks).await;
        return;
    };
    let mut failing = false;
    loop {
        match holding(&url, key, &cancel).await {
            Ok(Some(conn)) => {
                failing = false;
                tracing::info!("single duties: this replica runs them (exporters, webhooks)");
                let duties = cancel.child_token();
                let tasks = start(duties.clone());
                let why = keep(conn, &cancel).await;
                duties.cancel();
                join(tasks).await;
                match why {
                    None => return,
                    Some(e) => tracing::warn!(
                        error = %e,
                        "single duties: lost the lock's session; stopped them here (another \
                         replica takes over)"
                    ),
                }
            }
            Ok(None) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "single duties: cannot reach the store to take the lock");
                    failing = true;
                }
            }
        }
        if wait(&cancel, CHECK_EVERY).await {
            return;
        }
    }
}

/// A session holding the lock, `None` when another replica holds it.
async fn holding(
    url: &str,
    key: i64,
    cancel: &CancellationToken,
) -> Result<Option<PgConnection>, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name(DUTY_APPLICATION_NAME);
    let connect = PgConnection::connect_with(&options);
    let mut conn = tokio::select! {
        c = tokio::time::timeout(CHECK_EVERY * 10, connect) => c.map_err(|_| sqlx::Error::PoolTimedOut)??,
        _ = cancel.cancelled() => return Ok(None),
    };
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
    if locked {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

/// Keeps checking the lock's session until `cancel` (`None`) or until it
/// fails (why).
async fn keep(mut conn: PgConnection, cancel: &CancellationToken) -> Option<String> {
    loop {
        if wait(cancel, CHECK_EVERY).await {
            let _ = conn.close().await;
            return None;
        }
        match tokio::time::timeout(CHECK_EVERY * 4, conn.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(e.to_string()),
            Err(_) => return Some("the store did not answer in time".into()),
        }
    }
}

/// Sleeps `d`; whether `cancel` fired instead.
async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

async fn join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
}
