//! `POST /v1/inbound` through the real router, as the demo's peer gateway, with the fuzz input
//! decoded into headers and a multipart body (see `postern_fuzz::decode`).
//!
//! Properties: no panic; never 500 (or 503: the store is open); every refusal is a documented
//! problem document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_fuzz::{GATEWAY, PEER, check_answer, decode, peer};

fuzz_target!(|data: &[u8]| {
    let answer = GATEWAY.call(peer(PEER), "/v1/inbound", decode(data));
    check_answer(&answer);
});
