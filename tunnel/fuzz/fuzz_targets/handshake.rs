//! Handshake message decoder: every message type, arbitrary bodies.
#![no_main]
use ewii_wire::frame::{Frame, FrameType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, body)) = data.split_first() else { return };
    let kind = match k % 5 {
        0 => FrameType::ClientHello,
        1 => FrameType::ServerHello,
        2 => FrameType::ClientFinish,
        3 => FrameType::ServerFinish,
        _ => FrameType::Alert,
    };
    let _ = ewii_wire::handshake::decode(&Frame { kind, body: body.to_vec() });
});
