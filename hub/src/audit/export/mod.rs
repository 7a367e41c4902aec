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

mod format;
mod https;
mod jsonl;
mod run;
mod spec;
mod syslog;
#[cfg(test)]
mod tests;

pub use format::{SD_VALUE_MAX, breaks_lines, json_text, log_excerpt, syslog_message};
use format::{display_url, export_object};
use https::HttpsPoster;
use jsonl::{JsonlFile, blocking};
pub use run::{RetryPolicy, run, run_with};
use spec::parse_spec;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use syslog::SyslogConn;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::audit::egress::{self, EgressError};

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
    Https(#[from] EgressError),
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
                egress::check_url(url)?;
                SinkKind::Https(HttpsPoster {
                    client: egress::http_client(*timeout, ca_file.as_deref())?,
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
