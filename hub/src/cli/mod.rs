//! The `ewii-hub` command line, one file per command group:
//! [`workspace`] (with [`oauth`]), [`deployment`], [`agent`], [`serve`],
//! [`revoke`], [`webhook`], [`policy`], [`audit`]; this module holds the top-level
//! parser, the store location and the output helpers.

mod agent;
mod audit;
mod deployment;
mod oauth;
mod policy;
mod revoke;
mod serve;
mod webhook;
mod workspace;

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use ewii_hub::state::store::DATABASE_URL_ENV;
use ewii_hub::{Location, Store};
use serde_json::json;

use agent::AgentCmd;
use audit::AuditCmd;
use deployment::DeploymentCmd;
use policy::POLICY_HELP;
use policy::PolicyCmd;
use revoke::{REVOKE_HELP, RevokeArgs};
use serve::{SERVE_HELP, ServeArgs};
use webhook::{WEBHOOK_HELP, WebhookCmd};
use workspace::WorkspaceCmd;

pub(crate) const AFTER_HELP: &str = "\
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
pub(crate) struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
pub(crate) struct Global {
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
pub(crate) enum Command {
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

pub(crate) fn location(global: &Global) -> Location {
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

pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| unix.to_string())
}

pub(crate) fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) async fn run(cli: Cli) -> Result<()> {
    // Checking a file needs no store.
    if let Command::Policy(PolicyCmd::Check { file }) = &cli.command {
        return policy::check_policy(file, cli.global.json);
    }
    let store = Store::open(&location(&cli.global)).await?;
    let result = dispatch(&store, cli.command, cli.global.json).await;
    store.close().await;
    result
}

async fn dispatch(store: &Store, command: Command, json: bool) -> Result<()> {
    let now = SystemTime::now();
    match command {
        Command::Serve(args) => serve::serve(store, *args, json).await?,
        Command::HubCa => {
            let ca = store.hub_ca(now).await?;
            if json {
                print_json(&json!({ "pem": ca.certificate_pem() }))?;
            } else {
                print!("{}", ca.certificate_pem());
            }
        }
        Command::Workspace(cmd) => workspace::run(store, cmd, json, now).await?,
        Command::Deployment(cmd) => deployment::run(store, cmd, json, now).await?,
        Command::Agent(cmd) => agent::run(store, cmd, json, now).await?,
        Command::Revoke(args) => revoke::revoke(store, args, json, now).await?,
        Command::Webhook(cmd) => webhook::webhook(store, cmd, json, now).await?,
        Command::Policy(cmd) => policy::policy(store, cmd, json).await?,
        Command::Audit(cmd) => audit::audit(store, cmd, json).await?,
    }
    Ok(())
}
