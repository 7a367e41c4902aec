#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::receipt::digest;
use crate::record::SESSION_ID_LEN;
use crate::refusal::RefusalCode;
use crate::session::{Role, SessionSecrets};
use crate::testdata;

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn pair() -> (Session, Session) {
    let secrets = || SessionSecrets {
        session_id: [7; SESSION_ID_LEN],
        client_to_hub: [1; 32],
        hub_to_client: [2; 32],
    };
    (
        Session::new(Role::Client, secrets()),
        Session::new(Role::Hub, secrets()),
    )
}

/// The hub opens a request; the client reads it whole.
fn request(
    client: &mut Session,
    hub: &mut Session,
    route: Option<&str>,
) -> (RequestExchange, ServedRequest, Request) {
    let (exchange, bytes) =
        RequestExchange::open(hub, testdata::cert("svid-p256"), route, REQUEST).unwrap();
    let (header, rest) = bytes.split_at(STREAM_HEADER_LEN);
    let mut served = ServedRequest::accept(client, header.try_into().unwrap()).unwrap();
    // Any split of what the hub sent.
    for chunk in rest.chunks(7) {
        served.receive(client, chunk).unwrap();
    }
    let read = served.end().unwrap();
    (exchange, served, read)
}

fn replies(exchange: &mut RequestExchange, bytes: &[u8]) -> Vec<Result<Reply, ExchangeError>> {
    exchange.receive(bytes)
}

#[test]
fn a_request_and_its_replies_cross_with_verified_receipts() {
    let (mut client, mut hub) = pair();
    let (mut exchange, mut served, read) = request(&mut client, &mut hub, Some("tcp:127.0.0.1:1"));
    assert_eq!(read.route.as_deref(), Some("tcp:127.0.0.1:1"));
    assert_eq!(read.message.as_ref(), REQUEST);

    let signer = testdata::signer("svid-p256");
    let (mut bytes, receipt) = served.reply(&*signer, b"first").unwrap();
    assert_eq!(receipt.request_digest, digest(REQUEST));
    bytes.extend(served.reply(&*signer, b"second").unwrap().0);
    bytes.extend(served.close().unwrap());
    let got = replies(&mut exchange, &bytes);
    let messages: Vec<&[u8]> = got
        .iter()
        .map(|r| match r {
            Ok(Reply::Message { message, .. }) => message.as_ref(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(messages, [&b"first"[..], b"second"]);
    exchange.end().unwrap();
}

#[test]
fn a_refusal_carries_its_code() {
    let (mut client, mut hub) = pair();
    let (mut exchange, mut served, read) = request(&mut client, &mut hub, None);
    assert_eq!(read.route, None);
    let refused = Refused::new(RefusalCode::AdapterSessionLost, "restarted");
    let mut bytes = served.refuse(&refused).unwrap();
    bytes.extend(served.close().unwrap());
    let got = replies(&mut exchange, &bytes);
    assert_eq!(got, vec![Ok(Reply::Refused(refused))]);
    exchange.end().unwrap();
}

#[test]
fn a_reply_signed_by_another_key_ends_the_exchange_after_the_good_ones() {
    let (mut client, mut hub) = pair();
    let (mut exchange, mut served, _) = request(&mut client, &mut hub, None);
    let mut bytes = served
        .reply(&*testdata::signer("svid-p256"), b"good")
        .unwrap()
        .0;
    bytes.extend(
        served
            .reply(&*testdata::signer("svid-other"), b"forged")
            .unwrap()
            .0,
    );
    let got = replies(&mut exchange, &bytes);
    assert!(matches!(&got[0], Ok(Reply::Message { message, .. }) if message.as_ref() == b"good"));
    assert!(
        matches!(
            got[1],
            Err(ExchangeError::Reply(ReceiptError::Signature(_)))
        ),
        "{got:?}"
    );
    assert_eq!(got.len(), 2);
    // Over: nothing more is read.
    assert!(replies(&mut exchange, &served.close().unwrap()).is_empty());
}

#[test]
fn a_tampered_or_cut_reply_stream_is_refused() {
    let (mut client, mut hub) = pair();
    let (mut exchange, mut served, _) = request(&mut client, &mut hub, None);
    let (mut bytes, _) = served
        .reply(&*testdata::signer("svid-p256"), b"answer")
        .unwrap();
    bytes[20] ^= 1;
    let got = replies(&mut exchange, &bytes);
    assert!(
        matches!(got.as_slice(), [Err(ExchangeError::Stream(_))]),
        "{got:?}"
    );

    // Cut before the client's close record: the message waits for nothing,
    // but the stream is truncated.
    let (mut client, mut hub) = pair();
    let (mut exchange, mut served, _) = request(&mut client, &mut hub, None);
    let (bytes, _) = served
        .reply(&*testdata::signer("svid-p256"), b"answer")
        .unwrap();
    assert_eq!(replies(&mut exchange, &bytes).len(), 1);
    assert!(matches!(
        exchange.end(),
        Err(ExchangeError::Stream(StreamError::Truncated))
    ));
}

#[test]
fn the_client_refuses_a_replayed_stream_and_odd_requests() {
    let (mut client, mut hub) = pair();
    let (exchange, bytes) =
        RequestExchange::open(&mut hub, testdata::cert("svid-p256"), None, REQUEST).unwrap();
    drop(exchange);
    let header: [u8; STREAM_HEADER_LEN] = bytes[..STREAM_HEADER_LEN].try_into().unwrap();
    let mut served = ServedRequest::accept(&client, header).unwrap();
    served
        .receive(&mut client, &bytes[STREAM_HEADER_LEN..])
        .unwrap();
    served.end().unwrap();
    // The same stream again, on another QUIC stream.
    assert!(matches!(
        ServedRequest::accept(&client, header),
        Err(SessionError::StreamReplay { number: 0, .. })
    ));

    // A reply before the request was read.
    let (exchange, bytes) =
        RequestExchange::open(&mut hub, testdata::cert("svid-p256"), None, REQUEST).unwrap();
    drop(exchange);
    let mut served =
        ServedRequest::accept(&client, bytes[..STREAM_HEADER_LEN].try_into().unwrap()).unwrap();
    assert_eq!(
        served
            .reply(&*testdata::signer("svid-p256"), b"x")
            .unwrap_err(),
        ServeError::NotRead
    );
    // A stream that ends before its message.
    assert!(served.end().is_err());
}

#[test]
fn the_control_stream_sorts_messages_from_control() {
    let (mut client, mut hub) = pair();
    let mut c = ControlStream::open(&mut client).unwrap();
    let mut h = ControlStream::open(&mut hub).unwrap();
    let mut bytes = c.seal_message(b"{\"method\":\"x\"}").unwrap();
    bytes.extend(c.seal_control(b"{\"type\":\"goodbye_ack\"}").unwrap());
    assert_eq!(
        h.receive(&bytes).unwrap(),
        vec![
            ControlInbound::Message(Bytes::from_static(b"{\"method\":\"x\"}")),
            ControlInbound::Control(Bytes::from_static(b"{\"type\":\"goodbye_ack\"}")),
        ]
    );
    let mut bad = c.seal_message(b"x").unwrap();
    bad[17] ^= 1;
    assert!(h.receive(&bad).is_err());
}
