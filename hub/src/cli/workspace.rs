//! `ewii-hub workspace`: workspaces, their CAs and trust bundles.

use super::{print_json, rfc3339};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::Subcommand;
use ewii_hub::state::bundle;
use ewii_hub::state::names;
use ewii_hub::{Store, Workspace};
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum WorkspaceCmd {
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
    /// OAuth: the authorization server whose access tokens the
    /// workspace's agents may sign in with.
    #[command(subcommand, name = "oauth", after_help = super::oauth::OAUTH_HELP)]
    OAuth(super::oauth::OAuthCmd),
}

pub(crate) async fn run(
    store: &Store,
    cmd: WorkspaceCmd,
    json: bool,
    now: SystemTime,
) -> Result<()> {
    match cmd {
        WorkspaceCmd::Create { name, trust_domain } => {
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
        WorkspaceCmd::List => {
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
        WorkspaceCmd::Bundle { name, pem } => {
            let b = store.trust_bundle(&name).await?;
            if pem {
                print!("{}", bundle::to_pem(&b.own));
            } else {
                let seq = u64::try_from(b.workspace.bundle_sequence).unwrap_or(0);
                print_json(&bundle::to_jwks(&b.own, seq)?)?;
            }
        }
        WorkspaceCmd::OAuth(cmd) => super::oauth::run(store, cmd, json, now).await?,
        WorkspaceCmd::ImportBundle { name, file } => {
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
    }
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
