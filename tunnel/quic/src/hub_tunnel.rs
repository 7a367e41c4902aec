//! The hub's end of a live tunnel: requests out on their own streams,
//! replies in (each handed out only with a receipt that verifies with the
//! session's leaf certificate), notifications and control messages from
//! the control stream, and closes named for what they mean.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};

use bytes::Bytes;
use ewii_wire::enrol::{self, Control};
use ewii_wire::handshake::{self, HubConfig, Peer};
use ewii_wire::receipt::{ReceiptError, Reply};
use ewii_wire::session::Session;
use ewii_wire::stream::{ControlStream, ExchangeError, RequestExchange};
use rustls::pki_types::CertificateDer;
use tokio::sync::{Mutex, mpsc};

use crate::NetError;
use crate::close::{Closed, close_code};
use crate::config::authenticated;
use crate::keys::{entropy, now, unix_now};
use crate::stream_io::{
    ControlSender, lock, read_chunk, read_handshake_frame, send_alert, spawn_control_reader,
    within_deadline,
};

/// Whether the hub requires the TLS client certificate to carry the same
/// SPIFFE ID as the app-layer handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsBinding {
    /// The default: a deployment's TLS connection carries only its own
    /// traffic (deployment A's SVID can never carry B's tunnel).
    Strict,
    /// For a TLS-terminating relay in front of the hub: the app layer alone
    /// names the deployment.
    Relayed,
}

/// The hub's end of a live tunnel.
pub struct HubTunnel {
    conn: quinn::Connection,
    session: Arc<StdMutex<Session>>,
    peer: Peer,
    notifications: Mutex<mpsc::Receiver<Bytes>>,
    controls: Mutex<mpsc::Receiver<Bytes>>,
    /// Our half of the control stream, open for the tunnel's life.
    control: ControlSender,
}

/// The SPIFFE ID in the TLS client certificate of `conn`.
fn tls_identity(conn: &quinn::Connection) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let leaf = chain.first()?;
    ewii_wire::svid::check_leaf(leaf)
        .ok()
        .map(|l| l.id.to_string())
}

impl HubTunnel {
    /// Runs the app-layer handshake on a connection whose TLS handshake is
    /// complete. With [`TlsBinding::Strict`] a connection without a TLS
    /// client certificate, or with another identity than the app layer's,
    /// is refused.
    pub(crate) async fn establish(
        conn: quinn::Connection,
        config: &HubConfig,
        binding: TlsBinding,
    ) -> Result<HubTunnel, NetError> {
        within_deadline(&conn, Self::handshake(&conn, config, binding)).await
    }

    async fn handshake(
        conn: &quinn::Connection,
        config: &HubConfig,
        binding: TlsBinding,
    ) -> Result<HubTunnel, NetError> {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let ch = read_handshake_frame(&mut recv).await?;
        let (state, sh) = match handshake::hub_read_client_hello(config, &ch, entropy()?, now()) {
            Ok(r) => r,
            Err(e) => {
                send_alert(send, e.alert()).await;
                return Err(e.into());
            }
        };
        if binding == TlsBinding::Strict {
            let tls = tls_identity(conn).unwrap_or_default();
            let app = state.claimed_peer().identity.clone();
            if tls != app {
                let e = NetError::IdentityMismatch { tls, app };
                send_alert(send, handshake::alert(e.reason(), &e.to_string())).await;
                return Err(e);
            }
        }
        send.write_all(&sh).await?;
        let cf = read_handshake_frame(&mut recv).await?;
        let (mut session, peer, sf) = match state.read_client_finish(&cf) {
            Ok(r) => r,
            Err(e) => {
                send_alert(send, e.alert()).await;
                return Err(e.into());
            }
        };
        send.write_all(&sf).await?;
        let control = Arc::new(StdMutex::new(ControlStream::open(&mut session)?));
        let (tx, rx) = mpsc::channel(256);
        let (controls_tx, controls_rx) = mpsc::channel(4);
        spawn_control_reader(recv, control.clone(), conn.clone(), Some(tx), controls_tx);
        // Proven: replies may now flow at full speed.
        authenticated(conn);
        Ok(HubTunnel {
            conn: conn.clone(),
            session: Arc::new(StdMutex::new(session)),
            peer,
            notifications: Mutex::new(rx),
            controls: Mutex::new(controls_rx),
            control: ControlSender::new(send, control),
        })
    }

    /// The client, as the handshake proved it.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Where the client's packets come from.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// A number unique to this tunnel's connection among the live ones
    /// (quinn's stable id), for logs and tests.
    pub fn stable_id(&self) -> usize {
        self.conn.stable_id()
    }

    /// The next server-initiated message from the adapter (e.g.
    /// `notifications/tools/list_changed`); `None` once the tunnel closed.
    pub async fn next_notification(&self) -> Option<Bytes> {
        self.notifications.lock().await.recv().await
    }

    /// The client's next control message (a renewal request, a goodbye);
    /// `None` once the tunnel closed.
    pub async fn next_control(&self) -> Option<Result<Control, NetError>> {
        let bytes = self.controls.lock().await.recv().await?;
        Some(enrol::decode::<Control>(&bytes).map_err(NetError::from))
    }

    /// Sends a control message (an answer to `renew`, the goodbye's ack) on
    /// the control stream.
    pub async fn send_control(&self, message: &Control) -> Result<(), NetError> {
        self.control.control(&enrol::encode(message)?).await
    }

    /// Checks a goodbye from the client ([`Control::Goodbye`]): signed by
    /// the key of the session's leaf certificate for the session's SPIFFE
    /// ID, at a time within [`ewii_wire::receipt::GOODBYE_MAX_SKEW`] of
    /// ours.
    pub fn verify_goodbye(&self, at: i64, signature: &str) -> Result<(), NetError> {
        let leaf = self
            .peer
            .chain
            .first()
            .ok_or_else(|| NetError::Goodbye("the session has no client certificate".into()))?;
        ewii_wire::receipt::verify_goodbye(leaf, &self.peer.identity, at, signature, unix_now())
            .map_err(|e| NetError::Goodbye(e.to_string()))
    }

    /// Sends one JSON-RPC message on its own stream. The receiver yields the
    /// client's answers (responses and notifications about the request,
    /// each with its verified receipt, or a refusal) and ends with the
    /// stream; an error ends it early. A reply whose receipt is missing,
    /// malformed or does not verify with the session's leaf certificate is
    /// never handed out: the receiver yields [`NetError::Receipt`] instead.
    pub async fn request(
        &self,
        route: Option<&str>,
        message: &[u8],
    ) -> Result<mpsc::Receiver<Result<Reply, NetError>>, NetError> {
        let leaf =
            self.peer.chain.first().cloned().ok_or_else(|| {
                NetError::Protocol("the session has no client certificate".into())
            })?;
        let (mut send, mut recv) = self.conn.open_bi().await?;
        let (mut exchange, bytes) =
            RequestExchange::open(&mut lock(&self.session), leaf, route, message)?;
        send.write_all(&bytes).await?;
        let _ = send.finish();
        let (tx, rx) = mpsc::channel(16);
        let conn = self.conn.clone();
        let identity = self.peer.identity.clone();
        tokio::spawn(async move {
            let refused = |e: ExchangeError| match e {
                ExchangeError::Stream(e) => {
                    // A refused record means tampering in transit.
                    conn.close(close_code::PROTOCOL.into(), b"reply stream refused");
                    NetError::Stream(e)
                }
                ExchangeError::Reply(e) => {
                    tracing::warn!(spiffe_id = %identity, error = %e, "reply refused");
                    match e {
                        ReceiptError::UnexpectedFrame(_) => NetError::Protocol(e.to_string()),
                        e => NetError::Receipt(e.to_string()),
                    }
                }
            };
            loop {
                let items = match read_chunk(&mut recv).await {
                    Ok(Some(chunk)) => exchange.receive(&chunk),
                    Ok(None) => {
                        if let Err(e) = exchange.end() {
                            let _ = tx.send(Err(refused(e))).await;
                        }
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for item in items {
                    // After a refusal the stream is not read on.
                    let stop = item.is_err();
                    if tx.send(item.map_err(&refused)).await.is_err() || stop {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Waits until the tunnel is closed, by either side or by the network.
    pub async fn closed(&self) -> Closed {
        Closed::of(&self.conn.closed().await)
    }

    /// Why the tunnel closed, once it has.
    pub fn close_reason(&self) -> Option<Closed> {
        self.conn.close_reason().as_ref().map(Closed::of)
    }

    /// Closes the tunnel in an orderly way, saying why.
    pub fn close(&self, reason: &str) {
        self.conn.close(close_code::DONE.into(), reason.as_bytes());
    }

    /// Closes the tunnel because its deployment or SVID is revoked: the
    /// client stops and does not reconnect with this SVID.
    pub fn close_revoked(&self) {
        self.conn
            .close(close_code::REVOKED.into(), b"revoked at the hub");
    }

    /// Closes the tunnel because a newer connection of the same deployment
    /// took its place.
    pub fn close_replaced(&self) {
        self.close("replaced by a newer connection of the same deployment");
    }

    /// Closes the tunnel because the session's newest SVID expired before
    /// it was renewed: no link outlives its identity.
    pub fn close_expired(&self) {
        self.conn
            .close(close_code::IDENTITY.into(), b"svid expired");
    }

    /// Closes the tunnel because no deployment has the SPIFFE ID it proved.
    pub fn close_unknown_deployment(&self) {
        self.conn
            .close(close_code::IDENTITY.into(), b"unknown deployment");
    }
}
