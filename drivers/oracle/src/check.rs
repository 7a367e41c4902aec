//! `test-database`: the server version, the read-only transaction, and the
//! user's privileges beyond reading.

use ewii_driver_core::{CallContext, CheckReport, DriverError};

use crate::OracleDatabase;
use crate::client::{statement_error, with_session};

/// System privileges and roles that let a user change data or run code
/// outside a read-only transaction (autonomous transactions, jobs, links).
const WRITE_PRIVILEGES: &str = "SELECT privilege FROM session_privs WHERE privilege LIKE '%ANY%' \
     AND privilege NOT IN ('SELECT ANY TABLE', 'SELECT ANY DICTIONARY', 'SELECT ANY SEQUENCE', \
       'READ ANY TABLE', 'SELECT ANY MINING MODEL') \
     OR privilege IN ('CREATE TABLE', 'CREATE PROCEDURE', 'CREATE JOB', 'CREATE DATABASE LINK', \
       'CREATE VIEW', 'CREATE SEQUENCE', 'CREATE TRIGGER', 'UNLIMITED TABLESPACE', \
       'ALTER SYSTEM', 'ALTER DATABASE', 'SYSDBA', 'SYSOPER') \
     UNION SELECT 'role ' || role FROM session_roles \
       WHERE role IN ('DBA', 'RESOURCE', 'IMP_FULL_DATABASE', 'EXP_FULL_DATABASE') \
     UNION SELECT DISTINCT privilege || ' on ' || owner || '.' || table_name FROM user_tab_privs \
       WHERE privilege IN ('INSERT', 'UPDATE', 'DELETE', 'ALTER', 'EXECUTE', 'WRITE') \
       AND grantee = USER \
     ORDER BY 1";

/// The warnings for a read-only database whose user holds `privileges`.
pub(crate) fn privilege_warnings(privileges: &[String]) -> Vec<String> {
    if privileges.is_empty() {
        return Vec::new();
    }
    let shown: Vec<&str> = privileges.iter().take(12).map(String::as_str).collect();
    vec![format!(
        "the database user can do more than read ({}{}). Every call runs in SET TRANSACTION \
         READ ONLY and is rolled back, but a procedure, an autonomous-transaction function or \
         a database link acts outside that transaction; use a user with CREATE SESSION and \
         SELECT/READ grants only (see docs/least-privilege.md)",
        shown.join(", "),
        if privileges.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    )]
}

impl OracleDatabase {
    pub(crate) async fn check_database(&self) -> Result<CheckReport, DriverError> {
        let limit = self.limits.timeout;
        let ctx = CallContext::default();
        let (version, privileges) = with_session(&self.target, &ctx, limit, true, move |conn| {
            let version = conn
                .server_version()
                .map(|(v, banner)| format!("Oracle {v} ({})", banner.lines().next().unwrap_or("")))
                .map_err(|e| statement_error(&e, limit))?;
            let mut privileges = Vec::new();
            for row in conn
                .query_as::<String>(WRITE_PRIVILEGES, &[])
                .map_err(|e| statement_error(&e, limit))?
            {
                privileges.push(row.map_err(|e| statement_error(&e, limit))?);
            }
            Ok(((version, privileges), false))
        })
        .await
        .map_err(|e| DriverError::Connect(e.to_string()))?;
        let warnings = if self.read_only {
            privilege_warnings(&privileges)
        } else {
            vec![CheckReport::READ_WRITE_WARNING.into()]
        };
        Ok(CheckReport {
            server_version: version,
            // SET TRANSACTION READ ONLY is held by the engine.
            engine_read_only: self.read_only,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_no_warning_and_a_writer_does() {
        assert!(privilege_warnings(&[]).is_empty());
        let w = privilege_warnings(&["role DBA".into(), "INSERT on APP.ORDERS".into()]);
        assert!(
            w[0].contains("role DBA") && w[0].contains("least-privilege"),
            "{w:?}"
        );
    }
}
