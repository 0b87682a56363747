//! A subject reference (`nhs:9434765919`, `case:ABC123`) as typed into an envelope or decision.
//!
//! Properties: parsing never panics; an accepted reference's normalised text parses back to the
//! same reference (so it hashes the same), its scheme is lower case, and its keyed hash is 64
//! hex digits.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postern_gateway::domain::subject::{SubjectKey, SubjectRef};

static KEY: LazyLock<SubjectKey> =
    LazyLock::new(|| SubjectKey::new(vec![7; 32]).expect("a subject key"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = SubjectRef::parse(text) else {
        return;
    };
    let normalised = r.expose();
    let again = SubjectRef::parse(&normalised)
        .unwrap_or_else(|e| panic!("the normalised form is refused: {e}"));
    assert_eq!(again, r);
    assert_eq!(again.expose(), normalised);
    assert_eq!(r.scheme(), r.scheme().to_ascii_lowercase());
    let hash = r.hash(&KEY);
    assert_eq!(hash, again.hash(&KEY));
    assert_eq!(hash.as_str().len(), 64);
    assert!(hash.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
});
