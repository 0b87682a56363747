//! Requests for information (issue 14), as far as they are built: what a request is made of
//! agrees with a real configuration. A request body is validated, decided by the configured
//! registry with the rules of a share between the two organisations, and given a due date by
//! the configured calendar. (The API, the pages and the clock's states come next.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use common::Deployment;
use postern_gateway::domain::info_request::{self, InfoRequestError};
use postern_gateway::domain::policy::{Decision, Rule, evaluate_request};
use serde_json::json;
use time::macros::{date, datetime};

fn body(holder: &str, purpose: &str, basis: &str) -> Vec<u8> {
    json!({
        "holder": holder,
        "purpose": purpose,
        "lawful_basis": basis,
        "requested": "Any contact with the family since January.",
        "grounds": "A strategy discussion is planned after a disclosure at school.",
        "subject_refs": ["nhs:943 476 5919"],
        "urgency": { "level": "routine" },
        "practitioner": { "name": "DC Lee", "role": "Detective constable", "contact": "lee@police.example" }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_request_is_validated_decided_by_the_registry_and_given_its_due_date() {
    // The demo's registry: its agreements, including the pilot that ended.
    let d = Deployment::new();
    for f in ["organisations.toml", "agreements.toml"] {
        std::fs::copy(format!("config/demo/{f}"), d.config_dir.join(f)).expect("copy");
    }
    let config = d.load();
    let registry = &config.registry;
    let police = "northshire-police".parse().unwrap();
    // In winter UTC is the local time in England and Wales, so the UTC day is the day received.
    let now = datetime!(2026-12-24 15:00 UTC);

    // The police ask the council, under the safeguarding protocol: allowed, and due fifteen
    // working days later by the built-in England and Wales calendar (Christmas, the substitute
    // Boxing Day and New Year's Day skipped).
    let r = info_request::parse_json(
        &body("northshire-cc", "child-protection-s47", "public_task"),
        &police,
    )
    .unwrap();
    let ev = evaluate_request(
        registry,
        &police,
        &r.holder,
        &r.purpose,
        r.lawful_basis,
        now,
    );
    match ev.decision {
        Decision::Accept(a) => {
            assert_eq!(a[0].recipient, r.holder);
            assert_eq!(a[0].agreement.as_str(), "northshire-safeguarding-isp");
        }
        Decision::Refuse(r) => panic!("refused: {}", r.detail),
    }
    let requests = &config.daemon.requests;
    let due = requests
        .calendar
        .working_days_after(now.date(), requests.working_days);
    assert_eq!(due.date, date!(2027 - 01 - 19));
    assert!(due.covered);

    // The MASH asks the academy for crime prevention (s.115): the two share under the
    // safeguarding protocol, which does not cover that purpose, so the request is refused by
    // the rule a share between them would be refused by, naming the agreement.
    let mash = "northshire-mash".parse().unwrap();
    let r = info_request::parse_json(
        &body("millbrook-academy", "crime-prevention-s115", "public_task"),
        &mash,
    )
    .unwrap();
    let ev = evaluate_request(registry, &mash, &r.holder, &r.purpose, r.lawful_basis, now);
    match ev.decision {
        Decision::Refuse(refusal) => {
            assert_eq!(refusal.rule, Rule::PurposeInAgreement, "{}", refusal.detail);
            assert_eq!(
                refusal.agreement.map(|a| a.to_string()).as_deref(),
                Some("northshire-safeguarding-isp")
            );
        }
        Decision::Accept(_) => panic!("a request for a purpose no agreement permits was allowed"),
    }
    // And a voluntary organisation cannot ask for a statutory-only purpose.
    let youth = "riverside-youth".parse().unwrap();
    let ev = evaluate_request(
        registry,
        &youth,
        &"northshire-police".parse().unwrap(),
        &"crime-prevention-s115".parse().unwrap(),
        postern_gateway::domain::lawful::LawfulBasis::PublicTask,
        now,
    );
    assert!(matches!(ev.decision, Decision::Refuse(ref r) if r.rule == Rule::StatutoryOnlySender));

    // An organisation cannot ask itself, and the body's mistakes come back all at once.
    match info_request::parse_json(&body("northshire-police", "", "maybe"), &police) {
        Err(InfoRequestError::Invalid(errors)) => {
            let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["holder", "purpose", "lawful_basis"]);
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}
