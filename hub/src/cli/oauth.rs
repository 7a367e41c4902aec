//! `ewii-hub workspace oauth`: the authorization server whose access tokens
//! a workspace's agents may sign in with.

use super::print_json;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use ewii_driver_core::SecretString;
use ewii_hub::Store;
use ewii_hub::state::store::OAuthSettings;
use ewii_hub::state::store::oauth::Introspection;
use serde_json::json;

pub(crate) const OAUTH_HELP: &str = "\
Agents of the workspace then sign in with access tokens from ISSUER for AUDIENCE (the hub's
resource URI, what `ewii-hub serve --resource-url` names, e.g. https://hub.example.com/mcp).
Map each token subject to an agent: ewii-hub agent create --workspace W NAME --oauth-subject SUB
Scopes: ewii:read, ewii:write (read + write), ewii:admin (every statement kind) and
ewii:deployment:<name>; they narrow the agent's policy. Static bearers keep working.";

#[derive(Subcommand)]
pub(crate) enum OAuthCmd {
    /// Trust access tokens from an authorization server (replaces any
    /// earlier setting).
    Set {
        /// The workspace.
        workspace: String,
        /// The authorization server's issuer identifier (its metadata's `issuer`).
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// The audience tokens must carry: the hub's resource URI.
        #[arg(long, value_name = "URI")]
        audience: String,
        /// The token claim that names the agent (`sub`, `client_id`, …).
        #[arg(long, default_value = "sub", value_name = "CLAIM")]
        claim: String,
        /// RFC 7662 introspection endpoint, for opaque (non-JWT) tokens.
        #[arg(long, value_name = "URL", requires_all = ["client_id", "client_secret_file"])]
        introspection: Option<String>,
        /// The hub's client id at the authorization server (introspection).
        #[arg(long, value_name = "ID", requires = "introspection")]
        client_id: Option<String>,
        /// A file holding that client's secret (stored sealed with the master key).
        #[arg(long, value_name = "FILE", requires = "introspection")]
        client_secret_file: Option<PathBuf>,
    },
    /// Show a workspace's OAuth setting.
    Show {
        /// The workspace.
        workspace: String,
    },
    /// Stop accepting access tokens for a workspace (static bearers stay).
    Clear {
        /// The workspace.
        workspace: String,
    },
}

fn check_url(what: &str, url: &str) -> Result<()> {
    ewii_hub::audit::egress::check_url(url).with_context(|| format!("--{what}"))?;
    Ok(())
}

pub(crate) async fn run(store: &Store, cmd: OAuthCmd, json: bool, now: SystemTime) -> Result<()> {
    match cmd {
        OAuthCmd::Set {
            workspace,
            issuer,
            audience,
            claim,
            introspection,
            client_id,
            client_secret_file,
        } => {
            check_url("issuer", &issuer)?;
            let introspection = match (introspection, client_id, client_secret_file) {
                (Some(url), Some(client_id), Some(file)) => {
                    check_url("introspection", &url)?;
                    let secret = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let secret = secret.trim();
                    if secret.is_empty() {
                        bail!("{} is empty", file.display());
                    }
                    Some(Introspection {
                        url,
                        client_id,
                        client_secret: SecretString::new(secret.to_owned()),
                    })
                }
                _ => None,
            };
            let settings = OAuthSettings {
                issuer,
                audience,
                claim,
                introspection,
            };
            store
                .set_workspace_oauth(&workspace, &settings, now)
                .await?;
            if json {
                print_json(&settings_json(&workspace, &settings))?;
            } else {
                println!(
                    "Workspace '{workspace}' accepts access tokens from {} for {} (agent named by \
                     claim '{}').",
                    settings.issuer, settings.audience, settings.claim
                );
                println!(
                    "Next: ewii-hub agent create --workspace {workspace} NAME --oauth-subject SUB"
                );
            }
        }
        OAuthCmd::Show { workspace } => {
            store.workspace(&workspace).await?;
            let config = store
                .oauth_configs()
                .await?
                .into_iter()
                .find(|c| c.workspace == workspace);
            match (config, json) {
                (Some(c), true) => print_json(&settings_json(&workspace, &c.settings))?,
                (None, true) => print_json(&json!(null))?,
                (Some(c), false) => {
                    let s = &c.settings;
                    println!("issuer         {}", s.issuer);
                    println!("audience       {}", s.audience);
                    println!("claim          {}", s.claim);
                    if let Some(i) = &s.introspection {
                        println!("introspection  {} (client {})", i.url, i.client_id);
                    }
                }
                (None, false) => {
                    println!("Workspace '{workspace}' accepts no OAuth access tokens.")
                }
            }
        }
        OAuthCmd::Clear { workspace } => {
            let had = store.clear_workspace_oauth(&workspace).await?;
            if json {
                print_json(&json!({ "workspace": workspace, "cleared": had }))?;
            } else if had {
                println!("Workspace '{workspace}' no longer accepts OAuth access tokens.");
            } else {
                println!("Workspace '{workspace}' accepted no OAuth access tokens.");
            }
        }
    }
    Ok(())
}

fn settings_json(workspace: &str, s: &OAuthSettings) -> serde_json::Value {
    json!({
        "workspace": workspace,
        "issuer": s.issuer,
        "audience": s.audience,
        "claim": s.claim,
        "introspection": s.introspection.as_ref().map(|i| json!({
            "url": i.url,
            "client_id": i.client_id,
        })),
    })
}
