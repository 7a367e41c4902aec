//! The stream protocol after the handshake, as explicit state machines:
//! bytes and events in, decoded items and bytes to transmit out. The QUIC
//! binding only moves those bytes between these machines and its streams.
//!
//! - [`RequestExchange`]: the hub's side of one request stream. It seals
//!   `[Route] Message Close` behind the stream header, then turns the
//!   client's records into [`Reply`]s, handing out a reply message only
//!   with a receipt that verifies with the session's leaf certificate
//!   ([`ReplyCheck`]).
//! - [`ServedRequest`]: the client's side of a request stream the hub
//!   opened. It checks the stream number, reads the route and the message,
//!   and seals each reply with its receipt, a refusal, or the close.
//! - [`ControlStream`]: the control stream (the client's stream 0) after the
//!   handshake: server-initiated MCP messages and control messages.
//!
//! Grammar (docs/protocol.md, "Streams"): hub → client
//! `number u64 ‖ records([Route] Message Close)`; client → hub
//! `records((Message Receipt)* Close)` or `records(Refused Close)`.

use bytes::Bytes;

use crate::frame::{Frame, FrameType};
use crate::pki::{Certificate, Signer};
use crate::receipt::{Receipt, ReceiptError, Reply, ReplyCheck};
use crate::refusal::Refused;
use crate::session::{STREAM_HEADER_LEN, Session, SessionError, StreamChannel, StreamError};

/// Why the hub's side of a request stream ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// A record or frame was refused: tampering in transit (inside TLS,
    /// only someone in the middle can cause it). Close the connection.
    #[error("reply stream refused: {0}")]
    Stream(#[from] StreamError),
    /// The replies broke the reply grammar or a receipt did not verify: no
    /// message of this stream is handed out past this point.
    #[error("reply refused: {0}")]
    Reply(#[from] ReceiptError),
}

/// The hub's side of one request stream.
#[derive(Debug)]
pub struct RequestExchange {
    channel: StreamChannel,
    check: ReplyCheck,
    over: bool,
}

impl RequestExchange {
    /// Opens a request stream for `message` (to the adapter at `route`, or
    /// the client's default): the exchange, and every byte the hub sends on
    /// the stream (stream header, `[Route] Message Close`). Replies are
    /// checked against `leaf`, the session peer's leaf certificate.
    pub fn open(
        session: &mut Session,
        leaf: Certificate,
        route: Option<&str>,
        message: &[u8],
    ) -> Result<(RequestExchange, Vec<u8>), StreamError> {
        let mut channel = session.open_stream();
        let mut out = channel.header().to_vec();
        if let Some(route) = route {
            out.extend(channel.seal(FrameType::Route, route.as_bytes())?);
        }
        out.extend(channel.seal(FrameType::Message, message)?);
        out.extend(channel.seal_close()?);
        let check = ReplyCheck::new(leaf, message);
        Ok((
            RequestExchange {
                channel,
                check,
                over: false,
            },
            out,
        ))
    }

    /// Takes bytes the client sent on the stream (any split) and returns
    /// what they complete, in order. An error is always the last item, and
    /// ends the exchange: later bytes are ignored.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Result<Reply, ExchangeError>> {
        if self.over {
            return Vec::new();
        }
        let frames = match self.channel.open(bytes) {
            Ok(frames) => frames,
            Err(e) => return self.fail(e.into()),
        };
        let mut out = Vec::new();
        for frame in frames {
            match self.check.push(frame) {
                Ok(None) => {}
                Ok(Some(reply)) => out.push(Ok(reply)),
                Err(e) => {
                    out.extend(self.fail(e.into()));
                    break;
                }
            }
        }
        out
    }

    /// The transport ended the stream: fails if the client's `Close` record
    /// is missing (a cut stream) or a message still waits for its receipt.
    pub fn end(&mut self) -> Result<(), ExchangeError> {
        if self.over {
            return Ok(());
        }
        self.over = true;
        self.channel.finish()?;
        self.check.finish()?;
        Ok(())
    }

    fn fail(&mut self, e: ExchangeError) -> Vec<Result<Reply, ExchangeError>> {
        self.over = true;
        vec![Err(e)]
    }
}

/// Why the client's side of a request stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// A record or frame was refused: tampering in transit. Close the
    /// connection.
    #[error("request stream refused: {0}")]
    Stream(#[from] StreamError),
    /// The stream number was replayed or is too old. Close the connection.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// A frame that has no place on a request stream.
    #[error("unexpected {0:?} frame on a request stream")]
    UnexpectedFrame(FrameType),
    /// The stream ended without a message.
    #[error("a request stream without a message")]
    NoMessage,
    /// A reply before the request was read.
    #[error("a reply before the request was read")]
    NotRead,
    /// The receipt could not be made.
    #[error("{0}")]
    Receipt(#[from] ReceiptError),
}

/// What a request stream carries from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The adapter endpoint named by the hub, if any.
    pub route: Option<String>,
    /// The JSON-RPC message.
    pub message: Bytes,
}

/// The client's side of one request stream the hub opened.
#[derive(Debug)]
pub struct ServedRequest {
    channel: StreamChannel,
    confirmed: bool,
    route: Option<String>,
    message: Option<Bytes>,
    /// SHA-256 of the request message, once the request is read.
    request_digest: Option<[u8; 32]>,
}

impl ServedRequest {
    /// A stream the hub opened, from the stream header it wrote first: its
    /// number must not have been used (or be too old).
    pub fn accept(
        session: &Session,
        header: [u8; STREAM_HEADER_LEN],
    ) -> Result<ServedRequest, SessionError> {
        let channel = session.accept_stream(u64::from_be_bytes(header))?;
        Ok(ServedRequest {
            channel,
            confirmed: false,
            route: None,
            message: None,
            request_digest: None,
        })
    }

    /// Takes bytes the hub sent (any split). Once the stream's first record
    /// verifies its number is marked used in `session`, so the same stream
    /// cannot be replayed onto another QUIC stream.
    pub fn receive(&mut self, session: &mut Session, bytes: &[u8]) -> Result<(), ServeError> {
        let frames = self.channel.open(bytes)?;
        if !self.confirmed && self.channel.verified() {
            session.confirm_stream(self.channel.number())?;
            self.confirmed = true;
        }
        for Frame { kind, body } in frames {
            match (kind, &self.message) {
                (FrameType::Route, None) if self.route.is_none() => {
                    self.route = Some(String::from_utf8_lossy(&body).into_owned());
                }
                (FrameType::Message, None) => self.message = Some(Bytes::from(body)),
                (kind, _) => return Err(ServeError::UnexpectedFrame(kind)),
            }
        }
        Ok(())
    }

    /// The transport ended the hub's side: the request, if it arrived whole
    /// (its `Close` record included).
    pub fn end(&mut self) -> Result<Request, ServeError> {
        self.channel.finish()?;
        let message = self.message.clone().ok_or(ServeError::NoMessage)?;
        self.request_digest = Some(crate::receipt::digest(&message));
        Ok(Request {
            route: self.route.clone(),
            message,
        })
    }

    /// Seals one reply message (a response, or a notification about the
    /// request) followed by its receipt, signed by `signer` (the session's
    /// SVID key) over the request and this message: the bytes to send, and
    /// the receipt.
    pub fn reply(
        &mut self,
        signer: &dyn Signer,
        message: &[u8],
    ) -> Result<(Vec<u8>, Receipt), ServeError> {
        let request_digest = self.request_digest.ok_or(ServeError::NotRead)?;
        let receipt = Receipt::sign(signer, request_digest, message)?;
        let body = receipt.encode()?;
        let mut bytes = self.channel.seal(FrameType::Message, message)?;
        bytes.extend(self.channel.seal(FrameType::Receipt, &body)?);
        Ok((bytes, receipt))
    }

    /// Seals the refusal: the request was not forwarded, and why.
    pub fn refuse(&mut self, refused: &Refused) -> Result<Vec<u8>, StreamError> {
        self.channel.seal(FrameType::Refused, &refused.encode())
    }

    /// Seals the `Close` record that ends the client's side.
    pub fn close(&mut self) -> Result<Vec<u8>, StreamError> {
        self.channel.seal_close()
    }
}

/// What the control stream carries to its reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlInbound {
    /// A server-initiated MCP message from the adapter (client → hub).
    Message(Bytes),
    /// A control message (JSON, [`crate::enrol::Control`]), either way.
    Control(Bytes),
}

/// The control stream after the handshake, both directions.
#[derive(Debug)]
pub struct ControlStream {
    channel: StreamChannel,
}

impl ControlStream {
    /// The session's control stream (the client's stream 0).
    pub fn open(session: &mut Session) -> Result<ControlStream, SessionError> {
        Ok(ControlStream {
            channel: session.control()?,
        })
    }

    /// Takes received bytes (any split) and returns the messages they
    /// complete. Any error ends the stream, and with it the tunnel.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<ControlInbound>, StreamError> {
        Ok(self
            .channel
            .open(bytes)?
            .into_iter()
            .filter_map(|f| match f.kind {
                FrameType::Message => Some(ControlInbound::Message(Bytes::from(f.body))),
                FrameType::Control => Some(ControlInbound::Control(Bytes::from(f.body))),
                // Nothing else has a place here; the peer gains nothing by
                // sending it, and the records were authentic.
                _ => None,
            })
            .collect())
    }

    /// Seals a server-initiated MCP message.
    pub fn seal_message(&mut self, message: &[u8]) -> Result<Vec<u8>, StreamError> {
        self.channel.seal(FrameType::Message, message)
    }

    /// Seals an encoded control message ([`crate::enrol::encode`]).
    pub fn seal_control(&mut self, body: &[u8]) -> Result<Vec<u8>, StreamError> {
        self.channel.seal(FrameType::Control, body)
    }
}

#[cfg(test)]
#[path = "stream_test.rs"]
mod tests;
