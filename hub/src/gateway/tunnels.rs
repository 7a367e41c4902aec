//! The deployments' side of `serve`: what the QUIC listener hands out
//! (enrolments and authenticated tunnels), each tunnel's MCP session with
//! its adapter, SVID renewal over the live link, the client's signed
//! goodbye, and expiry.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ewii_quic::{EnrolExchange, HubTunnel};
use ewii_wire::enrol::{self, Control, EnrolRequest, EnrolResponse, Refusal};
use ewii_wire::svid;
use tokio::sync::mpsc;

use crate::gateway::registry::{Connected, LiveDeployment};
use crate::gateway::serve::Shared;
use crate::gateway::upstream::{Upstream, method_of};
use crate::state::bundle;
use crate::state::ca;
use crate::state::store::{Deployment, RevocationReason, unix};
use crate::{Error, TokenError};

/// The MCP session with a deployment's adapter over its tunnel, and the
/// adapter's tools.
async fn upstream_session(
    tunnel: &Arc<HubTunnel>,
    lost: &mpsc::Sender<()>,
) -> Result<(Arc<Upstream>, Vec<rmcp::model::Tool>), String> {
    tokio::time::timeout(
        Duration::from_secs(15),
        Upstream::open(tunnel.clone(), lost.clone()),
    )
    .await
    .map_err(|_| {
        "the deployment's adapter did not answer initialize and tools/list within 15 s".to_string()
    })?
    .map_err(|e| format!("the deployment's adapter session could not be opened: {e}"))
}

/// The notAfter of a certificate (DER), Unix seconds.
fn not_after(cert: &[u8]) -> Option<i64> {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert).ok()?;
    Some(c.validity().not_after.timestamp())
}

fn refusal(reason: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason: reason.into(),
        message: message.into(),
    }
}

impl Shared {
    async fn issue(
        &self,
        deployment: &Deployment,
        csr: &[u8],
        kind: &str,
    ) -> Result<enrol::Issued, Refusal> {
        let internal = |e: Error| {
            tracing::error!(error = %e, "SVID issuance failed");
            refusal(
                "internal",
                "the hub could not issue the SVID; try again later",
            )
        };
        let now = SystemTime::now();
        let ca = self
            .store
            .workspace_ca(&deployment.workspace)
            .await
            .map_err(internal)?;
        let cert = match ca.issue_svid(csr, &deployment.spiffe_id, self.options.svid_ttl, now) {
            Ok(c) => c,
            Err(Error::Csr(why)) => return Err(refusal("bad_csr", why)),
            Err(e) => return Err(internal(e)),
        };
        let bundle = self
            .store
            .trust_bundle(&deployment.workspace)
            .await
            .map_err(internal)?;
        let serial = svid::serial_hex(&cert).map_err(|e| internal(Error::Issue(e.to_string())))?;
        let expires_at = not_after(&cert).unwrap_or_else(|| unix(now));
        // Recorded before it is handed out, so a deployment revoke always
        // covers it.
        self.store
            .record_svid(&deployment.id, &serial, kind, unix(now), expires_at)
            .await
            .map_err(internal)?;
        let svid_pem = bundle::to_pem(std::slice::from_ref(&cert));
        Ok(enrol::Issued {
            spiffe_id: deployment.spiffe_id.to_string(),
            svid_pem,
            bundle_pem: bundle::to_pem(&bundle.all()),
            serial,
            expires_at,
        })
    }

    /// One enrolment, answered within the connection's handshake deadline
    /// (past it the listener closes the connection and counts it).
    pub(crate) async fn enrol(&self, exchange: EnrolExchange) {
        let remote = exchange.remote_address();
        let Ok(answer) = exchange
            .within_deadline(self.enrolment_answer(exchange.request()))
            .await
        else {
            return;
        };
        match &answer {
            EnrolResponse::Issued(i) => {
                self.metrics.issued("enrolment");
                tracing::info!(%remote, spiffe_id = %i.spiffe_id, serial = %i.serial, "enrolled");
                // A new workspace's clients connect next: know its bundle.
                if let Err(e) = self.trust.refresh().await {
                    tracing::warn!(error = %e, "cannot reload trust bundles");
                }
            }
            EnrolResponse::Refused(r) => {
                self.metrics.enrolment_refused(&r.reason);
                tracing::warn!(%remote, reason = %r.reason, "enrolment refused");
            }
        }
        if let Err(e) = exchange.answer(&answer).await {
            tracing::warn!(%remote, error = %e, "could not send the enrolment answer");
        }
    }

    async fn enrolment_answer(&self, request: &EnrolRequest) -> EnrolResponse {
        let csr = match base64::engine::general_purpose::STANDARD.decode(&request.csr) {
            Ok(c) => c,
            Err(_) => return EnrolResponse::Refused(refusal("bad_csr", "the CSR is not base64")),
        };
        // Refuse a bad CSR before the token is spent.
        if let Err(e) = ca::check_csr(&csr) {
            return EnrolResponse::Refused(refusal("bad_csr", e.to_string()));
        }
        let deployment = match self
            .store
            .consume_enrolment_token(&request.token, SystemTime::now())
            .await
        {
            Ok(d) => d,
            Err(TokenError::Store(e)) => {
                tracing::error!(error = %e, "cannot check an enrolment token");
                return EnrolResponse::Refused(refusal(
                    "internal",
                    "the hub could not check the token; try again later",
                ));
            }
            Err(e) => return EnrolResponse::Refused(refusal(e.reason(), e.to_string())),
        };
        match self.issue(&deployment, &csr, "enrolment").await {
            Ok(issued) => EnrolResponse::Issued(issued),
            Err(r) => EnrolResponse::Refused(r),
        }
    }

    /// One authenticated tunnel, for its whole life.
    pub(crate) async fn tunnel(&self, tunnel: Arc<HubTunnel>) {
        let remote = tunnel.remote_address();
        let spiffe_id = tunnel.peer().identity.clone();
        let deployment = match self.store.deployment_by_spiffe_id(&spiffe_id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                tracing::warn!(%remote, %spiffe_id, "no deployment has this SPIFFE ID; create it with `ewii-hub deployment create`");
                self.metrics.app_handshake_failure("unknown_deployment");
                tunnel.close_unknown_deployment();
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "store unavailable; refusing the tunnel");
                tunnel.close("hub store unavailable");
                return;
            }
        };
        if let Err(why) = self.serve_tunnel(tunnel.clone(), &deployment).await {
            tracing::warn!(
                workspace = %deployment.workspace, deployment = %deployment.name, reason = %why,
                "deployment session ended"
            );
            tunnel.close(&why);
        }
    }

    /// Runs one deployment's session: MCP with its adapter, registration,
    /// catalog refreshes, renewals, expiry.
    async fn serve_tunnel(
        &self,
        tunnel: Arc<HubTunnel>,
        deployment: &Deployment,
    ) -> Result<(), String> {
        let leaf = tunnel
            .peer()
            .chain
            .first()
            .cloned()
            .ok_or("no certificate")?;
        let serial = svid::serial_hex(&leaf).map_err(|e| e.to_string())?;
        let expires_at = not_after(&leaf).ok_or("unreadable notAfter")?;

        let (lost_tx, mut lost_rx) = mpsc::channel(1);
        let (upstream, tools) = upstream_session(&tunnel, &lost_tx).await?;

        let connection = self.connections.fetch_add(1, Ordering::SeqCst);
        let live = Arc::new(LiveDeployment::new(Connected {
            workspace: deployment.workspace.clone(),
            name: deployment.name.clone(),
            spiffe_id: deployment.spiffe_id.to_string(),
            serial,
            expires_at,
            connection,
            tunnel: tunnel.clone(),
            upstream,
            tools,
        }));
        let registry = self.state.registry.clone();
        if let Some(old) = registry.insert(live.clone()) {
            old.tunnel.close_replaced();
        }
        // A revocation that landed between the handshake and now.
        if self.trust.revoked(&live.spiffe_id, &live.session_serial) {
            tunnel.close_revoked();
        }
        tracing::info!(
            workspace = %deployment.workspace, deployment = %deployment.name,
            remote = %tunnel.remote_address(), tools = live.tools().len(),
            "deployment connected"
        );
        let ended = loop {
            let left = Duration::from_secs(
                u64::try_from(live.expires_at() - unix(SystemTime::now())).unwrap_or(0),
            );
            tokio::select! {
                _ = tunnel.closed() => break Ok(()),
                _ = self.cancel.cancelled() => break Err("hub stopping".to_string()),
                Some(()) = lost_rx.recv() => {
                    tracing::info!(deployment = %deployment.name, "the adapter restarted; new MCP session");
                    let (fresh, tools) = upstream_session(&tunnel, &lost_tx).await?;
                    live.set_upstream(fresh);
                    if live.set_tools(tools) {
                        registry.changed(&deployment.workspace);
                    }
                }
                Some(note) = tunnel.next_notification() => {
                    if method_of(&note).as_deref() != Some("notifications/tools/list_changed") {
                        continue;
                    }
                    match live.upstream().list_tools().await {
                        Ok(tools) => {
                            if live.set_tools(tools) {
                                tracing::info!(deployment = %deployment.name, "catalog changed");
                                registry.changed(&deployment.workspace);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "tools/list after a change failed"),
                    }
                }
                control = tunnel.next_control() => match control {
                    Some(Ok(Control::Renew { id, csr })) => {
                        let answer = self.renew(&live, deployment, id, &csr).await;
                        if let Err(e) = tunnel.send_control(&answer).await {
                            break Err(format!("cannot answer a renewal: {e}"));
                        }
                    }
                    Some(Ok(Control::Goodbye { at, signature })) => {
                        self.goodbye(&tunnel, deployment, at, &signature).await;
                    }
                    Some(Ok(other)) => tracing::warn!(?other, "unexpected control message ignored"),
                    Some(Err(e)) => break Err(format!("malformed control message: {e}")),
                    None => break Ok(()),
                },
                _ = tokio::time::sleep(left) => {
                    if live.expires_at() <= unix(SystemTime::now()) {
                        tunnel.close_expired();
                        break Err("its SVID expired before it was renewed".to_string());
                    }
                }
            }
        };
        registry.remove(&live.spiffe_id, connection);
        tracing::info!(
            workspace = %deployment.workspace, deployment = %deployment.name,
            reason = tunnel.close_reason().map(|r| r.to_string()).unwrap_or_default(),
            "deployment disconnected"
        );
        ended
    }

    /// A client's signed goodbye: verified against the session's
    /// certificate, then the deployment is revoked (the customer's
    /// one-command revoke), acknowledged, and the tunnel closed.
    async fn goodbye(&self, tunnel: &HubTunnel, deployment: &Deployment, at: i64, signature: &str) {
        if let Err(e) = tunnel.verify_goodbye(at, signature) {
            tracing::warn!(deployment = %deployment.name, error = %e, "goodbye refused");
            return;
        }
        match self
            .store
            .revoke_deployment(
                &deployment.workspace,
                &deployment.name,
                RevocationReason::Goodbye,
                SystemTime::now(),
            )
            .await
        {
            Ok(r) => tracing::info!(
                workspace = %deployment.workspace, deployment = %deployment.name,
                serials = r.serials.len(), webhooks = r.webhooks,
                "revoked on the client's goodbye"
            ),
            Err(e) => {
                // Not acknowledged: the client says the hub was not told.
                tracing::error!(deployment = %deployment.name, error = %e, "cannot revoke on goodbye");
                return;
            }
        }
        if let Err(e) = self.trust.refresh_revocations().await {
            tracing::warn!(error = %e, "cannot reload the revocation state");
        }
        if let Err(e) = tunnel.send_control(&Control::GoodbyeAck {}).await {
            tracing::debug!(error = %e, "goodbye ack not sent");
        }
        // Let the client close first (its close carries the ack's meaning
        // when the ack itself is lost); then close as revoked.
        let _ = tokio::time::timeout(Duration::from_secs(1), tunnel.closed()).await;
        if tunnel.close_reason().is_none() {
            tunnel.close_revoked();
        }
    }

    async fn renew(
        &self,
        live: &LiveDeployment,
        deployment: &Deployment,
        id: u64,
        csr: &str,
    ) -> Control {
        let csr = match base64::engine::general_purpose::STANDARD.decode(csr) {
            Ok(c) => c,
            Err(_) => {
                return Control::Refused {
                    id,
                    refusal: refusal("bad_csr", "the CSR is not base64"),
                };
            }
        };
        if self.trust.revoked(&live.spiffe_id, &live.serial()) {
            return Control::Refused {
                id,
                refusal: refusal(
                    "revoked",
                    "this deployment is revoked; it comes back only by enrolling with a new token",
                ),
            };
        }
        match self.issue(deployment, &csr, "renewal").await {
            Ok(issued) => {
                self.metrics.issued("renewal");
                live.renewed(issued.serial.clone(), issued.expires_at);
                tracing::info!(
                    deployment = %deployment.name, serial = %issued.serial, "SVID renewed"
                );
                Control::Issued { id, issued }
            }
            Err(refusal) => Control::Refused { id, refusal },
        }
    }
}
