//! `notifications/progress` for long calls.
//!
//! A caller that puts a `progressToken` in a request's `_meta` asks to be
//! told the request is still being worked on. A statement's progress is
//! not knowable from outside the engine, so the progress reported is the
//! time the call has been running, in whole seconds, once per
//! [`PROGRESS_INTERVAL`]: it increases with every notification, as MCP
//! requires, and tells an agent (and its user) that a slow query is slow,
//! not lost. rmcp carries each notification on the request's own stream.

use std::future::Future;
use std::time::Duration;

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};
use tokio::time::Instant;

/// How often a running call reports progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `call`, sending `notifications/progress` with `token` to `peer`
/// every `every` until it finishes. A notification that cannot be sent
/// (the caller went away) does not disturb the call.
pub async fn with_progress<F: Future>(
    call: F,
    peer: Peer<RoleServer>,
    token: ProgressToken,
    every: Duration,
) -> F::Output {
    let started = Instant::now();
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval_at(started + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut call => return out,
            _ = tick.tick() => {
                let secs = started.elapsed().as_secs();
                let note = ProgressNotificationParam::new(token.clone(), secs as f64)
                    .with_message(format!("still running after {secs} s"));
                if let Err(e) = peer.notify_progress(note).await {
                    tracing::debug!(error = %e, "progress notification not sent");
                }
            }
        }
    }
}
