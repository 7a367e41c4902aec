//! Transports: MCP streamable HTTP on loopback TCP or a unix socket, and
//! stdio; plus the watcher that follows the admin's changes to the store.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ewii_mcp::{AllowedHosts, ExactOrigin, HttpEdge, serve_http};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use crate::access::{self, AccessGate};
use crate::local_credential::LocalCredential;
use crate::server::{Adapter, McpService};
use crate::store::{self, StoreKey};

/// Errors of the serving paths.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without `--allow-network`.
    #[error(
        "refusing to listen on {0}: the adapter serves loopback only (127.0.0.1 or ::1). On an \
         internal compose network, pass --allow-network (and --allowed-host SERVICE_NAME)"
    )]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address or socket path.
        addr: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The server failed while running.
    #[error("the MCP server stopped: {0}")]
    Runtime(String),
}

/// Who the HTTP endpoint serves (see [`crate::access`]).
///
/// The default serves no one: without a `credential`, every request is
/// refused with 401.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// The local credential callers must present as a bearer.
    pub credential: Option<LocalCredential>,
    /// Extra accepted `Host` values beyond localhost, 127.0.0.1 and ::1.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted, each exactly (scheme, host and port).
    /// None by default; requests without `Origin` are not affected.
    pub allowed_origins: Vec<ExactOrigin>,
    /// Bounds on what one HTTP client may hold.
    pub limits: HttpLimits,
}

/// Bounds on the HTTP endpoint, holding before any MCP message is read.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// The longest a client may take to send a request's headers (also
    /// how long an idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// The largest request body accepted (413 beyond it).
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
        }
    }
}

/// Refuses a non-loopback address unless the admin explicitly allows it.
pub fn check_listen_addr(addr: SocketAddr, allow_network: bool) -> Result<(), ServeError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if allow_network {
        tracing::warn!(
            %addr,
            "listening beyond loopback (--allow-network): make sure only the Ewii client's \
             internal network can reach this address"
        );
        return Ok(());
    }
    Err(ServeError::NotLoopback(addr))
}

/// The MCP endpoint as an axum router (`/mcp`), layered as
/// [`ewii_mcp::http`] describes: a declared body over the limit is refused
/// with 413 first; then the access gate ([`crate::access::gate`]) refuses a
/// browser page on an origin not listed exactly with 403 and a caller
/// without the local credential with 401, before any MCP message is read;
/// then rmcp's Host validation refuses a DNS name rebound to 127.0.0.1
/// with 403 (and its Origin check holds the same exact origins).
pub fn router(
    adapter: Arc<Adapter>,
    opts: &HttpOptions,
    cancel: CancellationToken,
) -> axum::Router {
    let edge = HttpEdge {
        hosts: AllowedHosts::LoopbackAnd(opts.allowed_hosts.clone()),
        // An empty list refuses every Origin.
        origins: Some(opts.allowed_origins.clone()),
        max_body_bytes: opts.limits.max_body_bytes,
        server: "the adapter",
    };
    let gate = Arc::new(AccessGate::new(
        opts.credential.as_ref(),
        opts.allowed_origins.clone(),
    ));
    edge.router(adapter, Default::default(), &cancel, |mcp| {
        mcp.layer(axum::middleware::from_fn_with_state(gate, access::gate))
    })
}

/// Serves MCP streamable HTTP on an already bound TCP listener until
/// `cancel` fires. A client must send a request's headers within
/// `header_read_timeout`, so half-sent requests cannot hold the adapter.
pub async fn serve_tcp(
    adapter: Arc<Adapter>,
    listener: tokio::net::TcpListener,
    opts: &HttpOptions,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let app = router(adapter, opts, cancel.clone());
    serve_http(
        ewii_mcp::without_nagle(listener),
        app,
        opts.limits.header_read_timeout,
        cancel,
    )
    .await;
    Ok(())
}

/// Binds a unix socket with mode 0600. A stale socket file is replaced; any
/// other file in the way is left alone and reported.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let bind_err = |cause| ServeError::Bind {
        addr: path.display().to_string(),
        cause,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path).map_err(bind_err)?;
        } else {
            return Err(bind_err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Serves MCP streamable HTTP on a bound unix socket until `cancel` fires,
/// then removes the socket file.
pub async fn serve_unix(
    adapter: Arc<Adapter>,
    listener: tokio::net::UnixListener,
    path: &Path,
    opts: &HttpOptions,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let app = router(adapter, opts, cancel.clone());
    serve_http(listener, app, opts.limits.header_read_timeout, cancel).await;
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Serves MCP over stdin/stdout (local use, e.g. a desktop MCP client
/// launching the adapter). Logs must go to stderr.
pub async fn serve_stdio(
    adapter: Arc<Adapter>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let running = McpService::new(adapter)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    tokio::select! {
        r = running.waiting() => r.map(|_| ()).map_err(|e| ServeError::Runtime(e.to_string())),
        _ = cancel.cancelled() => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    mtime_ns: i128,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        inode: m.ino(),
    })
}

/// Follows the credential store: when `add-database` / `remove-database`
/// replace it, the catalog is updated live and clients are notified.
///
/// Polls the file's identity (every store write is a rename, so the inode
/// changes) twice a second; needs no platform watcher.
pub fn watch_store(
    adapter: Arc<Adapter>,
    path: PathBuf,
    key: StoreKey,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = stamp(&path);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            match store::read(&path, &key) {
                Ok(contents) => {
                    adapter.apply(contents.configs()).await;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "the credential store changed but cannot be read; keeping the current catalog"
                ),
            }
        }
    })
}
