//! Naming rules for tools, databases and deployments: the one place they
//! live, for drivers, the adapter and the hub.
//!
//! - A tool name matches `^[a-zA-Z0-9_-]{1,64}$` ([`validate_tool_name`]),
//!   the strictest rule common MCP clients enforce.
//! - A database name matches `^[a-z][a-z0-9_-]{0,31}$`
//!   ([`validate_database_name`]).
//! - A deployment name matches `^[a-z][a-z0-9-]{0,31}$`
//!   ([`validate_deployment_name`]): no `_`, so the first `_` of a hub's
//!   tool name ends it. The hub holds workspace and agent names to the
//!   same rule (they share SPIFFE IDs and URLs with deployments).
//! - [`ToolName`] is a tool name in its parts: `<database>_<tool>` at an
//!   adapter, `<deployment>_<database>_<tool>` at a hub. Database names may
//!   contain `_`, so the tool is found by its standard suffix.

use std::fmt;

use crate::StandardTool;

/// Longest tool name any common MCP client accepts.
pub const MAX_TOOL_NAME_LEN: usize = 64;

/// Longest database name: leaves room for the longest tool suffix
/// (`_describe_table`) and for a deployment prefix added by a hub.
pub const MAX_DATABASE_NAME_LEN: usize = 32;

/// Longest deployment name (and the hub's workspace and agent names).
pub const MAX_DEPLOYMENT_NAME_LEN: usize = 32;

/// A database, deployment or tool name that breaks the naming rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("'{name}' is {len} characters long; the limit is {max}")]
    TooLong {
        /// The offending name.
        name: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a character outside the allowed set.
    #[error("'{name}' contains '{ch}': use only {allowed}")]
    BadCharacter {
        /// The offending name.
        name: String,
        /// The first bad character.
        ch: char,
        /// The allowed characters, in words.
        allowed: &'static str,
    },
    /// A database or deployment name must start with a lowercase letter.
    #[error("'{0}' must start with a lowercase letter a-z")]
    BadStart(String),
    /// A hub tool name without the `_` that ends its deployment.
    #[error("'{0}' does not start with a deployment name and '_'")]
    NoDeployment(String),
    /// A tool name that does not end in `_` and a standard tool.
    #[error("'{name}' does not end in '_' and a standard tool ({known})")]
    UnknownTool {
        /// The offending name.
        name: String,
        /// The standard tools' suffixes.
        known: String,
    },
}

/// Checks a tool name against `^[a-zA-Z0-9_-]{1,64}$`.
pub fn validate_tool_name(name: &str) -> Result<(), NameError> {
    check_characters(
        name,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        "ASCII letters, digits, '_' and '-'",
    )?;
    check_length(name, MAX_TOOL_NAME_LEN)
}

/// Checks a database name: `^[a-z][a-z0-9_-]{0,31}$`.
///
/// Lowercase only so that `Shop` and `shop` can never both exist and confuse
/// a model; the length keeps every derived tool name within 64 characters.
pub fn validate_database_name(name: &str) -> Result<(), NameError> {
    check_start(name)?;
    check_characters(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
        "lowercase letters a-z, digits, '_' and '-'",
    )?;
    check_length(name, MAX_DATABASE_NAME_LEN)
}

/// Checks a deployment name: `^[a-z][a-z0-9-]{0,31}$`.
///
/// Without `_`, so a hub's `<deployment>_<database>_<tool>` splits at its
/// first `_` unambiguously; the hub holds workspace and agent names to the
/// same rule, since all three appear in SPIFFE IDs, tool names and URLs.
pub fn validate_deployment_name(name: &str) -> Result<(), NameError> {
    check_start(name)?;
    check_characters(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "lowercase letters a-z, digits and '-'",
    )?;
    check_length(name, MAX_DEPLOYMENT_NAME_LEN)
}

fn check_start(name: &str) -> Result<(), NameError> {
    match name.chars().next() {
        None => Err(NameError::Empty),
        Some(first) if !first.is_ascii_lowercase() => Err(NameError::BadStart(name.to_owned())),
        Some(_) => Ok(()),
    }
}

fn check_characters(
    name: &str,
    allowed: impl Fn(char) -> bool,
    in_words: &'static str,
) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    match name.chars().find(|c| !allowed(*c)) {
        Some(ch) => Err(NameError::BadCharacter {
            name: name.to_owned(),
            ch,
            allowed: in_words,
        }),
        None => Ok(()),
    }
}

fn check_length(name: &str, max: usize) -> Result<(), NameError> {
    if name.len() > max {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// Splits `<database>_<suffix>` at its standard suffix, longest first
/// (database names may contain `_`, and `list_tables` must not be read as
/// a database ending in `_list`). `None` when the name does not end in `_`
/// and a standard suffix after a non-empty database part. The database
/// part is not checked: see [`ToolName::parse`].
pub fn split_suffix(name: &str) -> Option<(&str, StandardTool)> {
    let mut tools = StandardTool::ALL;
    tools.sort_by_key(|t| std::cmp::Reverse(t.suffix().len()));
    tools.into_iter().find_map(|tool| {
        let database = name.strip_suffix(tool.suffix())?.strip_suffix('_')?;
        (!database.is_empty()).then_some((database, tool))
    })
}

/// A tool name in its parts. At an adapter it reads `<database>_<tool>`
/// (`shop_query`); at a hub `<deployment>_<database>_<tool>`
/// (`eu_shop_query`). Every value is valid: each part follows its rule and
/// the whole name follows [`validate_tool_name`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolName {
    deployment: Option<String>,
    database: String,
    tool: StandardTool,
}

impl ToolName {
    /// Standard tool `tool` of database `database`, as its adapter names it.
    pub fn new(database: &str, tool: StandardTool) -> Result<ToolName, NameError> {
        validate_database_name(database)?;
        let name = ToolName {
            deployment: None,
            database: database.to_owned(),
            tool,
        };
        validate_tool_name(&name.to_string())?;
        Ok(name)
    }

    /// The same tool as a hub names it, in `deployment`. Fails when the
    /// deployment name breaks its rule or the whole name grows past
    /// [`MAX_TOOL_NAME_LEN`].
    pub fn in_deployment(self, deployment: &str) -> Result<ToolName, NameError> {
        validate_deployment_name(deployment)?;
        let name = ToolName {
            deployment: Some(deployment.to_owned()),
            ..self
        };
        validate_tool_name(&name.to_string())?;
        Ok(name)
    }

    /// Parses an adapter's `<database>_<tool>`.
    pub fn parse(name: &str) -> Result<ToolName, NameError> {
        validate_tool_name(name)?;
        let (database, tool) = split_suffix(name).ok_or_else(|| NameError::UnknownTool {
            name: name.to_owned(),
            known: StandardTool::ALL.map(StandardTool::suffix).join(", "),
        })?;
        ToolName::new(database, tool)
    }

    /// Parses a hub's `<deployment>_<database>_<tool>`: the deployment ends
    /// at the first `_`.
    pub fn parse_namespaced(name: &str) -> Result<ToolName, NameError> {
        validate_tool_name(name)?;
        let (deployment, local) = name
            .split_once('_')
            .ok_or_else(|| NameError::NoDeployment(name.to_owned()))?;
        ToolName::parse(local)?.in_deployment(deployment)
    }

    /// The deployment, in a hub's name.
    pub fn deployment(&self) -> Option<&str> {
        self.deployment.as_deref()
    }

    /// The database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The standard tool.
    pub fn tool(&self) -> StandardTool {
        self.tool
    }

    /// The name without its deployment: what the adapter calls the tool.
    pub fn local(&self) -> ToolName {
        ToolName {
            deployment: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(deployment) = &self.deployment {
            write!(f, "{deployment}_")?;
        }
        write!(f, "{}_{}", self.database, self.tool.suffix())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn tool_names_follow_the_strict_rule() {
        assert!(validate_tool_name("shop_query").is_ok());
        assert!(validate_tool_name("a-b_C9").is_ok());
        assert_eq!(validate_tool_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_tool_name("shop.query"),
            Err(NameError::BadCharacter { ch: '.', .. })
        ));
        assert!(matches!(
            validate_tool_name(&"x".repeat(65)),
            Err(NameError::TooLong { len: 65, .. })
        ));
        assert!(validate_tool_name(&"x".repeat(64)).is_ok());
        assert!(validate_tool_name("naïve").is_err());
    }

    #[test]
    fn database_names_are_lowercase_and_short() {
        assert!(validate_database_name("shop").is_ok());
        assert!(validate_database_name("eu-west_2").is_ok());
        assert!(matches!(
            validate_database_name("Shop"),
            Err(NameError::BadStart(_))
        ));
        assert!(matches!(
            validate_database_name("9shop"),
            Err(NameError::BadStart(_))
        ));
        assert_eq!(validate_database_name(""), Err(NameError::Empty));
        assert!(validate_database_name("sh op").is_err());
        assert!(validate_database_name(&"a".repeat(33)).is_err());
        let longest = "a".repeat(MAX_DATABASE_NAME_LEN);
        for tool in StandardTool::ALL {
            assert!(ToolName::new(&longest, tool).is_ok());
        }
    }

    #[test]
    fn deployment_names_have_no_underscore() {
        for ok in ["a", "eu", "acme-prod-2", &"a".repeat(32)] {
            assert_eq!(validate_deployment_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Eu",
            "1eu",
            "-eu",
            "e_u",
            "e.u",
            "eü",
            "e u",
            &"a".repeat(33),
        ] {
            assert!(validate_deployment_name(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            validate_deployment_name("e_u"),
            Err(NameError::BadCharacter { ch: '_', .. })
        ));
    }
    #[test]
    fn tool_names_round_trip_in_both_forms() {
        for (name, database, tool) in [
            ("shop_query", "shop", StandardTool::Query),
            ("big_data_list_tables", "big_data", StandardTool::ListTables),
            ("my_list_list_schemas", "my_list", StandardTool::ListSchemas),
            ("a_b_describe_table", "a_b", StandardTool::DescribeTable),
            ("query_explain", "query", StandardTool::Explain),
            ("x_query_query", "x_query", StandardTool::Query),
            ("eu-west_2_query", "eu-west_2", StandardTool::Query),
        ] {
            let parsed = ToolName::parse(name).expect(name);
            assert_eq!(
                (parsed.deployment(), parsed.database(), parsed.tool()),
                (None, database, tool),
                "{name}"
            );
            assert_eq!(parsed.to_string(), name);
            assert_eq!(ToolName::new(database, tool).unwrap(), parsed);

            let hub = format!("eu-1_{name}");
            let namespaced = ToolName::parse_namespaced(&hub).expect(&hub);
            assert_eq!(namespaced.deployment(), Some("eu-1"));
            assert_eq!(namespaced.database(), database);
            assert_eq!(namespaced.tool(), tool);
            assert_eq!(namespaced.to_string(), hub);
            assert_eq!(namespaced.local(), parsed);
            assert_eq!(parsed.clone().in_deployment("eu-1").unwrap(), namespaced);
        }
    }

    #[test]
    fn the_first_underscore_ends_the_deployment() {
        let name = ToolName::parse_namespaced("eu_my_db_query").unwrap();
        assert_eq!((name.deployment(), name.database()), (Some("eu"), "my_db"));
        // A deployment cannot hold `_`, so no other split exists.
        assert!(matches!(
            ToolName::parse("shop_query").unwrap().in_deployment("e_u"),
            Err(NameError::BadCharacter { ch: '_', .. })
        ));
    }

    #[test]
    fn every_rule_refuses() {
        let parse = ToolName::parse;
        let namespaced = ToolName::parse_namespaced;
        assert_eq!(parse(""), Err(NameError::Empty));
        assert!(matches!(
            parse("shop.query"),
            Err(NameError::BadCharacter { ch: '.', .. })
        ));
        assert!(matches!(
            parse("shop_query\n"),
            Err(NameError::BadCharacter { ch: '\n', .. })
        ));
        assert!(matches!(parse("Shop_query"), Err(NameError::BadStart(_))));
        assert!(matches!(parse("9shop_query"), Err(NameError::BadStart(_))));
        assert!(matches!(
            parse("_query"),
            Err(NameError::UnknownTool { .. })
        ));
        assert!(matches!(parse("query"), Err(NameError::UnknownTool { .. })));
        assert!(matches!(
            parse("shop_vacuum"),
            Err(NameError::UnknownTool { .. })
        ));
        assert!(matches!(
            parse("shopquery"),
            Err(NameError::UnknownTool { .. })
        ));
        assert!(matches!(
            parse(&format!("{}_query", "a".repeat(33))),
            Err(NameError::TooLong {
                max: MAX_DATABASE_NAME_LEN,
                ..
            })
        ));
        assert!(matches!(
            namespaced("shopquery"),
            Err(NameError::NoDeployment(_))
        ));
        assert!(matches!(
            namespaced("Eu_shop_query"),
            Err(NameError::BadStart(_))
        ));
        assert_eq!(namespaced("_shop_query"), Err(NameError::Empty));
        assert!(matches!(
            namespaced("eu_shop"),
            Err(NameError::UnknownTool { .. })
        ));
        assert!(matches!(
            namespaced("eu_Shop_query"),
            Err(NameError::BadStart(_))
        ));
        assert!(matches!(
            ToolName::new("shop", StandardTool::Query)
                .unwrap()
                .in_deployment(&"d".repeat(33)),
            Err(NameError::TooLong {
                max: MAX_DEPLOYMENT_NAME_LEN,
                ..
            })
        ));
    }

    #[test]
    fn the_whole_name_stays_within_64_characters() {
        // 25 + 1 + 32 + 6 = 64: the longest that fits.
        let database = "a".repeat(MAX_DATABASE_NAME_LEN);
        let fits = format!("{}_{database}_query", "d".repeat(25));
        assert_eq!(fits.len(), MAX_TOOL_NAME_LEN);
        assert_eq!(ToolName::parse_namespaced(&fits).unwrap().to_string(), fits);
        let over = format!("d{fits}");
        assert!(matches!(
            ToolName::parse_namespaced(&over),
            Err(NameError::TooLong {
                len: 65,
                max: MAX_TOOL_NAME_LEN,
                ..
            })
        ));
        // Valid parts whose sum is too long.
        let local = ToolName::new(&database, StandardTool::DescribeTable).unwrap();
        assert!(matches!(
            local.in_deployment(&"d".repeat(20)),
            Err(NameError::TooLong {
                max: MAX_TOOL_NAME_LEN,
                ..
            })
        ));
    }
}
