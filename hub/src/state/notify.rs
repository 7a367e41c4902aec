//! Store change notifications: PostgreSQL `LISTEN`/`NOTIFY` between
//! replicas, with the poll as the fallback.
//!
//! A change that every replica must act on at once (a revocation, a policy
//! change, a catalog change) sends `NOTIFY` on its [`Topic`]'s channel in
//! the transaction that makes the change ([`notify`]), so PostgreSQL
//! delivers it exactly when the change commits and never for a rolled-back
//! one. Each serving replica holds one dedicated connection that `LISTEN`s
//! on every channel ([`listen`]) and wakes the topic's waiter
//! ([`Notifications::wait`]).
//!
//! Notifications are transient: one sent while the listening connection is
//! down is lost. So the poll of each topic's revision stays — slow while
//! the listener is up ([`Notifications::listening`]), at full speed while it
//! is down — and every (re)connection wakes every topic once, a catch-up
//! read of what may have been missed. The SQLite store has one process and
//! no listener: [`notify`] does nothing there and the poll runs as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// Revoked deployments or SVIDs (or a revoke lifted by re-enrolment).
    Revocation,
    /// An agent's policy.
    Policy,
    /// A deployment's tool catalog.
    Catalog,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 3] = [Topic::Revocation, Topic::Policy, Topic::Catalog];

    /// Its PostgreSQL channel.
    pub fn channel(self) -> &'static str {
        match self {
            Topic::Revocation => "ewii_revocation",
            Topic::Policy => "ewii_policy",
            Topic::Catalog => "ewii_catalog",
        }
    }

    fn from_channel(channel: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.channel() == channel)
    }

    fn index(self) -> usize {
        match self {
            Topic::Revocation => 0,
            Topic::Policy => 1,
            Topic::Catalog => 2,
        }
    }
}

/// The `application_name` of the listening connection (an operator finds
/// it in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "ewii-hub-notify";

/// Sends `NOTIFY` on `topic`'s channel inside `tx`: delivered when `tx`
/// commits. Nothing on a store other than PostgreSQL.
pub async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Any>, topic: Topic) -> Result<(), Error> {
    if tx.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(topic.channel())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What the listener received, for the tasks that act on it.
#[derive(Debug, Default)]
pub struct Notifications {
    wakers: [Notify; 3],
    listening: AtomicBool,
    received: AtomicU64,
    connects: AtomicU64,
}

impl Notifications {
    /// No listener yet: [`Notifications::listening`] is false.
    pub fn new() -> Arc<Notifications> {
        Arc::new(Notifications::default())
    }

    /// Waits until `topic` is notified (or a catch-up after a reconnection
    /// is due). A notification that came while nobody waited is kept, once.
    pub async fn wait(&self, topic: Topic) {
        self.wakers[topic.index()].notified().await;
    }

    /// Whether the listening connection is up: while it is not, the polls
    /// run at full speed.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Notifications received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Times the listening connection was (re)established.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    fn wake(&self, topic: Topic) {
        self.wakers[topic.index()].notify_one();
    }
}

/// The wait before re-establishing a lost listener, doubled after each
/// failed attempt: meanwhile the polls run at full speed, so there is no
/// hurry, and a database that is restarting is not pressed.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to re-establish the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Listens on every [`Topic`]'s channel of the PostgreSQL store at `url`
/// until `cancel`, re-establishing the connection with backoff whenever it
/// is lost; every (re)connection wakes every topic for a catch-up.
pub async fn listen(url: String, notifications: Arc<Notifications>, cancel: CancellationToken) {
    let mut backoff = FIRST_RETRY;
    loop {
        match connect(&url).await {
            Ok(mut listener) => {
                backoff = FIRST_RETRY;
                notifications.listening.store(true, Ordering::Release);
                notifications.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!("store notifications: listening");
                // What changed while no one listened is read once now.
                for topic in Topic::ALL {
                    notifications.wake(topic);
                }
                let lost = loop {
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            notifications.listening.store(false, Ordering::Release);
                            return;
                        }
                        next = listener.try_recv() => match next {
                            Ok(Some(n)) => {
                                if let Some(topic) = Topic::from_channel(n.channel()) {
                                    notifications.received.fetch_add(1, Ordering::Relaxed);
                                    notifications.wake(topic);
                                }
                            }
                            Ok(None) => break "connection closed".to_owned(),
                            Err(e) => break e.to_string(),
                        }
                    }
                };
                notifications.listening.store(false, Ordering::Release);
                // The polls go to full speed now, not after their slow wait.
                for topic in Topic::ALL {
                    notifications.wake(topic);
                }
                tracing::warn!(
                    error = %lost,
                    "store notifications: connection lost; polling at full speed until it is back"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "store notifications: cannot listen; polling at full speed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.application_name(LISTENER_APPLICATION_NAME))
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is ours to re-establish (and to catch up after).
    listener.eager_reconnect(false);
    listener
        .listen_all(Topic::ALL.iter().map(|t| t.channel()))
        .await?;
    Ok(listener)
}

/// Whether `url` names a PostgreSQL store (one with a listener).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}
