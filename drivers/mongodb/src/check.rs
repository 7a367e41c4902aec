//! `test-database`: the server version, and whether the connection's user
//! can write (it should not).
//!
//! MongoDB has no read-only session mode: what holds at the engine is the
//! user's roles. `connectionStatus` with `showPrivileges` lists the
//! actions the user holds; any write action on the attached database (or
//! on every database) is reported as a warning, as is a server that asks
//! for no authentication. A server that cannot answer `connectionStatus`
//! (the nx-27017 stand-in, for one) gets a warning saying the check could
//! not be made: never a silent pass.

use ewii_driver_core::{CheckReport, DriverError};
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};

/// Actions that change data or schema.
const WRITE_ACTIONS: &[&str] = &[
    "insert",
    "update",
    "remove",
    "createCollection",
    "dropCollection",
    "createIndex",
    "dropIndex",
    "dropDatabase",
    "renameCollectionSameDB",
    "collMod",
    "convertToCapped",
    "bypassDocumentValidation",
    "enableSharding",
    "compact",
];

/// Connects and reports version, effective mode and warnings.
pub async fn check(
    client: &Client,
    database: &str,
    read_only: bool,
) -> Result<CheckReport, DriverError> {
    let db = client.database(database);
    let build = db
        .run_command(doc! { "buildInfo": 1 })
        .await
        .map_err(|e| DriverError::Connect(crate::errors::message(&e)))?;
    let version = build.get_str("version").unwrap_or("unknown version");
    let mut warnings = Vec::new();
    let can_write = match db
        .run_command(doc! { "connectionStatus": 1, "showPrivileges": true })
        .await
    {
        Ok(status) => write_privileges(&status, database, &mut warnings),
        Err(e) => {
            warnings.push(format!(
                "could not check the user's privileges (connectionStatus failed: {}); \
                 make sure the user holds only the `read` role on '{database}'",
                crate::errors::message(&e)
            ));
            None
        }
    };
    if !read_only {
        warnings.push(format!(
            "{}; the MongoDB tools themselves never write",
            CheckReport::READ_WRITE_WARNING
        ));
    }
    Ok(CheckReport {
        server_version: format!("MongoDB {version}"),
        // Held at the engine only when the server confirmed the user cannot write.
        engine_read_only: can_write == Some(false),
        warnings,
    })
}

/// Whether the user holds a write action on `database` (`None`: unknown),
/// with a warning naming the actions when it does.
fn write_privileges(status: &Document, database: &str, warnings: &mut Vec<String>) -> Option<bool> {
    let Ok(auth) = status.get_document("authInfo") else {
        warnings.push(format!(
            "the server's connectionStatus reports no authInfo, so the user's privileges could \
             not be checked; make sure the user holds only the `read` role on '{database}'"
        ));
        return None;
    };
    let users = auth.get_array("authenticatedUsers").map_or(0, Vec::len);
    if users == 0 {
        warnings.push(
            "the connection is not authenticated: on a server without access control anyone \
             who connects can write. Enable authentication and connect as a user with the \
             `read` role only"
                .into(),
        );
        return Some(true);
    }
    let Ok(privileges) = auth.get_array("authenticatedUserPrivileges") else {
        warnings.push("the server did not list the user's privileges; check its roles".into());
        return None;
    };
    let mut found: Vec<String> = Vec::new();
    for privilege in privileges.iter().filter_map(Bson::as_document) {
        let resource = privilege.get_document("resource").ok();
        let db = resource.and_then(|r| r.get_str("db").ok());
        let cluster = resource.is_some_and(|r| r.get_bool("cluster").unwrap_or(false));
        let applies = cluster || matches!(db, Some("") | None) || db == Some(database);
        if !applies {
            continue;
        }
        for action in privilege
            .get_array("actions")
            .map(|a| a.iter().filter_map(Bson::as_str).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if WRITE_ACTIONS.contains(&action) && !found.iter().any(|f| f == action) {
                found.push(action.to_owned());
            }
        }
    }
    if found.is_empty() {
        return Some(false);
    }
    found.sort();
    warnings.push(format!(
        "the connection's user can write to '{database}' (actions: {}): Ewii's fences refuse \
         writes, but give this user only the `read` role so the server refuses them too",
        found.join(", ")
    ));
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_actions_on_the_database_warn() {
        let status = doc! { "authInfo": {
            "authenticatedUsers": [{"user": "app", "db": "admin"}],
            "authenticatedUserPrivileges": [
                {"resource": {"db": "shop", "collection": ""}, "actions": ["find", "insert"]},
                {"resource": {"db": "other", "collection": ""}, "actions": ["remove"]},
            ],
        }};
        let mut warnings = Vec::new();
        assert_eq!(write_privileges(&status, "shop", &mut warnings), Some(true));
        assert!(warnings[0].contains("actions: insert"), "{warnings:?}");
        let mut warnings = Vec::new();
        assert_eq!(
            write_privileges(&status, "third", &mut warnings),
            Some(false)
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_status_without_auth_info_is_a_warning_not_a_pass() {
        let mut warnings = Vec::new();
        assert_eq!(
            write_privileges(&doc! {"ok": 1, "result": []}, "shop", &mut warnings),
            None
        );
        assert!(warnings[0].contains("could not be checked"));
    }

    #[test]
    fn no_authentication_is_a_warning() {
        let status =
            doc! { "authInfo": { "authenticatedUsers": [], "authenticatedUserPrivileges": [] } };
        let mut warnings = Vec::new();
        assert_eq!(write_privileges(&status, "shop", &mut warnings), Some(true));
        assert!(warnings[0].contains("not authenticated"));
    }
}
