//! `--audit-export SPEC`: parsing the sink specification.

use super::{
    BearerToken, DEFAULT_APP_NAME, DEFAULT_HTTPS_TIMEOUT, DEFAULT_KEEP, DEFAULT_MAX_BYTES,
    ExportError, SinkConfig, SyslogTls,
};
use std::path::PathBuf;
use std::time::Duration;

use crate::audit::egress;

// ---- SPEC ---------------------------------------------------------------

pub(super) fn parse_spec(
    spec: &str,
    bearer: Option<BearerToken>,
) -> Result<SinkConfig, ExportError> {
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
            egress::check_url(&url).map_err(|e| bad(e.to_string()))?;
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
pub(super) struct Options(Vec<(String, String)>);

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
pub(super) fn host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
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
pub(super) fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}
