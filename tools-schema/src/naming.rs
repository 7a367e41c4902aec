//! Naming rules for databases and tools.

use crate::StandardTool;

/// Longest tool name any common MCP client accepts.
pub const MAX_TOOL_NAME_LEN: usize = 64;

/// Longest database name: leaves room for the longest tool suffix
/// (`_describe_table`) and for a deployment prefix added by a hub.
pub const MAX_DATABASE_NAME_LEN: usize = 32;

/// A database or tool name that breaks the naming rules.
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
    /// A database name must start with a lowercase letter.
    #[error("'{0}' must start with a lowercase letter a-z")]
    BadStart(String),
}

/// Checks a tool name against `^[a-zA-Z0-9_-]{1,64}$`.
pub fn validate_tool_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(NameError::BadCharacter {
            name: name.to_owned(),
            ch,
            allowed: "ASCII letters, digits, '_' and '-'",
        });
    }
    if name.len() > MAX_TOOL_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
            max: MAX_TOOL_NAME_LEN,
        });
    }
    Ok(())
}

/// Checks a database name: `^[a-z][a-z0-9_-]{0,31}$`.
///
/// Lowercase only so that `Shop` and `shop` can never both exist and confuse
/// a model; the length keeps every derived tool name within 64 characters.
pub fn validate_database_name(name: &str) -> Result<(), NameError> {
    let Some(first) = name.chars().next() else {
        return Err(NameError::Empty);
    };
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadStart(name.to_owned()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(NameError::BadCharacter {
            name: name.to_owned(),
            ch,
            allowed: "lowercase letters a-z, digits, '_' and '-'",
        });
    }
    if name.len() > MAX_DATABASE_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
            max: MAX_DATABASE_NAME_LEN,
        });
    }
    Ok(())
}

/// The wire name of `tool` on `database`: `<database>_<suffix>`.
pub fn tool_name(database: &str, tool: StandardTool) -> Result<String, NameError> {
    validate_database_name(database)?;
    let name = format!("{database}_{}", tool.suffix());
    validate_tool_name(&name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
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
        assert!(validate_database_name("sh op").is_err());
        assert!(validate_database_name(&"a".repeat(33)).is_err());
        let longest = "a".repeat(MAX_DATABASE_NAME_LEN);
        for tool in StandardTool::ALL {
            assert!(tool_name(&longest, tool).is_ok());
        }
    }
}
