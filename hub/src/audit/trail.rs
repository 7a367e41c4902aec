//! The audit trail: hash-chained records of every agent `tools/call`,
//! allowed or denied, in the store ([`crate::state::store::audit`]).
//!
//! A call that will run a statement on a deployment gets two records:
//!
//! 1. its **intent** (`kind: "intent"`): who, what, where and the hub's
//!    decision, committed *before* the call crosses the tunnel. If it
//!    cannot be committed, the call is not sent: nothing runs unaudited.
//! 2. its **outcome** (`kind: "outcome"`): the complete record of the call
//!    (every field of the intent again, plus how it ended, rows, bytes,
//!    duration and the client's receipt), with `intent_seq` naming the
//!    intent. It is committed before the result is released; if it cannot
//!    be, the result is withheld.
//!
//! A call that never crosses a tunnel (denied, unknown tool, deployment
//! offline) gets one record, its **decision** (`kind: "decision"`), before
//! the answer is released. Records written before intents existed have no
//! `kind` and read as decisions.
//!
//! An intent without an outcome is honest, not broken: the call is still
//! running, or the hub stopped (crashed, was killed) between the two
//! commits, so the statement may or may not have run. `audit verify`
//! accepts it and lists it; `audit tail` shows it as "no outcome recorded".
//!
//! Calls hand their records to [`AuditLog`] and wait for them. One writer
//! task takes every record waiting at that moment and appends them in one
//! transaction (group commit), so concurrent calls share a commit instead
//! of queueing for one each.
//!
//! A record's fields:
//!
//! | field | meaning |
//! |---|---|
//! | `seq` | position in the chain, from 1 |
//! | `kind` | `intent`, `outcome` or `decision` |
//! | `call_id` | the call's id, the same in its intent and its outcome (also the ticket sent with the routed request) |
//! | `intent_seq` | in an outcome: the `seq` of its intent |
//! | `time`, `time_ms` | when the call arrived (RFC 3339 UTC, Unix ms) |
//! | `workspace`, `agent`, `agent_id` | who called |
//! | `tool` | the tool name the agent called (`eu_shop_query`) |
//! | `deployment`, `database` | where it was routed, when known |
//! | `spiffe_id`, `svid_serial` | the deployment's identity on that tunnel |
//! | `statement`, `params`, `statement_class` | the SQL (literals replaced by `?` with `--audit-redact`, which also drops `params`) and its class |
//! | `decision`, `rule` | `allow` or `deny`, and the policy rule that denied |
//! | `outcome` | `ok`, `tool_error`, `denied`, `withheld`, `unknown_tool`, `offline`, `failed`, `cancelled` (not in intents) |
//! | `rows`, `bytes_in`, `bytes_out`, `duration_ms` | size and time of the call (`rows`, `bytes_out`, `duration_ms` not in intents) |
//! | `request_digest`, `response_digest`, `response_signature`, `signature_scheme` | the client's receipt: SHA-256 of the request and of the response as the adapter sent them, signed by the deployment's SVID key and verified by the hub before the response was released (not in intents) |

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::Error;
use crate::state::store::Store;

/// Most records one group commit takes.
pub const MAX_BATCH: usize = 256;

/// What a record is (the `kind` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A call about to cross the tunnel, written before it does.
    Intent,
    /// How a call whose intent was written ended.
    Outcome,
    /// A call that never crossed a tunnel: its only record.
    Decision,
}

impl RecordKind {
    /// The kind of a stored record; records without `kind` predate intents
    /// and are decisions.
    pub fn of(record: &Value) -> Option<RecordKind> {
        match record.get("kind").and_then(Value::as_str) {
            None | Some("decision") => Some(RecordKind::Decision),
            Some("intent") => Some(RecordKind::Intent),
            Some("outcome") => Some(RecordKind::Outcome),
            Some(_) => None,
        }
    }
}

/// The fields an intent carries: everything known before the call crosses
/// the tunnel. The rest (outcome, sizes, duration, receipt) is not known
/// yet and would only be zeros.
const INTENT_FIELDS: [&str; 21] = [
    "call_id",
    "time",
    "time_ms",
    "workspace",
    "agent",
    "agent_id",
    "tool",
    "deployment",
    "database",
    "spiffe_id",
    "svid_serial",
    "statement",
    "params",
    "statement_class",
    "decision",
    "rule",
    "bytes_in",
    "oauth_issuer",
    "oauth_subject",
    "oauth_client",
    "oauth_scopes",
];

/// One tool call, as recorded. The same value is filled in as the call
/// goes and written as its intent, and then as its outcome or decision.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditRecord {
    /// The call's id, shared by its intent and its outcome.
    pub call_id: String,
    /// The `seq` of the call's intent, once it is durable.
    pub intent_seq: Option<i64>,
    /// When the call arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The same, Unix milliseconds.
    pub time_ms: i64,
    /// The agent's workspace.
    pub workspace: String,
    /// The agent's name.
    pub agent: String,
    /// The agent's id.
    pub agent_id: String,
    /// The tool name as called.
    pub tool: String,
    /// The deployment, when the name resolved to one.
    pub deployment: Option<String>,
    /// The database, when the tool belongs to one.
    pub database: Option<String>,
    /// The deployment's SPIFFE ID on the tunnel that carried the call.
    pub spiffe_id: Option<String>,
    /// The serial of the SVID that tunnel was opened with.
    pub svid_serial: Option<String>,
    /// The statement (redacted with `--audit-redact`).
    pub statement: Option<String>,
    /// The bound parameters (left out with `--audit-redact`).
    pub params: Option<Value>,
    /// `read`, `write`, `ddl` or `other`.
    pub statement_class: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// The policy rule that denied the call.
    pub rule: Option<String>,
    /// How the call ended.
    pub outcome: String,
    /// Rows returned, when the result has rows.
    pub rows: Option<u64>,
    /// Bytes of the agent's arguments.
    pub bytes_in: u64,
    /// Bytes of the result returned to the agent.
    pub bytes_out: u64,
    /// How long the call took at the hub.
    pub duration_ms: u64,
    /// SHA-256 (hex) of the request as the deployment received it.
    pub request_digest: Option<String>,
    /// SHA-256 (hex) of the response as the deployment's adapter sent it.
    pub response_digest: Option<String>,
    /// The client's signature over both digests (base64).
    pub response_signature: Option<String>,
    /// The TLS signature scheme of that signature.
    pub signature_scheme: Option<u16>,
    /// The issuer of the OAuth access token the agent signed in with.
    pub oauth_issuer: Option<String>,
    /// Its subject (the value of the workspace's claim).
    pub oauth_subject: Option<String>,
    /// The OAuth client it was issued to.
    pub oauth_client: Option<String>,
    /// Its scopes, space-separated.
    pub oauth_scopes: Option<String>,
}

impl AuditRecord {
    /// Records what the agent's OAuth access token said (nothing for a
    /// static bearer).
    pub fn set_oauth(&mut self, grant: Option<&crate::state::store::OAuthGrant>) {
        if let Some(g) = grant {
            self.oauth_issuer = Some(g.issuer.clone());
            self.oauth_subject = Some(g.subject.clone());
            self.oauth_client = g.client.clone();
            self.oauth_scopes = Some(g.scopes.join(" "));
        }
    }

    /// A record of a call `call_id` that arrived at `at`.
    pub fn started(at: SystemTime, call_id: String) -> AuditRecord {
        let dt: chrono::DateTime<chrono::Utc> = at.into();
        AuditRecord {
            call_id,
            time: dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            time_ms: dt.timestamp_millis(),
            ..AuditRecord::default()
        }
    }

    /// What the record is when written now: an outcome once its intent is
    /// durable, a decision otherwise.
    pub fn final_kind(&self) -> RecordKind {
        if self.intent_seq.is_some() {
            RecordKind::Outcome
        } else {
            RecordKind::Decision
        }
    }

    /// The record as stored for `kind`.
    fn to_map(&self, kind: RecordKind) -> Map<String, Value> {
        let mut m = match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            // A struct of strings and numbers always serialises to an object.
            _ => Map::new(),
        };
        // Absent fields are left out rather than stored as null.
        m.retain(|_, v| !v.is_null());
        if kind == RecordKind::Intent {
            m.retain(|k, _| INTENT_FIELDS.contains(&k.as_str()));
        }
        if let Ok(k) = serde_json::to_value(kind) {
            m.insert("kind".into(), k);
        }
        m
    }
}

type Pending = (Map<String, Value>, oneshot::Sender<Result<i64, String>>);

/// The audit writer.
#[derive(Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
    /// Woken after every commit (the exporters wait on it).
    pub appended: Arc<Notify>,
}

impl AuditLog {
    /// Starts the writer over `store`. It ends when the last handle is
    /// dropped, after writing what was queued.
    pub fn start(store: Store) -> Arc<AuditLog> {
        let (queue, mut rx) = mpsc::channel::<Pending>(4096);
        let appended = Arc::new(Notify::new());
        let notify = appended.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let (records, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                match append_with_retry(&store, &records).await {
                    Ok(seqs) => {
                        for (done, seq) in waiting.into_iter().zip(seqs) {
                            let _ = done.send(Ok(seq));
                        }
                        notify.notify_waiters();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, records = records.len(), "audit records could not be written; their calls are not sent or their results withheld");
                        for done in waiting {
                            let _ = done.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Arc::new(AuditLog { queue, appended })
    }

    /// Appends the call's intent and waits until it is durable; on success
    /// the record's `intent_seq` names it. Call this right before the call
    /// crosses the tunnel, and send nothing if it fails.
    pub async fn record_intent(&self, record: &mut AuditRecord) -> Result<i64, Error> {
        let seq = self.append(record.to_map(RecordKind::Intent)).await?;
        record.intent_seq = Some(seq);
        Ok(seq)
    }

    /// Appends the call's last record (its outcome if its intent was
    /// written, its decision otherwise) and waits until it is durable; its
    /// sequence number.
    pub async fn record(&self, record: AuditRecord) -> Result<i64, Error> {
        self.append(record.to_map(record.final_kind())).await
    }

    async fn append(&self, record: Map<String, Value>) -> Result<i64, Error> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send((record, done))
            .await
            .map_err(|_| Error::Serve("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(Error::Serve(format!("audit trail: {e}"))),
            Err(_) => Err(Error::Serve("the audit writer has stopped".into())),
        }
    }
}

/// A briefly unavailable store (a PostgreSQL failover, a locked SQLite
/// file) gets three tries before the calls are failed.
async fn append_with_retry(
    store: &Store,
    records: &[Map<String, Value>],
) -> Result<Vec<i64>, Error> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..2 {
        match store.append_audit(records).await {
            Ok(seqs) => return Ok(seqs),
            Err(e) => {
                tracing::warn!(error = %e, "audit append failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
    }
    store.append_audit(records).await
}

/// The store as the exporters' source: the audit table is their spool.
#[derive(Clone, Debug)]
pub struct StoreSource(pub Store);

impl crate::audit::export::Source for StoreSource {
    async fn after(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<crate::audit::export::ExportRecord>, String> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .0
            .audit_after(seq, limit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|r| crate::audit::export::ExportRecord {
                seq: r.seq,
                time_ms: r.record.get("time_ms").and_then(Value::as_i64).unwrap_or(0),
                decision: r
                    .record
                    .get("decision")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                json: r.record,
            })
            .collect())
    }

    async fn cursor(&self, exporter: &str) -> Result<i64, String> {
        self.0
            .export_cursor(exporter)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_cursor(&self, exporter: &str, seq: i64) -> Result<(), String> {
        self.0
            .set_export_cursor(exporter, seq)
            .await
            .map_err(|e| e.to_string())
    }
}
