//! `ewii-hub`: the operator's hub. The admin CLI over the hub store
//! (workspaces, each with its own CA; deployments and their enrolment
//! tokens; agent credentials; trust bundles) and `serve`, which carries
//! agents' tool calls to the deployments.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ewii_hub::serve::{self, ServeOptions};
use ewii_hub::store::DATABASE_URL_ENV;
use ewii_hub::{Deployment, Location, Store, Workspace, bundle, names};
use ewii_tunnel::net::TlsBinding;
use serde_json::json;

const AFTER_HELP: &str = "\
Typical first run:
  ewii-hub workspace create acme
  ewii-hub deployment create --workspace acme shop     # prints a single-use enrolment token
  ewii-hub agent create --workspace acme assistant     # prints a bearer credential, once

State lives in DATA/hub.db (SQLite, default DATA: $XDG_DATA_HOME/ewii-hub), or in PostgreSQL
with --database-url / EWII_HUB_DATABASE_URL (several hub replicas share it).
Workspace CA keys are sealed with the hub master key: EWII_HUB_MASTER_KEY (base64 of 32 bytes,
injected from your secret store in production); without it, DATA/master.key is generated for the
SQLite store. With --database-url, EWII_HUB_MASTER_KEY is required.";

/// Ewii hub: workspaces, deployments, agents and trust bundles.
#[derive(Parser)]
#[command(name = "ewii-hub", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Hub state directory (SQLite database and, without EWII_HUB_MASTER_KEY, master.key).
    #[arg(long, global = true, env = "EWII_HUB_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Keep state in this database instead (postgres://…); overrides --data.
    #[arg(long, global = true, env = DATABASE_URL_ENV, value_name = "URL")]
    database_url: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Workspaces: one per customer, each with its own CA.
    #[command(subcommand)]
    Workspace(WorkspaceCmd),
    /// Deployments of a workspace and their enrolment tokens.
    #[command(subcommand)]
    Deployment(DeploymentCmd),
    /// AI agents' bearer credentials.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Serve: tunnels and enrolment on one QUIC port, the agents' MCP
    /// endpoint (`/mcp`), `/healthz` and `/metrics` on HTTP.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Print the hub CA certificate (PEM): what customers pass to
    /// `ewii-client --hub-ca`.
    #[command(name = "hub-ca")]
    HubCa,
}

const SERVE_HELP: &str = "\
Clients dial the QUIC port (UDP) outbound; nothing on the customer side listens. Give the hub
every name clients use to reach it with --name: its TLS certificate (issued by the hub CA, see
`ewii-hub hub-ca`) carries them all. Agents use http://HTTP/mcp with
`Authorization: Bearer <credential from ewii-hub agent create>`; put a TLS-terminating proxy in
front of a non-loopback --http.

Example:
  ewii-hub serve --quic 0.0.0.0:4433 --http 127.0.0.1:8080 --name hub.example.com";

#[derive(Args)]
struct ServeArgs {
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
}

#[derive(Subcommand)]
enum WorkspaceCmd {
    /// Create a workspace and its CA.
    Create {
        /// Name: a lowercase letter, then up to 31 of a-z, 0-9, '-'.
        name: String,
        /// SPIFFE trust domain of its deployments' IDs.
        #[arg(long, default_value = names::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
    /// List workspaces.
    List,
    /// Print the workspace's trust bundle (SPIFFE bundle JWKS, or --pem).
    Bundle {
        /// The workspace.
        name: String,
        /// PEM certificates instead of the SPIFFE bundle.
        #[arg(long, conflicts_with = "json")]
        pem: bool,
    },
    /// Trust SVIDs issued by another CA (e.g. an existing SPIRE server):
    /// FILE holds PEM certificates or a SPIFFE bundle (JWKS).
    #[command(name = "import-bundle")]
    ImportBundle {
        /// The workspace.
        name: String,
        /// The bundle file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeploymentCmd {
    /// Create a deployment and print its single-use enrolment token.
    Create {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// Name: a lowercase letter, then up to 31 of a-z, 0-9, '-'.
        name: String,
        /// How long the token stays valid (s, m, h, d).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        token_ttl: String,
    },
    /// Issue a new enrolment token for an existing deployment.
    Token {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The deployment.
        name: String,
        /// How long the token stays valid (s, m, h, d).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        token_ttl: String,
    },
    /// List a workspace's deployments.
    List {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Create an agent and print its bearer credential (shown once).
    Create {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// Name: a lowercase letter, then up to 31 of a-z, 0-9, '-'.
        name: String,
    },
    /// List a workspace's agents.
    List {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
    },
}

fn main() {
    // One crypto provider for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("EWII_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn location(global: &Global) -> Location {
    if let Some(url) = global.database_url.as_ref().filter(|u| !u.is_empty()) {
        return Location::Url(url.clone());
    }
    let dir = global.data.clone().unwrap_or_else(|| {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("ewii-hub")
    });
    Location::Data(dir)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| unix.to_string())
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn workspace_json(w: &Workspace) -> serde_json::Value {
    json!({
        "name": w.name,
        "trust_domain": w.trust_domain,
        "bundle_sequence": w.bundle_sequence,
        "created_at": rfc3339(w.created_at),
    })
}

fn deployment_json(d: &Deployment) -> serde_json::Value {
    json!({
        "workspace": d.workspace,
        "name": d.name,
        "spiffe_id": d.spiffe_id.to_string(),
        "created_at": rfc3339(d.created_at),
    })
}

async fn run(cli: Cli) -> Result<()> {
    let store = Store::open(&location(&cli.global)).await?;
    let result = dispatch(&store, cli.command, cli.global.json).await;
    store.close().await;
    result
}

async fn serve(store: &Store, args: ServeArgs, json: bool) -> Result<()> {
    let options = ServeOptions {
        quic: args.quic,
        http: args.http,
        names: args.names,
        tls: args.tls_cert.zip(args.tls_key),
        svid_ttl: names::parse_duration(&args.svid_ttl).context("--svid-ttl")?,
        call_timeout: names::parse_duration(&args.call_timeout).context("--call-timeout")?,
        allowed_hosts: args.allowed_hosts,
        binding: if args.relayed {
            TlsBinding::Relayed
        } else {
            TlsBinding::Strict
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
            })
        );
    } else {
        println!("ewii-hub serving");
        println!("  tunnels + enrolment  quic://{} (UDP)", hub.quic_addr);
        println!("  agents' MCP          {}", hub.mcp_url());
        println!(
            "  health, metrics      http://{}/healthz  /metrics",
            hub.http_addr
        );
        println!("  names                {}", options.names.join(", "));
        println!("  hub CA for clients   ewii-hub hub-ca > hub-ca.pem");
    }
    hub.run_until(shutdown_signal()).await;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
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

async fn dispatch(store: &Store, command: Command, json: bool) -> Result<()> {
    let now = SystemTime::now();
    match command {
        Command::Serve(args) => serve(store, args, json).await?,
        Command::HubCa => {
            let ca = store.hub_ca(now).await?;
            if json {
                print_json(&json!({ "pem": ca.certificate_pem() }))?;
            } else {
                print!("{}", ca.certificate_pem());
            }
        }
        Command::Workspace(WorkspaceCmd::Create { name, trust_domain }) => {
            let w = store
                .create_workspace(&name, Some(&trust_domain), now)
                .await?;
            if json {
                print_json(&workspace_json(&w))?;
            } else {
                println!(
                    "Created workspace '{}' (trust domain {}) with its own CA.",
                    w.name, w.trust_domain
                );
                println!(
                    "Next: ewii-hub deployment create --workspace {} NAME",
                    w.name
                );
            }
        }
        Command::Workspace(WorkspaceCmd::List) => {
            let all = store.list_workspaces().await?;
            if json {
                print_json(&json!(all.iter().map(workspace_json).collect::<Vec<_>>()))?;
            } else if all.is_empty() {
                println!("No workspaces yet: ewii-hub workspace create NAME");
            } else {
                for w in &all {
                    println!(
                        "{:<32}  {:<24}  created {}",
                        w.name,
                        w.trust_domain,
                        rfc3339(w.created_at)
                    );
                }
            }
        }
        Command::Workspace(WorkspaceCmd::Bundle { name, pem }) => {
            let b = store.trust_bundle(&name).await?;
            if pem {
                print!("{}", bundle::to_pem(&b.own));
            } else {
                let seq = u64::try_from(b.workspace.bundle_sequence).unwrap_or(0);
                print_json(&bundle::to_jwks(&b.own, seq)?)?;
            }
        }
        Command::Workspace(WorkspaceCmd::ImportBundle { name, file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let certs = bundle::parse_bundle(&text)?;
            let w = store.import_bundle(&name, &certs, now).await?;
            if json {
                print_json(&json!({
                    "workspace": w.name,
                    "imported_certificates": certs.len(),
                    "bundle_sequence": w.bundle_sequence,
                }))?;
            } else {
                println!(
                    "Imported {} CA certificate(s) into workspace '{}': SVIDs they issue for \
                     spiffe://{}/ws/{}/… are now trusted.",
                    certs.len(),
                    w.name,
                    w.trust_domain,
                    w.name
                );
            }
        }
        Command::Deployment(DeploymentCmd::Create {
            workspace,
            name,
            token_ttl,
        }) => {
            let ttl = names::parse_duration(&token_ttl)?;
            let (d, t) = store.create_deployment(&workspace, &name, ttl, now).await?;
            print_token(json, Some(&d), &workspace, &name, &t)?;
        }
        Command::Deployment(DeploymentCmd::Token {
            workspace,
            name,
            token_ttl,
        }) => {
            let ttl = names::parse_duration(&token_ttl)?;
            let t = store
                .issue_enrolment_token(&workspace, &name, ttl, now)
                .await?;
            print_token(json, None, &workspace, &name, &t)?;
        }
        Command::Deployment(DeploymentCmd::List { workspace }) => {
            let all = store.list_deployments(&workspace).await?;
            if json {
                print_json(&json!(all.iter().map(deployment_json).collect::<Vec<_>>()))?;
            } else if all.is_empty() {
                println!(
                    "No deployments in '{workspace}' yet: ewii-hub deployment create --workspace \
                     {workspace} NAME"
                );
            } else {
                for d in &all {
                    println!("{:<32}  {}", d.name, d.spiffe_id);
                }
            }
        }
        Command::Agent(AgentCmd::Create { workspace, name }) => {
            let (a, credential) = store.create_agent(&workspace, &name, now).await?;
            if json {
                print_json(&json!({
                    "workspace": a.workspace,
                    "name": a.name,
                    "credential": credential.expose(),
                    "created_at": rfc3339(a.created_at),
                }))?;
            } else {
                println!(
                    "Created agent '{}' in workspace '{}'. Its bearer credential (shown only \
                     now; the hub keeps a hash):",
                    a.name, a.workspace
                );
                println!("{}", credential.expose());
            }
        }
        Command::Agent(AgentCmd::List { workspace }) => {
            let all = store.list_agents(&workspace).await?;
            if json {
                print_json(&json!(
                    all.iter()
                        .map(|a| json!({
                            "workspace": a.workspace,
                            "name": a.name,
                            "created_at": rfc3339(a.created_at),
                        }))
                        .collect::<Vec<_>>()
                ))?;
            } else if all.is_empty() {
                println!(
                    "No agents in '{workspace}' yet: ewii-hub agent create --workspace \
                     {workspace} NAME"
                );
            } else {
                for a in &all {
                    println!("{:<32}  created {}", a.name, rfc3339(a.created_at));
                }
            }
        }
    }
    Ok(())
}

fn print_token(
    json: bool,
    created: Option<&Deployment>,
    workspace: &str,
    deployment: &str,
    t: &ewii_hub::EnrolmentToken,
) -> Result<()> {
    if json {
        let mut out = json!({
            "workspace": workspace,
            "deployment": deployment,
            "enrolment_token": t.token.expose(),
            "expires_at": rfc3339(t.expires_at),
        });
        if let Some(d) = created {
            out["spiffe_id"] = json!(d.spiffe_id.to_string());
        }
        print_json(&out)
    } else {
        if let Some(d) = created {
            println!("Created deployment '{deployment}' ({}).", d.spiffe_id);
        }
        println!(
            "Enrolment token (single use, expires {}; the hub keeps only a hash):",
            rfc3339(t.expires_at)
        );
        println!("{}", t.token.expose());
        println!(
            "Give it to the customer for this deployment's client (EWII_ENROLLMENT_TOKEN). If it \
             expires: ewii-hub deployment token --workspace {workspace} {deployment}"
        );
        Ok(())
    }
}
