//! The model the classifier speaks in: SQL dialects, statement classes,
//! the set of classes a call may run, and the classification result.

use serde::Serialize;
use sqlparser::dialect::{
    Dialect, MsSqlDialect, MySqlDialect, OracleDialect, PostgreSqlDialect, SQLiteDialect,
};

/// The SQL dialect a statement is parsed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    /// Microsoft SQL Server (T-SQL).
    MsSql,
    /// Oracle Database (Oracle SQL; PL/SQL is never a read).
    Oracle,
}

impl SqlDialect {
    /// Every dialect.
    pub const ALL: [SqlDialect; 5] = [
        SqlDialect::Sqlite,
        SqlDialect::Postgres,
        SqlDialect::MySql,
        SqlDialect::MsSql,
        SqlDialect::Oracle,
    ];

    /// The name a tool's `_meta["ewii/dialect"]` carries: `sqlite`,
    /// `postgres`, `mysql` (MariaDB speaks `mysql`), `mssql` or `oracle`.
    pub fn as_str(self) -> &'static str {
        match self {
            SqlDialect::Sqlite => "sqlite",
            SqlDialect::Postgres => "postgres",
            SqlDialect::MySql => "mysql",
            SqlDialect::MsSql => "mssql",
            SqlDialect::Oracle => "oracle",
        }
    }

    /// Parses [`SqlDialect::as_str`]; anything else (including `mariadb`,
    /// which is advertised as `mysql`) is `None`, so a caller fails closed.
    pub fn from_name(name: &str) -> Option<SqlDialect> {
        SqlDialect::ALL.into_iter().find(|d| d.as_str() == name)
    }

    pub(super) fn parser_dialect(self) -> Box<dyn Dialect> {
        match self {
            SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
            SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
            SqlDialect::MySql => Box::new(MySqlDialect {}),
            SqlDialect::MsSql => Box::new(MsSqlDialect {}),
            SqlDialect::Oracle => Box::new(OracleDialect {}),
        }
    }
}

/// Broad class of a statement, for read-only checks and operator policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementClass {
    /// Reads data only.
    Read,
    /// Changes rows (INSERT, UPDATE, DELETE, MERGE, COPY FROM, a writing CTE…).
    Write,
    /// Changes the schema (CREATE, ALTER, DROP, TRUNCATE…).
    Ddl,
    /// Anything else: session settings, transaction control, procedures,
    /// engine commands. Never allowed on a read-only database.
    Other,
}

impl StatementClass {
    /// Every class, in policy order.
    pub const ALL: [StatementClass; 4] = [
        StatementClass::Read,
        StatementClass::Write,
        StatementClass::Ddl,
        StatementClass::Other,
    ];

    /// The name used in policies and in the `ewii/statements` call meta:
    /// `read`, `write`, `ddl`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Read => "read",
            StatementClass::Write => "write",
            StatementClass::Ddl => "ddl",
            StatementClass::Other => "other",
        }
    }

    /// Parses [`StatementClass::as_str`].
    pub fn from_name(name: &str) -> Option<StatementClass> {
        StatementClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn bit(self) -> u8 {
        match self {
            StatementClass::Read => 1,
            StatementClass::Write => 2,
            StatementClass::Ddl => 4,
            StatementClass::Other => 8,
        }
    }
}

/// The statement classes a call may run: what the hub's policy allows the
/// calling agent, sent with each call as `_meta["ewii/statements"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatementClasses(u8);

impl StatementClasses {
    /// All four classes (an unrestricted agent).
    pub fn all() -> StatementClasses {
        StatementClasses::from_classes(StatementClass::ALL)
    }

    /// Exactly `classes`.
    pub fn from_classes(classes: impl IntoIterator<Item = StatementClass>) -> StatementClasses {
        StatementClasses(classes.into_iter().fold(0, |bits, c| bits | c.bit()))
    }

    /// Parses the names of the `ewii/statements` meta; `Err` names the first
    /// entry that is not a class, so a caller can refuse the call (fail
    /// closed) rather than guess.
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<StatementClasses, String> {
        let mut classes = Vec::new();
        for name in names {
            classes.push(StatementClass::from_name(name).ok_or_else(|| name.to_owned())?);
        }
        Ok(StatementClasses::from_classes(classes))
    }

    /// Whether `class` is allowed.
    pub fn contains(self, class: StatementClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// Whether the call may only read: none of `write`, `ddl`, `other` is
    /// allowed, so the driver runs it in the engine's read-only mode.
    pub fn read_only(self) -> bool {
        ![
            StatementClass::Write,
            StatementClass::Ddl,
            StatementClass::Other,
        ]
        .into_iter()
        .any(|c| self.contains(c))
    }

    /// The classes a plain `EXPLAIN` (which does not run its statement)
    /// may show the plan of: writes and DDL too, but `other` only when it
    /// was allowed (what cannot be parsed stays refused).
    pub fn for_plain_explain(self) -> StatementClasses {
        StatementClasses(
            self.0
                | StatementClass::Write.bit()
                | StatementClass::Ddl.bit()
                | StatementClass::Read.bit(),
        )
    }

    /// The allowed classes, in policy order.
    pub fn classes(self) -> Vec<StatementClass> {
        StatementClass::ALL
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect()
    }

    /// The allowed class names, in policy order (the `ewii/statements` meta).
    pub fn names(self) -> Vec<&'static str> {
        self.classes()
            .into_iter()
            .map(StatementClass::as_str)
            .collect()
    }
}

/// Result of [`classify`](super::classify).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// The broad class.
    pub class: StatementClass,
    /// Why, in words (e.g. "a data-modifying CTE (DELETE)").
    pub detail: String,
    /// Number of parameters the statement expects: the highest `$n` / `?n`,
    /// or the number of bare `?` placeholders.
    pub placeholders: usize,
}

impl Classification {
    /// A classification; [`classify`](super::classify) fills in `placeholders` afterwards.
    pub(super) fn new(class: StatementClass, detail: impl Into<String>) -> Self {
        Classification {
            class,
            detail: detail.into(),
            placeholders: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn dialect_and_class_names_round_trip() {
        for d in SqlDialect::ALL {
            assert_eq!(SqlDialect::from_name(d.as_str()), Some(d));
        }
        assert_eq!(SqlDialect::from_name("mariadb"), None);
        let all = StatementClasses::all();
        assert_eq!(all.names(), vec!["read", "write", "ddl", "other"]);
        assert!(!all.read_only());
        let read = StatementClasses::from_names(["read"]).expect("known");
        assert!(read.read_only() && read.contains(StatementClass::Read));
        assert!(StatementClasses::from_names(["read", "delete"]).is_err_and(|b| b == "delete"));
        assert!(StatementClasses::default().read_only());
        assert!(read.for_plain_explain().contains(StatementClass::Write));
        assert!(!read.for_plain_explain().contains(StatementClass::Other));
    }
}
