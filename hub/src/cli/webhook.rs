//! `ewii-hub webhook`: revocation webhooks.

use super::{print_json, rfc3339};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::Subcommand;
use ewii_hub::Store;
use ewii_hub::audit::webhook;
use serde_json::json;

pub(crate) const WEBHOOK_HELP: &str = "\
Each revocation is POSTed as JSON with the headers
  Ewii-Event: deployment.revoked | svid.revoked
  Ewii-Delivery: <id, the same on every retry>
  Ewii-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>
The receiver recomputes the HMAC with the secret shown by `webhook add` and rejects stale
timestamps. Failed deliveries are retried with backoff (1 s doubling to 10 min) until a 2xx
answer; `webhook deliveries` shows each one's state.";

#[derive(Subcommand)]
pub(crate) enum WebhookCmd {
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

pub(crate) async fn webhook(
    store: &Store,
    cmd: WebhookCmd,
    json: bool,
    now: SystemTime,
) -> Result<()> {
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
