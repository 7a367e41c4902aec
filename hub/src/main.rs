//! `ewii-hub`: the operator's hub. The admin CLI over the hub store
//! (workspaces, each with its own CA; deployments and their enrolment
//! tokens; agent credentials; trust bundles) and `serve`, which carries
//! agents' tool calls to the deployments.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ewii_hub::audit::export::SinkConfig;
use ewii_hub::audit::webhook;
use ewii_hub::gateway::policy::Policy;
use ewii_hub::gateway::serve::{self, ServeOptions};
use ewii_hub::state::bundle;
use ewii_hub::state::names;
use ewii_hub::state::store::DATABASE_URL_ENV;
use ewii_hub::state::store::{RevocationReason, Verification};
use ewii_hub::{Deployment, Location, Store, Workspace};
use ewii_quic::TlsBinding;
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
    Serve(Box<ServeArgs>),
    /// Print the hub CA certificate (PEM): what customers pass to
    /// `ewii-client --hub-ca`.
    #[command(name = "hub-ca")]
    HubCa,
    /// Revoke a deployment (every SVID it holds) or one SVID: its live
    /// tunnel closes and every later handshake is refused.
    #[command(after_help = REVOKE_HELP)]
    Revoke(RevokeArgs),
    /// Revocation webhooks: HMAC-signed POSTs to the customer when one of
    /// its deployments or SVIDs is revoked.
    #[command(subcommand, after_help = WEBHOOK_HELP)]
    Webhook(WebhookCmd),
    /// Agents' policies (TOML): which deployments, databases, tools and
    /// statement classes an agent may use, row and rate limits.
    #[command(subcommand, after_help = POLICY_HELP)]
    Policy(PolicyCmd),
    /// The audit trail: hash-chained records of every tool call (intent and
    /// outcome for calls sent to a deployment, one decision otherwise).
    #[command(subcommand)]
    Audit(AuditCmd),
}

const REVOKE_HELP: &str = "\
Takes effect within a fraction of a second on a running hub (it polls the store's revocation
state), also when run from another machine against the same PostgreSQL store. The deployment
comes back only by enrolling again with a new token:
  ewii-hub deployment token --workspace W D
Webhooks registered for the workspace or deployment are told (see `ewii-hub webhook`).

Examples:
  ewii-hub revoke --workspace acme --deployment shop
  ewii-hub revoke --svid 4f1a9c…          # serial as printed by `ewii-client run --check`";

const WEBHOOK_HELP: &str = "\
Each revocation is POSTed as JSON with the headers
  Ewii-Event: deployment.revoked | svid.revoked
  Ewii-Delivery: <id, the same on every retry>
  Ewii-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>
The receiver recomputes the HMAC with the secret shown by `webhook add` and rejects stale
timestamps. Failed deliveries are retried with backoff (1 s doubling to 10 min) until a 2xx
answer; `webhook deliveries` shows each one's state.";

const POLICY_HELP: &str = "\
A policy file (TOML); every key is optional, a missing key allows everything of its kind:
  deployments = [\"eu\"]                 # deployments of the workspace this agent may call
  databases   = [\"shop\", \"us.crm\"]     # databases (\"db\" anywhere, \"deployment.db\" in one)
  tools       = [\"query\", \"list_tables\", \"describe_table\"]
  statements  = [\"read\"]               # read, write, ddl, other
  row_limit   = 1000                   # caps each query's rows
  rate_limit  = { calls = 60, per_seconds = 60 }
A denied call comes back to the agent as an error result naming the rule, and is audited.";

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["deployment", "svid"])))]
struct RevokeArgs {
    /// The deployment's workspace.
    #[arg(long, value_name = "W", requires = "deployment")]
    workspace: Option<String>,
    /// Revoke this deployment: every SVID it was issued, and any SVID of
    /// its SPIFFE ID, until it enrols again.
    #[arg(long, value_name = "D", requires = "workspace")]
    deployment: Option<String>,
    /// Revoke one SVID by serial number (hex).
    #[arg(long, value_name = "SERIAL", conflicts_with = "deployment")]
    svid: Option<String>,
}

#[derive(Subcommand)]
enum WebhookCmd {
    /// Register a webhook and print its signing secret (shown once).
    Add {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// Only this deployment's revocations (default: every deployment of the workspace).
        #[arg(long, value_name = "D")]
        deployment: Option<String>,
        /// Where to POST (https://…; http:// only to loopback).
        url: String,
        /// Read the secret from this file instead of generating one.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// List a workspace's webhooks.
    List {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
    },
    /// Remove a webhook (and its pending deliveries).
    Remove {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The webhook id (see `webhook list`).
        id: String,
    },
    /// Recent deliveries: attempts, status, delivered or not.
    Deliveries {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Set an agent's policy from a TOML file (takes effect on its next call).
    Set {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The agent.
        agent: String,
        /// The policy file.
        file: PathBuf,
    },
    /// Print an agent's policy.
    Show {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The agent.
        agent: String,
    },
    /// Remove an agent's policy: it may then use everything the adapters allow.
    Clear {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The agent.
        agent: String,
    },
    /// Check a policy file without changing anything.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain; names the first broken record. Exit code 3 if broken.
    /// Intents without an outcome are listed, not broken: calls still running, or
    /// calls the hub stopped in.
    Verify,
    /// Print the last records (`kind`: intent, outcome or decision).
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep printing new records as they are written.
        #[arg(short, long)]
        follow: bool,
    },
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
        /// The agent's policy (TOML; see `ewii-hub policy --help`). Without
        /// it the agent may use everything the deployments' adapters allow.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
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
    // Checking a file needs no store.
    if let Command::Policy(PolicyCmd::Check { file }) = &cli.command {
        return check_policy(file, cli.global.json);
    }
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
        Command::Serve(args) => serve(store, *args, json).await?,
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
        Command::Agent(AgentCmd::Create {
            workspace,
            name,
            policy,
        }) => {
            let policy = policy.as_deref().map(read_policy).transpose()?;
            let (a, credential) = store
                .create_agent_with_policy(
                    &workspace,
                    &name,
                    policy.as_ref().map(|p| p.1.as_str()),
                    now,
                )
                .await?;
            let summary = policy
                .as_ref()
                .map_or_else(|| "unrestricted".to_string(), |p| p.0.summary());
            if json {
                print_json(&json!({
                    "workspace": a.workspace,
                    "name": a.name,
                    "credential": credential.expose(),
                    "created_at": rfc3339(a.created_at),
                    "policy": summary,
                }))?;
            } else {
                println!(
                    "Created agent '{}' in workspace '{}'. Its bearer credential (shown only \
                     now; the hub keeps a hash):",
                    a.name, a.workspace
                );
                println!("{}", credential.expose());
                println!("Policy: {summary}");
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
                            "policy": policy_summary(a.policy.as_deref()),
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
                    println!(
                        "{:<32}  created {}  policy: {}",
                        a.name,
                        rfc3339(a.created_at),
                        policy_summary(a.policy.as_deref())
                    );
                }
            }
        }
        Command::Revoke(args) => revoke(store, args, json, now).await?,
        Command::Webhook(cmd) => webhook(store, cmd, json, now).await?,
        Command::Policy(cmd) => policy(store, cmd, json).await?,
        Command::Audit(cmd) => audit(store, cmd, json).await?,
    }
    Ok(())
}

/// A policy file, parsed and checked, with its text.
fn read_policy(file: &std::path::Path) -> Result<(Policy, String)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the policy file {}", file.display()))?;
    let policy =
        Policy::from_toml(&text).with_context(|| format!("policy file {}", file.display()))?;
    Ok((policy, text))
}

fn check_policy(file: &std::path::Path, json: bool) -> Result<()> {
    let (p, _) = read_policy(file)?;
    if json {
        print_json(&json!({ "valid": true, "summary": p.summary() }))
    } else {
        println!("{}: valid. {}", file.display(), p.summary());
        Ok(())
    }
}

fn policy_summary(text: Option<&str>) -> String {
    match text.map(Policy::from_toml) {
        None => "unrestricted".into(),
        Some(Ok(p)) => p.summary(),
        Some(Err(e)) => format!("unreadable ({e}); every call is denied until it is fixed"),
    }
}

async fn revoke(store: &Store, args: RevokeArgs, json: bool, now: SystemTime) -> Result<()> {
    let revoked = match (&args.workspace, &args.deployment, &args.svid) {
        (Some(w), Some(d), None) => {
            store
                .revoke_deployment(w, d, RevocationReason::Operator, now)
                .await?
        }
        (None, None, Some(serial)) => {
            store
                .revoke_serial(serial, RevocationReason::Operator, now)
                .await?
        }
        _ => anyhow::bail!("give either --workspace W --deployment D, or --svid SERIAL"),
    };
    if json {
        return print_json(&serde_json::to_value(&revoked)?);
    }
    match (&revoked.workspace, &revoked.deployment, &args.svid) {
        (Some(w), Some(d), None) => {
            println!(
                "Revoked deployment '{d}' of workspace '{w}' ({} SVID serial(s), {} unused \
                 enrolment token(s)); its tunnel closes now and every handshake is refused.",
                revoked.serials.len(),
                revoked.tokens_revoked
            );
            println!("To let it back: ewii-hub deployment token --workspace {w} {d}");
        }
        (_, _, Some(serial)) if revoked.serials.is_empty() => {
            println!("SVID {serial} was already revoked; nothing changed.");
        }
        (Some(w), Some(d), Some(_)) => {
            println!(
                "Revoked SVID {} of deployment '{d}' (workspace '{w}').",
                revoked.serials.join(", ")
            );
        }
        _ => println!(
            "Revoked SVID {} (the hub did not issue it: an imported CA's SVID).",
            revoked.serials.join(", ")
        ),
    }
    if revoked.webhooks > 0 {
        println!("{} webhook delivery(ies) queued.", revoked.webhooks);
    }
    Ok(())
}

async fn webhook(store: &Store, cmd: WebhookCmd, json: bool, now: SystemTime) -> Result<()> {
    match cmd {
        WebhookCmd::Add {
            workspace,
            deployment,
            url,
            secret_file,
        } => {
            let secret = match secret_file {
                Some(f) => zeroize::Zeroizing::new(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?
                        .trim()
                        .to_owned(),
                ),
                None => zeroize::Zeroizing::new(webhook::generate_secret()?),
            };
            if secret.len() < 16 {
                anyhow::bail!("the webhook secret must be at least 16 characters");
            }
            let h = store
                .add_webhook(&workspace, deployment.as_deref(), &url, &secret, now)
                .await?;
            if json {
                let mut v = serde_json::to_value(&h)?;
                v["secret"] = json!(secret.as_str());
                print_json(&v)?;
            } else {
                println!(
                    "Webhook {} registered for {} of workspace '{}': {}",
                    h.id,
                    h.deployment
                        .as_deref()
                        .map_or("every deployment".to_string(), |d| format!(
                            "deployment '{d}'"
                        )),
                    h.workspace,
                    h.url
                );
                println!("Signing secret (shown only now; give it to the receiver):");
                println!("{}", secret.as_str());
            }
        }
        WebhookCmd::List { workspace } => {
            let all = store.list_webhooks(&workspace).await?;
            if json {
                print_json(&serde_json::to_value(&all)?)?;
            } else if all.is_empty() {
                println!(
                    "No webhooks in '{workspace}': ewii-hub webhook add --workspace {workspace} URL"
                );
            } else {
                for h in &all {
                    println!(
                        "{}  {:<12}  {}",
                        h.id,
                        h.deployment.as_deref().unwrap_or("*"),
                        h.url
                    );
                }
            }
        }
        WebhookCmd::Remove { workspace, id } => {
            store.remove_webhook(&workspace, &id).await?;
            if json {
                print_json(&json!({ "removed": id }))?;
            } else {
                println!("Removed webhook {id}.");
            }
        }
        WebhookCmd::Deliveries { workspace, limit } => {
            let all = store.list_deliveries(&workspace, limit).await?;
            if json {
                print_json(&serde_json::to_value(&all)?)?;
            } else if all.is_empty() {
                println!("No deliveries yet.");
            } else {
                for d in &all {
                    let state = match d.delivered_at {
                        Some(t) => format!("delivered {}", rfc3339(t)),
                        None => format!(
                            "pending, next try {}{}",
                            rfc3339(d.next_attempt_at),
                            d.last_error
                                .as_deref()
                                .map(|e| format!(" (last: {e})"))
                                .unwrap_or_default()
                        ),
                    };
                    println!(
                        "{}  {:<20}  attempts {:<3}  {}  {}",
                        d.id, d.event, d.attempts, d.url, state
                    );
                }
            }
        }
    }
    Ok(())
}

async fn policy(store: &Store, cmd: PolicyCmd, json: bool) -> Result<()> {
    match cmd {
        PolicyCmd::Set {
            workspace,
            agent,
            file,
        } => {
            let (p, text) = read_policy(&file)?;
            store
                .set_agent_policy(&workspace, &agent, Some(&text))
                .await?;
            if json {
                print_json(
                    &json!({ "workspace": workspace, "agent": agent, "policy": p.summary() }),
                )?;
            } else {
                println!("Policy of agent '{agent}' set: {}", p.summary());
            }
        }
        PolicyCmd::Show { workspace, agent } => {
            let a = store
                .list_agents(&workspace)
                .await?
                .into_iter()
                .find(|a| a.name == agent)
                .with_context(|| format!("no agent named {agent:?} in workspace {workspace:?}"))?;
            if json {
                print_json(&json!({
                    "workspace": workspace,
                    "agent": agent,
                    "policy": a.policy,
                    "summary": policy_summary(a.policy.as_deref()),
                }))?;
            } else {
                match a.policy {
                    Some(text) => print!("{text}"),
                    None => println!("# unrestricted: no policy set"),
                }
            }
        }
        PolicyCmd::Clear { workspace, agent } => {
            store.set_agent_policy(&workspace, &agent, None).await?;
            if json {
                print_json(
                    &json!({ "workspace": workspace, "agent": agent, "policy": "unrestricted" }),
                )?;
            } else {
                println!("Policy of agent '{agent}' removed: it is unrestricted now.");
            }
        }
        PolicyCmd::Check { file } => check_policy(&file, json)?,
    }
    Ok(())
}

async fn audit(store: &Store, cmd: AuditCmd, json: bool) -> Result<()> {
    match cmd {
        AuditCmd::Verify => match store.verify_audit().await? {
            v @ Verification::Intact { .. } => {
                if json {
                    print_json(&serde_json::to_value(&v)?)?;
                } else if let Verification::Intact {
                    records,
                    head_hash,
                    open_intents,
                } = v
                {
                    println!("Audit trail intact: {records} record(s), head hash {head_hash}");
                    if !open_intents.is_empty() {
                        println!(
                            "{} call(s) with an intent but no outcome recorded (records {}): \
                             still running, or the hub stopped before they finished, so their \
                             statement may or may not have run",
                            open_intents.len(),
                            seq_list(&open_intents)
                        );
                    }
                }
            }
            v @ Verification::Broken { .. } => {
                if json {
                    print_json(&serde_json::to_value(&v)?)?;
                } else if let Verification::Broken {
                    seq,
                    reason,
                    verified,
                } = &v
                {
                    eprintln!(
                        "Audit trail BROKEN at record {seq}: {reason} ({verified} record(s) before it verified)"
                    );
                }
                std::process::exit(3);
            }
        },
        AuditCmd::Tail { lines, follow } => {
            let mut last = 0;
            let tail = store.audit_tail(lines).await?;
            // The tail is the end of the chain: an intent whose outcome is
            // not in it has none (yet).
            let finished: std::collections::BTreeSet<i64> = tail
                .iter()
                .filter_map(|r| r.record.get("intent_seq").and_then(|v| v.as_i64()))
                .collect();
            for r in &tail {
                print_record(&r.record, json, !finished.contains(&r.seq));
                last = r.seq;
            }
            if follow {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    for r in store.audit_after(last, 500).await? {
                        // Followed intents are in flight: their outcome
                        // comes as its own line.
                        print_record(&r.record, json, false);
                        last = r.seq;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `1, 2, 3` (the first 20, then `…`).
fn seq_list(seqs: &[i64]) -> String {
    let mut out: Vec<String> = seqs.iter().take(20).map(i64::to_string).collect();
    if seqs.len() > 20 {
        out.push("…".into());
    }
    out.join(", ")
}

/// One record, as stored (`--json`) or as a line; `unfinished`: an intent
/// whose outcome is not in the trail.
fn print_record(r: &serde_json::Value, json: bool, unfinished: bool) {
    if json {
        println!("{r}");
        return;
    }
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-");
    let n = |k: &str| r.get(k).map_or("-".to_string(), |v| v.to_string());
    let decision = match r.get("rule").and_then(|v| v.as_str()) {
        Some(rule) => format!("{} ({rule})", s("decision")),
        None => s("decision").to_owned(),
    };
    let statement = r
        .get("statement")
        .and_then(|v| v.as_str())
        .map(|st| format!("  {st}"))
        .unwrap_or_default();
    let head = format!(
        "#{} {} {}/{} {}",
        n("seq"),
        s("time"),
        s("workspace"),
        s("agent"),
        s("tool"),
    );
    match r.get("kind").and_then(|v| v.as_str()) {
        Some("intent") => {
            let status = if unfinished {
                " -> no outcome recorded (still running, or the hub stopped before it finished)"
            } else {
                ""
            };
            println!("{head} intent {decision}{status}{statement}");
        }
        Some("outcome") => println!(
            "{head} outcome {decision} -> {} rows={} {}ms (intent #{})",
            s("outcome"),
            n("rows"),
            n("duration_ms"),
            n("intent_seq"),
        ),
        // Decisions, and records from before intents existed.
        _ => println!(
            "{head} {decision} -> {} rows={} {}ms{statement}",
            s("outcome"),
            n("rows"),
            n("duration_ms"),
        ),
    }
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
