//! Moving bytes between quinn streams and `ewii-wire`'s state machines: the
//! clear handshake frames, the control stream, deadlines and alerts. No
//! decision about security is made here.

use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ewii_wire::codec::DecodeError;
use ewii_wire::frame::{FRAME_HEADER_LEN, Frame, FrameDecoder, MAX_HANDSHAKE};
use ewii_wire::handshake::HandshakeError;
use ewii_wire::stream::{ControlInbound, ControlStream};
use tokio::sync::{Mutex, mpsc};

use crate::NetError;
use crate::close::close_code;
use crate::config::HANDSHAKE_TIMEOUT;

/// Reads exactly one clear handshake frame, and not a byte more: what
/// follows on the control stream is sealed records.
pub(crate) async fn read_handshake_frame(recv: &mut quinn::RecvStream) -> Result<Frame, NetError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| NetError::Protocol(format!("handshake frame header: {e}")))?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_HANDSHAKE {
        return Err(HandshakeError::Decode(DecodeError::TooLong {
            field: "handshake frame",
            len,
            max: MAX_HANDSHAKE,
        })
        .into());
    }
    let mut bytes = header.to_vec();
    bytes.resize(header.len() + len, 0);
    recv.read_exact(&mut bytes[header.len()..])
        .await
        .map_err(|e| NetError::Protocol(format!("handshake frame body: {e}")))?;
    let mut frames = FrameDecoder::new(MAX_HANDSHAKE)
        .push(&bytes)
        .map_err(|e| HandshakeError::Decode(e.into()))?;
    frames
        .pop()
        .ok_or_else(|| NetError::Protocol("empty handshake frame".into()))
}

/// The next piece of a stream, `None` at its end.
pub(crate) async fn read_chunk(recv: &mut quinn::RecvStream) -> Result<Option<Bytes>, NetError> {
    Ok(recv.read_chunk(64 << 10, true).await?.map(|c| c.bytes))
}

/// Runs an app-layer handshake within [`HANDSHAKE_TIMEOUT`]; on failure
/// closes the connection with the reason, so the peer's log says why.
pub(crate) async fn within_deadline<T>(
    conn: &quinn::Connection,
    handshake: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => {
            let code = match e {
                NetError::IdentityMismatch { .. } => close_code::IDENTITY,
                _ => close_code::HANDSHAKE,
            };
            conn.close(code.into(), e.reason().as_bytes());
            Err(e)
        }
        Err(_) => {
            conn.close(close_code::HANDSHAKE.into(), b"timeout");
            Err(NetError::Timeout("app-layer handshake"))
        }
    }
}

/// Writes an Alert and ends our side of the control stream, giving the
/// peer a moment to read it before the connection closes.
pub(crate) async fn send_alert(mut send: quinn::SendStream, alert: Vec<u8>) {
    let _ = send.write_all(&alert).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
}

/// A lock whose data stays usable after a panic elsewhere: the guarded
/// state (keys, counters) is consistent between calls.
pub(crate) fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Our half of the control stream, open for the tunnel's life.
pub(crate) struct ControlSender {
    send: Mutex<quinn::SendStream>,
    stream: Arc<StdMutex<ControlStream>>,
}

impl ControlSender {
    pub(crate) fn new(send: quinn::SendStream, stream: Arc<StdMutex<ControlStream>>) -> Self {
        ControlSender {
            send: Mutex::new(send),
            stream,
        }
    }

    /// Sends a server-initiated MCP message.
    pub(crate) async fn message(&self, message: &[u8]) -> Result<(), NetError> {
        let mut send = self.send.lock().await;
        // Sealed under the send lock, so records leave in sequence order.
        let bytes = lock(&self.stream).seal_message(message)?;
        send.write_all(&bytes).await?;
        Ok(())
    }

    /// Sends an encoded control message.
    pub(crate) async fn control(&self, body: &[u8]) -> Result<(), NetError> {
        let mut send = self.send.lock().await;
        let bytes = lock(&self.stream).seal_control(body)?;
        send.write_all(&bytes).await?;
        Ok(())
    }
}

/// Reads the peer's half of the control stream for the tunnel's life.
/// Messages go to `messages` (when the caller wants them), control messages
/// to `controls`; a refused record means tampering in transit and closes
/// the connection.
pub(crate) fn spawn_control_reader(
    mut recv: quinn::RecvStream,
    stream: Arc<StdMutex<ControlStream>>,
    conn: quinn::Connection,
    messages: Option<mpsc::Sender<Bytes>>,
    controls: mpsc::Sender<Bytes>,
) {
    tokio::spawn(async move {
        loop {
            let inbound = match read_chunk(&mut recv).await {
                Ok(Some(chunk)) => lock(&stream).receive(&chunk),
                Ok(None) | Err(_) => return,
            };
            match inbound {
                Ok(items) => {
                    for item in items {
                        let (tx, body) = match item {
                            ControlInbound::Message(b) => (messages.as_ref(), b),
                            ControlInbound::Control(b) => (Some(&controls), b),
                        };
                        if let Some(tx) = tx
                            && tx.send(body).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control stream record refused; closing the tunnel");
                    conn.close(close_code::PROTOCOL.into(), b"control stream refused");
                    return;
                }
            }
        }
    });
}
