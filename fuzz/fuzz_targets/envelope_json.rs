//! The envelope of `POST /v1/transfers`, as JSON bytes, parsed in the demo's context.
//!
//! Properties: parsing never panics; an error is `Malformed` with a message or `Invalid` with at
//! least one field error, each with a message; an accepted envelope, written back in its wire
//! form, parses again to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_fuzz::{envelope_json, parse_context};
use postern_gateway::domain::envelope::{EnvelopeError, parse_json};

fuzz_target!(|data: &[u8]| {
    let cx = parse_context();
    match parse_json(data, &cx) {
        Ok(envelope) => {
            let again = serde_json::to_vec(&envelope_json(&envelope)).expect("serialises");
            match parse_json(&again, &cx) {
                Ok(reparsed) => assert_eq!(reparsed, envelope, "the round trip changed it"),
                Err(e) => panic!("an accepted envelope's wire form is refused: {e:?}"),
            }
        }
        Err(EnvelopeError::Malformed(msg)) => assert!(!msg.is_empty()),
        Err(EnvelopeError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "Invalid with no field errors");
            for e in &errors {
                assert!(!e.message.is_empty(), "{e:?}");
            }
        }
    }
});
