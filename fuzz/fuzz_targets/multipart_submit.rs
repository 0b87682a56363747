//! `POST /v1/transfers` through the real router, as the demo organisation `northshire-cc`, with
//! the fuzz input decoded into headers and a multipart body (see `postern_fuzz::decode`).
//!
//! Properties: no panic; never 500 (or 503: the store is open); every refusal is a documented
//! problem document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_fuzz::{GATEWAY, SENDER, check_answer, decode, organisation};

fuzz_target!(|data: &[u8]| {
    let answer = GATEWAY.call(organisation(SENDER), "/v1/transfers", decode(data));
    check_answer(&answer);
});
