//! Rate limits shared by the replicas of a PostgreSQL store.
//!
//! One token bucket per key (an agent) in `rate_buckets`: capacity
//! `calls`, refilled at `calls / per_seconds` a second, in thousandths of
//! a call. A call takes one token in a single `INSERT … ON CONFLICT DO
//! UPDATE … WHERE` that refills and takes in the same row lock, so calls
//! racing on several replicas are counted once each, and a refused call
//! takes nothing. Time is the database's clock: replicas whose clocks
//! disagree still share one bucket fairly.

use super::Store;
use crate::Error;

impl Store {
    /// Takes one call from `key`'s shared bucket (`calls` per
    /// `per_seconds`); whether there was one. PostgreSQL only: an SQLite
    /// hub counts in memory ([`crate::gateway::policy::RateLimiter`]).
    pub async fn take_shared_call(
        &self,
        key: &str,
        calls: u32,
        per_seconds: u32,
    ) -> Result<bool, Error> {
        if self.postgres_url().is_none() {
            return Err(Error::Invalid(
                "shared rate limits need a PostgreSQL store".into(),
            ));
        }
        let capacity = i64::from(calls.max(1)) * 1000;
        let row = sqlx::query(
            "INSERT INTO rate_buckets AS b (key, tokens_milli, updated_ms) \
             VALUES ($1, $2 - 1000, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)) \
             ON CONFLICT (key) DO UPDATE SET \
               tokens_milli = LEAST($2, b.tokens_milli \
                 + GREATEST(0, EXCLUDED.updated_ms - b.updated_ms) * $3 / $4) - 1000, \
               updated_ms = GREATEST(b.updated_ms, EXCLUDED.updated_ms) \
             WHERE LEAST($2, b.tokens_milli \
                 + GREATEST(0, EXCLUDED.updated_ms - b.updated_ms) * $3 / $4) >= 1000 \
             RETURNING tokens_milli",
        )
        .bind(key)
        .bind(capacity)
        .bind(i64::from(calls.max(1)))
        .bind(i64::from(per_seconds.max(1)))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}
