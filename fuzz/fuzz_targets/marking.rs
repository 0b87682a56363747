//! A protective marking as a practitioner or system wrote it, parsed against the demo scheme.
//!
//! Properties: parsing never panics; an accepted marking keeps the text as given (trimmed),
//! parses again from that text to the same marking, and its normalised form (the gateway's
//! scale, e.g. `OFFICIAL-SENSITIVE PERSONAL`) parses to the same rank and descriptor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_fuzz::SCHEME;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(marking) = SCHEME.parse(text) else {
        return;
    };
    assert_eq!(marking.given, text.trim());
    assert_eq!(SCHEME.parse(&marking.given).as_ref(), Ok(&marking));
    let normalised = marking.normalised(&SCHEME);
    let again = SCHEME
        .parse(&normalised)
        .unwrap_or_else(|e| panic!("the normalised form {normalised:?} is refused: {e}"));
    assert_eq!(again.rank, marking.rank, "{normalised:?}");
    assert_eq!(again.descriptor, marking.descriptor, "{normalised:?}");
    assert_eq!(again.normalised(&SCHEME), normalised);
});
