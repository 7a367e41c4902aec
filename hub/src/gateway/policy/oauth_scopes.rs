//! OAuth scopes as policy: what an access token's scopes allow, intersected
//! with the agent's own policy (a token never widens what the operator's
//! TOML allows).
//!
//! - `ewii:read`: statements of kind `read`;
//! - `ewii:write`: `read` and `write`;
//! - `ewii:admin`: all four kinds (`read`, `write`, `ddl`, `other`);
//! - `ewii:deployment:<name>` (any number): only those deployments; none
//!   of them leaves the deployments to the agent's policy.
//!
//! A token with none of the statement scopes may do nothing: the gate
//! answers it with `insufficient_scope` before any MCP is spoken. The
//! result is the same [`Policy`] a TOML file would give, so a token with
//! `ewii:read` is fenced exactly like `statements = ["read"]`, down to the
//! engine's read-only mode at the adapter.

use super::{Policy, StatementKind};

/// Read-only statements.
pub const SCOPE_READ: &str = "ewii:read";
/// Reads and writes.
pub const SCOPE_WRITE: &str = "ewii:write";
/// Every statement kind.
pub const SCOPE_ADMIN: &str = "ewii:admin";
/// Prefix of the per-deployment scopes.
pub const SCOPE_DEPLOYMENT_PREFIX: &str = "ewii:deployment:";
/// The scopes the hub advertises (RFC 9728 `scopes_supported`).
pub const SCOPES_SUPPORTED: [&str; 3] = [SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN];

/// The statement kinds `scopes` grant, in [`StatementKind`] order.
pub fn granted_statements(scopes: &[String]) -> Vec<StatementKind> {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut kinds = Vec::new();
    if has(SCOPE_READ) || has(SCOPE_WRITE) || has(SCOPE_ADMIN) {
        kinds.push(StatementKind::Read);
    }
    if has(SCOPE_WRITE) || has(SCOPE_ADMIN) {
        kinds.push(StatementKind::Write);
    }
    if has(SCOPE_ADMIN) {
        kinds.push(StatementKind::Ddl);
        kinds.push(StatementKind::Other);
    }
    kinds
}

/// `policy` narrowed to what `scopes` grant.
pub fn fence(mut policy: Policy, scopes: &[String]) -> Policy {
    let granted = granted_statements(scopes);
    policy.statements.retain(|k| granted.contains(k));
    let deployments: Vec<String> = scopes
        .iter()
        .filter_map(|s| s.strip_prefix(SCOPE_DEPLOYMENT_PREFIX))
        .map(str::to_owned)
        .collect();
    if !deployments.is_empty() {
        policy.deployments = Some(match policy.deployments.take() {
            None => deployments,
            Some(list) if list.iter().any(|d| d == super::model::ANY) => deployments,
            Some(list) => list
                .into_iter()
                .filter(|d| deployments.contains(d))
                .collect(),
        });
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn read_scope_is_the_read_only_toml_policy() {
        let toml = Policy::from_toml("statements = [\"read\"]").unwrap();
        assert_eq!(fence(Policy::unrestricted(), &s(&[SCOPE_READ])), toml);
        assert_eq!(
            fence(Policy::unrestricted(), &s(&[SCOPE_READ])).allowed_statements(),
            toml.allowed_statements()
        );
    }

    #[test]
    fn scopes_never_widen_the_agent_policy() {
        let agent = Policy::from_toml("statements = [\"read\"]\ndeployments = [\"eu\"]").unwrap();
        let fenced = fence(agent, &s(&[SCOPE_ADMIN, "ewii:deployment:us"]));
        assert_eq!(fenced.statements, vec![StatementKind::Read]);
        assert_eq!(fenced.deployments, Some(vec![]));
    }

    #[test]
    fn no_statement_scope_allows_nothing() {
        assert!(granted_statements(&s(&["openid", "ewii:deployment:eu"])).is_empty());
        assert!(
            fence(Policy::unrestricted(), &s(&["openid"]))
                .statements
                .is_empty()
        );
        assert_eq!(
            granted_statements(&s(&[SCOPE_WRITE])),
            vec![StatementKind::Read, StatementKind::Write]
        );
    }

    #[test]
    fn deployment_scopes_narrow_deployments() {
        let fenced = fence(
            Policy::unrestricted(),
            &s(&[SCOPE_READ, "ewii:deployment:eu"]),
        );
        assert_eq!(fenced.deployments, Some(s(&["eu"])));
    }
}
