//! The URL, the client options and the attached database's name.

use std::time::Duration;

use ewii_driver_core::{DatabaseConfig, Driver, DriverError};
use mongodb::options::ClientOptions;

/// How long the driver looks for a suitable server before a call fails.
const SERVER_SELECTION: Duration = Duration::from_secs(10);

/// Parses `config.url` (`mongodb://` or `mongodb+srv://`) into client
/// options and the name of the database the tools read (the URL's path).
///
/// Public so that tests can connect the way the driver does.
pub async fn client_options(
    config: &DatabaseConfig,
) -> Result<(ClientOptions, String), DriverError> {
    let url = config.url.expose();
    if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
        return Err(DriverError::BadUrl(format!(
            "a MongoDB URL starts with mongodb:// or mongodb+srv:// (e.g. {})",
            super::MONGO_DRIVER.example_url()
        )));
    }
    // The crate's own parse errors can quote the URL; never pass them on.
    let mut options = ClientOptions::parse(url).await.map_err(|e| {
        DriverError::BadUrl(format!(
            "{} ({})",
            super::errors::url_problem(&e),
            ewii_driver_core::mask_url(url)
        ))
    })?;
    let database = options.default_database.clone().ok_or_else(|| {
        DriverError::BadUrl(format!(
            "name the database to attach in the URL path, e.g. {} ({})",
            super::MONGO_DRIVER.example_url(),
            ewii_driver_core::mask_url(url)
        ))
    })?;
    if options.app_name.is_none() {
        options.app_name = Some("ewii".into());
    }
    if options.server_selection_timeout.is_none() {
        options.server_selection_timeout = Some(SERVER_SELECTION.min(config.limits.timeout));
    }
    if options.connect_timeout.is_none() {
        options.connect_timeout = Some(SERVER_SELECTION.min(config.limits.timeout));
    }
    Ok((options, database))
}
