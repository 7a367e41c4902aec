//! `test-database`: the server version, and whether the login can do more
//! than read (SQL Server has no read-only transaction, so the login's
//! permissions are the engine's own fence).

use ewii_driver_core::{CheckReport, DriverError};
use serde_json::Value;

use crate::MssqlDatabase;
use crate::url::Encryption;

/// The login's roles and the permissions beyond reading it holds in the
/// database (`fn_my_permissions`).
const PRIVILEGES: &str = "SELECT @@VERSION, \
     IS_ROLEMEMBER('db_datareader'), IS_ROLEMEMBER('db_owner'), \
     IS_ROLEMEMBER('db_datawriter'), IS_ROLEMEMBER('db_ddladmin'), IS_SRVROLEMEMBER('sysadmin'), \
     (SELECT STRING_AGG(permission_name, ', ') FROM fn_my_permissions(NULL, 'DATABASE') \
        WHERE permission_name NOT IN ('CONNECT', 'SELECT', 'VIEW DEFINITION', 'SHOWPLAN', \
          'VIEW DATABASE STATE', 'VIEW DATABASE PERFORMANCE STATE', \
          'VIEW DATABASE SECURITY STATE', 'REFERENCES'))";

/// What the login's roles and extra permissions mean for read-only mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Privileges {
    pub(crate) datareader: bool,
    pub(crate) owner: bool,
    pub(crate) datawriter: bool,
    pub(crate) ddladmin: bool,
    pub(crate) sysadmin: bool,
    /// Database permissions beyond reading, comma separated.
    pub(crate) extra: Option<String>,
}

impl Privileges {
    /// Whether the login can only read.
    pub(crate) fn read_only(&self) -> bool {
        !(self.owner || self.datawriter || self.ddladmin || self.sysadmin) && self.extra.is_none()
    }

    /// The warnings for a read-only database attached with this login.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let roles: Vec<&str> = [
            (self.sysadmin, "sysadmin"),
            (self.owner, "db_owner"),
            (self.datawriter, "db_datawriter"),
            (self.ddladmin, "db_ddladmin"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if !roles.is_empty() || self.extra.is_some() {
            w.push(format!(
                "the login can change this database (roles: {}; permissions: {}). SQL Server has \
                 no read-only transaction: Ewii rolls every call back and refuses procedures, but \
                 the login itself should be limited to db_datareader (see \
                 docs/least-privilege.md)",
                if roles.is_empty() {
                    "none".into()
                } else {
                    roles.join(", ")
                },
                self.extra.as_deref().unwrap_or("none beyond reading"),
            ));
        }
        if !self.datareader && !self.owner && !self.sysadmin {
            w.push(
                "the login is not in db_datareader: it may be unable to read tables (grant \
                 SELECT or add it to db_datareader)"
                    .into(),
            );
        }
        w
    }
}

fn flag(v: &Value) -> bool {
    v.as_i64() == Some(1) || v.as_bool() == Some(true)
}

impl MssqlDatabase {
    pub(crate) async fn check_database(&self) -> Result<CheckReport, DriverError> {
        let rows = self
            .catalog_rows(PRIVILEGES, &[])
            .await
            .map_err(|e| DriverError::Connect(e.to_string()))?;
        let row = rows
            .first()
            .ok_or_else(|| DriverError::Other("SQL Server returned no version".into()))?;
        let version = row[0].as_str().unwrap_or("SQL Server").lines().next();
        let p = Privileges {
            datareader: flag(&row[1]),
            owner: flag(&row[2]),
            datawriter: flag(&row[3]),
            ddladmin: flag(&row[4]),
            sysadmin: flag(&row[5]),
            extra: row[6].as_str().map(str::to_owned),
        };
        let mut warnings = Vec::new();
        if self.target.encryption == Encryption::Plaintext {
            warnings.push(
                "encrypt=false: the login and every result cross the network in plaintext; use \
                 SQL Server 2022 or later with TDS 8.0 strict encryption (the default)"
                    .into(),
            );
        }
        if self.read_only {
            warnings.extend(p.warnings());
        } else {
            warnings.push(CheckReport::READ_WRITE_WARNING.into());
        }
        Ok(CheckReport {
            server_version: version.unwrap_or("SQL Server").trim().to_owned(),
            engine_read_only: self.read_only && p.read_only(),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reader_login_passes_without_warning() {
        let reader = Privileges {
            datareader: true,
            ..Privileges::default()
        };
        assert!(reader.read_only());
        assert!(reader.warnings().is_empty());
        let owner = Privileges {
            datareader: true,
            owner: true,
            ..Privileges::default()
        };
        assert!(!owner.read_only());
        let w = owner.warnings().join(" ");
        assert!(w.contains("db_owner") && w.contains("db_datareader"), "{w}");
        let granted = Privileges {
            datareader: true,
            extra: Some("INSERT, EXECUTE".into()),
            ..Privileges::default()
        };
        assert!(!granted.read_only());
        assert!(granted.warnings().join(" ").contains("INSERT, EXECUTE"));
        let nobody = Privileges::default();
        assert!(nobody.warnings().join(" ").contains("not in db_datareader"));
    }
}
