//! SVID renewal over the live tunnel, about half-way through each SVID's
//! life: a fresh key and CSR, the hub's answer checked, saved, and used from
//! the next connection on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ewii_quic::{ClientQuicConfig, ClientTunnel};
use tokio_util::sync::CancellationToken;

use super::{Active, Client, ClientError, NOT_RENEWABLE, RENEW_TIMEOUT, one_line};
use crate::connlog::ConnectionRecord;
use crate::identity::{IdentityError, KeyRequest, SvidInfo, retry_delay};

/// What one renewal attempt came to.
enum Renewal {
    /// Renewed; the next one is due then.
    Renewed(SystemTime),
    /// Failed; try again later.
    Retry,
    /// The hub will never renew this SVID.
    Stop,
}

impl Client {
    /// Renews the SVID over `tunnel` about half-way through each SVID's
    /// life, until the tunnel ends (`cancel`) or the hub says the SVID is
    /// not renewable.
    pub(super) async fn keep_renewing(
        self: Arc<Self>,
        tunnel: Arc<ClientTunnel>,
        cancel: CancellationToken,
    ) {
        let mut due = self.active().identity.renew_at();
        loop {
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tracing::debug!(wait_ms = wait.as_millis() as u64, "next SVID renewal");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return,
            }
            let outcome = tokio::select! {
                o = self.renew_once(&tunnel) => o,
                _ = cancel.cancelled() => return,
            };
            match outcome {
                Renewal::Renewed(next) => due = next,
                Renewal::Stop => {
                    self.renewable.store(false, Ordering::SeqCst);
                    return;
                }
                Renewal::Retry => {
                    let left = self.active().identity.svid().remaining(SystemTime::now());
                    due = SystemTime::now() + retry_delay(left);
                }
            }
        }
    }

    /// One renewal: a fresh key and CSR, the hub's answer, the checks, the
    /// state saved and the identity swapped for the next connection.
    async fn renew_once(&self, tunnel: &ClientTunnel) -> Renewal {
        let started = Instant::now();
        let failed = |why: String| {
            let mut record = ConnectionRecord::now(&self.identity, "renew_failed");
            record.destination = Some(self.settings.hub.clone());
            record.duration_ms = started.elapsed().as_millis() as u64;
            record.outcome = why;
            self.log(record);
        };
        let request = match KeyRequest::generate() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the SVID");
                failed(e.to_string());
                return Renewal::Retry;
            }
        };
        let issued = match tunnel.renew(request.csr_der(), RENEW_TIMEOUT).await {
            Ok(Ok(issued)) => issued,
            Ok(Err(refusal)) => {
                let (reason, message) = (one_line(&refusal.reason), one_line(&refusal.message));
                failed(format!("{reason}: {message}"));
                if reason == NOT_RENEWABLE {
                    tracing::warn!(
                        %reason,
                        "the hub does not renew this SVID ({message}); renewal stops, and the \
                         client needs a new SVID before {}",
                        self.active().identity.svid().expires_at_rfc3339()
                    );
                    return Renewal::Stop;
                }
                tracing::warn!(%reason, "the hub refused to renew the SVID: {message}; retrying");
                return Renewal::Retry;
            }
            Err(e) => {
                tracing::warn!(reason = e.reason(), error = %e, "SVID renewal failed; retrying");
                failed(e.to_string());
                return Renewal::Retry;
            }
        };
        match self.adopt(request, &issued) {
            Ok(svid) => {
                tracing::info!(
                    spiffe_id = %self.identity,
                    serial = %svid.serial,
                    expires = %svid.expires_at_rfc3339(),
                    "SVID renewed"
                );
                let mut record = ConnectionRecord::now(&self.identity, "renewed");
                record.destination = Some(self.settings.hub.clone());
                record.duration_ms = started.elapsed().as_millis() as u64;
                record.outcome = svid.serial;
                self.log(record);
                Renewal::Renewed(self.active().identity.renew_at())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the renewed SVID is not usable; retrying");
                failed(e.to_string());
                Renewal::Retry
            }
        }
    }

    /// Checks a renewed SVID, saves it and makes it the identity of the
    /// next connection.
    fn adopt(
        &self,
        request: KeyRequest,
        issued: &ewii_wire::enrol::Issued,
    ) -> Result<SvidInfo, ClientError> {
        let issued = request.accept(issued)?;
        if issued.identity().spiffe_id() != self.identity {
            return Err(IdentityError::WrongIdentity {
                expected: self.identity.clone(),
                got: issued.identity().spiffe_id().to_owned(),
            }
            .into());
        }
        let quic = ClientQuicConfig::tunnel(issued.identity().keys(), &self.tls_verifier)?;
        if let Some(store) = &self.store {
            store.save(&issued)?;
        }
        let identity = issued.into_identity();
        let svid = identity.svid().clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(Active { identity, quic });
        Ok(svid)
    }
}
