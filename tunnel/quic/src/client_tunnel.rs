//! The client's end: a [`Dialer`] that only dials out, the live
//! [`ClientTunnel`], and the [`IncomingRequest`]s the hub opens on it.
//!
//! [`Dialer::connect`] runs the app-layer handshake on the first
//! bidirectional stream (the control stream); every request then arrives on
//! its own QUIC stream with its own keys, and every reply the client sends
//! carries a receipt signed with the session's SVID key
//! ([`ewii_wire::stream::ServedRequest`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use ewii_wire::enrol::{self, Control, EnrolRequest, EnrolResponse};
use ewii_wire::handshake::{ClientConfig, ClientHandshake, HandshakeError, Peer};
use ewii_wire::pki::Signer;
use ewii_wire::receipt::Receipt;
use ewii_wire::refusal::Refused;
use ewii_wire::session::{STREAM_HEADER_LEN, Session};
use ewii_wire::stream::{ControlStream, Request, ServedRequest};
use tokio::sync::{Mutex, mpsc};

use crate::NetError;
use crate::close::{Closed, close_code, revoked_by_peer};
use crate::config::{ClientQuicConfig, HANDSHAKE_TIMEOUT};
use crate::keys::{entropy, now, unix_now};
use crate::stream_io::{
    ControlSender, lock, read_chunk, read_handshake_frame, spawn_control_reader, within_deadline,
};

/// A client's QUIC endpoint. It only dials out: an ephemeral local port and
/// no server configuration, so it refuses every incoming connection.
#[derive(Debug)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
}

impl Dialer {
    /// An endpoint on an ephemeral port of every local address.
    pub fn bind() -> Result<Dialer, NetError> {
        Dialer::bind_to(([0, 0, 0, 0], 0).into())
    }

    /// An endpoint on `addr` (tests bind loopback).
    pub fn bind_to(addr: SocketAddr) -> Result<Dialer, NetError> {
        Ok(Dialer {
            endpoint: quinn::Endpoint::client(addr).map_err(NetError::Socket)?,
        })
    }

    /// Dials the hub at `addr` and runs the app-layer handshake. A hub that
    /// says the SVID is revoked (in TLS, with an app-layer alert `revoked`,
    /// or by closing with [`close_code::REVOKED`]) gives
    /// [`NetError::Revoked`].
    pub async fn connect(
        &self,
        quic: &ClientQuicConfig,
        addr: SocketAddr,
        config: ClientConfig,
    ) -> Result<ClientTunnel, NetError> {
        let server_name = config.hub_name.clone();
        // A failure before the QUIC handshake completes is never taken for
        // a revocation (see `revoked_by_peer`).
        let conn = self
            .endpoint
            .connect_with(quic.quinn(), addr, &server_name)?
            .await?;
        // Judged before `within_deadline` closes the connection on our
        // side, which replaces the peer's close reason.
        let handshake = async {
            ClientTunnel::handshake(&conn, config)
                .await
                .map_err(|e| revocation(&conn, e))
        };
        within_deadline(&conn, handshake).await
    }

    /// Enrols: dials the hub with the enrolment configuration
    /// ([`ClientQuicConfig::enrolment`]), sends the token and CSR, and
    /// returns the hub's answer (an SVID or a refusal).
    pub async fn enrol(
        &self,
        quic: &ClientQuicConfig,
        addr: SocketAddr,
        hub_name: &str,
        request: &EnrolRequest,
    ) -> Result<EnrolResponse, NetError> {
        let conn = self
            .endpoint
            .connect_with(quic.quinn(), addr, hub_name)?
            .await?;
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&enrol::encode_frame(request)?).await?;
            let _ = send.finish();
            let answer = read_handshake_frame(&mut recv).await?;
            Ok::<_, NetError>(enrol::decode::<EnrolResponse>(&answer.body)?)
        };
        let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
            .await
            .map_err(|_| NetError::Timeout("enrolment"));
        conn.close(close_code::DONE.into(), b"enrolled");
        answer?
    }

    /// Closes every connection of the endpoint and waits (up to a second)
    /// for the closes to reach the peers.
    pub async fn close(&self, reason: &str) {
        self.endpoint
            .close(close_code::DONE.into(), reason.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// `e`, or [`NetError::Revoked`] when the hub refused us as revoked.
fn revocation(conn: &quinn::Connection, e: NetError) -> NetError {
    if let Some(how) = conn.close_reason().as_ref().and_then(revoked_by_peer) {
        return NetError::Revoked(how);
    }
    match e {
        // The hub's app-layer SVID check refused a revoked serial (a relay
        // terminated TLS, so TLS could not tell).
        NetError::Handshake(HandshakeError::Alert { code, detail }) if code == "revoked" => {
            NetError::Revoked(format!("the hub refused the SVID: {detail}"))
        }
        e => e,
    }
}

/// The client's end of a live tunnel.
pub struct ClientTunnel {
    conn: quinn::Connection,
    session: Arc<StdMutex<Session>>,
    peer: Peer,
    /// Signs receipts and the goodbye for the session's whole life: the key
    /// of the SVID the session was established with (a renewal does not
    /// change it).
    signer: Arc<dyn Signer>,
    /// Our SPIFFE ID (what the hub verified at the handshake).
    identity: String,
    control: ControlSender,
    /// Control messages from the hub; locked by the one renewal or goodbye
    /// in flight.
    controls: Mutex<(u64, mpsc::Receiver<bytes::Bytes>)>,
}

impl ClientTunnel {
    async fn handshake(
        conn: &quinn::Connection,
        config: ClientConfig,
    ) -> Result<ClientTunnel, NetError> {
        let (mut send, mut recv) = conn.open_bi().await?;
        let signer = config.credentials.signer.clone();
        let identity = config.identity.clone();
        let (state, hello) = ClientHandshake::start(config, entropy()?)?;
        send.write_all(&hello).await?;
        let sh = read_handshake_frame(&mut recv).await?;
        let (state, finish) = state.read_server_hello(&sh, now())?;
        send.write_all(&finish).await?;
        let sf = read_handshake_frame(&mut recv).await?;
        let (mut session, peer) = state.read_server_finish(&sf)?;
        let control = Arc::new(StdMutex::new(ControlStream::open(&mut session)?));
        // The hub answers renewals on the control stream; a tampered or
        // replayed record there ends the link.
        let (controls_tx, controls_rx) = mpsc::channel(4);
        spawn_control_reader(recv, control.clone(), conn.clone(), None, controls_tx);
        Ok(ClientTunnel {
            conn: conn.clone(),
            session: Arc::new(StdMutex::new(session)),
            peer,
            signer,
            identity,
            control: ControlSender::new(send, control),
            controls: Mutex::new((0, controls_rx)),
        })
    }

    /// The hub, as the handshake proved it.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Why the tunnel closed, once it has.
    pub fn close_reason(&self) -> Option<Closed> {
        self.conn.close_reason().as_ref().map(Closed::of)
    }

    /// Sends a server-initiated MCP message (a notification from the
    /// adapter) to the hub on the control stream.
    pub async fn notify(&self, message: &[u8]) -> Result<(), NetError> {
        self.control.message(message).await
    }

    /// Asks the hub for a fresh SVID over this live tunnel: sends `renew`
    /// with `csr_der` (a PKCS#10 CSR for a newly generated key) on the
    /// control stream and waits up to `timeout` for the answer. In-flight
    /// requests are not disturbed. The outer error is the link's; the inner
    /// one is the hub's refusal.
    pub async fn renew(
        &self,
        csr_der: &[u8],
        timeout: Duration,
    ) -> Result<Result<enrol::Issued, enrol::Refusal>, NetError> {
        use base64::Engine as _;
        let mut guard = self.controls.lock().await;
        let (next_id, rx) = &mut *guard;
        *next_id += 1;
        let id = *next_id;
        let csr = base64::engine::general_purpose::STANDARD.encode(csr_der);
        let body = enrol::encode(&Control::Renew { id, csr })?;
        self.control.control(&body).await?;
        let answer = async {
            loop {
                let Some(bytes) = rx.recv().await else {
                    return Err(NetError::Protocol(
                        "the tunnel closed during renewal".into(),
                    ));
                };
                match enrol::decode::<Control>(&bytes)? {
                    Control::Issued { id: got, issued } if got == id => return Ok(Ok(issued)),
                    Control::Refused { id: got, refusal } if got == id => {
                        return Ok(Err(refusal));
                    }
                    other => tracing::debug!(?other, "stale control message ignored"),
                }
            }
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| NetError::Timeout("SVID renewal"))?
    }

    /// Says goodbye: asks the hub to revoke this deployment with a
    /// `goodbye` signed by the session's SVID key, waits up to `timeout`
    /// (a renewal in flight included) for the hub's `goodbye_ack`, then
    /// closes the tunnel as revoked.
    ///
    /// The hub closing the tunnel as revoked also counts as the
    /// acknowledgement: QUIC drops stream data still unsent when a
    /// connection closes, so the ack itself may never arrive. On an error
    /// the tunnel is left open for the caller to close.
    pub async fn goodbye(&self, timeout: Duration) -> Result<(), NetError> {
        let at = unix_now();
        let signature = ewii_wire::receipt::sign_goodbye(&*self.signer, &self.identity, at)
            .map_err(|e| NetError::Goodbye(e.to_string()))?;
        let body = enrol::encode(&Control::Goodbye { at, signature })?;
        let exchange = async {
            // One reader of the hub's control messages at a time.
            let mut guard = self.controls.lock().await;
            let (_, rx) = &mut *guard;
            self.control.control(&body).await?;
            loop {
                let Some(bytes) = rx.recv().await else {
                    let closed = self.conn.close_reason();
                    if closed.as_ref().and_then(revoked_by_peer).is_some() {
                        return Ok(());
                    }
                    return Err(NetError::Protocol(format!(
                        "the tunnel closed before the hub acknowledged the goodbye: {}",
                        closed.map_or_else(|| "closed".to_owned(), |r| r.to_string())
                    )));
                };
                match enrol::decode::<Control>(&bytes)? {
                    Control::GoodbyeAck {} => return Ok(()),
                    other => tracing::debug!(?other, "control message ignored during goodbye"),
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout("goodbye acknowledgement"))??;
        self.conn
            .close(close_code::REVOKED.into(), b"goodbye: deployment revoked");
        Ok(())
    }

    /// Waits for the hub's next request stream. `None` once the tunnel is
    /// closed.
    pub async fn next_request(&self) -> Option<Result<IncomingRequest, NetError>> {
        let (send, mut recv) = match self.conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return None,
        };
        let header = async {
            let mut h = [0u8; STREAM_HEADER_LEN];
            recv.read_exact(&mut h)
                .await
                .map_err(|e| NetError::Protocol(format!("stream header: {e}")))?;
            Ok::<_, NetError>(ServedRequest::accept(&lock(&self.session), h)?)
        };
        Some(header.await.map(|served| IncomingRequest {
            send,
            recv,
            served,
            session: self.session.clone(),
            signer: self.signer.clone(),
        }))
    }

    /// Closes the tunnel in an orderly way.
    pub fn close(&self, reason: &str) {
        self.conn.close(close_code::DONE.into(), reason.as_bytes());
    }

    /// Closes the tunnel because a stream broke the protocol (a refused
    /// record or stream number: inside TLS, only someone in the middle can
    /// cause one).
    pub fn close_protocol_violation(&self) {
        self.conn
            .close(close_code::PROTOCOL.into(), b"stream refused");
    }
}

/// A request the hub opened on its own stream.
pub struct IncomingRequest {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    served: ServedRequest,
    session: Arc<StdMutex<Session>>,
    /// Signs the receipts: the session's SVID key.
    signer: Arc<dyn Signer>,
}

impl IncomingRequest {
    /// Reads the hub's route and message, up to the stream's close record.
    pub async fn read(&mut self) -> Result<Request, NetError> {
        while let Some(chunk) = read_chunk(&mut self.recv).await? {
            self.served.receive(&mut lock(&self.session), &chunk)?;
        }
        Ok(self.served.end()?)
    }

    /// Sends one message back (a response, or a notification about it),
    /// followed by its receipt: the session's SVID key signing the request
    /// and this message. Returns the receipt.
    pub async fn reply(&mut self, message: &[u8]) -> Result<Receipt, NetError> {
        let (bytes, receipt) = self.served.reply(&*self.signer, message)?;
        self.send.write_all(&bytes).await?;
        Ok(receipt)
    }

    /// Tells the hub the request was not forwarded, and why.
    pub async fn refuse(&mut self, refused: &Refused) -> Result<(), NetError> {
        let bytes = self.served.refuse(refused)?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    /// Ends our direction with the close record.
    pub async fn finish(mut self) -> Result<(), NetError> {
        let bytes = self.served.close()?;
        self.send.write_all(&bytes).await?;
        let _ = self.send.finish();
        Ok(())
    }
}
