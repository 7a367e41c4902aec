//! The `rate_limit` rule: per-agent token buckets.

use super::POLICY_SET_HINT;
use super::model::RateLimit;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Per-agent token buckets for `rate_limit`. Thread-safe; time is passed
/// in, so tests and callers control the clock.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// One agent's allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Calls available now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// Above this many buckets, full ones are dropped on the next check; a full
/// bucket is the same as a missing one, so nothing is lost.
const PRUNE_ABOVE: usize = 4096;

impl RateLimiter {
    /// An empty limiter: every key starts with a full bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one call from `key`'s bucket at time `now`, or returns how long
    /// to wait until one is available. Call it before
    /// [`Policy::evaluate`]; a refused call takes nothing.
    pub fn check(&self, key: &str, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(limit.calls.max(1));
        let per_second = capacity / f64::from(limit.per_seconds.max(1));
        // The map only holds counters: a panic elsewhere cannot leave it in
        // a state worse than slightly wrong counts.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
                b.tokens + elapsed * per_second < capacity
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        if now > bucket.updated {
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens += elapsed * per_second;
            bucket.updated = now;
        }
        // Also applies a lowered limit at once.
        bucket.tokens = bucket.tokens.min(capacity);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(Duration::from_secs(u64::from(limit.per_seconds))))
        }
    }
}

/// The refusal text for a call over `rate_limit`.
pub fn rate_limited(limit: &RateLimit, retry_after: Duration) -> String {
    let wait = retry_after.as_millis().div_ceil(1000).max(1);
    format!(
        "agent policy rule `rate_limit`: this agent may make at most {} call(s) per {} \
         second(s); wait {wait} second(s) before calling again. {POLICY_SET_HINT}",
        limit.calls, limit.per_seconds
    )
}
