//! Frame decoder: arbitrary chunking of arbitrary bytes.
#![no_main]
use ewii_wire::frame::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = FrameDecoder::new(4096);
    for chunk in data.chunks(7) {
        if d.push(chunk).is_err() {
            break;
        }
    }
});
