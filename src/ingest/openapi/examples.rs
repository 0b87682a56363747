//! The worked examples the schemas carry (a test checks that the real parsers accept them).

use serde_json::{Value, json};

/// Each schema's example, by schema name.
pub(super) fn examples() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Envelope",
            json!({
                "recipients": ["northshire-police"],
                "purpose": "child-protection-s47",
                "justification": "Disclosure at school indicates risk of significant harm.",
                "lawful_basis": "public_task",
                "special_category_condition": "safeguarding_children",
                "data_categories": ["personal", "special_category"],
                "marking": "OFFICIAL-SENSITIVE PERSONAL",
                "practitioner": {
                    "name": "Sam Patel",
                    "role": "Social worker",
                    "contact": "sam.patel@northshire.gov.example"
                },
                "consent": {
                    "status": "not_sought",
                    "reason": "Seeking consent may place the child at increased risk."
                },
                "subject_informed": {
                    "informed": false,
                    "reason": "Telling the family may increase the risk."
                },
                "urgency": {
                    "level": "routine"
                },
                "request": {
                    "reference": "REQ-2026-0042",
                    "requested": "Police contacts with the household"
                },
                "disclosed_summary": "Strategy discussion notes, two pages.",
                "retention": {
                    "days": 365
                },
                "subject_refs": ["nhs:9434765919", "case:ABC123"],
                "file_name": "strategy-notes.pdf",
                "content_type": "application/pdf"
            }),
        ),
        (
            "Decision",
            json!({
                "recipients": ["northshire-police"],
                "purpose": "child-protection-s47",
                "reasons": "Sharing the strategy notes now would alert the household to the enquiry; the \
                    police will be told at the strategy meeting on Friday.",
                "practitioner": {
                    "name": "Sam Patel",
                    "role": "Social worker",
                    "contact": "sam.patel@northshire.gov.example"
                },
                "request": {
                    "reference": "REQ-2026-0042",
                    "requested": "Strategy discussion notes"
                },
                "subject_refs": ["nhs:9434765919", "case:ABC123"],
                "data_categories": ["personal", "special_category"]
            }),
        ),
        (
            "Rationale",
            json!({
                "justification": "The child disclosed a threat of harm that evening; the police needed the \
                    history before visiting. The public interest in protecting the child \
                    outweighed confidentiality.",
                "practitioner": {
                    "name": "Alex Moore",
                    "role": "Team manager",
                    "contact": "alex.moore@northshire.gov.example"
                }
            }),
        ),
        (
            "InboundMeta",
            json!({
                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                "recipient": "northshire-police",
                "sender": "northshire-cc",
                "sender_name": "Northshire County Council Children's Services",
                "purpose": "child-protection-s47",
                "marking": "OFFICIAL-SENSITIVE PERSONAL",
                "retain_until": "2027-11-22"
            }),
        ),
        (
            "RecipientEnvelope",
            json!({
                "transfer_id": "0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d",
                "sender": "northshire-cc",
                "received_at": "2026-11-22T10:15:30.123456Z",
                "recipients": ["northshire-police"],
                "purpose": "child-protection-s47",
                "justification": "Disclosure at school indicates risk of significant harm.",
                "lawful_basis": "public_task",
                "special_category_condition": "safeguarding_children",
                "data_categories": ["personal", "special_category"],
                "marking": "OFFICIAL-SENSITIVE PERSONAL",
                "marking_normalised": "OFFICIAL-SENSITIVE PERSONAL",
                "originator": "northshire-cc",
                "practitioner": {
                    "name": "Sam Patel",
                    "role": "Social worker",
                    "contact": "sam.patel@northshire.gov.example"
                },
                "consent": {
                    "status": "not_sought",
                    "reason": "Seeking consent may place the child at increased risk."
                },
                "subject_informed": {
                    "informed": false,
                    "reason": "Telling the family may increase the risk."
                },
                "urgency": {
                    "level": "routine"
                },
                "request": {
                    "reference": "REQ-2026-0042",
                    "requested": "Police contacts with the household"
                },
                "disclosed_summary": "Strategy discussion notes, two pages.",
                "retain_until": "2027-11-22",
                "subject_refs": ["nhs:9434765919", "case:ABC123"],
                "file_name": "strategy-notes.pdf",
                "content_type": "application/pdf"
            }),
        ),
    ]
}
