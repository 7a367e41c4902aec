//! `ewii-hub serve`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ewii_hub::Store;
use ewii_hub::audit::export::SinkConfig;
use ewii_hub::gateway::serve::{self, ServeOptions};
use ewii_hub::state::names;
use ewii_quic::TlsBinding;
use serde_json::json;

pub(crate) const SERVE_HELP: &str = "\
Clients dial the QUIC port (UDP) outbound; nothing on the customer side listens. Give the hub
every name clients use to reach it with --name: its TLS certificate (issued by the hub CA, see
`ewii-hub hub-ca`) carries them all. Agents use http://HTTP/mcp with
`Authorization: Bearer <credential from ewii-hub agent create>`. A non-loopback --http needs
TLS: give --http-tls-cert/--http-tls-key (then agents use https://HTTP/mcp; the files are
reloaded on SIGHUP or when they change), or --http-tls-hub-ca (a certificate from the hub CA
for the --name values; agents trust `ewii-hub hub-ca`), or put a TLS-terminating proxy in front.

Replicas: several `serve` processes sharing one PostgreSQL store (--database-url) act as one
hub. Give each --replica-listen (UDP, mutual TLS under the replicas' internal CA kept in the
store) and, when that address is not what the others dial, --replica-advertise HOST:PORT. An
agent on any replica then lists and calls the deployments connected to every replica.

Example:
  ewii-hub serve --quic 0.0.0.0:4433 --http 127.0.0.1:8080 --name hub.example.com";

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// UDP address for tunnels and enrolment.
    #[arg(
        long,
        env = "EWII_HUB_QUIC",
        default_value = "0.0.0.0:4433",
        value_name = "ADDR"
    )]
    quic: std::net::SocketAddr,
    /// TCP address for agents (/mcp), /healthz and /metrics.
    #[arg(
        long,
        env = "EWII_HUB_HTTP",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    http: std::net::SocketAddr,
    /// A name clients dial (DNS name or IP literal); repeat for several.
    #[arg(
        long = "name",
        env = "EWII_HUB_NAMES",
        value_delimiter = ',',
        default_values_t = vec!["localhost".to_string(), "127.0.0.1".to_string()],
        value_name = "NAME"
    )]
    names: Vec<String>,
    /// Serve this TLS certificate chain (PEM) instead of one from the hub CA.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve /mcp, /healthz and /metrics over HTTPS with this certificate
    /// chain (PEM); reloaded on SIGHUP or when the file changes.
    #[arg(
        long,
        env = "EWII_HUB_HTTP_TLS_CERT",
        requires = "http_tls_key",
        value_name = "FILE"
    )]
    http_tls_cert: Option<PathBuf>,
    /// The key of --http-tls-cert (PEM).
    #[arg(
        long,
        env = "EWII_HUB_HTTP_TLS_KEY",
        requires = "http_tls_cert",
        value_name = "FILE"
    )]
    http_tls_key: Option<PathBuf>,
    /// Serve /mcp, /healthz and /metrics over HTTPS with a certificate the hub
    /// CA issues for the --name values at start (agents trust `ewii-hub hub-ca`).
    #[arg(
        long,
        env = "EWII_HUB_HTTP_TLS_HUB_CA",
        conflicts_with = "http_tls_cert"
    )]
    http_tls_hub_ca: bool,
    /// Lifetime of the SVIDs the hub issues (clients renew at about half of it).
    #[arg(
        long,
        env = "EWII_HUB_SVID_TTL",
        default_value = "24h",
        value_name = "DURATION"
    )]
    svid_ttl: String,
    /// The longest a routed tool call may take before the agent gets an error.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    call_timeout: String,
    /// The longest a QUIC connection may take to authenticate (TLS and the
    /// app-layer handshake, or its enrolment) before it is closed.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    handshake_timeout: String,
    /// The longest an HTTP client may take to send a request's headers.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    header_read_timeout: String,
    /// A Host header value accepted on /mcp beyond loopback names (`*` for any);
    /// repeat for several.
    #[arg(
        long = "allowed-host",
        env = "EWII_HUB_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    allowed_hosts: Vec<String>,
    /// A TLS-terminating relay sits in front of the QUIC port: identify
    /// deployments by the end-to-end handshake alone.
    #[arg(long)]
    relayed: bool,
    /// Audit statements with literals replaced by `?` and without bound
    /// parameters.
    #[arg(long, env = "EWII_HUB_AUDIT_REDACT")]
    audit_redact: bool,
    /// Export the audit trail (repeatable): jsonl:/path/audit.jsonl,
    /// syslog+tcp://host:port, syslog+tls://host:port, https://host/path.
    #[arg(
        long = "audit-export",
        env = "EWII_HUB_AUDIT_EXPORT",
        value_delimiter = ',',
        value_name = "SPEC"
    )]
    audit_export: Vec<String>,
    /// An extra CA (PEM) trusted for webhook receivers.
    #[arg(long, env = "EWII_HUB_WEBHOOK_CA", value_name = "FILE")]
    webhook_ca: Option<PathBuf>,
    /// The hub's resource URI as agents reach it (OAuth access tokens must
    /// be issued for it): https://hub.example.com/mcp. Default:
    /// http://<--http address>/mcp.
    #[arg(long, env = "EWII_HUB_RESOURCE_URL", value_name = "URI")]
    resource_url: Option<String>,
    /// An extra CA (PEM) trusted for the workspaces' authorization servers.
    #[arg(long, env = "EWII_HUB_OAUTH_CA", value_name = "FILE")]
    oauth_ca: Option<PathBuf>,
    /// UDP address of the replica-to-replica channel (QUIC, mutual TLS under
    /// the replicas' internal CA). Without it, calls are still routed to other
    /// replicas, but none to this one.
    #[arg(long, env = "EWII_HUB_REPLICA_LISTEN", value_name = "ADDR")]
    replica_listen: Option<std::net::SocketAddr>,
    /// The HOST:PORT other replicas dial to reach --replica-listen (default:
    /// the listen address, which must then be a specific IP).
    #[arg(
        long,
        env = "EWII_HUB_REPLICA_ADVERTISE",
        requires = "replica_listen",
        value_name = "HOST:PORT"
    )]
    replica_advertise: Option<String>,
}

pub(crate) async fn serve(store: &Store, args: ServeArgs, json: bool) -> Result<()> {
    let options = ServeOptions {
        quic: args.quic,
        http: args.http,
        names: args.names,
        tls: args.tls_cert.zip(args.tls_key),
        http_tls: args.http_tls_cert.zip(args.http_tls_key),
        http_tls_hub_ca: args.http_tls_hub_ca,
        svid_ttl: names::parse_duration(&args.svid_ttl).context("--svid-ttl")?,
        call_timeout: names::parse_duration(&args.call_timeout).context("--call-timeout")?,
        handshake_timeout: names::parse_duration(&args.handshake_timeout)
            .context("--handshake-timeout")?,
        header_read_timeout: names::parse_duration(&args.header_read_timeout)
            .context("--header-read-timeout")?,
        allowed_hosts: args.allowed_hosts,
        binding: if args.relayed {
            TlsBinding::Relayed
        } else {
            TlsBinding::Strict
        },
        audit_redact: args.audit_redact,
        audit_export: args
            .audit_export
            .iter()
            .map(|spec| SinkConfig::parse(spec).with_context(|| format!("--audit-export {spec}")))
            .collect::<Result<_>>()?,
        webhook_ca: args.webhook_ca,
        oauth: ewii_hub::gateway::oauth::OAuthOptions {
            resource: args.resource_url,
            ca: args.oauth_ca,
            ..Default::default()
        },
        replica: ewii_hub::replica::ReplicaOptions {
            listen: args.replica_listen,
            advertise: args.replica_advertise,
            ..Default::default()
        },
        ..ServeOptions::default()
    };
    let hub = serve::start(store.clone(), options.clone()).await?;
    if json {
        println!(
            "{}",
            json!({
                "quic": hub.quic_addr.to_string(),
                "http": hub.http_addr.to_string(),
                "mcp_url": hub.mcp_url(),
                "names": options.names,
                "replica_id": hub.replica_id,
                "replica": hub.replica_peer_address,
            })
        );
    } else {
        println!("ewii-hub serving");
        println!("  tunnels + enrolment  quic://{} (UDP)", hub.quic_addr);
        println!("  agents' MCP          {}", hub.mcp_url());
        println!(
            "  health, metrics      {}://{}/healthz  /metrics",
            if hub.https { "https" } else { "http" },
            hub.http_addr
        );
        println!("  names                {}", options.names.join(", "));
        if let Some(peer) = &hub.replica_peer_address {
            println!(
                "  replica channel      quic://{peer} (UDP, replica {})",
                hub.replica_id
            );
        }
        println!("  hub CA for clients   ewii-hub hub-ca > hub-ca.pem");
    }
    hub.run_until(shutdown_signal()).await;
    Ok(())
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
