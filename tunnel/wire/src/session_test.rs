#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::record::RecordError;
use crate::replay::ReplayError;

fn secrets() -> SessionSecrets {
    SessionSecrets {
        session_id: [7; SESSION_ID_LEN],
        client_to_hub: [1; 32],
        hub_to_client: [2; 32],
    }
}

fn pair() -> (Session, Session) {
    (
        Session::new(Role::Client, secrets()),
        Session::new(Role::Hub, secrets()),
    )
}

fn message(ch: &mut StreamChannel, body: &[u8]) -> Vec<u8> {
    ch.seal(FrameType::Message, body).unwrap()
}

#[test]
fn control_stream_carries_frames_both_ways() {
    let (mut client, mut hub) = pair();
    let mut c = client.control().unwrap();
    let mut h = hub.control().unwrap();
    assert_eq!(client.control().unwrap_err(), SessionError::ControlTaken);

    let bytes = message(&mut c, br#"{"method":"notifications/tools/list_changed"}"#);
    let frames = h.open(&bytes).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, FrameType::Message);
    assert!(h.verified());

    let back = message(&mut h, b"{}");
    assert_eq!(c.open(&back).unwrap()[0].body, b"{}");
}

#[test]
fn streams_accepted_in_any_order_but_never_twice() {
    let (mut client, mut hub) = pair();
    let mut opened: Vec<_> = (0..3).map(|_| hub.open_stream()).collect();
    assert_eq!(
        opened.iter().map(StreamChannel::number).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let sent: Vec<Vec<u8>> = opened
        .iter_mut()
        .map(|s| {
            let mut b = s.header().to_vec();
            b.extend(message(s, format!("request {}", s.number()).as_bytes()));
            b
        })
        .collect();

    // QUIC may deliver stream 2 before 0 and 1: all accepted.
    for i in [2usize, 0, 1] {
        let n = u64::from_be_bytes(sent[i][..8].try_into().unwrap());
        let mut ch = client.accept_stream(n).unwrap();
        let frames = ch.open(&sent[i][8..]).unwrap();
        assert_eq!(frames[0].body, format!("request {i}").as_bytes());
        client.confirm_stream(n).unwrap();
    }
    // The same stream replayed onto a new QUIC stream is refused.
    assert!(matches!(
        client.accept_stream(1),
        Err(SessionError::StreamReplay {
            number: 1,
            cause: ReplayError::Replayed(1)
        })
    ));
}

#[test]
fn a_stream_number_claimed_twice_concurrently_is_confirmed_once() {
    let (mut client, mut hub) = pair();
    let mut s = hub.open_stream();
    let bytes = message(&mut s, b"x");
    let mut a = client.accept_stream(0).unwrap();
    let mut b = client.accept_stream(0).unwrap();
    a.open(&bytes).unwrap();
    b.open(&bytes).unwrap();
    client.confirm_stream(0).unwrap();
    assert!(client.confirm_stream(0).is_err());
}

#[test]
fn a_record_moved_to_another_stream_fails_its_tag() {
    let (client, mut hub) = pair();
    let mut s0 = hub.open_stream();
    let _s1 = hub.open_stream();
    let bytes = message(&mut s0, b"for stream 0");
    let mut wrong = client.accept_stream(1).unwrap();
    assert!(matches!(
        wrong.open(&bytes),
        Err(StreamError::Record(RecordError::BadTag { .. }))
    ));
    assert_eq!(wrong.stats().bad_tag, 1);
    assert!(!wrong.verified());
}

#[test]
fn reflected_bytes_fail_their_tag() {
    let (mut client, _hub) = pair();
    let mut c = client.control().unwrap();
    let bytes = message(&mut c, b"to the hub");
    assert!(matches!(
        c.open(&bytes),
        Err(StreamError::Record(RecordError::BadTag { .. }))
    ));
}

#[test]
fn a_duplicated_record_inside_a_stream_is_refused() {
    let (mut client, mut hub) = pair();
    let mut c = client.control().unwrap();
    let mut h = hub.control().unwrap();
    let bytes = message(&mut c, b"once");
    h.open(&bytes).unwrap();
    assert!(matches!(
        h.open(&bytes),
        Err(StreamError::Record(RecordError::Replay(
            ReplayError::Replayed(0)
        )))
    ));
    assert_eq!(h.stats().replayed, 1);
}

#[test]
fn a_stream_cut_before_its_close_record_is_refused() {
    let (client, mut hub) = pair();
    let mut s = hub.open_stream();
    let mut bytes = message(&mut s, &[b'a'; 3000]);
    bytes.extend(s.seal_close().unwrap());

    let mut whole = client.accept_stream(0).unwrap();
    assert_eq!(whole.open(&bytes).unwrap().len(), 1);
    assert!(whole.peer_closed());
    whole.finish().unwrap();
    // Nothing may follow the close record.
    assert_eq!(
        whole.open(&bytes[..1]).unwrap_err(),
        StreamError::AfterClose
    );

    for cut in [0, 10, 3000, bytes.len() - 1] {
        let mut ch = client.accept_stream(0).unwrap();
        ch.open(&bytes[..cut]).unwrap();
        assert_eq!(
            ch.finish().unwrap_err(),
            StreamError::Truncated,
            "cut at {cut}"
        );
    }
}

#[test]
fn every_byte_of_a_stream_is_authenticated() {
    let (client, mut hub) = pair();
    let mut s = hub.open_stream();
    let mut bytes = message(&mut s, br#"{"jsonrpc":"2.0","id":1}"#);
    bytes.extend(s.seal_close().unwrap());
    assert_eq!(
        client.accept_stream(0).unwrap().open(&bytes).unwrap().len(),
        1
    );
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        let mut ch = client.accept_stream(0).unwrap();
        let outcome = ch.open(&t).and_then(|f| ch.finish().map(|()| f));
        assert!(outcome.is_err(), "flipping byte {i} went unnoticed");
    }
}

#[test]
fn a_large_message_spans_records_and_an_oversized_one_is_refused() {
    let (client, mut hub) = pair();
    let mut s = hub.open_stream();
    let big = vec![b'x'; 3 * MAX_PLAINTEXT + 17];
    let bytes = message(&mut s, &big);
    let mut ch = client.accept_stream(0).unwrap();
    // Fed in odd-sized pieces, as a QUIC stream delivers them.
    let mut frames = Vec::new();
    for piece in bytes.chunks(65_537) {
        frames.extend(ch.open(piece).unwrap());
    }
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].body.len(), big.len());

    let too_big = vec![0u8; MAX_MESSAGE + 1];
    assert!(matches!(
        s.seal(FrameType::Message, &too_big),
        Err(StreamError::Frame(FrameError::TooLarge { .. }))
    ));
}
