//! Agent policies: what each agent may do through the hub.
//!
//! Every agent of a workspace can carry a policy. The hub evaluates it on
//! every `tools/call`, *before* the call is forwarded to the customer's
//! adapter; a refused call never leaves the hub and the agent receives an
//! MCP error result (`isError: true`) whose text names the rule that refused
//! it, says what the agent may do instead and how the operator changes the
//! policy. An agent without a policy is unrestricted.
//!
//! A policy is a small TOML file, set with
//! `ewii-hub policy set --workspace <workspace> <agent> <file>`:
//!
//! ```toml
//! # Deployments the agent may call; omit for every deployment of the
//! # workspace. "*" matches any deployment.
//! deployments = ["eu", "us"]
//!
//! # Databases: "shop" is the database `shop` in any allowed deployment,
//! # "eu.analytics" is `analytics` in deployment `eu` only. Omit for all.
//! databases = ["shop", "eu.analytics"]
//!
//! # Standard tools, by suffix: query, list_schemas, list_tables,
//! # describe_table, explain. "*" is every tool. Omit for all.
//! tools = ["query", "list_tables", "describe_table"]
//!
//! # Statement kinds the agent may run: read, write, ddl, other.
//! # Omit for all four.
//! statements = ["read"]
//!
//! # At most this many rows per query result.
//! row_limit = 500
//!
//! # At most this many bytes of result data per call.
//! max_bytes = 65536
//!
//! # At most `calls` tool calls per `per_seconds` seconds.
//! rate_limit = { calls = 60, per_seconds = 60 }
//! ```
//!
//! Every field is optional; an empty file is the unrestricted policy. An
//! empty list (`tools = []`) allows nothing of that kind. Unknown fields,
//! unknown statement kinds, malformed names and zero limits are refused when
//! the policy is set, with the line and column of the mistake.
//!
//! # Rules
//!
//! Agents see tools named `<deployment>_<database>_<suffix>`; the hub strips
//! the deployment and evaluates the rules in this order, stopping at the
//! first refusal:
//!
//! 1. **`rate_limit`**: at most `calls` calls per `per_seconds` seconds per
//!    agent, as a token bucket: a burst of `calls` is allowed at once, then
//!    the allowance refills evenly over `per_seconds`. A call refused by
//!    this rule is told how long to wait and uses up nothing; a call refused
//!    by a later rule still counts.
//! 2. **`deployments`**: the call's deployment must be listed (or `"*"`).
//! 3. **`databases`**: the tool's database must be listed, either alone
//!    (any deployment) or as `deployment.database`. A tool that does not end
//!    in a standard suffix names no database the hub can check, so it is
//!    refused unless `databases` is omitted or contains `"*"`.
//! 4. **`tools`**: the tool's suffix must be listed (or `"*"`). A tool that
//!    is not a standard tool is allowed only if `tools` is omitted, contains
//!    `"*"` or lists the tool's exact name as the adapter advertises it
//!    (without the deployment prefix).
//! 5. **`statements`**: the statement's kind must be listed. The kind of a
//!    `query` is the kind of its `sql`; `explain` is a read unless
//!    `analyze` is set (EXPLAIN ANALYZE runs the statement), then it is the
//!    kind of its `sql`; `list_schemas`, `list_tables` and `describe_table`
//!    are reads; any other tool is `other`. The kinds are:
//!    - `read`: a query that only reads (SELECT, SHOW, an EXPLAIN of a
//!      read);
//!    - `write`: changes rows (INSERT, UPDATE, DELETE, MERGE, COPY, a
//!      data-modifying CTE, SELECT … INTO, a locking clause);
//!    - `ddl`: changes the schema (CREATE, ALTER, DROP, TRUNCATE…);
//!    - `other`: everything else: session settings, transaction control,
//!      procedures, functions with side effects (`pg_terminate_backend`,
//!      `load_extension`…), stacked statements, MySQL executable comments,
//!      and any statement that cannot be parsed.
//!
//!    The statement is classified once, in the dialect of the tool's
//!    database as the live deployment advertises it
//!    (`_meta["ewii/dialect"]` on each tool: `sqlite`, `postgres`, `mysql`).
//!    There is no fallback across dialects: engines disagree on comment
//!    nesting, quoting and syntax the parser does not know, and the hub
//!    must judge the statement the engine will run. A tool without a
//!    dialect, an unknown dialect, a statement that does not parse or that
//!    cannot be classified (stacked statements, MySQL executable comments)
//!    is `other`, so a policy of `statements = ["read"]` refuses it. The
//!    audit record's `statement_class` is the class of this one
//!    classification, for allowed and denied calls alike.
//!
//!    The allowed kinds travel with every forwarded call, inside the
//!    end-to-end encrypted channel, as `_meta["ewii/statements"]` (all four
//!    for an unrestricted agent). The adapter's driver classifies the
//!    statement again in the same dialect and refuses a class not in the
//!    list, refuses what it cannot parse unless `other` is listed, and runs
//!    a call that may only read (none of `write`, `ddl`, `other`) in the
//!    engine's read-only mode even on a read-write database: a
//!    user-defined function that writes then fails in the engine.
//! 6. **`row_limit`**: a cap, not a refusal. A `query` is forwarded with
//!    `max_rows` lowered to the limit (or set to it, when the agent asked
//!    for no limit); the agent pages through longer results with `offset`.
//!    A result that still carries more rows is withheld and refused.
//! 7. **`max_bytes`**: a cap on the data the agent receives, not a refusal.
//!    A `query` is forwarded with `max_bytes` lowered to the limit (when the
//!    tool's input schema accepts `max_bytes`), so the adapter stops
//!    reading early. Whatever the adapter returns, the hub cuts the result
//!    before releasing it: trailing rows are dropped until the rows' JSON
//!    fits in `max_bytes`, and `truncated` is set (`reason: "max_bytes"`,
//!    `limit`, `next_offset`, a message naming the policy's `max_bytes`),
//!    with the text content rebuilt from the cut result plus the usual
//!    `TRUNCATED:` notice. A single row over the limit (say a `json_agg`
//!    of a whole table) is withheld, not passed whole. A result without
//!    rows (a plan, a table description) over the limit is withheld with
//!    the same notice, and a text-only result is cut to the limit.
//!
//! The statement classification is a policy decision made at the hub; it
//! does not replace the adapter's own read-only enforcement, which still
//! applies to read-only databases whatever the policy says.
//!
//! # Audit
//!
//! [`redact_literals`] turns a statement into a form fit for logs: every
//! literal value (string, number, boolean…) becomes `?`, as does a
//! double-quoted name used as a value (MySQL reads `"secret"` as a string),
//! while table and column names and placeholders (`$1`, `?`) stay.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ewii_driver_core::schema::{StandardTool, validate_database_name, validate_tool_name};
use ewii_driver_core::{
    SqlDialect, StatementClass, StatementClasses, ToolError, byte_truncation, classify, row_size,
};
use rmcp::model::{CallToolResult, ContentBlock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlparser::ast::{Expr, Value as SqlValue, ValueWithSpan, VisitMut, VisitorMut};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// How an operator changes a policy; appended to every refusal.
pub const POLICY_SET_HINT: &str = "The operator changes this agent's policy with \
     `ewii-hub policy set --workspace <workspace> <agent> <policy.toml>`.";

/// What [`redact_literals`] returns for a statement it cannot parse.
pub const UNPARSABLE_REDACTED: &str = "<statement redacted: unparsable>";

/// The wildcard entry of `deployments`, `databases` and `tools`.
const ANY: &str = "*";

/// Longest deployment name (the hub's naming rule).
const MAX_DEPLOYMENT_NAME_LEN: usize = 32;

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
    fn with_article(self) -> &'static str {
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
    fn statements_restricted(&self) -> bool {
        !StatementKind::ALL
            .iter()
            .all(|k| self.statements.contains(k))
    }

    /// Decides one call: every rule but `rate_limit` (see [`RateLimiter`]).
    /// Pure: the same policy and call always give the same decision.
    pub fn evaluate(&self, call: &Call<'_>) -> Decision {
        let split = split_tool(call.tool);
        let database = split.map(|(db, _)| db.to_owned());
        let deny = |rule: Rule, what: String, statement: Option<String>| Decision::Deny {
            rule,
            message: format!("agent policy rule `{rule}`: {what}. {POLICY_SET_HINT}"),
            database: database.clone(),
            statement,
            class: None,
        };

        if let Some(allowed) = &self.deployments
            && !allowed.iter().any(|d| d == ANY || d == call.deployment)
        {
            return deny(
                Rule::Deployments,
                format!(
                    "this agent may call {}; deployment `{}` is not one of them",
                    allowed_phrase("deployment", "deployments", allowed),
                    call.deployment
                ),
                None,
            );
        }

        if let Some(allowed) = &self.databases
            && !allowed.iter().any(|e| e == ANY)
        {
            match split {
                Some((db, _)) => {
                    let listed = allowed.iter().any(|e| match e.split_once('.') {
                        Some((dep, name)) => dep == call.deployment && name == db,
                        None => e == db,
                    });
                    if !listed {
                        return deny(
                            Rule::Databases,
                            format!(
                                "this agent may use {}; database `{db}` of deployment `{}` is \
                                 not one of them",
                                allowed_phrase("database", "databases", allowed),
                                call.deployment
                            ),
                            None,
                        );
                    }
                }
                None => {
                    return deny(
                        Rule::Databases,
                        format!(
                            "this agent may use {}; tool `{}` is not a standard tool, so the hub \
                             cannot tell which database it uses",
                            allowed_phrase("database", "databases", allowed),
                            call.tool
                        ),
                        None,
                    );
                }
            }
        }

        if let Some(allowed) = &self.tools {
            let listed = allowed.iter().any(|t| match split {
                Some((_, suffix)) => t == ANY || t == suffix,
                None => t == ANY || t == call.tool,
            });
            if !listed {
                let what = match split {
                    Some((_, suffix)) => format!("`{}` ({suffix})", call.tool),
                    None => format!("`{}`", call.tool),
                };
                return deny(
                    Rule::Tools,
                    format!(
                        "this agent may call {}; tool {what} is not one of them",
                        allowed_phrase("tool", "tools", allowed)
                    ),
                    None,
                );
            }
        }

        let suffix = split.map(|(_, s)| s);
        let sql = call
            .arguments
            .and_then(|a| a.get("sql"))
            .and_then(Value::as_str);
        let statement = sql.map(str::to_owned);
        // (kind, "this statement is …" for a refusal)
        let classified = match suffix {
            Some("query") => sql.map(|s| classify_for_policy(s, call.dialect)),
            Some("explain") if explain_runs(call.arguments) => sql.map(|s| {
                let (kind, why) = classify_for_policy(s, call.dialect);
                (
                    kind,
                    format!("EXPLAIN with analyze runs the statement, and {why}"),
                )
            }),
            Some(_) => Some((StatementKind::Read, format!("`{}` is a read", call.tool))),
            None => Some((
                StatementKind::Other,
                format!(
                    "`{}` is not a standard tool, so its calls count as `other`",
                    call.tool
                ),
            )),
        };
        let class = match classified {
            Some((kind, why)) => {
                if !self.statements.contains(&kind) {
                    let mut refusal = deny(
                        Rule::Statements,
                        format!(
                            "this agent may run {}; {why}",
                            allowed_kinds_phrase(&self.statements),
                        ),
                        statement,
                    );
                    if let Decision::Deny { class, .. } = &mut refusal {
                        *class = Some(kind);
                    }
                    return refusal;
                }
                Some(kind)
            }
            None if self.statements_restricted() => {
                return deny(
                    Rule::Statements,
                    format!(
                        "this agent may run {}, and this call has no sql argument to check; \
                         pass the statement as a string in `sql`",
                        allowed_kinds_phrase(&self.statements)
                    ),
                    None,
                );
            }
            // Nothing to check: the adapter reports the missing argument.
            None => None,
        };

        let arguments = match suffix {
            Some("query") => {
                let rows = self
                    .row_limit
                    .and_then(|limit| cap_argument(call.arguments, "max_rows", u64::from(limit)));
                let bytes = self
                    .max_bytes
                    .filter(|_| call.accepts_max_bytes)
                    .and_then(|limit| {
                        cap_argument(rows.as_ref().or(call.arguments), "max_bytes", limit)
                    });
                bytes.or(rows)
            }
            _ => None,
        };

        Decision::Allow {
            database,
            suffix: suffix.map(str::to_owned),
            statement,
            class,
            arguments,
        }
    }
}

/// One tool call, as the hub sees it before forwarding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call<'a> {
    /// The deployment the call goes to.
    pub deployment: &'a str,
    /// The adapter's tool name, `<database>_<suffix>` (the agent-facing
    /// name without its `<deployment>_` prefix).
    pub tool: &'a str,
    /// The call's arguments.
    pub arguments: Option<&'a Map<String, Value>>,
    /// The classifier dialect of the tool's database, from the live
    /// deployment's tool list (`_meta["ewii/dialect"]`); `None` when the
    /// tool does not say (its statements are then `other`).
    pub dialect: Option<SqlDialect>,
    /// Whether the tool's input schema accepts `max_bytes` (the hub then
    /// forwards the policy's `max_bytes` with the call).
    pub accepts_max_bytes: bool,
}

/// The outcome of [`Policy::evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward the call.
    Allow {
        /// The tool's database, when the tool name ends in a standard suffix.
        database: Option<String>,
        /// The tool's standard suffix (`query`, `list_tables`…).
        suffix: Option<String>,
        /// The call's `sql` argument, verbatim: pass it through
        /// [`redact_literals`] before logging it.
        statement: Option<String>,
        /// The statement kind the policy checked, when there was one.
        class: Option<StatementKind>,
        /// Arguments to forward instead of the call's own (e.g. `max_rows`
        /// capped by `row_limit`); `None` forwards them unchanged.
        arguments: Option<Map<String, Value>>,
    },
    /// Refuse the call with an MCP error result carrying `message`.
    Deny {
        /// The rule that refused the call.
        rule: Rule,
        /// The text for the agent: starts with ``agent policy rule `<rule>`:``,
        /// says what is allowed and how the operator changes it.
        message: String,
        /// The tool's database, when known.
        database: Option<String>,
        /// The call's `sql` argument, verbatim, when the `statements` rule
        /// refused it.
        statement: Option<String>,
        /// The statement kind the `statements` rule refused.
        class: Option<StatementKind>,
    },
}

impl Decision {
    /// Whether the call may be forwarded.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A policy rule, named as in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `deployments`.
    Deployments,
    /// `databases`.
    Databases,
    /// `tools`.
    Tools,
    /// `statements`.
    Statements,
    /// `row_limit`.
    RowLimit,
    /// `rate_limit`.
    RateLimit,
}

impl Rule {
    /// The field name: `deployments`, `databases`, `tools`, `statements`,
    /// `row_limit`, `rate_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Deployments => "deployments",
            Rule::Databases => "databases",
            Rule::Tools => "tools",
            Rule::Statements => "statements",
            Rule::RowLimit => "row_limit",
            Rule::RateLimit => "rate_limit",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits an adapter tool name into `(database, suffix)` by its standard
/// suffix, longest first (database names may contain `_`). `None` when the
/// name does not end in `_<suffix>` after a non-empty database name.
pub fn split_tool(tool: &str) -> Option<(&str, &str)> {
    let mut suffixes: Vec<&'static str> = StandardTool::ALL.iter().map(|t| t.suffix()).collect();
    suffixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
    suffixes.into_iter().find_map(|suffix| {
        let database = tool.strip_suffix(suffix)?.strip_suffix('_')?;
        (!database.is_empty()).then_some((database, suffix))
    })
}

/// The dialects [`redact_literals`] tries, in order (redaction only: it
/// never decides what runs).
const REDACTION_DIALECTS: [SqlDialect; 3] =
    [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite];

/// Classifies a statement once, in `dialect`, with what cannot be
/// classified as `other`, and the reason as the end of a refusal ("this
/// statement is a write (DELETE)").
pub fn classify_for_policy(sql: &str, dialect: Option<SqlDialect>) -> (StatementKind, String) {
    let Some(dialect) = dialect else {
        return (
            StatementKind::Other,
            "the deployment did not say which SQL dialect this tool's database speaks, so its \
             statements cannot be classified and count as `other` (update the deployment's \
             adapter)"
                .to_owned(),
        );
    };
    match classify(sql, dialect) {
        Ok(c) => {
            let kind = StatementKind::from(c.class);
            (
                kind,
                format!("this statement is {} ({})", kind.with_article(), c.detail),
            )
        }
        Err(e) => (
            StatementKind::Other,
            format!(
                "this statement could not be classified as {}, so it counts as `other`: {}",
                dialect.as_str(),
                match e {
                    ToolError::InvalidArguments(r) | ToolError::Refused { reason: r } => r,
                    other => other.to_string(),
                }
            ),
        ),
    }
}

/// Whether an `explain` call runs its statement: `analyze` is anything but
/// absent, `null` or `false` (an odd value fails closed).
fn explain_runs(arguments: Option<&Map<String, Value>>) -> bool {
    !matches!(
        arguments.and_then(|a| a.get("analyze")),
        None | Some(Value::Null) | Some(Value::Bool(false))
    )
}

/// The arguments with `field` (`max_rows`, `max_bytes`) capped at
/// `limit`, or `None` when they already ask for at most `limit`. A value
/// that is not a non-negative integer is left for the adapter to refuse.
fn cap_argument(
    arguments: Option<&Map<String, Value>>,
    field: &str,
    limit: u64,
) -> Option<Map<String, Value>> {
    let requested = arguments.and_then(|a| a.get(field));
    let needs_cap = match requested {
        None | Some(Value::Null) => true,
        Some(v) => v.as_u64().is_some_and(|n| n > limit),
    };
    if !needs_cap {
        return None;
    }
    let mut capped = arguments.cloned().unwrap_or_default();
    capped.insert(field.into(), Value::from(limit));
    Some(capped)
}

/// Replaces every literal value of a statement with `?` and renders it
/// again, for logs. Parsed in the first of PostgreSQL, MySQL and SQLite that
/// accepts it; returns [`UNPARSABLE_REDACTED`] when none does.
///
/// Identifiers and placeholders (`$1`, `?`, `:name`) stay, comments go. A
/// lone double-quoted name in an expression is redacted too: MySQL reads
/// `"secret"` as a string. Literals the parser keeps outside expressions
/// (option values, passwords in some DDL) are caught by a second, token
/// level pass, which may also turn a type size such as `VARCHAR(20)` into
/// `VARCHAR(?)`.
pub fn redact_literals(sql: &str) -> String {
    for dialect in REDACTION_DIALECTS {
        let parser_dialect = parser_dialect(dialect);
        let Ok(mut statements) = Parser::parse_sql(parser_dialect.as_ref(), sql) else {
            continue;
        };
        let _ = statements.visit(&mut LiteralRedactor);
        let rendered: Vec<String> = statements.iter().map(ToString::to_string).collect();
        return redact_literal_tokens(parser_dialect.as_ref(), &rendered.join("; "))
            .unwrap_or_else(|| UNPARSABLE_REDACTED.to_owned());
    }
    UNPARSABLE_REDACTED.to_owned()
}

fn parser_dialect(dialect: SqlDialect) -> Box<dyn Dialect> {
    match dialect {
        SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
        SqlDialect::MySql => Box::new(MySqlDialect {}),
        SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
    }
}

/// Turns literal values into `?` placeholders.
struct LiteralRedactor;

impl VisitorMut for LiteralRedactor {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if !matches!(value.value, SqlValue::Placeholder(_) | SqlValue::Null) {
            value.value = SqlValue::Placeholder("?".into());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr
            && ident.quote_style == Some('"')
        {
            *expr = Expr::Value(SqlValue::Placeholder("?".into()).with_empty_span());
        }
        ControlFlow::Continue(())
    }
}

/// Second pass over the rendered text: any literal token the AST pass did
/// not reach becomes `?`. `None` if the text does not tokenize.
fn redact_literal_tokens(dialect: &dyn Dialect, sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(dialect, sql).tokenize().ok()?;
    Some(
        tokens
            .into_iter()
            .map(|token| {
                if is_literal_token(&token) {
                    "?".to_owned()
                } else {
                    token.to_string()
                }
            })
            .collect(),
    )
}

fn is_literal_token(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

/// Per-agent token buckets for `rate_limit`. Thread-safe; time is passed
/// in, so tests and callers control the clock.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// One agent's allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Calls available now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// Above this many buckets, full ones are dropped on the next check; a full
/// bucket is the same as a missing one, so nothing is lost.
const PRUNE_ABOVE: usize = 4096;

impl RateLimiter {
    /// An empty limiter: every key starts with a full bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one call from `key`'s bucket at time `now`, or returns how long
    /// to wait until one is available. Call it before
    /// [`Policy::evaluate`]; a refused call takes nothing.
    pub fn check(&self, key: &str, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(limit.calls.max(1));
        let per_second = capacity / f64::from(limit.per_seconds.max(1));
        // The map only holds counters: a panic elsewhere cannot leave it in
        // a state worse than slightly wrong counts.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
                b.tokens + elapsed * per_second < capacity
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        if now > bucket.updated {
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens += elapsed * per_second;
            bucket.updated = now;
        }
        // Also applies a lowered limit at once.
        bucket.tokens = bucket.tokens.min(capacity);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(Duration::from_secs(u64::from(limit.per_seconds))))
        }
    }
}

/// The refusal text for a call over `rate_limit`.
pub fn rate_limited(limit: &RateLimit, retry_after: Duration) -> String {
    let wait = retry_after.as_millis().div_ceil(1000).max(1);
    format!(
        "agent policy rule `rate_limit`: this agent may make at most {} call(s) per {} \
         second(s); wait {wait} second(s) before calling again. {POLICY_SET_HINT}",
        limit.calls, limit.per_seconds
    )
}

/// The refusal text for a result that carries more rows than `row_limit`.
pub fn row_limit_exceeded(limit: u32, got: usize) -> String {
    format!(
        "agent policy rule `row_limit`: this agent may receive at most {limit} row(s) per call \
         and the result held {got}, so it was withheld; ask for at most {limit} rows with \
         `max_rows` and read further pages with `offset`. {POLICY_SET_HINT}"
    )
}

/// What the hub's truncation notices call the policy's byte limit.
const MAX_BYTES_NAME: &str = "the agent policy's `max_bytes`";

/// Cuts `result` to at most `limit` bytes of data, as the policy's
/// `max_bytes` rule says (see the [module documentation](self)); returns
/// whether anything was cut.
///
/// - A result with `rows`: trailing rows are dropped until the rows' JSON
///   fits, `truncated` is set with a notice naming `max_bytes`, and the
///   text content is rebuilt from the cut result (so neither the structured
///   nor the text content carries more than the limit allows).
/// - A structured result without rows whose JSON is over the limit is
///   withheld with the same kind of notice.
/// - A text-only result is cut to the limit at a character boundary.
pub fn cap_result_bytes(result: &mut CallToolResult, limit: u64) -> bool {
    if let Some(structured) = result.structured_content.as_mut() {
        if let Some(rows) = structured.get("rows").and_then(Value::as_array) {
            let mut used = 0u64;
            let mut kept = 0usize;
            let mut next_size = None;
            for row in rows {
                let size = match row {
                    Value::Array(values) => row_size(values),
                    other => row_size(std::slice::from_ref(other)),
                };
                if used + size > limit {
                    next_size = Some(size);
                    break;
                }
                used += size;
                kept += 1;
            }
            let Some(next_size) = next_size else {
                return false;
            };
            let offset = structured
                .get("offset")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let kept64 = u64::try_from(kept).unwrap_or(u64::MAX);
            let truncation = byte_truncation(
                limit,
                MAX_BYTES_NAME,
                kept64,
                offset.saturating_add(kept64),
                next_size,
            );
            let notice = format!("TRUNCATED: {}", truncation.message);
            if let Some(Value::Array(rows)) = structured.get_mut("rows") {
                rows.truncate(kept);
            }
            if let Value::Object(map) = structured {
                map.insert("row_count".into(), Value::from(kept64));
                map.insert(
                    "truncated".into(),
                    serde_json::to_value(&truncation).unwrap_or(Value::Null),
                );
            }
            let text = structured.to_string();
            result.content = vec![ContentBlock::text(text), ContentBlock::text(notice)];
            return true;
        }
        let size = u64::try_from(structured.to_string().len()).unwrap_or(u64::MAX);
        if size <= limit {
            return false;
        }
        *result = CallToolResult::error(vec![ContentBlock::text(format!(
            "TRUNCATED: the result is {size} bytes, over the {limit} byte limit \
             ({MAX_BYTES_NAME}), so it was withheld; ask for less (a narrower table, a \
             shorter statement). {POLICY_SET_HINT}"
        ))]);
        return true;
    }
    let total: usize = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.len()))
        .sum();
    if u64::try_from(total).unwrap_or(u64::MAX) <= limit {
        return false;
    }
    let mut budget = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut cut = Vec::new();
    for block in &result.content {
        let Some(t) = block.as_text() else { continue };
        if budget == 0 {
            break;
        }
        let mut end = t.text.len().min(budget);
        while !t.text.is_char_boundary(end) {
            end -= 1;
        }
        budget -= end;
        cut.push(ContentBlock::text(t.text[..end].to_owned()));
    }
    cut.push(ContentBlock::text(format!(
        "TRUNCATED: the text was cut at the {limit} byte limit ({MAX_BYTES_NAME})."
    )));
    result.content = cut;
    true
}

/// The length of the result's `rows` array, if it has one.
pub fn rows_in(structured: &Value) -> Option<u64> {
    let len = structured.get("rows")?.as_array()?.len();
    Some(u64::try_from(len).unwrap_or(u64::MAX))
}

/// Whether `name` follows the hub's deployment naming rule
/// `^[a-z][a-z0-9-]{0,31}$`.
fn is_deployment_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= MAX_DEPLOYMENT_NAME_LEN
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn standard_suffixes() -> Vec<&'static str> {
    StandardTool::ALL.iter().map(|t| t.suffix()).collect()
}

/// "deployments eu, us only", "no deployment".
fn allowed_phrase(one: &str, many: &str, allowed: &[String]) -> String {
    if allowed.is_empty() {
        format!("no {one}")
    } else {
        format!("{many} {} only", allowed.join(", "))
    }
}

/// "read statements only", "read and write statements only", "no statement".
fn allowed_kinds_phrase(allowed: &[StatementKind]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for kind in StatementKind::ALL {
        if allowed.contains(&kind) {
            kinds.push(kind.as_str());
        }
    }
    match kinds.as_slice() {
        [] => "no statement".to_owned(),
        [one] => format!("{one} statements only"),
        [init @ .., last] => format!("{} and {last} statements only", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn eval(policy: &Policy, deployment: &str, tool: &str, arguments: Value) -> Decision {
        let arguments = args(arguments);
        policy.evaluate(&Call {
            deployment,
            tool,
            arguments: Some(&arguments),
            dialect: Some(SqlDialect::Postgres),
            accepts_max_bytes: true,
        })
    }

    fn policy(text: &str) -> Policy {
        Policy::from_toml(text).unwrap()
    }

    #[track_caller]
    fn assert_denied(decision: &Decision, rule: Rule, needle: &str) -> String {
        match decision {
            Decision::Deny {
                rule: got, message, ..
            } => {
                assert_eq!(*got, rule, "{message}");
                let prefix = format!("agent policy rule `{rule}`:");
                assert!(message.starts_with(&prefix), "{message}");
                assert!(message.contains(needle), "{message}");
                assert!(message.contains("ewii-hub policy set"), "{message}");
                message.clone()
            }
            allow => panic!("expected a {rule} denial, got {allow:?}"),
        }
    }

    #[test]
    fn unrestricted_allows_everything_unchanged() {
        let p = Policy::unrestricted();
        assert_eq!(p, Policy::default());
        assert_eq!(p, policy(""));
        let d = eval(&p, "eu", "my_shop_query", json!({"sql": "DROP TABLE t"}));
        assert_eq!(
            d,
            Decision::Allow {
                database: Some("my_shop".into()),
                suffix: Some("query".into()),
                statement: Some("DROP TABLE t".into()),
                class: Some(StatementKind::Ddl),
                arguments: None,
            }
        );
        assert!(eval(&p, "eu", "weird", json!({})).is_allowed());
        assert_eq!(p.summary(), "unrestricted");
    }

    #[test]
    fn deployments_rule() {
        let p = policy(r#"deployments = ["eu", "us"]"#);
        assert!(eval(&p, "eu", "shop_list_tables", json!({})).is_allowed());
        let msg = assert_denied(
            &eval(&p, "asia", "shop_list_tables", json!({})),
            Rule::Deployments,
            "`asia` is not one of them",
        );
        assert!(
            msg.starts_with(
                "agent policy rule `deployments`: this agent may call deployments eu, us only"
            ),
            "{msg}"
        );
        assert!(
            eval(
                &policy(r#"deployments = ["*"]"#),
                "asia",
                "shop_query",
                json!({"sql": "SELECT 1"})
            )
            .is_allowed()
        );
        assert_denied(
            &eval(&policy("deployments = []"), "eu", "shop_query", json!({})),
            Rule::Deployments,
            "may call no deployment",
        );
    }

    #[test]
    fn databases_rule() {
        let p = policy(r#"databases = ["shop", "eu.big_data"]"#);
        assert!(eval(&p, "us", "shop_describe_table", json!({"table": "t"})).is_allowed());
        assert!(eval(&p, "eu", "big_data_list_tables", json!({})).is_allowed());
        let d = eval(&p, "us", "big_data_list_tables", json!({}));
        assert_denied(
            &d,
            Rule::Databases,
            "database `big_data` of deployment `us`",
        );
        assert!(matches!(d, Decision::Deny { database: Some(db), .. } if db == "big_data"));
        assert_denied(
            &eval(&p, "eu", "crm_query", json!({"sql": "SELECT 1"})),
            Rule::Databases,
            "databases shop, eu.big_data only",
        );
        // A tool that names no database cannot be shown to be within the list.
        assert_denied(
            &eval(&p, "eu", "vacuum", json!({})),
            Rule::Databases,
            "not a standard tool",
        );
        assert!(eval(&policy(r#"databases = ["*"]"#), "eu", "vacuum", json!({})).is_allowed());
    }

    #[test]
    fn tools_rule() {
        let p = policy(r#"tools = ["query", "list_tables", "shop_vacuum"]"#);
        assert!(eval(&p, "eu", "shop_list_tables", json!({})).is_allowed());
        assert!(eval(&p, "eu", "shop_vacuum", json!({})).is_allowed());
        assert_denied(
            &eval(&p, "eu", "shop_explain", json!({"sql": "SELECT 1"})),
            Rule::Tools,
            "tools query, list_tables, shop_vacuum only; tool `shop_explain` (explain)",
        );
        assert_denied(
            &eval(&p, "eu", "crm_vacuum", json!({})),
            Rule::Tools,
            "`crm_vacuum`",
        );
        assert!(eval(&policy(r#"tools = ["*"]"#), "eu", "crm_vacuum", json!({})).is_allowed());
        // list_tables is not tables: a suffix matches whole.
        assert_denied(
            &eval(
                &policy(r#"tools = ["list_schemas"]"#),
                "eu",
                "shop_list_tables",
                json!({}),
            ),
            Rule::Tools,
            "(list_tables)",
        );
    }

    #[test]
    fn statements_rule() {
        let p = policy(r#"statements = ["read"]"#);
        let d = eval(
            &p,
            "eu",
            "shop_query",
            json!({"sql": "SELECT * FROM t WHERE a = $1"}),
        );
        assert!(
            matches!(
                d,
                Decision::Allow {
                    class: Some(StatementKind::Read),
                    ..
                }
            ),
            "{d:?}"
        );
        let d = eval(&p, "eu", "shop_query", json!({"sql": "DELETE FROM t"}));
        let msg = assert_denied(&d, Rule::Statements, "");
        assert!(
            msg.starts_with(
                "agent policy rule `statements`: this agent may run read statements only; this \
                 statement is a write (DELETE)"
            ),
            "{msg}"
        );
        assert!(
            matches!(&d, Decision::Deny { statement: Some(s), .. } if s == "DELETE FROM t"),
            "{d:?}"
        );
        // Unparsable statements fail closed.
        assert_denied(
            &eval(&p, "eu", "shop_query", json!({"sql": "SELEC 1"})),
            Rule::Statements,
            "could not be classified",
        );
        // Catalog tools are reads; unknown tools are `other`.
        assert!(eval(&p, "eu", "shop_list_schemas", json!({})).is_allowed());
        assert_denied(
            &eval(&p, "eu", "shop_vacuum", json!({})),
            Rule::Statements,
            "`shop_vacuum` is not a standard tool, so its calls count as `other`",
        );
        // EXPLAIN is a read unless it runs the statement.
        assert!(eval(&p, "eu", "shop_explain", json!({"sql": "DELETE FROM t"})).is_allowed());
        assert!(
            eval(
                &p,
                "eu",
                "shop_explain",
                json!({"sql": "DELETE FROM t", "analyze": false})
            )
            .is_allowed()
        );
        assert_denied(
            &eval(
                &p,
                "eu",
                "shop_explain",
                json!({"sql": "DELETE FROM t", "analyze": true}),
            ),
            Rule::Statements,
            "EXPLAIN with analyze runs the statement, and this statement is a write (DELETE)",
        );
        assert!(
            eval(
                &p,
                "eu",
                "shop_explain",
                json!({"sql": "SELECT 1", "analyze": true})
            )
            .is_allowed()
        );
        // A missing sql argument is refused only when statements are restricted.
        assert_denied(
            &eval(&p, "eu", "shop_query", json!({})),
            Rule::Statements,
            "has no sql argument",
        );
        assert_denied(
            &eval(&p, "eu", "shop_query", json!({"sql": 3})),
            Rule::Statements,
            "has no sql argument",
        );
        let d = eval(&Policy::unrestricted(), "eu", "shop_query", json!({}));
        assert!(matches!(d, Decision::Allow { class: None, .. }), "{d:?}");
        // Several kinds, and none.
        let rw = policy(r#"statements = ["write", "read"]"#);
        assert!(
            eval(
                &rw,
                "eu",
                "shop_query",
                json!({"sql": "UPDATE t SET a = 1"})
            )
            .is_allowed()
        );
        assert_denied(
            &eval(&rw, "eu", "shop_query", json!({"sql": "DROP TABLE t"})),
            Rule::Statements,
            "read and write statements only; this statement is DDL (DROP)",
        );
        assert_denied(
            &eval(
                &policy("statements = []"),
                "eu",
                "shop_list_tables",
                json!({}),
            ),
            Rule::Statements,
            "may run no statement",
        );
    }

    #[test]
    fn row_limit_caps_max_rows() {
        let p = policy("row_limit = 100");
        let rewritten = |d: Decision| match d {
            Decision::Allow { arguments, .. } => arguments,
            deny => panic!("denied: {deny:?}"),
        };
        let capped = rewritten(eval(
            &p,
            "eu",
            "shop_query",
            json!({"sql": "SELECT 1", "params": [1]}),
        ));
        assert_eq!(
            capped,
            Some(args(
                json!({"sql": "SELECT 1", "params": [1], "max_rows": 100})
            ))
        );
        let capped = rewritten(eval(
            &p,
            "eu",
            "shop_query",
            json!({"sql": "SELECT 1", "max_rows": 5000}),
        ));
        assert_eq!(
            capped,
            Some(args(json!({"sql": "SELECT 1", "max_rows": 100})))
        );
        let capped = rewritten(eval(
            &p,
            "eu",
            "shop_query",
            json!({"sql": "SELECT 1", "max_rows": null}),
        ));
        assert_eq!(
            capped,
            Some(args(json!({"sql": "SELECT 1", "max_rows": 100})))
        );
        // Within the limit, or not a query: forwarded unchanged.
        assert_eq!(
            rewritten(eval(
                &p,
                "eu",
                "shop_query",
                json!({"sql": "SELECT 1", "max_rows": 10})
            )),
            None
        );
        assert_eq!(
            rewritten(eval(&p, "eu", "shop_list_tables", json!({}))),
            None
        );

        // The result check, after the call.
        let result = json!({"columns": [], "rows": [[1], [2], [3]]});
        assert_eq!(rows_in(&result), Some(3));
        assert_eq!(rows_in(&json!({"rows": "x"})), None);
        let msg = row_limit_exceeded(2, 3);
        assert!(
            msg.starts_with(
                "agent policy rule `row_limit`: this agent may receive at most 2 row(s)"
            ),
            "{msg}"
        );
        assert!(msg.contains("held 3") && msg.contains("`offset`"), "{msg}");
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refills() {
        let limiter = RateLimiter::new();
        let limit = RateLimit {
            calls: 3,
            per_seconds: 60,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("agent-a", &limit, t0), Ok(()));
        }
        let wait = limiter.check("agent-a", &limit, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Other agents have their own bucket.
        assert_eq!(limiter.check("agent-b", &limit, t0), Ok(()));
        // A refused call takes nothing; one call comes back every 20 s.
        let wait = limiter
            .check("agent-a", &limit, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert_eq!(
            limiter.check("agent-a", &limit, t0 + Duration::from_secs(20)),
            Ok(())
        );
        assert!(
            limiter
                .check("agent-a", &limit, t0 + Duration::from_secs(20))
                .is_err()
        );
        // After a full window the whole burst is back, and no more.
        let t1 = t0 + Duration::from_secs(600);
        for _ in 0..3 {
            assert_eq!(limiter.check("agent-a", &limit, t1), Ok(()));
        }
        assert!(limiter.check("agent-a", &limit, t1).is_err());
        // A clock that goes backwards does not mint calls.
        assert!(limiter.check("agent-a", &limit, t0).is_err());

        let msg = rate_limited(&limit, Duration::from_millis(19_200));
        assert!(
            msg.starts_with("agent policy rule `rate_limit`: this agent may make at most 3 call(s) per 60 second(s); wait 20 second(s)"),
            "{msg}"
        );
        assert!(
            policy("rate_limit = { calls = 60, per_seconds = 60 }")
                .rate_limit
                .is_some()
        );
    }

    #[test]
    fn toml_round_trips_and_summarises() {
        let text = r#"
            deployments = ["eu", "us"]
            databases = ["shop", "eu.big_data"]
            tools = ["query", "list_tables"]
            statements = ["read", "write"]
            row_limit = 100
            rate_limit = { calls = 60, per_seconds = 60 }
        "#;
        let p = policy(text);
        assert_eq!(
            p.statements,
            vec![StatementKind::Read, StatementKind::Write]
        );
        assert_eq!(
            p.summary(),
            "deployments: eu, us; databases: shop, eu.big_data; tools: query, list_tables; \
             statements: read, write; row_limit: 100; rate_limit: 60/60s"
        );
        let p = policy(
            "deployments = [\"eu\"]\nstatements = [\"read\"]\nrow_limit = 100\n[rate_limit]\ncalls = 60\nper_seconds = 60\n",
        );
        assert_eq!(
            p.summary(),
            "deployments: eu; statements: read; row_limit: 100; rate_limit: 60/60s"
        );
        assert_eq!(policy("tools = []").summary(), "tools: none");
    }

    #[test]
    fn toml_errors_are_clear() {
        let err = Policy::from_toml("deployments = [\"eu\"]\nrow_limits = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PolicyError::Toml { .. }));
        assert!(
            msg.contains("line 2") && msg.contains("unknown field `row_limits`"),
            "{msg}"
        );

        let msg = Policy::from_toml(r#"statements = ["read", "writes"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("unknown variant `writes`") && msg.contains("`read`"),
            "{msg}"
        );

        let msg = Policy::from_toml("rate_limit = { calls = 5, seconds = 1 }")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown field `seconds`"), "{msg}");

        let msg = Policy::from_toml("row_limit = -1").unwrap_err().to_string();
        assert!(msg.contains("line 1"), "{msg}");

        assert_eq!(
            Policy::from_toml("row_limit = 0"),
            Err(PolicyError::ZeroLimit { field: "row_limit" })
        );
        assert_eq!(
            Policy::from_toml("rate_limit = { calls = 0, per_seconds = 1 }"),
            Err(PolicyError::ZeroLimit {
                field: "rate_limit.calls"
            })
        );
        let err = Policy::from_toml("rate_limit = { calls = 1, per_seconds = 0 }").unwrap_err();
        assert!(err.to_string().contains("set it to 1 or more"), "{err}");

        for (text, field, needle) in [
            (
                r#"deployments = ["EU"]"#,
                "deployments",
                "a deployment name",
            ),
            (r#"databases = ["Shop"]"#, "databases", "lowercase"),
            (
                r#"databases = ["e_u.shop"]"#,
                "databases",
                "not a deployment name",
            ),
            (r#"databases = ["eu."]"#, "databases", "empty"),
            (
                r#"tools = ["shop_query"]"#,
                "tools",
                "list \"query\" in `tools` and \"shop\"",
            ),
            (r#"tools = ["bad tool"]"#, "tools", "by suffix"),
        ] {
            let err = Policy::from_toml(text).unwrap_err();
            assert!(
                matches!(&err, PolicyError::BadEntry { field: f, .. } if *f == field),
                "{err:?}"
            );
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn classification_is_one_dialect_and_fails_closed() {
        let kind = |sql: &str, d| classify_for_policy(sql, d).0;
        let pg = Some(SqlDialect::Postgres);
        let my = Some(SqlDialect::MySql);
        assert_eq!(
            kind("SELECT a FROM t WHERE b = $1", pg),
            StatementKind::Read
        );
        assert_eq!(kind("INSERT INTO t VALUES (1)", pg), StatementKind::Write);
        assert_eq!(kind("CREATE TABLE x (a INT)", pg), StatementKind::Ddl);
        assert_eq!(kind("SET search_path = x", pg), StatementKind::Other);
        // No dialect, or a statement that does not parse: `other`.
        assert_eq!(kind("SELECT 1", None), StatementKind::Other);
        let (k, why) = classify_for_policy("SELEC 1 FRM", pg);
        assert_eq!(k, StatementKind::Other);
        assert!(why.contains("could not be classified as postgres"), "{why}");
        assert_eq!(kind("", pg), StatementKind::Other);
        // Stacked statements: `other`, whatever they hold.
        let (k, why) = classify_for_policy("SELECT 1; DELETE FROM t", pg);
        assert_eq!(k, StatementKind::Other);
        assert!(why.contains("2 statements"), "{why}");
        // MySQL runs executable comments; PostgreSQL reads them as comments.
        assert_eq!(
            kind("SELECT 1 /*! , SLEEP(10) */", my),
            StatementKind::Other
        );
        // PostgreSQL-only syntax, in the PostgreSQL dialect.
        assert_eq!(kind("SELECT $1::int", pg), StatementKind::Read);
        // A dialect named by the tool but unknown to the hub is no dialect.
        assert_eq!(SqlDialect::from_name("mariadb"), None);
        assert_eq!(SqlDialect::from_name("mysql"), my);
    }

    #[test]
    fn denials_carry_the_class_and_every_call_the_allowed_statements() {
        let p = policy(r#"statements = ["read"]"#);
        match eval(&p, "eu", "shop_query", json!({"sql": "DELETE FROM t"})) {
            Decision::Deny { class, .. } => assert_eq!(class, Some(StatementKind::Write)),
            allow => panic!("{allow:?}"),
        }
        assert_eq!(p.allowed_statements().names(), vec!["read"]);
        assert!(p.allowed_statements().read_only());
        assert_eq!(
            Policy::unrestricted().allowed_statements().names(),
            vec!["read", "write", "ddl", "other"]
        );
    }

    #[test]
    fn max_bytes_is_validated_forwarded_and_cuts_results() {
        assert_eq!(
            Policy::from_toml("max_bytes = 0"),
            Err(PolicyError::ZeroLimit { field: "max_bytes" })
        );
        let p = policy("max_bytes = 100\nrow_limit = 5");
        assert_eq!(p.summary(), "row_limit: 5; max_bytes: 100");
        match eval(
            &p,
            "eu",
            "shop_query",
            json!({"sql": "SELECT 1", "max_bytes": 1000}),
        ) {
            Decision::Allow { arguments, .. } => assert_eq!(
                arguments,
                Some(args(
                    json!({"sql": "SELECT 1", "max_rows": 5, "max_bytes": 100})
                ))
            ),
            deny => panic!("{deny:?}"),
        }
        // A tool that does not accept max_bytes is not sent one.
        let a = args(json!({"sql": "SELECT 1"}));
        let d = p.evaluate(&Call {
            deployment: "eu",
            tool: "shop_query",
            arguments: Some(&a),
            dialect: Some(SqlDialect::Sqlite),
            accepts_max_bytes: false,
        });
        assert!(
            matches!(&d, Decision::Allow { arguments: Some(a), .. } if !a.contains_key("max_bytes")),
            "{d:?}"
        );

        // Rows: trailing rows go until the rest fits.
        let rows: Vec<Value> = (0..10).map(|i| json!([format!("row-{i:04}")])).collect();
        let mut r = CallToolResult::structured(json!({
            "columns": [{"name": "a", "type": "text"}], "rows": rows, "row_count": 10, "offset": 4
        }));
        assert!(cap_result_bytes(&mut r, 50));
        let s = r.structured_content.as_ref().unwrap();
        // Each row is 12 bytes of JSON: 4 fit in 50.
        assert_eq!(s["rows"].as_array().unwrap().len(), 4);
        assert_eq!(s["row_count"], 4);
        assert_eq!(s["truncated"]["reason"], "max_bytes");
        assert_eq!(s["truncated"]["limit"], 50);
        assert_eq!(s["truncated"]["next_offset"], 8);
        let text: Vec<String> = r
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        assert!(
            !text[0].contains("row-0004") && text[0].contains("row-0003"),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("TRUNCATED: ") && text[1].contains("`max_bytes`"),
            "{}",
            text[1]
        );
        // One aggregated row over the limit: withheld, with the notice.
        let big = "x".repeat(10_000);
        let mut r = CallToolResult::structured(
            json!({"columns": [], "rows": [[big]], "row_count": 1, "offset": 0}),
        );
        assert!(cap_result_bytes(&mut r, 100));
        let s = r.structured_content.as_ref().unwrap();
        assert_eq!(s["rows"], json!([]));
        assert!(
            s["truncated"]["message"]
                .as_str()
                .unwrap()
                .contains("alone is")
        );
        assert!(
            r.content
                .iter()
                .all(|c| c.as_text().is_none_or(|t| t.text.len() < 1000))
        );
        // Under the limit: untouched.
        let mut r = CallToolResult::structured(
            json!({"columns": [], "rows": [[1]], "row_count": 1, "offset": 0}),
        );
        assert!(!cap_result_bytes(&mut r, 100));
        // No rows, over the limit: withheld. Text only: cut.
        let mut r = CallToolResult::structured(json!({"plan": big}));
        assert!(cap_result_bytes(&mut r, 100));
        assert_eq!(r.is_error, Some(true));
        assert!(r.structured_content.is_none());
        let mut r = CallToolResult::error(vec![ContentBlock::text("é".repeat(100))]);
        assert!(cap_result_bytes(&mut r, 51));
        assert_eq!(r.content[0].as_text().unwrap().text.len(), 50);
    }

    #[test]
    fn redact_literals_keeps_names_and_placeholders() {
        let r = redact_literals(
            "SELECT name, 42 AS n FROM users WHERE email = 'alice@example.com' AND age > 30.5 \
             AND id = $1 -- secret comment",
        );
        assert!(
            !r.contains("alice") && !r.contains("42") && !r.contains("30.5"),
            "{r}"
        );
        assert!(!r.contains("secret"), "{r}");
        assert!(
            r.contains("users") && r.contains("email") && r.contains("name"),
            "{r}"
        );
        assert!(r.contains("$1"), "{r}");
        assert_eq!(
            redact_literals("INSERT INTO t (a, b) VALUES (?, 'x')"),
            "INSERT INTO t (a, b) VALUES (?, ?)"
        );
        let r = redact_literals("SELECT * FROM t WHERE d > DATE '2024-01-01' AND s = E'x\\ny'");
        assert!(!r.contains("2024") && !r.contains("x\\ny"), "{r}");
        // MySQL reads "secret" as a string; it is redacted whatever the engine.
        let r = redact_literals(r#"SELECT * FROM "Users" WHERE password = "hunter2""#);
        assert!(!r.contains("hunter2") && r.contains("\"Users\""), "{r}");
        // Literals outside expressions are caught by the token pass.
        let r = redact_literals("ALTER USER bob WITH PASSWORD 'hunter2'");
        assert!(!r.contains("hunter2"), "{r}");
        let r = redact_literals("SELECT 1; DELETE FROM t WHERE id = 7");
        assert!(r.contains("DELETE FROM t") && !r.contains('7'), "{r}");
        assert_eq!(redact_literals("SELEC 'x' FRM"), UNPARSABLE_REDACTED);
    }

    #[test]
    fn split_tool_finds_the_suffix() {
        assert_eq!(split_tool("shop_query"), Some(("shop", "query")));
        assert_eq!(
            split_tool("big_data_list_tables"),
            Some(("big_data", "list_tables"))
        );
        assert_eq!(
            split_tool("my_list_list_schemas"),
            Some(("my_list", "list_schemas"))
        );
        assert_eq!(
            split_tool("a_b_describe_table"),
            Some(("a_b", "describe_table"))
        );
        assert_eq!(split_tool("query_explain"), Some(("query", "explain")));
        assert_eq!(split_tool("x_query_query"), Some(("x_query", "query")));
        assert_eq!(split_tool("shop_tables"), None);
        assert_eq!(split_tool("list_tables"), None);
        assert_eq!(split_tool("_list_tables"), None);
        assert_eq!(split_tool("_query"), None);
        assert_eq!(split_tool("shopquery"), None);
        assert_eq!(split_tool("shop_vacuum"), None);
    }

    #[test]
    fn rules_display_as_policy_fields() {
        let names: Vec<String> = [
            Rule::Deployments,
            Rule::Databases,
            Rule::Tools,
            Rule::Statements,
            Rule::RowLimit,
            Rule::RateLimit,
        ]
        .iter()
        .map(|r| r.to_string())
        .collect();
        assert_eq!(
            names,
            [
                "deployments",
                "databases",
                "tools",
                "statements",
                "row_limit",
                "rate_limit"
            ]
        );
        assert_eq!(Rule::RowLimit.as_str(), "row_limit");
        assert_eq!(
            serde_json::to_value(Rule::RateLimit).ok(),
            Some(json!("rate_limit"))
        );
    }
}
