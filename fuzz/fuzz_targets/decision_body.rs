//! The JSON bodies of `POST /v1/decisions` (a decision not to share, validated against the demo
//! registry) and `POST /v1/transfers/{id}/rationale`. The first byte chooses the body (even:
//! decision, odd: rationale); the rest is the body.
//!
//! Properties: parsing never panics; an error is `Malformed` or `Invalid` with at least one field
//! error; an accepted body, written back in its wire form, parses again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_fuzz::{REGISTRY, SENDER_ID, object, practitioner_json, request_json};
use postern_gateway::domain::decision::{
    DecisionContext, DecisionError, Decline, Rationale, parse_decision, parse_rationale,
};
use postern_gateway::domain::subject::SubjectRef;
use serde_json::{Value, json};

/// The wire form of a parsed decision (as JSON, the contract).
fn decision_json(d: &Decline) -> Value {
    object(vec![
        (
            "recipients",
            Some(json!(
                d.recipients
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            )),
        ),
        ("purpose", d.purpose.as_ref().map(|p| json!(p.to_string()))),
        ("reasons", Some(json!(d.reasons.expose()))),
        ("practitioner", Some(practitioner_json(&d.practitioner))),
        ("request", d.request.as_ref().map(request_json)),
        (
            "subject_refs",
            Some(json!(
                d.subject_refs
                    .iter()
                    .map(SubjectRef::expose)
                    .collect::<Vec<_>>()
            )),
        ),
        (
            "data_categories",
            Some(json!(
                d.data_categories
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
            )),
        ),
    ])
}

fn rationale_json(r: &Rationale) -> Value {
    object(vec![
        ("justification", Some(json!(r.justification.expose()))),
        (
            "practitioner",
            r.practitioner.as_ref().map(practitioner_json),
        ),
    ])
}

fn check_error(e: &DecisionError) {
    match e {
        DecisionError::Malformed(msg) => assert!(!msg.is_empty()),
        DecisionError::Invalid(errors) => {
            assert!(!errors.is_empty(), "Invalid with no field errors");
            for e in errors {
                assert!(!e.message.is_empty(), "{e:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        let cx = DecisionContext {
            decider: &SENDER_ID,
            registry: &REGISTRY,
        };
        match parse_decision(body, &cx) {
            Ok(d) => {
                let again = serde_json::to_vec(&decision_json(&d)).expect("serialises");
                match parse_decision(&again, &cx) {
                    Ok(reparsed) => assert_eq!(reparsed, d, "the round trip changed it"),
                    Err(e) => panic!("an accepted decision's wire form is refused: {e:?}"),
                }
            }
            Err(e) => check_error(&e),
        }
    } else {
        match parse_rationale(body) {
            Ok(r) => {
                let again = serde_json::to_vec(&rationale_json(&r)).expect("serialises");
                match parse_rationale(&again) {
                    Ok(reparsed) => assert_eq!(reparsed, r, "the round trip changed it"),
                    Err(e) => panic!("an accepted rationale's wire form is refused: {e:?}"),
                }
            }
            Err(e) => check_error(&e),
        }
    }
});
