//! "Record a decision not to share" (`/decline`) and the rationale of an urgent share added
//! afterwards (`/transfers/{id}/rationale`): the API's `POST /v1/decisions` and
//! `POST /v1/transfers/{id}/rationale`, through the same functions
//! (`ingest::decisions::record_decline` and `record_rationale`), with the person as the
//! practitioner and in the record's `sender.person`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::pages::{self, DeclinedPage, Field, FieldError, Opt, QuestionPage};
use super::signin::SignedIn;
use super::transfers::{reference, who};
use super::{WebApp, form_pairs, see_other};
use crate::domain::ids::TransferId;
use crate::domain::registry::Role;
use crate::ingest::routes::Submitter;

/// A person on the pages as the API's functions take a caller: their organisation, no
/// certificate, and their address.
pub(super) fn submitter(s: &SignedIn) -> Submitter {
    Submitter {
        org: s.person.org.clone(),
        certificate: String::new(),
        person: Some(s.person.email.clone()),
    }
}

fn practitioner(s: &SignedIn) -> serde_json::Value {
    json!({"name": s.person.name, "role": s.person.title, "contact": s.person.email})
}

const SCHEMES: [(&str, &str); 4] = [
    ("", "No reference"),
    ("case", "Case reference"),
    ("nhs", "NHS number"),
    ("member", "Your organisation's own reference"),
];

fn page(
    app: &WebApp,
    s: &SignedIn,
    given: &[(String, String)],
    errors: Vec<FieldError>,
) -> Response {
    let reg = app.api.registry.current();
    let one = |n: &str| {
        given
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let picked = |v: &str| given.iter().any(|(k, x)| k == "to" && x == v);
    let mut orgs: Vec<_> = reg
        .organisations()
        .filter(|o| o.id != s.person.org)
        .collect();
    orgs.sort_by(|a, b| a.name.cmp(&b.name));
    let field =
        |kind, name, label: &str, hint: Option<&str>, value: String, options: Vec<Opt>| Field {
            kind,
            name,
            label: label.to_owned(),
            hint: hint.map(str::to_owned),
            value,
            options,
            error: errors
                .iter()
                .find(|e| e.field == name)
                .map(|e| e.message.clone()),
        };
    let fields = vec![
        field(
            "checkboxes",
            "to",
            "Who did you consider sharing with?",
            Some("Select all that apply."),
            String::new(),
            orgs.iter()
                .map(|o| Opt {
                    value: o.id.to_string(),
                    label: o.name.clone(),
                    hint: None,
                    checked: picked(o.id.as_str()),
                })
                .collect(),
        ),
        field(
            "textarea",
            "reasons",
            "Why did you decide not to share?",
            Some(
                "For example: the concern does not meet the threshold, or sharing would put someone at risk. Your data protection officer may read this.",
            ),
            one("reasons"),
            Vec::new(),
        ),
        field(
            "select",
            "ref_scheme",
            "Kind of reference",
            Some(
                "Who the decision is about, without their name, so that a subject access request finds it.",
            ),
            String::new(),
            SCHEMES
                .iter()
                .map(|(v, l)| Opt {
                    value: (*v).to_owned(),
                    label: (*l).to_owned(),
                    hint: None,
                    checked: one("ref_scheme") == *v,
                })
                .collect(),
        ),
        field(
            "text",
            "ref_value",
            "Reference",
            Some("Leave blank if there is none."),
            one("ref_value"),
            Vec::new(),
        ),
    ];
    // Declining a request made through Postern: the request travels with the form.
    let answers = one("answers");
    let mut intro = vec!["A decision not to share matters as much as a share: record who you considered sharing with and why you decided not to. Nothing is sent to anyone.".to_owned()];
    if !answers.is_empty() {
        intro.push(format!(
            "This declines request {}: the organisation that asked sees that it was declined.",
            reference(&answers)
        ));
    }
    let hidden = if answers.is_empty() {
        Vec::new()
    } else {
        vec![("answers".to_owned(), answers)]
    };
    let page = QuestionPage {
        action: "/decline",
        // The h1 says it; a caption saying it again would be read twice.
        caption: "",
        button: "Record the decision",
        title: "Record a decision not to share".to_owned(),
        legend_h1: false,
        step: "decline",
        intro,
        fields,
        hidden,
        errors,
        who: who(s),
        ask: pages::ask(&reg, &s.person.org),
        // This is the page it would link to.
        decline_link: false,
    };
    pages::render_form(&page, &page.errors)
}

fn may_share(s: &SignedIn) -> Result<(), Response> {
    if s.person.may(Role::Share) {
        Ok(())
    } else {
        Err(pages::problem(
            StatusCode::FORBIDDEN,
            "You cannot record decisions from this account",
            "Ask your organisation's safeguarding lead for the share role.",
        ))
    }
}

pub async fn start(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    if let Err(r) = may_share(&s) {
        return r;
    }
    // "Decline a request": one made to this organisation and still open; the requester is
    // the organisation considered.
    let answers = q
        .as_deref()
        .map(|q| form_pairs(q.as_bytes()))
        .and_then(|p| p.into_iter().find(|(k, _)| k == "answers"))
        .map(|(_, v)| v);
    let mut given = Vec::new();
    if let Some(id) = answers {
        let Ok(id) = id.parse::<crate::domain::ids::RequestId>() else {
            return pages::not_found().await;
        };
        match crate::ingest::requests::view(&app.api, id, &s.person.org).await {
            Ok(Some(v)) if v.holder == s.person.org.as_str() && v.closed_at.is_none() => {
                given.push(("answers".to_owned(), v.request_id));
                given.push(("to".to_owned(), v.requester));
            }
            Ok(_) => return pages::not_found().await,
            Err(e) => return pages::store_down(&e),
        }
    }
    page(&app, &s, &given, Vec::new())
}

pub async fn record(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = may_share(&s) {
        return r;
    }
    let given = form_pairs(&body);
    let one = |n: &str| {
        given
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let to: Vec<String> = given
        .iter()
        .filter(|(k, v)| k == "to" && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_owned())
        .collect();
    let mut errors = Vec::new();
    if to.is_empty() {
        errors.push(FieldError::new(
            "to",
            "Select who you considered sharing with",
        ));
    }
    if one("reasons").is_empty() {
        errors.push(FieldError::new(
            "reasons",
            "Enter why you decided not to share",
        ));
    }
    if !one("ref_scheme").is_empty() && one("ref_value").is_empty() {
        errors.push(FieldError::new(
            "ref_value",
            "Enter the reference, or choose no reference",
        ));
    }
    if !errors.is_empty() {
        return page(&app, &s, &given, errors);
    }
    let mut decision = json!({
        "recipients": to,
        "reasons": one("reasons"),
        "practitioner": practitioner(&s),
    });
    if !one("ref_scheme").is_empty()
        && let Some(o) = decision.as_object_mut()
    {
        o.insert(
            "subject_refs".into(),
            json!([format!("{}:{}", one("ref_scheme"), one("ref_value"))]),
        );
    }
    if !one("answers").is_empty()
        && let Some(o) = decision.as_object_mut()
    {
        o.insert("request".into(), json!({"request_id": one("answers")}));
    }
    let Ok(bytes) = serde_json::to_vec(&decision) else {
        return pages::server_error();
    };
    let answer =
        crate::ingest::decisions::record_decline(&app.api, &submitter(&s), None, bytes).await;
    let status = answer.status();
    let Ok(body) = axum::body::to_bytes(answer.into_body(), 1024 * 1024).await else {
        return pages::server_error();
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status == StatusCode::CREATED {
        return pages::render(&DeclinedPage {
            title: "Decision recorded",
            reference: reference(v["decision_id"].as_str().unwrap_or_default()),
            errors: Vec::new(),
            who: who(&s),
        });
    }
    // The decision's own checks: put each error on its field.
    let errors: Vec<FieldError> = v["errors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let f = e["field"].as_str().unwrap_or_default();
                    let field = if f.starts_with("recipients") || f.starts_with("request") {
                        "to"
                    } else if f.starts_with("subject_refs") {
                        "ref_value"
                    } else {
                        "reasons"
                    };
                    FieldError::new(field, e["message"].as_str().unwrap_or("Check this answer"))
                })
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        return pages::problem(
            status,
            "The decision was not recorded",
            v["detail"]
                .as_str()
                .unwrap_or("Try again in a few minutes."),
        );
    }
    page(&app, &s, &given, errors)
}

/// The reasons of an urgent share, added by its organisation afterwards.
pub async fn rationale(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = may_share(&s) {
        return r;
    }
    let Ok(tid) = id.parse::<TransferId>() else {
        return pages::not_found().await;
    };
    let text = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "justification")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    if text.is_empty() {
        return super::transfers::detail_page(
            &app,
            &s,
            tid,
            vec![FieldError::new("justification", "Enter your reasons")],
        )
        .await;
    }
    let Ok(bytes) =
        serde_json::to_vec(&json!({"justification": text, "practitioner": practitioner(&s)}))
    else {
        return pages::server_error();
    };
    let answer =
        crate::ingest::decisions::record_rationale(&app.api, &submitter(&s), tid, &bytes).await;
    match answer.status() {
        StatusCode::OK => see_other(&format!("/transfers/{id}")),
        StatusCode::NOT_FOUND => pages::not_found().await,
        status => pages::problem(
            status,
            "Your reasons were not recorded",
            "They may have been recorded already. Reload the share's page to see.",
        ),
    }
}
