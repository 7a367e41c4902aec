//! The syslog sink: RFC 5424 records, octet-counted over TCP or TLS
//! (RFC 6587, RFC 5425).

use super::format::syslog_message;
use super::{ExportError, ExportRecord, SyslogTls};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::audit::egress;

/// Time allowed to connect (and finish the TLS handshake) to a syslog
/// receiver.
pub(super) const SYSLOG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write one batch to a syslog receiver; a receiver that
/// stops reading is then reconnected.
pub(super) const SYSLOG_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

// ---- syslog -------------------------------------------------------------

pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(super) struct SyslogConn {
    addr: String,
    tls: Option<SyslogTls>,
    app_name: String,
    hostname: String,
    stream: Box<dyn Stream>,
}

impl SyslogConn {
    pub(super) async fn connect(
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

    pub(super) async fn send(&mut self, batch: &[ExportRecord]) -> Result<(), ExportError> {
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
pub(super) async fn peer_closed(stream: &mut Box<dyn Stream>) -> bool {
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

pub(super) async fn syslog_stream(
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
pub(super) fn syslog_tls_config(tls: &SyslogTls) -> Result<rustls::ClientConfig, ExportError> {
    egress::tls_client_config(tls.ca_file.as_deref())
        .map_err(|e| ExportError::SyslogTls(e.to_string()))
}
