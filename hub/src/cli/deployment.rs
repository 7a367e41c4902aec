//! `ewii-hub deployment`: deployments and their enrolment tokens.

use super::{print_json, rfc3339};
use std::time::SystemTime;

use anyhow::Result;
use clap::Subcommand;
use ewii_hub::state::names;
use ewii_hub::{Deployment, Store};
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum DeploymentCmd {
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

pub(crate) async fn run(
    store: &Store,
    cmd: DeploymentCmd,
    json: bool,
    now: SystemTime,
) -> Result<()> {
    match cmd {
        DeploymentCmd::Create {
            workspace,
            name,
            token_ttl,
        } => {
            let ttl = names::parse_duration(&token_ttl)?;
            let (d, t) = store.create_deployment(&workspace, &name, ttl, now).await?;
            print_token(json, Some(&d), &workspace, &name, &t)?;
        }
        DeploymentCmd::Token {
            workspace,
            name,
            token_ttl,
        } => {
            let ttl = names::parse_duration(&token_ttl)?;
            let t = store
                .issue_enrolment_token(&workspace, &name, ttl, now)
                .await?;
            print_token(json, None, &workspace, &name, &t)?;
        }
        DeploymentCmd::List { workspace } => {
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
    }
    Ok(())
}

fn deployment_json(d: &Deployment) -> serde_json::Value {
    json!({
        "workspace": d.workspace,
        "name": d.name,
        "spiffe_id": d.spiffe_id.to_string(),
        "created_at": rfc3339(d.created_at),
    })
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
