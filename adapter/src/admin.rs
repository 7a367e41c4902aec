//! Administrative operations on an adapter home: what the CLI's commands
//! do, as functions the launcher and tests call too.

use ewii_driver_core::schema::{ToolDescriptor, validate_database_name};
use ewii_driver_core::{
    Catalog, CheckReport, DatabaseConfig, DriverError, Limits, SecretString, find_driver,
};

use crate::home::{AdapterConfig, AdapterHome};
use crate::local_credential::{self, LocalCredentialError};
use crate::store::{self, DatabaseEntry, StoreContents, StoreError, StoreKey};

/// A failed administrative operation. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Credential store or configuration problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Driver problem (unknown driver, bad URL…).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The check of a new database failed; nothing was saved.
    #[error(
        "cannot use database '{name}': {cause}. Nothing was saved; fix the URL or credentials \
         (or pass --no-verify to save it without checking)"
    )]
    Verify {
        /// The database.
        name: String,
        /// Why.
        cause: DriverError,
    },
    /// The local credential cannot be created or read.
    #[error(transparent)]
    LocalCredential(#[from] LocalCredentialError),
    /// Bad input from the admin.
    #[error("{0}")]
    Invalid(String),
}

/// Validates a workspace id: 1–64 of `[A-Za-z0-9._-]`.
pub fn validate_workspace_id(id: &str) -> Result<(), AdminError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "invalid workspace id '{id}': use 1-64 letters, digits, '.', '_' or '-' (the id the \
             operator gave you)"
        )))
    }
}

/// `init`: creates the home, the empty encrypted store, `adapter.toml` and
/// the local credential the client will present.
pub fn init(
    home: &AdapterHome,
    workspace_id: &str,
    token: &SecretString,
) -> Result<(), AdminError> {
    validate_workspace_id(workspace_id)?;
    if home.store_path().exists() {
        return Err(StoreError::AlreadyExists(home.store_path()).into());
    }
    store::ensure_private_dir(home.dir())?;
    let lock = store::lock(home.dir())?;
    store::create(&home.store_path(), workspace_id, token)?;
    home.save_config(&AdapterConfig {
        workspace_id: workspace_id.to_owned(),
        serve: Default::default(),
        defaults: Limits::default(),
    })?;
    // `rotate` takes the lock itself (flock is not re-entrant).
    drop(lock);
    // A credential left from an earlier home in this directory is replaced:
    // a new home starts with a credential no earlier client holds.
    local_credential::rotate(home)?;
    Ok(())
}

/// Unlocks the store of `home`.
pub fn unlock(
    home: &AdapterHome,
    token: &SecretString,
) -> Result<(StoreKey, StoreContents), AdminError> {
    Ok(store::unlock(&home.store_path(), token)?)
}

/// Puts a password into a URL's user-info (for `--password-stdin`).
pub fn url_with_password(url: &str, password: &str) -> Result<SecretString, AdminError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| AdminError::Invalid(format!("cannot parse the URL to add a password: {e}")))?;
    if parsed.username().is_empty() {
        return Err(AdminError::Invalid(
            "--password-stdin needs a user name in the URL (e.g. postgres://USER@host/db)".into(),
        ));
    }
    parsed
        .set_password(Some(password))
        .map_err(|_| AdminError::Invalid("this URL cannot carry a password".into()))?;
    Ok(SecretString::new(String::from(parsed)))
}

/// Opens a database and checks it (connectivity, version, effective mode).
pub async fn check(config: &DatabaseConfig) -> Result<CheckReport, DriverError> {
    let db = find_driver(&config.driver)?.open(config).await?;
    let report = db.check().await;
    db.close().await;
    report
}

/// `add-database`: validates, optionally checks, then stores the database.
/// Nothing is written unless every step succeeds.
pub async fn add_database(
    home: &AdapterHome,
    token: &SecretString,
    name: &str,
    entry: DatabaseEntry,
    verify: bool,
) -> Result<Option<CheckReport>, AdminError> {
    validate_database_name(name)
        .map_err(|e| AdminError::Invalid(format!("invalid database name: {e}")))?;
    find_driver(&entry.driver)?;
    let _lock = store::lock(home.dir())?;
    let (key, mut contents) = unlock(home, token)?;
    if contents.databases.contains_key(name) {
        return Err(AdminError::Invalid(format!(
            "a database named '{name}' is already attached; remove-database {name} first, or \
             choose another name"
        )));
    }
    let report = if verify {
        Some(
            check(&entry.to_config(name))
                .await
                .map_err(|cause| AdminError::Verify {
                    name: name.to_owned(),
                    cause,
                })?,
        )
    } else {
        None
    };
    contents.databases.insert(name.to_owned(), entry);
    store::write(&home.store_path(), &key, &contents)?;
    Ok(report)
}

/// `remove-database`.
pub fn remove_database(
    home: &AdapterHome,
    token: &SecretString,
    name: &str,
) -> Result<(), AdminError> {
    let _lock = store::lock(home.dir())?;
    let (key, mut contents) = unlock(home, token)?;
    if contents.databases.remove(name).is_none() {
        return Err(AdminError::Invalid(format!(
            "no database named '{name}' is attached; `ewii-adapter list-databases` shows what is"
        )));
    }
    store::write(&home.store_path(), &key, &contents)?;
    Ok(())
}

/// The tools the attached databases advertise (what `serve` would offer).
pub async fn catalog(
    contents: &StoreContents,
) -> (Vec<ToolDescriptor>, Vec<(String, DriverError)>) {
    let mut catalog = Catalog::new();
    let change = catalog.apply(contents.configs()).await;
    let tools = catalog.tools().to_vec();
    catalog.close().await;
    (tools, change.failed)
}
