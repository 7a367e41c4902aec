//! The exporter loop: follow the trail after the cursor, hand batches to
//! the sink, move the cursor once accepted, retry with backoff.

use super::{BATCH_SIZE, ExportError, ExportRecord, Sink, SinkConfig, Source};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::egress;

/// How an exporter waits: retry delays after failures, and the polling
/// interval when there is nothing new.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure; doubled after each further one.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
    /// Longest wait for new records when the exporter is not woken.
    pub idle: Duration,
    /// Most records per batch.
    pub batch: usize,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            idle: Duration::from_secs(1),
            batch: BATCH_SIZE,
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failures in a row (1-based): `base`
    /// doubled each time up to `cap`, then ±20 % so that exporters of
    /// several hubs do not retry in step (never above `cap`).
    pub fn delay(&self, failures: u32) -> Duration {
        egress::backoff(failures, self.base, self.cap).min(self.cap)
    }
}

/// Runs an exporter with the default [`RetryPolicy`] until `cancel`.
///
/// `wake` is notified after each append to the audit table (the exporter
/// also looks every second without it).
pub async fn run<S: Source>(
    config: SinkConfig,
    source: Arc<S>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    run_with(config, source, wake, cancel, RetryPolicy::default()).await;
}

/// [`run`] with an explicit [`RetryPolicy`].
pub async fn run_with<S: Source>(
    config: SinkConfig,
    source: Arc<S>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    policy: RetryPolicy,
) {
    let mut exporter = Exporter {
        name: config.name(),
        config,
        source,
        batch_size: policy.batch.max(1),
        sink: None,
        cursor: None,
        pending: None,
        unsaved_cursor: false,
    };
    tracing::info!(exporter = %exporter.name, "audit exporter started");
    let mut failures: u32 = 0;
    let mut outage_started = Instant::now();
    while !cancel.is_cancelled() {
        // Registered before looking, so that an append between the look and
        // the wait still wakes us (the hub uses `notify_waiters`).
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let step = tokio::select! {
            () = cancel.cancelled() => break,
            step = exporter.step() => step,
        };
        match step {
            Ok(progress) => {
                if failures > 0 {
                    tracing::info!(
                        exporter = %exporter.name,
                        failed_attempts = failures,
                        outage_secs = outage_started.elapsed().as_secs(),
                        "audit export recovered"
                    );
                    failures = 0;
                }
                if progress == Progress::Idle {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = &mut notified => {}
                        () = tokio::time::sleep(policy.idle) => {}
                    }
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    outage_started = Instant::now();
                    tracing::warn!(
                        exporter = %exporter.name,
                        %error,
                        "audit export failing; records stay in the audit table and are sent when \
                         it recovers"
                    );
                } else {
                    tracing::debug!(exporter = %exporter.name, %error, failures, "audit export retry failed");
                }
                if Sink::reopen_after(&error) {
                    exporter.sink = None;
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(policy.delay(failures)) => {}
                }
            }
        }
    }
    tracing::info!(exporter = %exporter.name, "audit exporter stopped");
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    Sent,
    Idle,
}

pub(super) struct Exporter<S> {
    name: String,
    config: SinkConfig,
    source: Arc<S>,
    batch_size: usize,
    sink: Option<Sink>,
    /// The last delivered sequence number, once read from the source.
    cursor: Option<i64>,
    /// A batch the sink has not accepted yet: retried as is.
    pending: Option<Vec<ExportRecord>>,
    /// The cursor advanced but saving it failed.
    unsaved_cursor: bool,
}

impl<S: Source> Exporter<S> {
    async fn step(&mut self) -> Result<Progress, ExportError> {
        let cursor = match self.cursor {
            Some(c) => c,
            None => {
                let c = self
                    .source
                    .cursor(&self.name)
                    .await
                    .map_err(ExportError::Source)?;
                self.cursor = Some(c);
                c
            }
        };
        if self.unsaved_cursor {
            self.save_cursor(cursor).await?;
        }
        let batch = match self.pending.take() {
            Some(batch) => batch,
            None => {
                let batch = self
                    .source
                    .after(cursor, self.batch_size)
                    .await
                    .map_err(ExportError::Source)?;
                if batch.is_empty() {
                    return Ok(Progress::Idle);
                }
                batch
            }
        };
        let last = batch.iter().map(|r| r.seq).max().unwrap_or(cursor);
        if last <= cursor {
            return Err(ExportError::Source(format!(
                "asked for records after {cursor}, got none past it"
            )));
        }
        let mut sink = match self.sink.take() {
            Some(sink) => sink,
            None => match Sink::open(&self.config).await {
                Ok(sink) => sink,
                Err(e) => {
                    self.pending = Some(batch);
                    return Err(e);
                }
            },
        };
        let sent = sink.send(&batch).await;
        // Kept even on error: `run_with` drops it if it must be reopened.
        self.sink = Some(sink);
        if let Err(e) = sent {
            self.pending = Some(batch);
            return Err(e);
        }
        // Delivered: never send these again in this run, even if the cursor
        // cannot be saved right now.
        self.cursor = Some(last);
        self.save_cursor(last).await?;
        Ok(Progress::Sent)
    }

    async fn save_cursor(&mut self, seq: i64) -> Result<(), ExportError> {
        match self.source.set_cursor(&self.name, seq).await {
            Ok(()) => {
                self.unsaved_cursor = false;
                Ok(())
            }
            Err(e) => {
                self.unsaved_cursor = true;
                Err(ExportError::Source(e))
            }
        }
    }
}
