//! A stream's receive path (records, then frames) on garbage.
#![no_main]
use ewii_wire::session::{Role, Session, SessionSecrets};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secrets = SessionSecrets { session_id: [1; 32], client_to_hub: [2; 32], hub_to_client: [3; 32] };
    let mut session = Session::new(Role::Client, secrets);
    let Ok(mut control) = session.control() else { return };
    for chunk in data.chunks(33) {
        if control.open(chunk).is_err() {
            break;
        }
    }
    let _ = control.finish();
});
