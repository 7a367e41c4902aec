//! The hub's error type. Every message is one line and says what to do
//! next; names taken from input are shown debug-escaped.

use std::path::PathBuf;

/// A failed hub operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A workspace, deployment or agent name breaks the naming rule.
    #[error(
        "invalid {kind} name {name:?}: use 1-32 characters, a lowercase letter first, then \
         lowercase letters, digits or '-'"
    )]
    InvalidName {
        /// What was being named ("workspace", "deployment", "agent").
        kind: &'static str,
        /// The refused name.
        name: String,
    },
    /// A trust domain that is not a valid SPIFFE trust domain name.
    #[error(
        "invalid trust domain {domain:?}: {why}; use lowercase letters, digits, '.', '-' and '_' \
         (e.g. ewii.local or prod.example.com)"
    )]
    InvalidTrustDomain {
        /// The refused trust domain.
        domain: String,
        /// Which rule it breaks.
        why: String,
    },
    /// A workspace with this name exists already.
    #[error(
        "workspace {0:?} already exists; nothing was changed (pick another name, or see \
         `ewii-hub workspace list`)"
    )]
    WorkspaceExists(String),
    /// No workspace has this name.
    #[error(
        "no workspace named {0:?}; see `ewii-hub workspace list`, or create it with \
         `ewii-hub workspace create NAME`"
    )]
    NoWorkspace(String),
    /// A deployment with this name exists already in the workspace.
    #[error(
        "deployment {deployment:?} already exists in workspace {workspace:?}; nothing was \
         changed (for a fresh enrolment token use `ewii-hub deployment token --workspace \
         {workspace} {deployment}`)"
    )]
    DeploymentExists {
        /// The workspace.
        workspace: String,
        /// The deployment.
        deployment: String,
    },
    /// No deployment has this name in the workspace.
    #[error(
        "no deployment named {deployment:?} in workspace {workspace:?}; see `ewii-hub \
         deployment list --workspace {workspace}`"
    )]
    NoDeployment {
        /// The workspace.
        workspace: String,
        /// The deployment.
        deployment: String,
    },
    /// An agent with this name exists already in the workspace.
    #[error(
        "agent {agent:?} already exists in workspace {workspace:?}; nothing was changed (pick \
         another name, or see `ewii-hub agent list --workspace {workspace}`)"
    )]
    AgentExists {
        /// The workspace.
        workspace: String,
        /// The agent.
        agent: String,
    },
    /// A duration such as `--token-ttl` that cannot be read.
    #[error(
        "invalid duration {0:?}: use a whole number followed by s, m, h or d (e.g. 90s, 30m, \
         24h, 7d)"
    )]
    InvalidDuration(String),
    /// The hub master key is missing, malformed or unsafe.
    #[error("hub master key: {0}")]
    MasterKey(String),
    /// A sealed CA key does not open: wrong master key or tampered row.
    #[error(
        "the CA key of workspace {0:?} does not decrypt: the hub master key is not the one it \
         was sealed with (check EWII_HUB_MASTER_KEY), or the row was tampered with"
    )]
    SealedKey(String),
    /// A certificate signing request that is refused.
    #[error("certificate signing request refused: {0}")]
    Csr(String),
    /// A trust bundle that cannot be used.
    #[error("trust bundle refused: {0}")]
    Bundle(String),
    /// Certificate generation or signing failed.
    #[error("certificate issuance failed: {0}")]
    Issue(String),
    /// The system random generator failed.
    #[error("the system random generator failed; the hub cannot create secrets")]
    Random,
    /// A stored row that does not make sense (hand-edited database?).
    #[error("corrupt hub state: {0}")]
    Corrupt(String),
    /// A file operation failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        cause: std::io::Error,
    },
    /// The database refused or failed.
    #[error("hub database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error(
        "cannot apply the hub's schema migrations: {0} (is this database used by another, newer \
         hub?)"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// `serve` could not start (bind, TLS setup).
    #[error("{0}")]
    Serve(String),
    /// Input that is refused, with the reason and the next step.
    #[error("{0}")]
    Invalid(String),
}

/// Why an enrolment token was refused.
///
/// [`TokenError::reason`] is a stable code for the client and metrics; the
/// messages tell the customer what to ask the operator for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No such token (mistyped, or for another hub).
    #[error(
        "unknown enrolment token: check that it was copied whole, or ask the operator for a new \
         one (`ewii-hub deployment token --workspace WORKSPACE DEPLOYMENT`)"
    )]
    Unknown,
    /// The token has been used already: tokens are single use.
    #[error(
        "this enrolment token for deployment {deployment:?} of workspace {workspace:?} has \
         already been used; ask the operator for a new one (`ewii-hub deployment token \
         --workspace {workspace} {deployment}`)"
    )]
    AlreadyUsed {
        /// The token's workspace.
        workspace: String,
        /// The token's deployment.
        deployment: String,
    },
    /// The token is past its expiry.
    #[error(
        "this enrolment token for deployment {deployment:?} of workspace {workspace:?} has \
         expired; ask the operator for a new one (`ewii-hub deployment token --workspace \
         {workspace} {deployment}`)"
    )]
    Expired {
        /// The token's workspace.
        workspace: String,
        /// The token's deployment.
        deployment: String,
    },
    /// The token was issued before its deployment was revoked
    /// (`ewii-hub revoke --deployment`, or the client's goodbye): a revoke
    /// invalidates every outstanding token, so that only a token issued
    /// after it brings the deployment back.
    #[error(
        "this enrolment token for deployment {deployment:?} of workspace {workspace:?} was \
         issued before the deployment was revoked, and the revoke invalidated it; ask the \
         operator for a new one (`ewii-hub deployment token --workspace {workspace} \
         {deployment}`)"
    )]
    Revoked {
        /// The token's workspace.
        workspace: String,
        /// The token's deployment.
        deployment: String,
    },
    /// The store failed while checking the token.
    #[error(transparent)]
    Store(#[from] Error),
}

impl TokenError {
    /// A stable, machine-readable code for this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Unknown => "unknown_token",
            TokenError::AlreadyUsed { .. } => "token_already_used",
            TokenError::Expired { .. } => "token_expired",
            TokenError::Revoked { .. } => "token_revoked",
            TokenError::Store(_) => "store_error",
        }
    }
}

pub(crate) fn io<'a>(
    action: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |cause| Error::Io {
        action,
        path: path.to_owned(),
        cause,
    }
}
