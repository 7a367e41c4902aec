//! `ewii-hub agent`: agents' bearer credentials.

use super::{print_json, rfc3339};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use clap::Subcommand;
use ewii_hub::gateway::policy::Policy;
use ewii_hub::{Agent, Store};
use serde_json::json;

use super::policy::{policy_summary, read_policy};

#[derive(Subcommand)]
pub(crate) enum AgentCmd {
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
        /// The agent signs in with OAuth access tokens whose workspace claim
        /// (`ewii-hub workspace oauth set --claim`) is SUB, instead of a
        /// static bearer credential (none is printed).
        #[arg(long, value_name = "SUB")]
        oauth_subject: Option<String>,
    },
    /// Disable an agent: its next request is refused, whatever credential
    /// it presents (static bearer or OAuth token).
    Disable {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The agent.
        name: String,
    },
    /// List a workspace's agents.
    List {
        /// The workspace.
        #[arg(long, value_name = "W")]
        workspace: String,
    },
}

pub(crate) async fn run(store: &Store, cmd: AgentCmd, json: bool, now: SystemTime) -> Result<()> {
    match cmd {
        AgentCmd::Disable { workspace, name } => {
            store.disable_agent(&workspace, &name, now).await?;
            if json {
                print_json(&json!({ "workspace": workspace, "name": name, "disabled": true }))?;
            } else {
                println!(
                    "Disabled agent '{name}' of workspace '{workspace}': refused from its next request on."
                );
            }
        }
        AgentCmd::Create {
            workspace,
            name,
            policy,
            oauth_subject,
        } => {
            let policy = policy.as_deref().map(read_policy).transpose()?;
            if let Some(subject) = oauth_subject {
                let a = store
                    .create_oauth_agent(
                        &workspace,
                        &name,
                        &subject,
                        policy.as_ref().map(|p| p.1.as_str()),
                        now,
                    )
                    .await?;
                return print_oauth_agent(&a, &subject, policy.as_ref().map(|p| &p.0), json);
            }
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
        AgentCmd::List { workspace } => {
            let all = store.list_agents(&workspace).await?;
            if json {
                print_json(&json!(
                    all.iter()
                        .map(|a| json!({
                            "workspace": a.workspace,
                            "name": a.name,
                            "created_at": rfc3339(a.created_at),
                            "policy": policy_summary(a.policy.as_deref()),
                            "oauth_subject": a.oauth_subject,
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
    }
    Ok(())
}

/// What `agent create --oauth-subject` prints.
fn print_oauth_agent(a: &Agent, subject: &str, policy: Option<&Policy>, json: bool) -> Result<()> {
    let summary = policy.map_or_else(|| "unrestricted".to_string(), Policy::summary);
    if json {
        print_json(&json!({
            "workspace": a.workspace,
            "name": a.name,
            "oauth_subject": subject,
            "created_at": rfc3339(a.created_at),
            "policy": summary,
        }))
    } else {
        println!(
            "Created agent '{}' in workspace '{}': it signs in with OAuth access tokens whose \
             subject is {subject:?} (no static credential).",
            a.name, a.workspace
        );
        println!("Policy: {summary} (narrowed by each token's scopes)");
        Ok(())
    }
}
