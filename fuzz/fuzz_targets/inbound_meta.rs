//! The clear metadata a peer gateway sends with a delivery (`meta` of `POST /v1/inbound`).
//!
//! Properties: deserialising never panics; an accepted description serialises and parses back
//! equal, and serialising is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::inbox::InboundMeta;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = serde_json::from_slice::<InboundMeta>(data) else {
        return;
    };
    let json = serde_json::to_vec(&meta).expect("serialises");
    let again: InboundMeta = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("an accepted meta does not parse back: {e}"));
    assert_eq!(again, meta);
    assert_eq!(serde_json::to_vec(&again).expect("serialises"), json);
});
