//! Agents: credentials (stored as SHA-256) and policies.

use super::{Agent, Store, is_unique_violation, unix};
use std::time::SystemTime;

use crate::Error;
use crate::state::names::{self};
use crate::state::tokens::{self, secret_hash};
use ewii_driver_core::SecretString;

/// `SELECT` of [`Agent`]s from `agents a JOIN workspaces w`, then the rest
/// of the statement.
macro_rules! select_agents {
    ($rest:literal) => {
        concat!(
            "SELECT a.id, w.name AS workspace, a.name, a.created_at, a.policy, a.oauth_subject \
             FROM agents a JOIN workspaces w ON w.id = a.workspace_id ",
            $rest
        )
    };
}

impl Store {
    /// Creates an agent and returns its bearer credential (shown once;
    /// only its SHA-256 is stored).
    pub async fn create_agent(
        &self,
        workspace: &str,
        name: &str,
        now: SystemTime,
    ) -> Result<(Agent, SecretString), Error> {
        self.create_agent_with_policy(workspace, name, None, now)
            .await
    }

    /// Creates an agent with a policy (TOML, validated by the caller).
    pub async fn create_agent_with_policy(
        &self,
        workspace: &str,
        name: &str,
        policy: Option<&str>,
        now: SystemTime,
    ) -> Result<(Agent, SecretString), Error> {
        self.insert_agent(workspace, name, policy, None, now).await
    }

    /// Inserts an agent in one statement (with its OAuth subject, if any);
    /// the agent and its static credential.
    async fn insert_agent(
        &self,
        workspace: &str,
        name: &str,
        policy: Option<&str>,
        oauth_subject: Option<&str>,
        now: SystemTime,
    ) -> Result<(Agent, SecretString), Error> {
        names::validate_name("agent", name)?;
        if let Some(s) = oauth_subject {
            validate_subject(s)?;
        }
        let ws = self.workspace(workspace).await?;
        let exists = || Error::AgentExists {
            workspace: workspace.to_owned(),
            agent: name.to_owned(),
        };
        let taken = sqlx::query("SELECT id FROM agents WHERE workspace_id = $1 AND name = $2")
            .bind(&ws.id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Err(exists());
        }
        let agent = Agent {
            id: tokens::random_id()?,
            workspace: ws.name.clone(),
            name: name.to_owned(),
            created_at: unix(now),
            policy: policy.map(str::to_owned),
            oauth_subject: oauth_subject.map(str::to_owned),
            oauth: None,
        };
        let credential = tokens::new_agent_credential()?;
        let inserted = sqlx::query(
            "INSERT INTO agents (id, workspace_id, name, credential_hash, created_at, policy, \
             oauth_subject) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&agent.id)
        .bind(&ws.id)
        .bind(&agent.name)
        .bind(secret_hash(credential.expose()))
        .bind(agent.created_at)
        .bind(&agent.policy)
        .bind(&agent.oauth_subject)
        .execute(&self.pool)
        .await;
        match inserted {
            // The name, or the OAuth subject, is taken.
            Err(e) if is_unique_violation(&e) && oauth_subject.is_some() => {
                Err(Error::Invalid(format!(
                    "workspace {workspace:?} already has an agent named {name:?} or one with \
                     OAuth subject {:?}",
                    oauth_subject.unwrap_or_default()
                )))
            }
            Err(e) if is_unique_violation(&e) => Err(exists()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok((agent, credential)),
        }
    }

    /// The agents of a workspace, by name.
    pub async fn list_agents(&self, workspace: &str) -> Result<Vec<Agent>, Error> {
        let ws = self.workspace(workspace).await?;
        Ok(
            sqlx::query_as::<_, Agent>(select_agents!("WHERE a.workspace_id = $1 ORDER BY a.name"))
                .bind(&ws.id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Sets (or with `None` removes) an agent's policy (TOML, validated by
    /// the caller). Takes effect on the agent's next call.
    pub async fn set_agent_policy(
        &self,
        workspace: &str,
        agent: &str,
        policy: Option<&str>,
    ) -> Result<Agent, Error> {
        let ws = self.workspace(workspace).await?;
        let updated =
            sqlx::query("UPDATE agents SET policy = $1 WHERE workspace_id = $2 AND name = $3")
                .bind(policy)
                .bind(&ws.id)
                .bind(agent)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(Error::Invalid(format!(
                "no agent named {agent:?} in workspace {workspace:?}; see `ewii-hub agent list \
                 --workspace {workspace}`"
            )));
        }
        self.reload_agent(workspace, agent).await
    }

    /// An agent just updated, read back.
    async fn reload_agent(&self, workspace: &str, agent: &str) -> Result<Agent, Error> {
        self.list_agents(workspace)
            .await?
            .into_iter()
            .find(|a| a.name == agent)
            .ok_or_else(|| Error::Corrupt("the agent vanished while it was updated".into()))
    }

    /// The agent whose credential is `bearer`, if any. The lookup is by
    /// SHA-256, so the comparison never touches the secret itself.
    pub async fn authenticate_agent(&self, bearer: &str) -> Result<Option<Agent>, Error> {
        if !bearer.starts_with(tokens::AGENT_CREDENTIAL_PREFIX) {
            return Ok(None);
        }
        Ok(sqlx::query_as::<_, Agent>(select_agents!(
            "WHERE a.credential_hash = $1 AND a.disabled_at IS NULL"
        ))
        .bind(tokens::secret_hash(bearer))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Creates an agent that signs in with OAuth access tokens whose
    /// workspace claim is `subject`. It gets no usable static credential:
    /// the stored hash is of a random value nobody is shown.
    pub async fn create_oauth_agent(
        &self,
        workspace: &str,
        name: &str,
        subject: &str,
        policy: Option<&str>,
        now: SystemTime,
    ) -> Result<Agent, Error> {
        let (agent, _never_shown) = self
            .insert_agent(workspace, name, policy, Some(subject), now)
            .await?;
        Ok(agent)
    }

    /// Sets (or with `None` removes) the OAuth subject that names an agent.
    /// A subject already naming another agent of the workspace is refused.
    pub async fn set_agent_oauth_subject(
        &self,
        workspace: &str,
        agent: &str,
        subject: Option<&str>,
    ) -> Result<Agent, Error> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        let ws = self.workspace(workspace).await?;
        let updated = sqlx::query(
            "UPDATE agents SET oauth_subject = $1 WHERE workspace_id = $2 AND name = $3",
        )
        .bind(subject)
        .bind(&ws.id)
        .bind(agent)
        .execute(&self.pool)
        .await;
        let updated = match updated {
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Invalid(format!(
                    "another agent of workspace {workspace:?} already has OAuth subject \
                     {subject:?}"
                )));
            }
            r => r?.rows_affected(),
        };
        if updated == 0 {
            return Err(no_agent(workspace, agent));
        }
        self.reload_agent(workspace, agent).await
    }

    /// Disables an agent: its next request is refused, whatever credential
    /// it presents (static bearer or OAuth token). Not undone.
    pub async fn disable_agent(
        &self,
        workspace: &str,
        agent: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let ws = self.workspace(workspace).await?;
        let updated = sqlx::query(
            "UPDATE agents SET disabled_at = $1 \
             WHERE workspace_id = $2 AND name = $3 AND disabled_at IS NULL",
        )
        .bind(unix(now))
        .bind(&ws.id)
        .bind(agent)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(no_agent(workspace, agent));
        }
        Ok(())
    }

    /// The enabled agent of `workspace` whose OAuth subject is `subject`.
    pub async fn oauth_agent(
        &self,
        workspace: &str,
        subject: &str,
    ) -> Result<Option<Agent>, Error> {
        Ok(sqlx::query_as::<_, Agent>(select_agents!(
            "WHERE w.name = $1 AND a.oauth_subject = $2 AND a.disabled_at IS NULL"
        ))
        .bind(workspace)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?)
    }
}

fn no_agent(workspace: &str, agent: &str) -> Error {
    Error::Invalid(format!(
        "no enabled agent named {agent:?} in workspace {workspace:?}; see `ewii-hub agent list \
         --workspace {workspace}`"
    ))
}

/// A subject is a claim value: non-empty, at most 255 bytes, no control
/// characters (it is shown in listings and audit records).
fn validate_subject(subject: &str) -> Result<(), Error> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "an OAuth subject is 1 to 255 bytes without control characters".into(),
        ));
    }
    Ok(())
}
