//! Audit export: pushes the audit trail to a SIEM.
//!
//! The hash-chained audit table is the spool. Each exporter ([`run`]) is a
//! task of its own that follows the table through a [`Source`] with a
//! cursor persisted under the exporter's [`SinkConfig::name`]: it reads up
//! to 500 records after the cursor, hands them to its [`Sink`], and moves
//! the cursor only once the sink has accepted them. Tool calls only append
//! to the table; they never wait for an exporter, so a slow or down SIEM
//! costs nothing but a growing backlog, which is sent when it is back.
//!
//! A batch the sink refused is retried as is, after 1 s, 2 s, 4 s … up to
//! 60 s (with jitter), reopening the sink each time. An outage is logged
//! once as a warning, and its end as info.
//!
//! Delivery is at-least-once: a crash between "accepted" and "cursor
//! saved", or an HTTPS answer lost to a timeout, sends a batch again.
//! Receivers drop duplicates by `seq` (every exported object has it).
//! Syslog over TCP has no acknowledgement (RFC 6587): the exporter checks
//! the connection before each batch and reconnects if the peer closed it,
//! but a connection dying in the middle of a batch can still lose the
//! records the kernel had taken; use HTTPS where every record must arrive.
//!
//! # `--audit-export SPEC`
//!
//! | SPEC | sink |
//! |---|---|
//! | `jsonl:/ABS/PATH.jsonl[?max_bytes=N&keep=N]` | JSON lines, rotated to `PATH.1` … `PATH.<keep>` when the file would pass `max_bytes` (defaults 104857600 and 10) |
//! | `syslog+tcp://HOST[:PORT][?app_name=A&hostname=H]` | RFC 5424 over TCP, octet-counted (RFC 6587); port 514 |
//! | `syslog+tls://HOST[:PORT][?ca=/PATH/ca.pem&server_name=N&app_name=A&hostname=H]` | the same over TLS (RFC 5425); port 6514; the server certificate is checked against the system roots plus `ca`, for `server_name` (default HOST) |
//! | `https://HOST[:PORT]/PATH[?ca=/PATH/ca.pem&timeout=SECONDS]` | `POST` of a JSON array per batch, `2xx` = accepted; bearer token from `EWII_AUDIT_HTTPS_TOKEN` when set; timeout default 10 s |
//! | `http://127.0.0.1:PORT/PATH` | the same, in clear text, to a loopback address only |
//!
//! Option values are taken literally (no percent-decoding). In an `https`
//! SPEC, query parameters other than `ca` and `timeout` stay part of the
//! URL. The `app_name` default is `ewii-hub`, the `hostname` default the
//! machine's host name. Credentials never go in the SPEC (it shows in
//! `ps`): a `user:password@` URL is refused.

use std::fmt;
use std::future::Future;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::audit::webhook::{self, WebhookError};

/// The environment variable `parse` reads the HTTPS bearer token from.
pub const HTTPS_TOKEN_ENV: &str = "EWII_AUDIT_HTTPS_TOKEN";

/// Most records one batch carries.
pub const BATCH_SIZE: usize = 500;

/// Default size at which a JSON lines file is rotated (100 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Default number of rotated JSON lines files kept.
pub const DEFAULT_KEEP: usize = 10;
/// Default timeout of one HTTPS batch.
pub const DEFAULT_HTTPS_TIMEOUT: Duration = Duration::from_secs(10);
/// Default syslog APP-NAME.
pub const DEFAULT_APP_NAME: &str = "ewii-hub";

/// Time allowed to connect (and finish the TLS handshake) to a syslog
/// receiver.
const SYSLOG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write one batch to a syslog receiver; a receiver that
/// stops reading is then reconnected.
const SYSLOG_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 5424 facility 13, "log audit".
const FACILITY_LOG_AUDIT: u8 = 13;
/// RFC 5424 severity 6, informational: an allowed call.
const SEVERITY_ALLOW: u8 = 6;
/// RFC 5424 severity 5, notice: a denied call.
const SEVERITY_DENY: u8 = 5;
/// SD-ID of the structured data. 32473 is the example enterprise number
/// reserved for documentation (RFC 5612); replace it if Ewii registers one.
const SD_ID: &str = "ewii@32473";
/// MSGID of a call's final audit record (its outcome, or the decision of a
/// call that never crossed a tunnel): one per call.
const MSGID: &str = "tool_call";
/// MSGID of a call's intent record, committed before the call crossed the
/// tunnel; its outcome follows with the same `call_id`. A SIEM rule that
/// counts calls filters on `tool_call`.
const MSGID_INTENT: &str = "tool_call_intent";
/// Record fields copied into the structured data, after `seq` and
/// `decision`.
const SD_FIELDS: [&str; 6] = [
    "kind",
    "call_id",
    "workspace",
    "deployment",
    "agent",
    "tool",
];

/// One audit record, as an exporter reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportRecord {
    /// Position in the audit chain, from 1.
    pub seq: i64,
    /// When the call arrived, Unix milliseconds.
    pub time_ms: i64,
    /// `allow` or `deny`.
    pub decision: String,
    /// The whole record object.
    pub json: Value,
}

/// Where exporters read the audit trail and keep their cursors: the hub's
/// store (an in-memory one in tests).
pub trait Source: Send + Sync + 'static {
    /// Up to `limit` records with a sequence number above `seq`, in order.
    fn after(
        &self,
        seq: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ExportRecord>, String>> + Send;
    /// The last sequence number `exporter` delivered; 0 for a new one.
    fn cursor(&self, exporter: &str) -> impl Future<Output = Result<i64, String>> + Send;
    /// Records that `exporter` delivered everything up to `seq`.
    fn set_cursor(
        &self,
        exporter: &str,
        seq: i64,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A bearer token: never shown by `Debug`, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: String) -> BearerToken {
        BearerToken(Zeroizing::new(token))
    }

    /// The token, to put in the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// TLS settings of a syslog sink (RFC 5425).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTls {
    /// The name the receiver's certificate must carry (DNS name or IP).
    pub server_name: String,
    /// A PEM file of CA certificates trusted in addition to the system
    /// roots (an in-house CA); `None` trusts the system roots only.
    pub ca_file: Option<PathBuf>,
}

/// Where an exporter sends records.
#[derive(Clone, PartialEq)]
pub enum SinkConfig {
    /// JSON lines, one record per line, rotated when the file would pass
    /// `max_bytes`: `file.jsonl` → `file.jsonl.1` → `.2` …, keeping `keep`
    /// old files. Synced to disk after each batch.
    Jsonl {
        /// The live file.
        path: PathBuf,
        /// Size past which the file is rotated (a single larger record gets
        /// a file of its own).
        max_bytes: u64,
        /// How many rotated files are kept; 0 deletes a file when it is
        /// rotated.
        keep: usize,
    },
    /// RFC 5424 over TCP with RFC 6587 octet-counting framing
    /// (`LEN SP SYSLOG-MSG`), optionally over TLS (RFC 5425); reconnected on
    /// failure.
    Syslog {
        /// The receiver, `host:port` (`[v6]:port`).
        addr: String,
        /// TLS settings; `None` for plain TCP.
        tls: Option<SyslogTls>,
        /// The APP-NAME header field.
        app_name: String,
        /// The HOSTNAME header field.
        hostname: String,
    },
    /// `POST` of a JSON array of records per batch; `2xx` = accepted.
    Https {
        /// `https://…`, or `http://` to a loopback address.
        url: String,
        /// Sent as `Authorization: Bearer …` when set.
        bearer: Option<BearerToken>,
        /// A PEM file of CA certificates trusted in addition to the system
        /// roots.
        ca_file: Option<PathBuf>,
        /// Timeout of one batch's request.
        timeout: Duration,
    },
}

impl fmt::Debug for SinkConfig {
    // The HTTPS URL is shown without credentials or query, which may carry
    // an API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkConfig::Jsonl {
                path,
                max_bytes,
                keep,
            } => f
                .debug_struct("Jsonl")
                .field("path", path)
                .field("max_bytes", max_bytes)
                .field("keep", keep)
                .finish(),
            SinkConfig::Syslog {
                addr,
                tls,
                app_name,
                hostname,
            } => f
                .debug_struct("Syslog")
                .field("addr", addr)
                .field("tls", tls)
                .field("app_name", app_name)
                .field("hostname", hostname)
                .finish(),
            SinkConfig::Https {
                url,
                bearer,
                ca_file,
                timeout,
            } => f
                .debug_struct("Https")
                .field("url", &display_url(url))
                .field("bearer", bearer)
                .field("ca_file", ca_file)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

impl SinkConfig {
    /// The exporter's stable name, under which its cursor is kept:
    /// `jsonl:/var/log/ewii/audit.jsonl`, `syslog:siem.example.com:6514`,
    /// `https:https://siem.example.com/ingest` (no credentials, query or
    /// fragment, so the name is safe to log).
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Jsonl { path, .. } => format!("jsonl:{}", path.display()),
            SinkConfig::Syslog { addr, .. } => format!("syslog:{addr}"),
            SinkConfig::Https { url, .. } => format!("https:{}", display_url(url)),
        }
    }

    /// Reads a `--audit-export` SPEC (syntax in the [module docs](self));
    /// the HTTPS bearer token comes from `EWII_AUDIT_HTTPS_TOKEN`.
    pub fn parse(spec: &str) -> Result<SinkConfig, ExportError> {
        let token = std::env::var(HTTPS_TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(BearerToken::new);
        parse_spec(spec, token)
    }
}

/// An export that failed; the exporter logs it and retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A `--audit-export` SPEC that cannot be used.
    #[error("invalid --audit-export: {0}")]
    Spec(String),
    /// The audit store failed.
    #[error("the audit store failed: {0}; the exporter retries, check the database")]
    Source(String),
    /// A file of a JSON lines sink could not be written.
    #[error(
        "cannot {action} {}: {source}; check the directory exists, is writable by the hub and \
         has free space", path.display()
    )]
    File {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The syslog receiver could not be reached or stopped taking records.
    #[error(
        "syslog receiver {addr}: {action} failed: {source}; check the receiver is up and \
         reachable (the exporter reconnects)"
    )]
    Syslog {
        /// The receiver.
        addr: String,
        /// `connect`, `TLS handshake` or `write`.
        action: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The syslog TLS settings cannot be used.
    #[error("syslog TLS: {0}")]
    SyslogTls(String),
    /// The HTTPS receiver could not be reached.
    #[error(
        "HTTPS receiver {url}: {source}; check the URL, DNS, firewall and its certificate (an \
         in-house CA needs ?ca=)"
    )]
    HttpsSend {
        /// The URL, without credentials or query.
        url: String,
        /// The error, without the URL.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTPS receiver did not accept the batch.
    #[error(
        "HTTPS receiver {url} answered HTTP {status}; the batch is kept and retried (401/403: \
         check {HTTPS_TOKEN_ENV}; 413: raise the receiver's request size limit)"
    )]
    HttpsStatus {
        /// The URL, without credentials or query.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The HTTPS client could not be set up.
    #[error("HTTPS sink: {0}")]
    Https(#[from] WebhookError),
}

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
        let exp = failures.saturating_sub(1).min(31);
        let delay = self.base.saturating_mul(1u32 << exp).min(self.cap);
        webhook::jitter(delay, 0.2).min(self.cap)
    }
}

/// An open sink.
pub struct Sink {
    kind: SinkKind,
}

enum SinkKind {
    Jsonl {
        path: PathBuf,
        file: Arc<std::sync::Mutex<JsonlFile>>,
    },
    Syslog(Box<SyslogConn>),
    Https(HttpsPoster),
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            SinkKind::Jsonl { .. } => "jsonl",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Https(_) => "https",
        };
        f.debug_struct("Sink")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Opens the file, connects to the syslog receiver, or builds the HTTPS
    /// client.
    pub async fn open(config: &SinkConfig) -> Result<Sink, ExportError> {
        let kind = match config {
            SinkConfig::Jsonl {
                path,
                max_bytes,
                keep,
            } => {
                let (owned, max_bytes, keep) = (path.clone(), *max_bytes, *keep);
                let file = blocking(path, move || JsonlFile::open(owned, max_bytes, keep)).await?;
                SinkKind::Jsonl {
                    path: path.clone(),
                    file: Arc::new(std::sync::Mutex::new(file)),
                }
            }
            SinkConfig::Syslog {
                addr,
                tls,
                app_name,
                hostname,
            } => SinkKind::Syslog(Box::new(
                SyslogConn::connect(addr, tls.as_ref(), app_name, hostname).await?,
            )),
            SinkConfig::Https {
                url,
                bearer,
                ca_file,
                timeout,
            } => {
                webhook::check_url(url)?;
                SinkKind::Https(HttpsPoster {
                    client: webhook::http_client(*timeout, ca_file.as_deref())?,
                    url: url.clone(),
                    bearer: bearer.clone(),
                })
            }
        };
        Ok(Sink { kind })
    }

    /// Delivers `batch`; `Ok` once the sink has taken all of it (synced to
    /// disk, written to the socket, answered 2xx).
    pub async fn send(&mut self, batch: &[ExportRecord]) -> Result<(), ExportError> {
        if batch.is_empty() {
            return Ok(());
        }
        match &mut self.kind {
            SinkKind::Jsonl { path, file } => {
                let lines: Vec<Vec<u8>> = batch
                    .iter()
                    .map(|r| {
                        let mut line = json_text(&export_object(r)).into_bytes();
                        line.push(b'\n');
                        line
                    })
                    .collect();
                let file = file.clone();
                blocking(path, move || {
                    // A poisoned lock only means an earlier write panicked;
                    // the file is still the one to write to.
                    let mut file = file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    file.write_batch(&lines)
                })
                .await
            }
            SinkKind::Syslog(conn) => conn.send(batch).await,
            SinkKind::Https(poster) => poster.send(batch).await,
        }
    }

    /// Whether the sink should be reopened after `error`: after its own
    /// I/O failures, not after a store failure or an HTTP answer (the
    /// receiver is reachable).
    fn reopen_after(error: &ExportError) -> bool {
        matches!(
            error,
            ExportError::File { .. }
                | ExportError::Syslog { .. }
                | ExportError::SyslogTls(_)
                | ExportError::HttpsSend { .. }
                | ExportError::Https(_)
        )
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
enum Progress {
    Sent,
    Idle,
}

struct Exporter<S> {
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

/// The object exported for `record`: its JSON, with `seq` added when the
/// stored object does not carry it (receivers deduplicate by it).
fn export_object(record: &ExportRecord) -> Value {
    let mut json = record.json.clone();
    if let Value::Object(map) = &mut json
        && !map.contains_key("seq")
    {
        map.insert("seq".into(), Value::from(record.seq));
    }
    json
}

/// An RFC 5424 message for `record`:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID tool_call [ewii@32473 …] BOM JSON`
/// (`tool_call_intent` for an intent record).
///
/// Facility 13 (log audit); severity 6 (informational) for `allow`, 5
/// (notice) otherwise. Every part is made safe here, whatever the record
/// holds (tool names and arguments come from agents), so that one record
/// is always exactly one line and one frame and nothing in it can pose as
/// another record (a `\n<110>1 …` inside a value):
///
/// - header fields: PRINTUSASCII only (others become
///   `_`), cut to their §6 lengths, `-` when empty;
/// - PARAM-VALUEs: `"`, `\` and `]` escaped (§6.3.3), line
///   breaking characters written as `\uXXXX`, cut to
///   [`SD_VALUE_MAX`] octets; SD-NAMEs are constants checked by a test;
/// - the MSG ([`json_text`]): JSON, with the characters JSON leaves raw
///   that break lines (DEL, C1 including NEL, U+2028, U+2029) escaped too.
///
/// The frame length (RFC 6587) is counted on this finished string.
pub fn syslog_message(record: &ExportRecord, app_name: &str, hostname: &str) -> String {
    let severity = if record.decision == "allow" {
        SEVERITY_ALLOW
    } else {
        SEVERITY_DENY
    };
    let pri = FACILITY_LOG_AUDIT * 8 + severity;
    let timestamp = syslog_timestamp(record.time_ms);
    let hostname = header_field(hostname, 255);
    let app_name = header_field(app_name, 48);
    let procid = header_field(&std::process::id().to_string(), 128);
    let intent = record.json.get("kind").and_then(Value::as_str) == Some("intent");
    let msgid = header_field(if intent { MSGID_INTENT } else { MSGID }, 32);
    let mut sd = format!(
        "[{SD_ID} seq=\"{}\" decision=\"{}\"",
        record.seq,
        sd_value(&record.decision)
    );
    for field in SD_FIELDS {
        let value = match record.json.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        sd.push_str(&format!(" {field}=\"{}\"", sd_value(&value)));
    }
    sd.push(']');
    // §6.4: a MSG that is UTF-8 starts with the BOM.
    format!(
        "<{pri}>1 {timestamp} {hostname} {app_name} {procid} {msgid} {sd} \u{FEFF}{}",
        json_text(&export_object(record))
    )
}

/// RFC 3339 UTC with milliseconds, or `-` for a time RFC 5424 cannot show.
fn syslog_timestamp(time_ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(time_ms) {
        Some(t) if (0..=9999).contains(&chrono::Datelike::year(&t)) => {
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        }
        _ => "-".to_string(),
    }
}

/// An RFC 5424 header field (§6): PRINTUSASCII (33–126), so no space,
/// control character or non-ASCII (each becomes `_`), at most `max`
/// octets, `-` (NILVALUE) when empty.
fn header_field(value: &str, max: usize) -> String {
    // Every kept character is one ASCII octet, so `max` characters are
    // `max` octets.
    let field: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_string()
    } else {
        field
    }
}

/// Whether `c` can end a line for some reader: the C0 and C1 controls and
/// DEL (Unicode `Cc`, NEL U+0085 among them) and the Unicode line and
/// paragraph separators. None of them may reach a log raw.
pub fn breaks_lines(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Longest PARAM-VALUE, in octets after escaping (the whole value is in
/// the JSON MSG; the structured data is for indexing).
pub const SD_VALUE_MAX: usize = 256;

/// An SD PARAM-VALUE (§6.3.3): `"`, `\` and `]` escaped with `\`;
/// characters that [`breaks_lines`] written as `\uXXXX` (a backslash of
/// the value itself is always doubled, so this cannot be confused with
/// the value's own text); at most [`SD_VALUE_MAX`] octets, a cut value
/// ending in `…`.
fn sd_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(SD_VALUE_MAX));
    let mut piece = String::new();
    for c in value.chars() {
        piece.clear();
        if matches!(c, '"' | '\\' | ']') {
            piece.push('\\');
            piece.push(c);
        } else if breaks_lines(c) {
            piece.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            piece.push(c);
        }
        if out.len() + piece.len() > SD_VALUE_MAX - '…'.len_utf8() {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// A short, single-line rendering of an untrusted string for a log, an
/// audit record or an error message: at most `max_chars` of its
/// characters, those that [`breaks_lines`] and `\` written as `\uXXXX`,
/// and when cut, `…` and the full length in bytes. For a value too bad to
/// keep whole (a tool name of a megabyte, or with line breaks).
pub fn log_excerpt(value: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    for c in chars.by_ref().take(max_chars) {
        if breaks_lines(c) || c == '\\' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    out
}

/// `value` as one line of JSON for a log: `serde_json` escapes `"`, `\`
/// and C0 controls, and this escapes the rest of what [`breaks_lines`]
/// (DEL, C1, U+2028, U+2029) as `\uXXXX`. Those characters can only occur
/// inside JSON strings, where the escape means the same character, so the
/// value reads back unchanged. Used by every sink: a JSON lines reader
/// that splits on Unicode line breaks (Python's `str.splitlines`, some
/// SIEM agents) would otherwise see one record as two.
pub fn json_text(value: &Value) -> String {
    let raw = value.to_string();
    if !raw.chars().any(breaks_lines) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if breaks_lines(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The URL without credentials, query or fragment, for names and logs.
fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T, ExportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExportError::File {
            action: "write",
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?
}

// ---- JSON lines ---------------------------------------------------------

struct JsonlFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: std::fs::File,
    size: u64,
    /// Where the batch being written starts in the current file.
    batch_start: u64,
}

impl JsonlFile {
    fn open(path: PathBuf, max_bytes: u64, keep: usize) -> Result<JsonlFile, ExportError> {
        let fail = |action, source| ExportError::File {
            action,
            path: path.clone(),
            source,
        };
        let mut file = open_append(&path).map_err(|e| fail("open", e))?;
        let mut size = file.metadata().map_err(|e| fail("open", e))?.len();
        // A crash may have cut the last line short: end it, so the next
        // record starts on a line of its own.
        if size > 0 {
            let mut last = [0u8; 1];
            let mut reader = std::fs::File::open(&path).map_err(|e| fail("open", e))?;
            reader
                .seek(io::SeekFrom::End(-1))
                .and_then(|_| reader.read_exact(&mut last))
                .map_err(|e| fail("read", e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| fail("write", e))?;
                size += 1;
            }
        }
        Ok(JsonlFile {
            path,
            max_bytes,
            keep,
            file,
            size,
            batch_start: size,
        })
    }

    fn write_batch(&mut self, lines: &[Vec<u8>]) -> Result<(), ExportError> {
        self.batch_start = self.size;
        let result = self.write_lines(lines);
        if result.is_err() {
            // Drop what this batch left in the current file (maybe a torn
            // line) so the retry starts clean; records already rotated
            // out are kept, and sent again (at-least-once).
            let _ = self.file.set_len(self.batch_start);
            self.size = self.batch_start;
        }
        result
    }

    fn write_lines(&mut self, lines: &[Vec<u8>]) -> Result<(), ExportError> {
        let mut buffer = Vec::new();
        for line in lines {
            let len = line.len() as u64;
            if self.size + buffer.len() as u64 > 0
                && self.size + buffer.len() as u64 + len > self.max_bytes
            {
                self.flush(&mut buffer)?;
                self.rotate()?;
            }
            buffer.extend_from_slice(line);
        }
        self.flush(&mut buffer)?;
        self.file.sync_data().map_err(|e| self.fail("sync", e))
    }

    fn flush(&mut self, buffer: &mut Vec<u8>) -> Result<(), ExportError> {
        self.file
            .write_all(buffer)
            .map_err(|e| self.fail("write", e))?;
        self.size += buffer.len() as u64;
        buffer.clear();
        Ok(())
    }

    /// `file` → `file.1`, `file.1` → `file.2` …, the oldest beyond `keep`
    /// deleted; then a new empty `file`.
    fn rotate(&mut self) -> Result<(), ExportError> {
        self.file.sync_data().map_err(|e| self.fail("sync", e))?;
        if self.keep == 0 {
            remove_if_exists(&self.path).map_err(|e| self.fail("remove", e))?;
        } else {
            let oldest = numbered(&self.path, self.keep);
            remove_if_exists(&oldest).map_err(|e| self.fail_at("remove", &oldest, e))?;
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                rename_if_exists(&from, &numbered(&self.path, n + 1))
                    .map_err(|e| self.fail_at("rotate", &from, e))?;
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))
                .map_err(|e| self.fail("rotate", e))?;
        }
        self.file = open_append(&self.path).map_err(|e| self.fail("open", e))?;
        self.size = 0;
        self.batch_start = 0;
        // Make the renames durable before records go to the new file.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.fail_at("sync", dir, e))?;
        }
        Ok(())
    }

    fn fail(&self, action: &'static str, source: io::Error) -> ExportError {
        self.fail_at(action, &self.path, source)
    }

    fn fail_at(&self, action: &'static str, path: &Path, source: io::Error) -> ExportError {
        ExportError::File {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    // Audit records hold statements and parameters: owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

// ---- syslog -------------------------------------------------------------

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct SyslogConn {
    addr: String,
    tls: Option<SyslogTls>,
    app_name: String,
    hostname: String,
    stream: Box<dyn Stream>,
}

impl SyslogConn {
    async fn connect(
        addr: &str,
        tls: Option<&SyslogTls>,
        app_name: &str,
        hostname: &str,
    ) -> Result<SyslogConn, ExportError> {
        let stream = syslog_stream(addr, tls).await?;
        Ok(SyslogConn {
            addr: addr.to_string(),
            tls: tls.cloned(),
            app_name: app_name.to_string(),
            hostname: hostname.to_string(),
            stream,
        })
    }

    async fn send(&mut self, batch: &[ExportRecord]) -> Result<(), ExportError> {
        // Writing to a connection the receiver has closed "succeeds" and
        // loses the batch, so look first and reconnect if it is gone.
        if peer_closed(&mut self.stream).await {
            tracing::debug!(addr = %self.addr, "syslog receiver closed the connection; reconnecting");
            self.stream = syslog_stream(&self.addr, self.tls.as_ref()).await?;
        }
        let mut frames = Vec::new();
        for record in batch {
            let message = syslog_message(record, &self.app_name, &self.hostname);
            // RFC 6587 §3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG.
            frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
            frames.extend_from_slice(message.as_bytes());
        }
        let write = async {
            self.stream.write_all(&frames).await?;
            self.stream.flush().await
        };
        let fail = |source| ExportError::Syslog {
            addr: self.addr.clone(),
            action: "write",
            source,
        };
        match tokio::time::timeout(SYSLOG_WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(fail(e)),
            Err(_) => Err(fail(io::Error::new(
                io::ErrorKind::TimedOut,
                "the receiver stopped reading",
            ))),
        }
    }
}

/// Whether the receiver has closed the connection. Syslog receivers never
/// send, so anything but "would block" means it is gone.
async fn peer_closed(stream: &mut Box<dyn Stream>) -> bool {
    let mut buf = [0u8; 512];
    for _ in 0..16 {
        tokio::select! {
            biased;
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            },
            () = std::future::ready(()) => return false,
        }
    }
    false
}

async fn syslog_stream(
    addr: &str,
    tls: Option<&SyslogTls>,
) -> Result<Box<dyn Stream>, ExportError> {
    let fail = |action, source| ExportError::Syslog {
        addr: addr.to_string(),
        action,
        source,
    };
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
    let tcp = tokio::time::timeout(SYSLOG_CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| fail("connect", timed_out()))?
        .map_err(|e| fail("connect", e))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(syslog_tls_config(tls)?));
    let server_name =
        rustls::pki_types::ServerName::try_from(tls.server_name.clone()).map_err(|_| {
            ExportError::SyslogTls(format!(
                "server name {:?} is neither a DNS name nor an IP address; set \
                 ?server_name= to the name in the receiver's certificate",
                tls.server_name
            ))
        })?;
    let stream = tokio::time::timeout(SYSLOG_CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| fail("TLS handshake", timed_out()))?
        .map_err(|e| fail("TLS handshake", e))?;
    Ok(Box::new(stream))
}

/// The client config of syslog over TLS: the system roots plus the CA file,
/// as for the HTTPS sink and webhooks.
fn syslog_tls_config(tls: &SyslogTls) -> Result<rustls::ClientConfig, ExportError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let extra = match &tls.ca_file {
        Some(path) => {
            webhook::read_ca_file(path).map_err(|e| ExportError::SyslogTls(e.to_string()))?
        }
        None => Vec::new(),
    };
    let tls_error = |e: rustls::Error| {
        ExportError::SyslogTls(format!(
            "cannot set up TLS: {e}; check the CA file and the system's CA certificates"
        ))
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(tls_error)?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        // Not dangerous: the platform verifier does full path and name
        // validation; this is just how a custom verifier is installed.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

// ---- HTTPS --------------------------------------------------------------

struct HttpsPoster {
    client: reqwest::Client,
    url: String,
    bearer: Option<BearerToken>,
}

impl HttpsPoster {
    async fn send(&self, batch: &[ExportRecord]) -> Result<(), ExportError> {
        let objects = Value::Array(batch.iter().map(export_object).collect());
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json_text(&objects));
        if let Some(token) = &self.bearer {
            // bearer_auth marks the header sensitive.
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| ExportError::HttpsSend {
            url: display_url(&self.url),
            source: e.without_url(),
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ExportError::HttpsStatus {
                url: display_url(&self.url),
                status: response.status().as_u16(),
            })
        }
    }
}

// ---- SPEC ---------------------------------------------------------------

fn parse_spec(spec: &str, bearer: Option<BearerToken>) -> Result<SinkConfig, ExportError> {
    let spec = spec.trim();
    let bad = |msg: String| ExportError::Spec(msg);
    let (scheme, rest) = spec.split_once(':').ok_or_else(|| {
        bad(
            "no kind; use jsonl:/path, syslog+tcp://host:port, syslog+tls://host:port or \
             https://host/path"
                .into(),
        )
    })?;
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut options = Options::parse(query);
    let config = match scheme {
        "jsonl" => {
            let path = PathBuf::from(body);
            if body.is_empty() || !path.is_absolute() {
                return Err(bad(format!(
                    "jsonl path {body:?} is not absolute; use jsonl:/var/log/ewii/audit.jsonl \
                     (the path names the exporter's cursor, so it must not depend on the \
                     working directory)"
                )));
            }
            let max_bytes = options.number("max_bytes", DEFAULT_MAX_BYTES)?;
            if max_bytes == 0 {
                return Err(bad(
                    "max_bytes=0; use a size in bytes, e.g. max_bytes=104857600".into(),
                ));
            }
            let keep = options.number("keep", DEFAULT_KEEP as u64)?;
            SinkConfig::Jsonl {
                path,
                max_bytes,
                keep: usize::try_from(keep)
                    .map_err(|_| bad(format!("keep={keep} is too large")))?,
            }
        }
        "syslog+tcp" | "syslog+tls" => {
            let tls = scheme == "syslog+tls";
            let authority = body
                .strip_prefix("//")
                .ok_or_else(|| bad(format!("use {scheme}://host[:port]")))?;
            let (host, port) =
                host_port(authority, if tls { 6514 } else { 514 }).map_err(|why| {
                    bad(format!(
                        "{scheme} address {authority:?}: {why}; use {scheme}://host[:port]"
                    ))
                })?;
            let bare_host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let tls = if tls {
                Some(SyslogTls {
                    server_name: options.take("server_name").unwrap_or(bare_host),
                    ca_file: options.take("ca").map(PathBuf::from),
                })
            } else {
                None
            };
            SinkConfig::Syslog {
                addr: format!("{host}:{port}"),
                tls,
                app_name: options
                    .take("app_name")
                    .unwrap_or_else(|| DEFAULT_APP_NAME.to_string()),
                hostname: options.take("hostname").unwrap_or_else(local_hostname),
            }
        }
        "https" | "http" => {
            let ca_file = options.take("ca").map(PathBuf::from);
            let timeout =
                Duration::from_secs(options.number("timeout", DEFAULT_HTTPS_TIMEOUT.as_secs())?);
            if timeout.is_zero() {
                return Err(bad("timeout=0; use seconds, e.g. timeout=10".into()));
            }
            // Other parameters belong to the receiver's URL.
            let mut url = format!("{scheme}:{body}");
            let rest = options.remaining_raw();
            if !rest.is_empty() {
                url = format!("{url}?{rest}");
            }
            webhook::check_url(&url).map_err(|e| bad(e.to_string()))?;
            return Ok(SinkConfig::Https {
                url,
                bearer,
                ca_file,
                timeout,
            });
        }
        other => {
            return Err(bad(format!(
                "unknown kind {other:?}; use jsonl:, syslog+tcp://, syslog+tls:// or https://"
            )));
        }
    };
    options.finish()?;
    Ok(config)
}

/// `k=v&k=v`, taken literally.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(query: Option<&str>) -> Options {
        Options(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                })
                .collect(),
        )
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1).filter(|v| !v.is_empty())
    }

    fn number(&mut self, key: &str, default: u64) -> Result<u64, ExportError> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ExportError::Spec(format!(
                    "{key}={v:?} is not a whole number; e.g. {key}={default}"
                ))
            }),
        }
    }

    fn remaining_raw(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn finish(self) -> Result<(), ExportError> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(ExportError::Spec(format!(
                "unknown option {k:?}; see `--help` for the options of each kind"
            ))),
        }
    }
}

/// `host[:port]` or `[v6][:port]`, with the host kept as written.
fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, rest) = v6.split_once(']').ok_or("unclosed '['")?;
        let port = match rest {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("text after ']'")?),
        };
        (format!("[{inner}]"), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" || host.contains(['/', '@', ' ']) {
        return Err("no usable host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the port is not 1-65535")?,
    };
    Ok((host, port))
}

/// The machine's host name for the syslog HOSTNAME field, `-` if unknown.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::audit::webhook::tests::{TlsListener, install_provider, test_pki};

    /// The audit table in memory. Appending is synchronous and takes the
    /// lock only to push, as a tool call would.
    #[derive(Default)]
    struct MemSource {
        records: Mutex<Vec<ExportRecord>>,
        cursors: Mutex<HashMap<String, i64>>,
    }

    impl MemSource {
        fn append(&self, decision: &str) -> i64 {
            let mut records = self.records.lock().unwrap();
            let seq = records.len() as i64 + 1;
            records.push(record(seq, decision));
            seq
        }

        fn cursor_of(&self, exporter: &str) -> i64 {
            self.cursors
                .lock()
                .unwrap()
                .get(exporter)
                .copied()
                .unwrap_or(0)
        }
    }

    impl Source for MemSource {
        async fn after(&self, seq: i64, limit: usize) -> Result<Vec<ExportRecord>, String> {
            let records = self.records.lock().unwrap();
            Ok(records
                .iter()
                .filter(|r| r.seq > seq)
                .take(limit)
                .cloned()
                .collect())
        }

        async fn cursor(&self, exporter: &str) -> Result<i64, String> {
            Ok(self.cursor_of(exporter))
        }

        async fn set_cursor(&self, exporter: &str, seq: i64) -> Result<(), String> {
            self.cursors
                .lock()
                .unwrap()
                .insert(exporter.to_string(), seq);
            Ok(())
        }
    }

    fn record(seq: i64, decision: &str) -> ExportRecord {
        let time_ms = 1_700_000_000_123 + seq;
        ExportRecord {
            seq,
            time_ms,
            decision: decision.to_string(),
            json: json!({
                "time_ms": time_ms,
                "workspace": "acme",
                "deployment": "eu-shop",
                "agent": "bot",
                "tool": "eu_shop_query",
                "decision": decision,
                "statement": "SELECT name FROM customers WHERE id = ?",
                "outcome": if decision == "allow" { "ok" } else { "denied" },
            }),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            idle: Duration::from_millis(20),
            batch: 7,
        }
    }

    fn start<S: Source>(
        config: SinkConfig,
        source: Arc<S>,
        policy: RetryPolicy,
    ) -> (Arc<Notify>, CancellationToken, JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_with(
            config,
            source,
            wake.clone(),
            cancel.clone(),
            policy,
        ));
        (wake, cancel, task)
    }

    async fn stop(cancel: CancellationToken, task: JoinHandle<()>) {
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the exporter ends on cancel")
            .unwrap();
    }

    /// Waits for `cond`, at most 5 s.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn seqs(objects: &[Value]) -> Vec<i64> {
        objects.iter().map(|o| o["seq"].as_i64().unwrap()).collect()
    }

    // ---- syslog parsing, as a receiver does it

    /// Reads `n` octet-counted frames (RFC 6587 §3.4.1).
    async fn read_frames<R: AsyncRead + Unpin>(
        r: &mut R,
        buf: &mut Vec<u8>,
        n: usize,
    ) -> Vec<String> {
        let mut frames = Vec::new();
        while frames.len() < n {
            if let Some(sp) = buf.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                if buf.len() >= sp + 1 + len {
                    frames.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
                    buf.drain(..sp + 1 + len);
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            let k = r.read(&mut chunk).await.unwrap();
            assert!(k > 0, "connection closed after {} frames", frames.len());
            buf.extend_from_slice(&chunk[..k]);
        }
        frames
    }

    #[derive(Debug)]
    struct Syslog {
        pri: u8,
        header: Vec<String>,
        sd: String,
        json: Value,
    }

    fn parse_syslog(msg: &str) -> Syslog {
        let (pri, rest) = msg.strip_prefix('<').unwrap().split_once('>').unwrap();
        let mut parts = rest.splitn(7, ' ');
        let header: Vec<String> = parts.by_ref().take(6).map(str::to_string).collect();
        let rest = parts.next().unwrap();
        let (sd, msg) = rest.split_once("] \u{FEFF}").expect("SD then BOM");
        Syslog {
            pri: pri.parse().unwrap(),
            header,
            sd: format!("{sd}]"),
            json: serde_json::from_str(msg).unwrap(),
        }
    }

    fn check_syslog(msg: &str, expected: &ExportRecord, hostname: &str) {
        let m = parse_syslog(msg);
        let severity = if expected.decision == "allow" { 6 } else { 5 };
        assert_eq!(m.pri, 13 * 8 + severity);
        assert_eq!(m.header[0], "1");
        assert_eq!(
            m.header[1],
            syslog_timestamp(expected.time_ms),
            "RFC 3339 with ms"
        );
        assert_eq!(m.header[2], hostname);
        assert_eq!(m.header[3], "ewii-hub");
        assert_eq!(m.header[4], std::process::id().to_string());
        assert_eq!(m.header[5], "tool_call");
        assert_eq!(
            m.sd,
            format!(
                "[ewii@32473 seq=\"{}\" decision=\"{}\" workspace=\"acme\" \
                 deployment=\"eu-shop\" agent=\"bot\" tool=\"eu_shop_query\"]",
                expected.seq, expected.decision
            )
        );
        assert_eq!(m.json, export_object(expected));
    }

    #[test]
    fn syslog_message_follows_rfc5424() {
        let mut r = record(42, "deny");
        r.json["agent"] = json!("a\"b\\c]d é");
        r.json.as_object_mut().unwrap().remove("tool");
        let msg = syslog_message(&r, "", "my host");
        let m = parse_syslog(&msg);
        assert_eq!(m.pri, 109);
        assert_eq!(m.header[1], "2023-11-14T22:13:20.165Z");
        assert_eq!(
            (m.header[2].as_str(), m.header[3].as_str()),
            ("my_host", "-")
        );
        assert_eq!(
            m.sd,
            r#"[ewii@32473 seq="42" decision="deny" workspace="acme" deployment="eu-shop" agent="a\"b\\c\]d é"]"#
        );
        assert_eq!(m.json["seq"], 42, "seq is added to the exported object");
        assert_eq!(m.json["agent"], "a\"b\\c]d é");

        let allow = syslog_message(&record(1, "allow"), "ewii-hub", &"h".repeat(300));
        let m = parse_syslog(&allow);
        assert_eq!(m.pri, 110);
        assert_eq!(m.header[2].len(), 255);
        assert_eq!(syslog_timestamp(i64::MAX), "-");
    }

    // ---- escaping: nothing an agent sends can break a record's line

    /// Every character that [`breaks_lines`] must catch: C0, DEL, C1
    /// (NEL among them), U+2028, U+2029.
    fn line_breakers() -> Vec<char> {
        (0u32..0x20)
            .chain(0x7f..=0x9f)
            .chain([0x2028, 0x2029])
            .map(|c| char::from_u32(c).unwrap())
            .collect()
    }

    /// What a line-oriented reader may split on: `str::lines` and, wider,
    /// Python's `str.splitlines` (which adds VT, FF, FS, GS, RS, NEL,
    /// U+2028, U+2029).
    fn splits_lines(text: &str) -> bool {
        text.chars().any(|c| {
            matches!(
                c,
                '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{1c}'
                    ..='\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
            )
        })
    }

    /// A PARAM-VALUE as an RFC 5424 receiver reads it: up to the first
    /// unescaped `"`, with `\"`, `\\` and `\]` unescaped. Returns the value
    /// and what follows the closing quote.
    fn read_param_value(sd: &str) -> (String, &str) {
        let mut value = String::new();
        let mut chars = sd.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return (value, &sd[i + 1..]),
                '\\' => match chars.clone().next() {
                    Some((_, n @ ('"' | '\\' | ']'))) => {
                        value.push(n);
                        chars.next();
                    }
                    _ => value.push('\\'),
                },
                c => value.push(c),
            }
        }
        panic!("unterminated PARAM-VALUE: {sd}")
    }

    #[test]
    fn breaks_lines_is_every_control_and_unicode_separator() {
        for c in line_breakers() {
            assert!(breaks_lines(c), "U+{:04X}", u32::from(c));
        }
        for c in (' '..='~').chain(['é', '\u{a0}', '\u{feff}', '€', '😀']) {
            assert!(!breaks_lines(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn sd_value_escapes_specials_and_every_line_breaker() {
        assert_eq!(sd_value(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(sd_value("é ok"), "é ok", "UTF-8 stays as is (§6.3.3)");
        for c in line_breakers() {
            let escaped = sd_value(&format!("x{c}y"));
            assert_eq!(escaped, format!("x\\u{:04x}y", u32::from(c)));
            assert!(!escaped.chars().any(breaks_lines));
        }
        // A value's own `\u000a` text stays distinguishable from an
        // escaped line feed: its backslash is doubled.
        assert_eq!(sd_value("\\u000a"), "\\\\u000a");
        assert_ne!(sd_value("\\u000a"), sd_value("\n"));

        // Cut to SD_VALUE_MAX octets, never inside an escape: the receiver
        // still finds the closing quote right after the value.
        for big in [
            "a".repeat(1 << 20),
            "\\".repeat(1000),
            "]".repeat(1000),
            "\n".repeat(1000),
            "é".repeat(1000),
            format!("{}\"", "a".repeat(SD_VALUE_MAX - 4)),
        ] {
            let v = sd_value(&big);
            assert!(v.len() <= SD_VALUE_MAX, "{} octets", v.len());
            assert!(v.ends_with('…'), "{v}");
            let framed = format!("{v}\" rest");
            let (read, after) = read_param_value(&framed);
            assert_eq!(after, " rest", "{v}");
            assert!(read.ends_with('…'));
        }
        let fits = "a".repeat(200);
        assert_eq!(sd_value(&fits), fits, "short values are kept whole");
    }

    #[test]
    fn header_fields_are_printusascii_within_their_lengths() {
        assert_eq!(header_field("a b\tc\u{85}é\u{2028}d", 255), "a_b_c___d");
        assert_eq!(header_field("", 48), "-");
        for c in line_breakers() {
            let f = header_field(&format!("h{c}x"), 255);
            assert_eq!(f, "h_x", "U+{:04X}", u32::from(c));
        }
        let f = header_field(&"é".repeat(300), 48);
        assert_eq!(f.len(), 48);
        assert!(f.bytes().all(|b| (33..=126).contains(&b)));
        let f = header_field(&"h".repeat(300), 255);
        assert_eq!(f.len(), 255);
    }

    /// An SD-NAME (§6.3.2, §6.3.3): 1 to 32 PRINTUSASCII octets except `=`,
    /// space, `]` and `"`.
    fn is_sd_name(name: &str) -> bool {
        (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
    }

    #[test]
    fn sd_names_and_msgid_follow_rfc5424() {
        for name in [SD_ID, "seq", "decision"].into_iter().chain(SD_FIELDS) {
            assert!(is_sd_name(name), "{name}");
        }
        for bad in ["", "a=b", "a b", "a]", "a\"", "é", &"n".repeat(33)] {
            assert!(!is_sd_name(bad), "{bad:?}");
        }
        assert_eq!(header_field(MSGID, 32), MSGID);
        assert_eq!(header_field(MSGID_INTENT, 32), MSGID_INTENT);
    }

    #[test]
    fn json_text_is_one_line_and_reads_back_unchanged() {
        let nasty: String = line_breakers().into_iter().collect::<String>() + "\"\\]é";
        let value = json!({ "tool": nasty, "arguments": { nasty.clone(): [nasty.clone()] } });
        let text = json_text(&value);
        assert!(!text.chars().any(breaks_lines), "{text}");
        assert!(!splits_lines(&text), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        assert_eq!(json_text(&json!({"a": "b"})), r#"{"a":"b"}"#);
    }

    #[test]
    fn log_excerpt_is_short_escaped_and_says_how_long() {
        let huge = "x".repeat(1 << 20);
        let e = log_excerpt(&huge, 32);
        assert_eq!(e, format!("{}… (1048576 bytes)", "x".repeat(32)));
        let e = log_excerpt("eu_x\r\n<110>1 \\", 32);
        assert_eq!(e, "eu_x\\u000d\\u000a<110>1 \\u005c");
        assert!(!splits_lines(&e));
        assert_eq!(log_excerpt("eu_shop_query", 32), "eu_shop_query");
    }

    #[test]
    fn a_forged_record_is_still_one_rfc5424_line() {
        let forged = "eu_x\r\n<110>1 2026-01-01T00:00:00Z forged ewii - - - decision=allow";
        let mut r = record(7, "deny");
        r.json["tool"] = json!(forged);
        r.json["agent"] = json!("bot\u{2028}\u{85}\"]\\");
        r.json["statement"] = json!("SELECT 1\n<110>1 - - - - - decision=allow\u{2029}");
        let msg = syslog_message(&r, "ewii\nhub", "host\r\n<110>1");
        assert!(!msg.chars().any(breaks_lines), "{msg:?}");
        assert!(!splits_lines(&msg));
        assert!(msg.starts_with("<109>1 "));
        let m = parse_syslog(&msg);
        assert_eq!(m.header[2], "host__<110>1");
        assert_eq!(m.header[3], "ewii_hub");
        assert_eq!(m.header[5], "tool_call");
        // The JSON MSG reads back exactly what was recorded.
        assert_eq!(m.json["tool"], forged);
        assert_eq!(m.json["statement"], r.json["statement"]);
        // The structured data reads back field by field.
        let (_, rest) = m.sd.split_once(" agent=\"").unwrap();
        let (agent, rest) = read_param_value(rest);
        assert_eq!(agent, "bot\\u2028\\u0085\"]\\");
        let (_, rest) = rest.split_once(" tool=\"").unwrap();
        let (tool, rest) = read_param_value(rest);
        assert_eq!(
            tool,
            "eu_x\\u000d\\u000a<110>1 2026-01-01T00:00:00Z forged ewii - - - decision=allow"
        );
        assert_eq!(rest, "]");
    }

    #[tokio::test]
    async fn jsonl_keeps_a_record_with_line_separators_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = SinkConfig::Jsonl {
            path: path.clone(),
            max_bytes: DEFAULT_MAX_BYTES,
            keep: 1,
        };
        let mut r = record(1, "allow");
        r.json["tool"] = json!("a\u{2028}b\u{2029}c\u{85}d\u{7f}e\n");
        let mut sink = Sink::open(&config).await.unwrap();
        sink.send(&[r.clone(), record(2, "deny")]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.chars().any(|c| c != '\n' && breaks_lines(c)),
            "{text:?}"
        );
        assert_eq!(text.matches('\n').count(), 2, "{text:?}");
        for c in ['\u{2028}', '\u{2029}', '\u{85}', '\u{7f}'] {
            assert!(!text.contains(c), "U+{:04X} raw in {text:?}", u32::from(c));
        }
        let objects = read_jsonl(&path);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0], export_object(&r));
    }

    #[test]
    fn parse_specs_and_names() {
        let c = parse_spec("jsonl:/var/log/ewii/audit.jsonl", None).unwrap();
        assert_eq!(
            c,
            SinkConfig::Jsonl {
                path: "/var/log/ewii/audit.jsonl".into(),
                max_bytes: DEFAULT_MAX_BYTES,
                keep: DEFAULT_KEEP
            }
        );
        assert_eq!(c.name(), "jsonl:/var/log/ewii/audit.jsonl");
        assert_eq!(
            parse_spec("jsonl:/a.jsonl?max_bytes=1000&keep=0", None).unwrap(),
            SinkConfig::Jsonl {
                path: "/a.jsonl".into(),
                max_bytes: 1000,
                keep: 0
            }
        );

        let c = parse_spec("syslog+tcp://siem.example.com?hostname=hub-1", None).unwrap();
        assert_eq!(c.name(), "syslog:siem.example.com:514");
        assert!(
            matches!(&c, SinkConfig::Syslog { tls: None, hostname, app_name, .. }
            if hostname == "hub-1" && app_name == "ewii-hub")
        );
        let c = parse_spec("syslog+tls://[::1]?ca=/etc/ewii/siem-ca.pem", None).unwrap();
        assert_eq!(c.name(), "syslog:[::1]:6514");
        assert!(matches!(&c, SinkConfig::Syslog { tls: Some(t), .. }
            if t.server_name == "::1" && t.ca_file.as_deref() == Some(Path::new("/etc/ewii/siem-ca.pem"))));
        let c = parse_spec(
            "syslog+tls://10.0.0.5:1514?server_name=siem.corp&app_name=ewii",
            None,
        )
        .unwrap();
        assert!(
            matches!(&c, SinkConfig::Syslog { addr, tls: Some(t), app_name, .. }
            if addr == "10.0.0.5:1514" && t.server_name == "siem.corp" && app_name == "ewii")
        );

        let token = BearerToken::new("s3cr3t-token".into());
        let c = parse_spec(
            "https://siem.example.com/ingest?ca=/ca.pem&timeout=5&index=ewii",
            Some(token.clone()),
        )
        .unwrap();
        assert_eq!(
            c,
            SinkConfig::Https {
                url: "https://siem.example.com/ingest?index=ewii".into(),
                bearer: Some(token),
                ca_file: Some("/ca.pem".into()),
                timeout: Duration::from_secs(5),
            }
        );
        assert_eq!(c.name(), "https:https://siem.example.com/ingest");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("index=ewii"),
            "{shown}"
        );
        parse_spec("http://127.0.0.1:8080/ingest", None).unwrap();

        for bad in [
            "audit.jsonl",
            "jsonl:audit.jsonl",
            "jsonl:/a.jsonl?max_bytes=lots",
            "jsonl:/a.jsonl?max_bytes=0",
            "jsonl:/a.jsonl?colour=red",
            "syslog+tcp://",
            "syslog+tcp://host:0",
            "syslog+udp://host",
            "syslog+tls://host?cert=/x",
            "http://siem.example.com/ingest",
            "https://admin:hunter2@siem.example.com/",
        ] {
            let err = parse_spec(bad, None).unwrap_err();
            assert!(matches!(err, ExportError::Spec(_)), "{bad}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    fn read_jsonl(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The files of a rotated set, oldest first.
    fn rotated_files(path: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..1000)
            .map(|n| numbered(path, n))
            .take_while(|p| p.exists())
            .collect();
        files.reverse();
        files.push(path.to_path_buf());
        files
    }

    #[tokio::test]
    async fn jsonl_rotation_keeps_every_record_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = SinkConfig::Jsonl {
            path: path.clone(),
            max_bytes: 1000,
            keep: 100,
        };
        let records: Vec<ExportRecord> = (1..=60).map(|s| record(s, "allow")).collect();
        let mut sink = Sink::open(&config).await.unwrap();
        for batch in records[..40].chunks(7) {
            sink.send(batch).await.unwrap();
        }
        // A restart: the sink is opened again on the same files.
        drop(sink);
        let mut sink = Sink::open(&config).await.unwrap();
        for batch in records[40..].chunks(7) {
            sink.send(batch).await.unwrap();
        }

        let files = rotated_files(&path);
        assert!(files.len() > 5, "{files:?}");
        let mut all = Vec::new();
        for file in &files {
            let size = std::fs::metadata(file).unwrap().len();
            assert!(size <= 1000, "{} has {size} bytes", file.display());
            all.extend(read_jsonl(file));
        }
        assert_eq!(seqs(&all), (1..=60).collect::<Vec<_>>());
        assert_eq!(all[0], export_object(&records[0]));
    }

    #[tokio::test]
    async fn jsonl_rotation_honours_keep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = SinkConfig::Jsonl {
            path: path.clone(),
            max_bytes: 700,
            keep: 2,
        };
        let mut sink = Sink::open(&config).await.unwrap();
        let records: Vec<ExportRecord> = (1..=50).map(|s| record(s, "deny")).collect();
        for batch in records.chunks(3) {
            sink.send(batch).await.unwrap();
        }
        assert!(numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        let files = rotated_files(&path);
        assert_eq!(files.len(), 3);
        let all: Vec<Value> = files.iter().flat_map(|f| read_jsonl(f)).collect();
        let tail = seqs(&all);
        assert_eq!(*tail.last().unwrap(), 50);
        assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{tail:?}");
    }

    #[tokio::test]
    async fn syslog_over_tcp_sends_octet_counted_rfc5424() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let receiver = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            read_frames(&mut conn, &mut Vec::new(), 2).await
        });
        let config = SinkConfig::Syslog {
            addr,
            tls: None,
            app_name: DEFAULT_APP_NAME.into(),
            hostname: "hub-1".into(),
        };
        let batch = [record(1, "allow"), record(2, "deny")];
        let mut sink = Sink::open(&config).await.unwrap();
        sink.send(&batch).await.unwrap();
        let frames = receiver.await.unwrap();
        check_syslog(&frames[0], &batch[0], "hub-1");
        check_syslog(&frames[1], &batch[1], "hub-1");
    }

    #[tokio::test]
    async fn syslog_over_tls_checks_the_receiver_certificate() {
        install_provider();
        let pki = test_pki();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
        let receiver = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                // The first client does not trust the CA and gives up.
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    return read_frames(&mut tls, &mut Vec::new(), 2).await;
                }
            }
        });
        let config = |ca_file| SinkConfig::Syslog {
            addr: addr.clone(),
            tls: Some(SyslogTls {
                server_name: "localhost".into(),
                ca_file,
            }),
            app_name: DEFAULT_APP_NAME.into(),
            hostname: "hub-1".into(),
        };
        let err = Sink::open(&config(None)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::Syslog {
                    action: "TLS handshake",
                    ..
                }
            ),
            "{err}"
        );

        let batch = [record(7, "deny"), record(8, "allow")];
        let mut sink = Sink::open(&config(Some(ca))).await.unwrap();
        sink.send(&batch).await.unwrap();
        let frames = receiver.await.unwrap();
        check_syslog(&frames[0], &batch[0], "hub-1");
        check_syslog(&frames[1], &batch[1], "hub-1");
    }

    #[tokio::test]
    async fn syslog_reconnects_when_the_receiver_closed_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let receiver = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            let a = read_frames(&mut first, &mut Vec::new(), 3).await;
            drop(first);
            closed_tx.send(()).unwrap();
            let (mut second, _) = listener.accept().await.unwrap();
            let b = read_frames(&mut second, &mut Vec::new(), 3).await;
            [a, b].concat()
        });
        let source = Arc::new(MemSource::default());
        let config = SinkConfig::Syslog {
            addr,
            tls: None,
            app_name: DEFAULT_APP_NAME.into(),
            hostname: "hub-1".into(),
        };
        let (wake, cancel, task) = start(config, source.clone(), fast());
        for _ in 0..3 {
            source.append("allow");
        }
        wake.notify_waiters();
        closed_rx.await.unwrap();
        // Let the FIN arrive before the next batch.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            source.append("deny");
        }
        wake.notify_waiters();
        let frames = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .unwrap()
            .unwrap();
        let got: Vec<i64> = frames
            .iter()
            .map(|f| parse_syslog(f).json["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
        stop(cancel, task).await;
    }

    #[tokio::test]
    async fn siem_down_syslog_loses_nothing_and_never_blocks_calls() {
        // A port with nothing listening yet: connections are refused.
        let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = reserved.local_addr().unwrap();
        drop(reserved);

        let source = Arc::new(MemSource::default());
        let config = SinkConfig::Syslog {
            addr: addr.to_string(),
            tls: None,
            app_name: DEFAULT_APP_NAME.into(),
            hostname: "hub-1".into(),
        };
        let name = config.name();
        let (wake, cancel, task) = start(config, source.clone(), fast());

        // Tool calls go on while the SIEM is down; none waits for it.
        let mut slowest = Duration::ZERO;
        for i in 0..60 {
            let t = Instant::now();
            source.append(if i % 5 == 0 { "deny" } else { "allow" });
            wake.notify_waiters();
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(source.cursor_of(&name), 0, "nothing was delivered");

        let listener = TcpListener::bind(addr).await.unwrap();
        let source2 = source.clone();
        let receiver = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            read_frames(&mut conn, &mut Vec::new(), 100).await
        });
        for _ in 0..40 {
            let t = Instant::now();
            source2.append("allow");
            wake.notify_waiters();
            slowest = slowest.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let frames = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("all records arrive")
            .unwrap();
        let got: Vec<i64> = frames
            .iter()
            .map(|f| parse_syslog(f).json["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            got,
            (1..=100).collect::<Vec<_>>(),
            "every record once, in order"
        );
        let records = source.records.lock().unwrap().clone();
        for (frame, record) in frames.iter().zip(&records) {
            check_syslog(frame, record, "hub-1");
        }
        eventually("the cursor to reach 100", || source.cursor_of(&name) == 100).await;
        assert!(
            slowest < Duration::from_millis(50),
            "an append waited {slowest:?}"
        );
        stop(cancel, task).await;
    }

    #[derive(Default)]
    struct Collector {
        posts: AtomicUsize,
        refused: Mutex<Vec<Vec<i64>>>,
        accepted: Mutex<Vec<Vec<Value>>>,
        auth: Mutex<Vec<String>>,
    }

    /// Refuses the first 3 batches with 503, then accepts.
    async fn collect(
        State(c): State<Arc<Collector>>,
        headers: HeaderMap,
        axum::Json(batch): axum::Json<Vec<Value>>,
    ) -> StatusCode {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        c.auth.lock().unwrap().push(auth.to_string());
        if c.posts.fetch_add(1, Ordering::SeqCst) < 3 {
            c.refused.lock().unwrap().push(seqs(&batch));
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            c.accepted.lock().unwrap().push(batch);
            StatusCode::NO_CONTENT
        }
    }

    /// Log output of the whole test binary.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
        type Writer = Logs;
        fn make_writer(&'a self) -> Logs {
            self.clone()
        }
    }

    /// Captures every log line of this test binary, or `None` if another
    /// test installed a global subscriber first. Global, because a scoped
    /// subscriber misses events whose callsites another test thread
    /// registers at the same time.
    fn captured_logs() -> Option<&'static Logs> {
        static LOGS: std::sync::OnceLock<Option<Logs>> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .ok()
                .map(|()| logs)
        })
        .as_ref()
    }

    #[tokio::test]
    async fn siem_down_https_retries_the_same_batch_until_accepted() {
        install_provider();
        let logs = captured_logs();
        let collector = Arc::new(Collector::default());
        let app = axum::Router::new()
            .route("/ingest", axum::routing::post(collect))
            .with_state(collector.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let source = Arc::new(MemSource::default());
        for _ in 0..5 {
            source.append("allow");
        }
        let config = SinkConfig::Https {
            url,
            bearer: Some(BearerToken::new("s3cret-bearer".into())),
            ca_file: None,
            timeout: Duration::from_secs(5),
        };
        let name = config.name();
        let (wake, cancel, task) = start(config, source.clone(), fast());
        // More calls while the receiver refuses.
        for _ in 0..20 {
            source.append("deny");
            wake.notify_waiters();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eventually("the cursor to reach 25", || source.cursor_of(&name) == 25).await;

        let refused = collector.refused.lock().unwrap().clone();
        let accepted = collector.accepted.lock().unwrap().clone();
        let first = seqs(&accepted[0]);
        assert_eq!(
            refused,
            vec![first.clone(); 3],
            "the refused batch is retried as is"
        );
        assert_eq!(first[0], 1);
        let all: Vec<i64> = accepted.iter().flat_map(|b| seqs(b)).collect();
        assert_eq!(all, (1..=25).collect::<Vec<_>>());
        assert!(accepted.iter().all(|b| b.len() <= 7));
        assert!(
            collector
                .auth
                .lock()
                .unwrap()
                .iter()
                .all(|a| a == "Bearer s3cret-bearer")
        );
        stop(cancel, task).await;
        server.abort();

        let Some(logs) = logs else {
            eprintln!("another global subscriber is installed: log checks skipped");
            return;
        };
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(!logs.contains("s3cret"), "{logs}");
        // This exporter's lines: its name has this test's port.
        let ours = format!("exporter={name}");
        let count = |level: &str, text: &str| {
            logs.lines()
                .filter(|l| l.contains(&ours) && l.contains(level) && l.contains(text))
                .count()
        };
        assert_eq!(count("WARN", "audit export failing"), 1, "{logs}");
        assert_eq!(count("WARN", ""), 1, "one warning per outage: {logs}");
        assert_eq!(count("DEBUG", "audit export retry failed"), 2, "{logs}");
        assert_eq!(count("INFO", "audit export recovered"), 1, "{logs}");
    }

    #[tokio::test]
    async fn https_over_tls_posts_batches_with_the_bearer_token() {
        install_provider();
        let pki = test_pki();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let collector = Arc::new(Collector::default());
        collector.posts.store(3, Ordering::SeqCst); // accept from the start
        let app = axum::Router::new()
            .route("/ingest", axum::routing::post(collect))
            .with_state(collector.clone());
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}/ingest",
            tcp.local_addr().unwrap().port()
        );
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(pki.server.clone()),
        };
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let source = Arc::new(MemSource::default());
        for i in 0..16 {
            source.append(if i % 2 == 0 { "allow" } else { "deny" });
        }
        let config = SinkConfig::Https {
            url,
            bearer: Some(BearerToken::new("t0ken".into())),
            ca_file: Some(ca),
            timeout: Duration::from_secs(5),
        };
        let name = config.name();
        let (_wake, cancel, task) = start(config, source.clone(), fast());
        eventually("the cursor to reach 16", || source.cursor_of(&name) == 16).await;
        let accepted = collector.accepted.lock().unwrap().clone();
        let sizes: Vec<usize> = accepted.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![7, 7, 2]);
        let records = source.records.lock().unwrap().clone();
        let all: Vec<Value> = accepted.concat();
        assert_eq!(all, records.iter().map(export_object).collect::<Vec<_>>());
        assert!(
            collector
                .auth
                .lock()
                .unwrap()
                .iter()
                .all(|a| a == "Bearer t0ken")
        );
        stop(cancel, task).await;
        server.abort();
    }
}
