//! Deciding one call: the rules in order, the one classification of its
//! statement, and the argument caps.

use super::POLICY_SET_HINT;
use super::model::{ANY, Policy, StatementKind};
use std::fmt;

use ewii_driver_core::schema::StandardTool;
use ewii_driver_core::{SqlDialect, ToolError, classify};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
impl Policy {
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
        let document_tool = suffix.and_then(super::documents::document_tool);
        let statement = match document_tool {
            Some(tool) => super::documents::statement(tool, call.arguments),
            None => sql.map(str::to_owned),
        };
        // (kind, "this statement is …" for a refusal)
        let classified = match suffix {
            _ if let Some(tool) = document_tool => {
                Some(super::documents::classify(tool, call.arguments))
            }
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
            Some("query" | "find" | "aggregate" | "distinct") => {
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
    ewii_tools_schema::split_suffix(tool).map(|(database, tool)| (database, tool.suffix()))
}

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

/// The standard tools' name suffixes.
pub(super) fn standard_suffixes() -> Vec<&'static str> {
    StandardTool::ALL.iter().map(|t| t.suffix()).collect()
}

/// "deployments eu, us only", "no deployment".
pub(super) fn allowed_phrase(one: &str, many: &str, allowed: &[String]) -> String {
    if allowed.is_empty() {
        format!("no {one}")
    } else {
        format!("{many} {} only", allowed.join(", "))
    }
}

/// "read statements only", "read and write statements only", "no statement".
pub(super) fn allowed_kinds_phrase(allowed: &[StatementKind]) -> String {
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
