//! The HTTPS sink: a JSON array per batch, `2xx` is accepted.

use super::format::{display_url, export_object, json_text};
use super::{BearerToken, ExportError, ExportRecord};

use serde_json::Value;

// ---- HTTPS --------------------------------------------------------------

pub(super) struct HttpsPoster {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) bearer: Option<BearerToken>,
}

impl HttpsPoster {
    pub(super) async fn send(&self, batch: &[ExportRecord]) -> Result<(), ExportError> {
        let objects = Value::Array(batch.iter().map(export_object).collect());
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json_text(&objects));
        if let Some(token) = &self.bearer {
            // bearer_auth marks the header sensitive.
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| ExportError::HttpsSend {
            url: display_url(&self.url),
            source: e.without_url(),
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ExportError::HttpsStatus {
                url: display_url(&self.url),
                status: response.status().as_u16(),
            })
        }
    }
}
