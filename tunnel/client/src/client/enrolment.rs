//! Enrolment: a single-use token and a CSR for a key generated here, an
//! SVID back, retried with backoff while the hub cannot be reached.

use std::time::Instant;

use ewii_quic::{ClientQuicConfig, Dialer, HubCertVerifier};
use ewii_wire::enrol::EnrolResponse;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::{
    Client, ClientError, ClientSettings, hub_addresses, log_to, new_backoff, one_line, resolve,
};
use crate::connlog::ConnectionRecord;
use crate::identity::{CurrentIdentity, IdentityStore, KeyRequest, random_unit};

impl Client {
    /// Enrols with `token`, retrying while the hub cannot be reached.
    pub(super) async fn enrol(
        settings: &ClientSettings,
        store: &IdentityStore,
        token: &Zeroizing<String>,
        cancel: &CancellationToken,
    ) -> Result<CurrentIdentity, ClientError> {
        // The token travels in TLS only (there is no app layer yet), so
        // the hub must prove itself under the hub CA right there: a
        // TLS-terminating relay (`tls_ca`) never sees the token.
        let verifier = HubCertVerifier::new(&settings.hub_ca, &settings.hub_name)?;
        let quic = ClientQuicConfig::enrolment(&verifier)?;
        let dialer = Dialer::bind()?;
        let mut backoff = new_backoff();
        let hubs = hub_addresses(&settings.hub);
        let mut next = 0usize;
        let outcome = loop {
            let request = KeyRequest::generate()?;
            let started = Instant::now();
            // Another replica after each failure, when the hub has several.
            let hub = hubs
                .get(next % hubs.len().max(1))
                .copied()
                .unwrap_or(settings.hub.as_str());
            let attempt = async {
                let addr = resolve(hub).await?;
                dialer
                    .enrol(
                        &quic,
                        addr,
                        &settings.hub_name,
                        &request.enrol_request(token),
                    )
                    .await
            };
            let answer = tokio::select! {
                a = attempt => a,
                _ = cancel.cancelled() => break Err(ClientError::Cancelled),
            };
            match answer {
                Ok(EnrolResponse::Issued(issued)) => {
                    let issued = request.accept(&issued)?;
                    store.save(&issued)?;
                    let identity = issued.into_identity();
                    tracing::info!(
                        spiffe_id = identity.spiffe_id(),
                        serial = %identity.svid().serial,
                        expires = %identity.svid().expires_at_rfc3339(),
                        state = %store.dir().display(),
                        "enrolled"
                    );
                    let mut record = ConnectionRecord::now(identity.spiffe_id(), "enrolled");
                    record.destination = Some(hub.to_owned());
                    record.duration_ms = started.elapsed().as_millis() as u64;
                    record.outcome = identity.svid().serial.clone();
                    log_to(&settings.log, record);
                    break Ok(identity);
                }
                Ok(EnrolResponse::Refused(refusal)) => {
                    break Err(ClientError::Refused {
                        reason: one_line(&refusal.reason),
                        message: one_line(&refusal.message),
                    });
                }
                Err(e) => {
                    tracing::warn!(%hub, reason = e.reason(), error = %e, "cannot enrol with the hub; retrying");
                    next = next.wrapping_add(1);
                }
            }
            let delay = backoff.next_delay(random_unit());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => break Err(ClientError::Cancelled),
            }
        };
        dialer.close("enrolment over").await;
        outcome
    }
}
