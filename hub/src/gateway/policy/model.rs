//! The policy model: its TOML form, validation and summary.

use super::evaluate::{Call, Decision, Rule, split_tool, standard_suffixes};
use std::fmt;

use ewii_driver_core::schema::{StandardTool, validate_database_name, validate_tool_name};
use ewii_driver_core::{StatementClass, StatementClasses};
use serde::{Deserialize, Serialize};
/// The wildcard entry of `deployments`, `databases` and `tools`.
pub(super) const ANY: &str = "*";

/// An agent's policy, from TOML. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Deployments the agent may call, by name, or `"*"`; `None` is every
    /// deployment of the agent's workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployments: Option<Vec<String>>,
    /// Databases the agent may use: `"db"` (in any deployment),
    /// `"deployment.db"` (in that deployment only) or `"*"`; `None` is all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<String>>,
    /// Tools the agent may call: standard suffixes (`"query"`,
    /// `"list_tables"`…), `"*"`, or the exact name of a non-standard tool;
    /// `None` is all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Statement kinds the agent may run; all four when omitted.
    #[serde(default = "StatementKind::all")]
    pub statements: Vec<StatementKind>,
    /// Most rows a query may return to the agent; `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_limit: Option<u32>,
    /// Most bytes of result data a call may return to the agent; `None` is
    /// no limit beyond the adapter's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Most calls per time window; `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// The kind of a statement, as a policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// Reads data only.
    Read,
    /// Changes rows.
    Write,
    /// Changes the schema.
    Ddl,
    /// Anything else, including what cannot be classified.
    Other,
}

impl StatementKind {
    /// Every kind, in the order policies list them.
    pub const ALL: [StatementKind; 4] = [
        StatementKind::Read,
        StatementKind::Write,
        StatementKind::Ddl,
        StatementKind::Other,
    ];

    /// Every kind, as a list (the default of [`Policy::statements`]).
    pub fn all() -> Vec<StatementKind> {
        StatementKind::ALL.to_vec()
    }

    /// The name used in policy files: `read`, `write`, `ddl`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Write => "write",
            StatementKind::Ddl => "ddl",
            StatementKind::Other => "other",
        }
    }

    /// "a read", "a write"… for messages.
    pub(super) fn with_article(self) -> &'static str {
        match self {
            StatementKind::Read => "a read",
            StatementKind::Write => "a write",
            StatementKind::Ddl => "DDL",
            StatementKind::Other => "of kind `other`",
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StatementKind {
    /// The driver-side class of the same name.
    pub fn class(self) -> StatementClass {
        match self {
            StatementKind::Read => StatementClass::Read,
            StatementKind::Write => StatementClass::Write,
            StatementKind::Ddl => StatementClass::Ddl,
            StatementKind::Other => StatementClass::Other,
        }
    }
}

impl From<StatementClass> for StatementKind {
    fn from(class: StatementClass) -> Self {
        match class {
            StatementClass::Read => StatementKind::Read,
            StatementClass::Write => StatementKind::Write,
            StatementClass::Ddl => StatementKind::Ddl,
            StatementClass::Other => StatementKind::Other,
        }
    }
}

/// At most `calls` calls per `per_seconds` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Calls allowed per window (also the largest burst); at least 1.
    pub calls: u32,
    /// Window length in seconds; at least 1.
    pub per_seconds: u32,
}

/// A policy the hub cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not TOML, or does not have the shape of a policy.
    #[error(
        "the policy file is not valid: {message}. A policy may only set deployments, databases, tools, statements (read, write, ddl, other), \
         row_limit, max_bytes and rate_limit = {{ calls = N, per_seconds = N }}."
    )]
    Toml {
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A limit is zero.
    #[error(
        "`{field}` is 0 in the policy, which would refuse everything; set it to 1 or more, or \
         remove `{field}` to lift the limit"
    )]
    ZeroLimit {
        /// The field, e.g. `row_limit` or `rate_limit.calls`.
        field: &'static str,
    },
    /// An entry of `deployments`, `databases` or `tools` is malformed.
    #[error("`{field}` entry \"{entry}\" is not valid: {why}")]
    BadEntry {
        /// The list the entry is in.
        field: &'static str,
        /// The entry as written.
        entry: String,
        /// What is wrong and how to write it.
        why: String,
    },
}

impl Default for Policy {
    fn default() -> Self {
        Policy::unrestricted()
    }
}

impl Policy {
    /// The policy that allows everything (the policy of an agent without
    /// one).
    pub fn unrestricted() -> Policy {
        Policy {
            deployments: None,
            databases: None,
            tools: None,
            statements: StatementKind::all(),
            row_limit: None,
            max_bytes: None,
            rate_limit: None,
        }
    }

    /// Parses and validates a policy file.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            // One line: where, then what (toml's own text adds a snippet).
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            PolicyError::Toml {
                message: format!(
                    "{}{}",
                    at.unwrap_or_default(),
                    e.message().trim().replace('\n', " ")
                ),
            }
        })?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks limits and names; [`Policy::from_toml`] calls it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.row_limit == Some(0) {
            return Err(PolicyError::ZeroLimit { field: "row_limit" });
        }
        if self.max_bytes == Some(0) {
            return Err(PolicyError::ZeroLimit { field: "max_bytes" });
        }
        if let Some(rate) = &self.rate_limit {
            if rate.calls == 0 {
                return Err(PolicyError::ZeroLimit {
                    field: "rate_limit.calls",
                });
            }
            if rate.per_seconds == 0 {
                return Err(PolicyError::ZeroLimit {
                    field: "rate_limit.per_seconds",
                });
            }
        }
        let bad = |field: &'static str, entry: &str, why: String| PolicyError::BadEntry {
            field,
            entry: entry.to_owned(),
            why,
        };
        for entry in self.deployments.iter().flatten() {
            if entry != ANY && !is_deployment_name(entry) {
                return Err(bad(
                    "deployments",
                    entry,
                    "a deployment name is 1 to 32 characters a-z, 0-9 and '-', starting with a \
                     letter (or \"*\" for every deployment)"
                        .into(),
                ));
            }
        }
        for entry in self.databases.iter().flatten() {
            if entry == ANY {
                continue;
            }
            let (deployment, database) = match entry.split_once('.') {
                Some((d, db)) => (Some(d), db),
                None => (None, entry.as_str()),
            };
            if let Some(d) = deployment
                && !is_deployment_name(d)
            {
                return Err(bad(
                    "databases",
                    entry,
                    format!(
                        "\"{d}\" is not a deployment name; write \"database\" for a database in \
                         any deployment or \"deployment.database\" for one deployment"
                    ),
                ));
            }
            validate_database_name(database).map_err(|e| {
                bad(
                    "databases",
                    entry,
                    format!(
                        "{e}; write \"database\" for a database in any deployment or \
                         \"deployment.database\" for one deployment"
                    ),
                )
            })?;
        }
        for entry in self.tools.iter().flatten() {
            if entry == ANY || StandardTool::ALL.iter().any(|t| t.suffix() == entry) {
                continue;
            }
            if let Some((database, suffix)) = split_tool(entry) {
                return Err(bad(
                    "tools",
                    entry,
                    format!(
                        "tools are listed by suffix; list \"{suffix}\" in `tools` and \
                         \"{database}\" in `databases` instead"
                    ),
                ));
            }
            validate_tool_name(entry).map_err(|e| {
                bad(
                    "tools",
                    entry,
                    format!(
                        "{e}; list standard tools by suffix ({}) or \"*\"",
                        standard_suffixes().join(", ")
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// A policy that allows nothing (used when an agent's stored policy no
    /// longer parses: its calls are denied and its tool list is empty).
    pub fn nothing() -> Policy {
        Policy {
            deployments: Some(Vec::new()),
            ..Policy::unrestricted()
        }
    }

    /// Whether `tools/list` shows deployment `deployment`'s adapter tool
    /// `tool` to this agent: everything but the statement rules (which
    /// depend on each call's SQL) must allow it.
    pub fn may_see(&self, deployment: &str, tool: &str) -> bool {
        match self.evaluate(&Call {
            deployment,
            tool,
            arguments: None,
            dialect: None,
            accepts_max_bytes: false,
        }) {
            Decision::Allow { .. } => true,
            Decision::Deny { rule, .. } => matches!(rule, Rule::Statements | Rule::RowLimit),
        }
    }

    /// One line for CLI output, listing only what is restricted, e.g.
    /// `deployments: eu; statements: read; row_limit: 100; rate_limit:
    /// 60/60s`, or `unrestricted`.
    pub fn summary(&self) -> String {
        let list = |items: &[String]| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        let mut parts = Vec::new();
        if let Some(v) = &self.deployments {
            parts.push(format!("deployments: {}", list(v)));
        }
        if let Some(v) = &self.databases {
            parts.push(format!("databases: {}", list(v)));
        }
        if let Some(v) = &self.tools {
            parts.push(format!("tools: {}", list(v)));
        }
        if self.statements_restricted() {
            let kinds: Vec<String> = self.statements.iter().map(|k| k.to_string()).collect();
            parts.push(format!("statements: {}", list(&kinds)));
        }
        if let Some(n) = self.row_limit {
            parts.push(format!("row_limit: {n}"));
        }
        if let Some(n) = self.max_bytes {
            parts.push(format!("max_bytes: {n}"));
        }
        if let Some(r) = &self.rate_limit {
            parts.push(format!("rate_limit: {}/{}s", r.calls, r.per_seconds));
        }
        if parts.is_empty() {
            "unrestricted".to_owned()
        } else {
            parts.join("; ")
        }
    }

    /// The statement classes sent with every forwarded call
    /// (`_meta["ewii/statements"]`).
    pub fn allowed_statements(&self) -> StatementClasses {
        StatementClasses::from_classes(self.statements.iter().map(|k| k.class()))
    }

    /// Whether some statement kind is not allowed.
    pub(super) fn statements_restricted(&self) -> bool {
        !StatementKind::ALL
            .iter()
            .all(|k| self.statements.contains(k))
    }
}

/// Whether `name` follows the deployment-name rule of the catalog
/// contract (`^[a-z][a-z0-9-]{0,31}$`).
fn is_deployment_name(name: &str) -> bool {
    ewii_tools_schema::validate_deployment_name(name).is_ok()
}
