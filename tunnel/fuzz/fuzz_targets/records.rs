//! Record decoder: any bytes are refused or opened, never a panic.
#![no_main]
use ewii_wire::record::{Direction, Opener, TrafficSecret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut opener = Opener::new(TrafficSecret::new(&[7; 32]), [9; 32], Direction::ClientToHub);
    let _ = ewii_wire::record::record_len(data);
    let _ = opener.open(data);
});
