//! `ewii-hub policy`: agents' policies.

use super::print_json;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use ewii_hub::Store;
use ewii_hub::gateway::policy::Policy;
use serde_json::json;

pub(crate) const POLICY_HELP: &str = "\
A policy file (TOML); every key is optional, a missing key allows everything of its kind:
  deployments = [\"eu\"]                 # deployments of the workspace this agent may call
  databases   = [\"shop\", \"us.crm\"]     # databases (\"db\" anywhere, \"deployment.db\" in one)
  tools       = [\"query\", \"list_tables\", \"describe_table\"]
  statements  = [\"read\"]               # read, write, ddl, other
  row_limit   = 1000                   # caps each query's rows
  rate_limit  = { calls = 60, per_seconds = 60 }
A denied call comes back to the agent as an error result naming the rule, and is audited.";

#[derive(Subcommand)]
pub(crate) enum PolicyCmd {
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

pub(crate) fn read_policy(file: &std::path::Path) -> Result<(Policy, String)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the policy file {}", file.display()))?;
    let policy =
        Policy::from_toml(&text).with_context(|| format!("policy file {}", file.display()))?;
    Ok((policy, text))
}

pub(crate) fn check_policy(file: &std::path::Path, json: bool) -> Result<()> {
    let (p, _) = read_policy(file)?;
    if json {
        print_json(&json!({ "valid": true, "summary": p.summary() }))
    } else {
        println!("{}: valid. {}", file.display(), p.summary());
        Ok(())
    }
}

pub(crate) fn policy_summary(text: Option<&str>) -> String {
    match text.map(Policy::from_toml) {
        None => "unrestricted".into(),
        Some(Ok(p)) => p.summary(),
        Some(Err(e)) => format!("unreadable ({e}); every call is denied until it is fixed"),
    }
}

pub(crate) async fn policy(store: &Store, cmd: PolicyCmd, json: bool) -> Result<()> {
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
