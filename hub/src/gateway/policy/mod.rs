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
//!
//! # Modules
//!
//! - `model`: [`Policy`] and its TOML form, validation and summary.
//! - `evaluate`: [`Policy::evaluate`], the rules in order, and
//!   [`classify_for_policy`], the one classification of a statement.
//! - `rate`: [`RateLimiter`], the `rate_limit` token buckets.
//! - `limits`: [`cap_result_bytes`] and the `row_limit` refusal, applied
//!   to what the agent receives.
//! - `redact`: [`redact_literals`], statements made fit for logs.
//! - [`oauth_scopes`]: an OAuth access token's scopes as a narrowing of
//!   the agent's policy.

mod documents;
mod evaluate;
mod limits;
mod model;
pub mod oauth_scopes;
mod rate;
mod redact;
#[cfg(test)]
mod tests;

pub use evaluate::{Call, Decision, Rule, classify_for_policy, split_tool};
pub use limits::{cap_result_bytes, row_limit_exceeded, rows_in};
pub use model::{Policy, PolicyError, RateLimit, StatementKind};
pub use rate::{RateLimiter, rate_limited};
pub use redact::redact_literals;

/// How an operator changes a policy; appended to every refusal.
pub const POLICY_SET_HINT: &str = "The operator changes this agent's policy with \
     `ewii-hub policy set --workspace <workspace> <agent> <policy.toml>`.";

/// What [`redact_literals`] returns for a statement it cannot parse.
pub const UNPARSABLE_REDACTED: &str = "<statement redacted: unparsable>";
