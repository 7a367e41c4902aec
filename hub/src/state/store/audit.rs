//! The audit trail's storage: a hash chain in `audit_log`.
//!
//! Each row holds the record's JSON exactly as hashed and
//! `hash = SHA-256(prev_hash || "\n" || record)` (lowercase hex); the first
//! record's `prev_hash` is 64 zeros. The `audit_head` revision holds the
//! last sequence number, written in the same transaction, so deleting the
//! last record is noticed as well as changing or deleting any other.
//!
//! Beyond the hashes, `verify_audit` checks that every outcome names an
//! earlier intent of the same call that has no other outcome
//! ([`crate::audit::trail`]), and lists the intents left without an outcome (calls
//! still running, or a hub that stopped between the two commits): those are
//! honest, not broken.
//!
//! Appends are optimistic: a batch reads the head, inserts the next
//! sequence numbers and moves the head only if it is still where it was;
//! another writer in between (a replica sharing PostgreSQL) makes it start
//! over. The primary key on `seq` settles any race the same way.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

use super::Store;
use crate::Error;
use crate::audit::trail::RecordKind;
use crate::state::tokens;

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HEAD: &str = "audit_head";

/// The chain hash of one record.
pub fn chain_hash(prev_hash: &str, record: &str) -> String {
    let mut input = Vec::with_capacity(prev_hash.len() + 1 + record.len());
    input.extend_from_slice(prev_hash.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(record.as_bytes());
    tokens::hex(digest(&SHA256, &input).as_ref())
}

/// One stored audit record.
#[derive(Clone, Debug, Serialize)]
pub struct StoredRecord {
    /// Sequence number, from 1.
    pub seq: i64,
    /// The record.
    pub record: Value,
    /// Its chain hash.
    pub hash: String,
}

/// What `audit verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every record is present, unchanged and in order.
    Intact {
        /// How many records.
        records: i64,
        /// The last record's hash (keep it elsewhere to detect a rewrite of
        /// the whole chain).
        head_hash: String,
        /// Intents without an outcome, oldest first: calls still running,
        /// or calls the hub stopped in (their statement may or may not
        /// have run).
        open_intents: Vec<i64>,
    },
    /// The first record that does not check out.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What is wrong with it.
        reason: String,
        /// Records before it that checked out.
        verified: i64,
    },
}

impl Store {
    /// Appends records to the chain, durably, and returns their sequence
    /// numbers. `seq` is added to each record before it is hashed.
    pub async fn append_audit(&self, records: &[Map<String, Value>]) -> Result<Vec<i64>, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append(records).await {
                Ok(Some(seqs)) => return Ok(seqs),
                Ok(None) if attempt < 20 => continue,
                Ok(None) => {
                    return Err(Error::Corrupt(
                        "the audit head kept moving under this writer (20 attempts)".into(),
                    ));
                }
                Err(Error::Database(e)) if is_conflict(&e) && attempt < 20 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The head this store last committed, if it still holds it.
    fn cached_head(&self) -> Option<(i64, String)> {
        self.audit_head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_cached_head(&self, head: Option<(i64, String)>) {
        *self
            .audit_head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = head;
    }

    async fn try_append(&self, records: &[Map<String, Value>]) -> Result<Option<Vec<i64>>, Error> {
        // Forgotten unless this append commits: a failed or conflicting
        // append reads the head from the store again.
        let cached = self.cached_head();
        self.set_cached_head(None);
        let appended = self.append_at(records, cached).await?;
        if let Some((_, head)) = &appended {
            self.set_cached_head(Some(head.clone()));
        }
        Ok(appended.map(|(seqs, _)| seqs))
    }

    /// Appends after `cached` (the head this store last committed) or, if
    /// `None`, after the head read from the store. A head that moved under
    /// the cache (another writer of the same store: a replica, the CLI)
    /// makes the conditional head update touch no row, or the insert hit
    /// an existing sequence number: nothing is committed and the caller
    /// retries with the head read afresh. The sequence numbers and the new
    /// head.
    #[allow(clippy::type_complexity)]
    async fn append_at(
        &self,
        records: &[Map<String, Value>],
        cached: Option<(i64, String)>,
    ) -> Result<Option<(Vec<i64>, (i64, String))>, Error> {
        let mut tx = self.pool.begin().await?;
        let (head, mut prev) = match cached {
            Some(h) => h,
            None => {
                let head: i64 = sqlx::query("SELECT value FROM revisions WHERE id = $1")
                    .bind(HEAD)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("value")?;
                let prev = if head == 0 {
                    GENESIS.to_owned()
                } else {
                    let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
                        .bind(head)
                        .fetch_optional(&mut *tx)
                        .await?;
                    match row {
                        Some(r) => r.try_get("hash")?,
                        None => {
                            return Err(Error::Corrupt(format!(
                                "audit record {head} (the head) is missing; run `ewii-hub audit verify`"
                            )));
                        }
                    }
                };
                (head, prev)
            }
        };
        let mut seqs = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let seq = head + 1 + i64::try_from(i).unwrap_or(i64::MAX - head - 1);
            let mut record = record.clone();
            record.insert("seq".into(), Value::from(seq));
            let text = Value::Object(record).to_string();
            let hash = chain_hash(&prev, &text);
            sqlx::query(
                "INSERT INTO audit_log (seq, record, prev_hash, hash) VALUES ($1, $2, $3, $4)",
            )
            .bind(seq)
            .bind(&text)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
            prev = hash;
            seqs.push(seq);
        }
        let new_head = head + i64::try_from(records.len()).unwrap_or(0);
        let moved = sqlx::query("UPDATE revisions SET value = $1 WHERE id = $2 AND value = $3")
            .bind(new_head)
            .bind(HEAD)
            .bind(head)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some((seqs, (new_head, prev))))
    }

    /// Checks the whole chain and names the first broken record.
    pub async fn verify_audit(&self) -> Result<Verification, Error> {
        let head: i64 = sqlx::query("SELECT value FROM revisions WHERE id = $1")
            .bind(HEAD)
            .fetch_one(&self.pool)
            .await?
            .try_get("value")?;
        let mut prev = GENESIS.to_owned();
        let mut expected = 1i64;
        // Intents waiting for their outcome: seq → call_id.
        let mut open: BTreeMap<i64, String> = BTreeMap::new();
        loop {
            let rows = sqlx::query(
                "SELECT seq, record, prev_hash, hash FROM audit_log WHERE seq >= $1 \
                 ORDER BY seq LIMIT 1000",
            )
            .bind(expected)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let seq: i64 = r.try_get("seq")?;
                let broken = |seq: i64, reason: String| Verification::Broken {
                    seq,
                    reason,
                    verified: expected - 1,
                };
                if seq != expected {
                    return Ok(broken(
                        expected,
                        format!(
                            "record {expected} is missing (record {} is followed by {seq})",
                            expected - 1
                        ),
                    ));
                }
                let record: String = r.try_get("record")?;
                let prev_hash: String = r.try_get("prev_hash")?;
                let hash: String = r.try_get("hash")?;
                if prev_hash != prev {
                    return Ok(broken(
                        seq,
                        format!(
                            "its prev_hash does not match record {}'s hash: a record before it \
                             was removed or rewritten",
                            seq - 1
                        ),
                    ));
                }
                if chain_hash(&prev_hash, &record) != hash {
                    return Ok(broken(
                        seq,
                        "its content does not match its hash: the record was changed".into(),
                    ));
                }
                let body = serde_json::from_str::<Value>(&record).ok();
                let claimed = body
                    .as_ref()
                    .and_then(|v| v.get("seq").and_then(Value::as_i64));
                if claimed != Some(seq) {
                    return Ok(broken(
                        seq,
                        "its body names another sequence number: the record was moved".into(),
                    ));
                }
                if let Some(body) = &body
                    && let Err(reason) = link(&mut open, seq, body)
                {
                    return Ok(broken(seq, reason));
                }
                prev = hash;
                expected += 1;
            }
        }
        let records = expected - 1;
        if records < head {
            return Ok(Verification::Broken {
                seq: records + 1,
                reason: format!(
                    "record {} is missing: the trail ends at {records} but its head is {head} \
                     (the last records were deleted)",
                    records + 1
                ),
                verified: records,
            });
        }
        if records > head {
            return Ok(Verification::Broken {
                seq: head + 1,
                reason: format!(
                    "record {} is past the recorded head {head}: records were added outside \
                     the hub",
                    head + 1
                ),
                verified: head,
            });
        }
        Ok(Verification::Intact {
            records,
            head_hash: prev,
            open_intents: open.into_keys().collect(),
        })
    }

    /// The last `n` records, oldest first.
    pub async fn audit_tail(&self, n: i64) -> Result<Vec<StoredRecord>, Error> {
        let rows =
            sqlx::query("SELECT seq, record, hash FROM audit_log ORDER BY seq DESC LIMIT $1")
                .bind(n)
                .fetch_all(&self.pool)
                .await?;
        let mut out = rows
            .iter()
            .map(stored_row)
            .collect::<Result<Vec<_>, Error>>()?;
        out.reverse();
        Ok(out)
    }

    /// Up to `limit` records after `seq`, oldest first.
    pub async fn audit_after(&self, seq: i64, limit: i64) -> Result<Vec<StoredRecord>, Error> {
        let rows = sqlx::query(
            "SELECT seq, record, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_row).collect()
    }

    /// How far an exporter got (0 when new).
    pub async fn export_cursor(&self, exporter: &str) -> Result<i64, Error> {
        let row = sqlx::query("SELECT seq FROM audit_export_cursors WHERE exporter = $1")
            .bind(exporter)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("seq")?,
            None => 0,
        })
    }

    /// Moves an exporter's cursor.
    pub async fn set_export_cursor(&self, exporter: &str, seq: i64) -> Result<(), Error> {
        let updated = sqlx::query("UPDATE audit_export_cursors SET seq = $1 WHERE exporter = $2")
            .bind(seq)
            .bind(exporter)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            sqlx::query("INSERT INTO audit_export_cursors (exporter, seq) VALUES ($1, $2)")
                .bind(exporter)
                .bind(seq)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Pairs an intent and its outcome as `verify_audit` walks the chain.
fn link(open: &mut BTreeMap<i64, String>, seq: i64, body: &Value) -> Result<(), String> {
    let call_id = body.get("call_id").and_then(Value::as_str);
    match RecordKind::of(body) {
        Some(RecordKind::Decision) => Ok(()),
        Some(RecordKind::Intent) => {
            let call_id = call_id.ok_or("it is an intent without a call_id")?;
            open.insert(seq, call_id.to_owned());
            Ok(())
        }
        Some(RecordKind::Outcome) => {
            let intent = body
                .get("intent_seq")
                .and_then(Value::as_i64)
                .ok_or("it is an outcome without an intent_seq")?;
            match open.get(&intent) {
                Some(id) if Some(id.as_str()) == call_id => {
                    open.remove(&intent);
                    Ok(())
                }
                Some(_) => Err(format!(
                    "it is the outcome of another call than intent {intent}: the chain was \
                     rewritten"
                )),
                None => Err(format!(
                    "it is an outcome of intent {intent}, which is not an earlier intent \
                     without an outcome: the chain was rewritten"
                )),
            }
        }
        None => Err("its kind is unknown".into()),
    }
}

fn stored_row(r: &sqlx::any::AnyRow) -> Result<StoredRecord, Error> {
    let text: String = r.try_get("record")?;
    Ok(StoredRecord {
        seq: r.try_get("seq")?,
        record: serde_json::from_str(&text)
            .map_err(|e| Error::Corrupt(format!("an audit record is not JSON: {e}")))?,
        hash: r.try_get("hash")?,
    })
}

/// A write conflict another writer caused: retry.
fn is_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db
                    .code()
                    .is_some_and(|c| c == "40001" || c == "5" || c == "517")
        }
        _ => false,
    }
}
