//! `ewii-client`: the customer-side end of the Ewii tunnel.
//!
//! It dials ONE outbound QUIC connection to the operator's hub, proves its
//! identity with its SPIFFE X.509-SVID, and forwards each MCP request the
//! hub sends to an allow-listed local MCP adapter. It never listens.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ewii_tunnel::client::{Client, ClientOptions};
use ewii_tunnel::connlog::ConnectionLog;
use ewii_tunnel::forward::{AllowList, Destination};
use ewii_tunnel::net::{KeyMaterial, read_certificates};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ewii-client",
    version,
    about = "The customer-side end of the Ewii tunnel: one outbound QUIC connection to the hub, \
             forwarding MCP requests to allow-listed local adapters only.",
    long_about = None,
    after_help = "Example:\n  ewii-client run --hub hub.example.com:4433 --hub-ca hub-ca.pem \\\n      \
                  --state /var/lib/ewii-client --svid svid.pem --key svid.key \\\n      \
                  --allow tcp:127.0.0.1:8080\n\n\
                  Logs go to stderr (EWII_LOG=debug for more, EWII_LOG_FORMAT=json for JSON); \
                  every forward is also recorded in STATE/connections.jsonl."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the hub and forward requests until stopped (SIGINT/SIGTERM).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The hub's QUIC address, HOST:PORT.
    #[arg(long, env = "EWII_HUB")]
    hub: String,
    /// PEM file of the CA that issued the hub's certificate. The hub must
    /// prove an identity under it, in TLS and again end to end.
    #[arg(long, env = "EWII_HUB_CA")]
    hub_ca: PathBuf,
    /// The name the hub's certificate must carry (default: HOST of --hub).
    #[arg(long, env = "EWII_HUB_NAME")]
    hub_name: Option<String>,
    /// PEM CA for the TLS layer only, when a TLS-terminating relay sits in
    /// front of the hub. The app layer still requires --hub-ca.
    #[arg(long, env = "EWII_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Directory for the client's state and its connection log.
    #[arg(long, env = "EWII_STATE")]
    state: PathBuf,
    /// An adapter endpoint the hub may reach: unix:/abs/path or
    /// tcp:IP:PORT. Repeat for several; the first is the default. Anything
    /// else is refused and logged.
    #[arg(
        long = "allow",
        env = "EWII_ALLOW",
        value_delimiter = ',',
        required = true
    )]
    allow: Vec<String>,
    /// PEM file of this deployment's X.509-SVID (leaf first, then any
    /// intermediates). Until enrolment exists, issued by the operator.
    #[arg(long, env = "EWII_SVID")]
    svid: PathBuf,
    /// PEM file of the SVID's private key.
    #[arg(long, env = "EWII_SVID_KEY")]
    key: PathBuf,
    /// Check the configuration (SVID, hub CA, allow-list), print it and exit.
    #[arg(long)]
    check: bool,
    /// With --check: print JSON for scripts.
    #[arg(long)]
    json: bool,
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("EWII_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("EWII_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // One crypto provider for the whole tree.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
        }
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn hub_host(hub: &str) -> Result<String> {
    let (host, port) = hub
        .rsplit_once(':')
        .with_context(|| format!("--hub {hub:?} must be HOST:PORT"))?;
    port.parse::<u16>()
        .with_context(|| format!("--hub {hub:?}: {port:?} is not a port number"))?;
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

async fn run(args: RunArgs) -> Result<()> {
    let hub_name = match args.hub_name.clone() {
        Some(n) => n,
        None => hub_host(&args.hub)?,
    };
    let destinations = args
        .allow
        .iter()
        .map(|a| {
            a.parse::<Destination>()
                .with_context(|| format!("--allow {a}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let allow = AllowList::new(destinations)?;
    let hub_ca = read_certificates(&args.hub_ca).context("--hub-ca")?;
    let tls_ca = args
        .tls_ca
        .as_deref()
        .map(read_certificates)
        .transpose()
        .context("--tls-ca")?;
    let keys = KeyMaterial::from_pem_files(&args.svid, &args.key).context("--svid / --key")?;
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("cannot create the state directory {}", args.state.display()))?;
    let log_path = args.state.join("connections.jsonl");
    let log = ConnectionLog::open(&log_path)
        .with_context(|| format!("cannot open the connection log {}", log_path.display()))?;
    if running_as_root() {
        tracing::warn!(
            "running as root: ewii-client needs no privileges; run it as an unprivileged user"
        );
    }
    let client = Client::new(ClientOptions {
        hub: args.hub.clone(),
        hub_name: hub_name.clone(),
        hub_ca,
        tls_ca,
        keys,
        allow: allow.clone(),
        log: Some(Arc::new(log)),
    })?;
    if args.check {
        let summary = serde_json::json!({
            "hub": args.hub,
            "hub_name": hub_name,
            "identity": client.identity(),
            "allow": allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "connection_log": log_path,
        });
        if args.json {
            println!("{summary}");
        } else {
            println!(
                "hub:            {} (must prove the name {hub_name})",
                args.hub
            );
            println!("identity:       {}", client.identity());
            for d in allow.iter() {
                println!("allow:          {d}");
            }
            println!("connection log: {}", log_path.display());
        }
        return Ok(());
    }
    tracing::info!(
        hub = %args.hub,
        identity = client.identity(),
        allow = ?allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "starting"
    );
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        stop.cancel();
    });
    client.run(cancel).await?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
