//! "Requests for information" (`/requests`): the requests a person's organisation was asked and
//! made, with their clocks; "ask for information" (`/requests/new`, for people with `share`);
//! one request's page (`/requests/{id}`), from which the holder answers it (the share flow,
//! `/share?answers=ID`) or declines it (`/decline?answers=ID`), and the requester withdraws it.
//! Everything goes through the API's own functions (`ingest::requests`), with the person as the
//! practitioner. A request of another organisation is "not found", whatever its id.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::decline::submitter;
use super::log_pages::{org_name, purpose_name};
use super::oversight::when;
use super::pages::{self, Field, FieldError, Opt, QuestionPage, Who};
use super::signin::{SignedIn, client};
use super::transfers::{reference, who};
use super::{ClientAddr, WebApp, form_pairs, see_other};
use crate::domain::choices;
use crate::domain::ids::RequestId;
use crate::domain::info_request::RequestStatus;
use crate::domain::lawful::LawfulBasis;
use crate::domain::registry::{Registry, Role};
use crate::ingest::requests::RequestView;
use crate::log::record::AccessEvent;
use crate::store::requests::Side;

type Client = Option<axum::Extension<ClientAddr>>;

/// A status as people read it, and its tag's colour.
fn status_words(s: RequestStatus) -> (&'static str, &'static str) {
    match s {
        RequestStatus::Open => ("Waiting for an answer", "wait"),
        RequestStatus::PartlyAnswered => ("Partly answered", "wait"),
        RequestStatus::Answered => ("Answered", "done"),
        RequestStatus::Declined => ("Declined", "done"),
        RequestStatus::Withdrawn => ("Withdrawn", "done"),
        RequestStatus::Overdue => ("Overdue", "bad"),
        RequestStatus::AwaitingClarification => ("Waiting for a clarification", "wait"),
    }
}

// ---------------------------------------------------------------------------------------------
// The list.

pub struct RequestLine {
    pub id: String,
    pub reference: String,
    /// The other organisation.
    pub other: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub urgent: bool,
    pub due: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
pub struct RequestsPage {
    pub title: &'static str,
    /// Asked of the person's organisation (people with `share` or `receive`).
    pub received: Option<Vec<RequestLine>>,
    /// Made by it (people with `share`).
    pub made: Option<Vec<RequestLine>>,
    pub can_share: bool,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

async fn lines(app: &WebApp, s: &SignedIn, side: Side) -> Result<Vec<RequestLine>, Response> {
    let org = s.person.org.to_string();
    let rows = app
        .api
        .store
        .read(move |c| crate::store::requests::list(c, &org, side, false, 200))
        .await
        .map_err(|e| pages::store_down(&e))?;
    let reg = app.api.registry.current();
    let now = crate::clock::now();
    Ok(rows
        .iter()
        .map(|r| {
            let summary = crate::ingest::requests::summary(r, now);
            let (status, status_class) = status_words(summary.status);
            let other = match side {
                Side::Received => &summary.requester,
                Side::Made => &summary.holder,
            };
            RequestLine {
                reference: reference(&summary.request_id),
                id: summary.request_id.clone(),
                other: org_name(&reg, other),
                status,
                status_class,
                urgent: summary.urgency == "urgent",
                due: summary.due_date,
            }
        })
        .collect())
}

pub async fn list(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    let can_share = s.person.may(Role::Share);
    let sees_received = can_share || s.person.may(Role::Receive);
    if !sees_received {
        return pages::problem(
            StatusCode::FORBIDDEN,
            "You cannot see requests from this account",
            "Requests for information are for people who share or receive information. Ask your organisation's safeguarding lead.",
        );
    }
    let received = match lines(&app, &s, Side::Received).await {
        Ok(l) => Some(l),
        Err(r) => return r,
    };
    let made = if can_share {
        match lines(&app, &s, Side::Made).await {
            Ok(l) => Some(l),
            Err(r) => return r,
        }
    } else {
        None
    };
    pages::render(&RequestsPage {
        title: "Requests for information",
        received,
        made,
        can_share,
        errors: Vec::new(),
        who: who(&s),
    })
}

// ---------------------------------------------------------------------------------------------
// Asking.

const SCHEMES: [(&str, &str); 4] = [
    ("", "Choose the kind of reference"),
    ("nhs", "NHS number"),
    ("case", "Case reference"),
    ("member", "Your organisation's own reference"),
];

fn ask_page(
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
    let error = |name: &str| {
        errors
            .iter()
            .find(|e| e.field == name)
            .map(|e| e.message.clone())
    };
    let field = |kind, name, label: &str, hint: Option<&str>, options: Vec<Opt>| Field {
        kind,
        name,
        label: label.to_owned(),
        hint: hint.map(str::to_owned),
        value: one(name),
        options,
        error: error(name),
    };
    let option = |name: &str, value: String, label: String| Opt {
        checked: one(name) == value,
        value,
        label,
        hint: None,
    };
    let today = crate::clock::now().date();
    // The organisations an agreement in force binds to this one: the others would be refused.
    let mut orgs: Vec<_> = reg
        .organisations()
        .filter(|o| {
            o.id != s.person.org
                && reg
                    .agreements()
                    .iter()
                    .any(|a| a.in_force(today) && a.binds(&s.person.org, &o.id))
        })
        .collect();
    orgs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut holders = vec![option(
        "holder",
        String::new(),
        "Choose an organisation".into(),
    )];
    holders.extend(
        orgs.iter()
            .map(|o| option("holder", o.id.to_string(), o.name.clone())),
    );
    let mut purposes = vec![option("purpose", String::new(), "Choose why".into())];
    let mut all: Vec<_> = reg.purposes().collect();
    all.sort_by(|a, b| a.title.cmp(&b.title));
    purposes.extend(
        all.iter()
            .map(|p| option("purpose", p.id.to_string(), p.title.clone())),
    );
    let bases = LawfulBasis::ALL
        .iter()
        .map(|b| Opt {
            value: b.as_str().to_owned(),
            label: choices::basis_title(*b).to_owned(),
            hint: Some(choices::basis_hint(*b).to_owned()),
            checked: one("basis") == b.as_str(),
        })
        .collect();
    let fields = vec![
        field(
            "select",
            "holder",
            "Which organisation holds the information?",
            Some("Only organisations your agreements cover are listed."),
            holders,
        ),
        field(
            "select",
            "purpose",
            "Why do you need it?",
            Some("The purpose your agreement with them allows."),
            purposes,
        ),
        field(
            "radios",
            "basis",
            "The lawful basis they would share on",
            None,
            bases,
        ),
        field(
            "textarea",
            "requested",
            "What information do you need?",
            Some(
                "Ask only for what you need, in words they can act on. It is recorded as you write it.",
            ),
            Vec::new(),
        ),
        field(
            "textarea",
            "grounds",
            "Your grounds",
            Some(
                "Why you need it: what they weigh before they share. Your data protection officer may read this.",
            ),
            Vec::new(),
        ),
        field(
            "select",
            "ref_scheme",
            "Kind of reference",
            Some(
                "Who the request is about, without their name. They see it while they answer; Postern keeps only a scrambled form afterwards.",
            ),
            SCHEMES
                .iter()
                .map(|(v, l)| option("ref_scheme", (*v).to_owned(), (*l).to_owned()))
                .collect(),
        ),
        field("text", "ref_value", "Reference", None, Vec::new()),
        field(
            "radios",
            "urgency",
            "How urgent is it?",
            None,
            vec![
                Opt {
                    value: "routine".into(),
                    label: "Routine".into(),
                    hint: Some(format!(
                        "They answer within {} working days.",
                        app.api.requests.working_days
                    )),
                    checked: one("urgency") != "urgent",
                },
                Opt {
                    value: "urgent".into(),
                    label: "Urgent".into(),
                    hint: Some(format!(
                        "A child may be at risk now: they answer within {} hours. If you asked by telephone first, this is your request in writing.",
                        app.api.requests.urgent_hours
                    )),
                    checked: one("urgency") == "urgent",
                },
            ],
        ),
        field(
            "textarea",
            "urgency_reason",
            "Why is it urgent?",
            Some("Only if it is urgent."),
            Vec::new(),
        ),
    ];
    let page = QuestionPage {
        action: "/requests/new",
        caption: "",
        button: "Send the request",
        title: "Ask for information".to_owned(),
        legend_h1: false,
        step: "ask",
        intro: vec![format!(
            "Ask another organisation, in writing, for information it holds about a child. The protocols ask it to answer within {} working days: weekends and bank holidays do not count, nor does the day it arrives. It answers by sharing through Postern, or by recording a decision not to share, with its reasons.",
            app.api.requests.working_days
        )],
        fields,
        hidden: Vec::new(),
        errors,
        who: who(s),
        ask: pages::ask(&reg, &s.person.org),
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
            "You cannot ask for information from this account",
            "Ask your organisation's safeguarding lead for the share role.",
        ))
    }
}

pub async fn new(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    if let Err(r) = may_share(&s) {
        return r;
    }
    ask_page(&app, &s, &[], Vec::new())
}

#[derive(Template)]
#[template(path = "request_sent.html")]
pub struct SentPage {
    pub title: &'static str,
    pub id: String,
    pub reference: String,
    pub holder: String,
    pub due: String,
    pub urgent: bool,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

/// Which question of the form an error of the request's body belongs to.
fn form_field(api_field: &str) -> &'static str {
    match api_field.split(['[', '.']).next().unwrap_or_default() {
        "holder" => "holder",
        "purpose" => "purpose",
        "lawful_basis" => "basis",
        "requested" => "requested",
        "grounds" => "grounds",
        "subject_refs" => "ref_value",
        "urgency" => "urgency_reason",
        _ => "requested",
    }
}

pub async fn ask(State(app): State<Arc<WebApp>>, s: SignedIn, body: axum::body::Bytes) -> Response {
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
    let mut errors = Vec::new();
    for (name, message) in [
        (
            "holder",
            "Choose the organisation that holds the information",
        ),
        ("purpose", "Choose why you need it"),
        ("basis", "Choose the lawful basis"),
        ("requested", "Enter what information you need"),
        ("grounds", "Enter why you need it"),
    ] {
        if one(name).is_empty() {
            errors.push(FieldError::new(name, message));
        }
    }
    if one("ref_scheme").is_empty() || one("ref_value").is_empty() {
        errors.push(FieldError::new(
            "ref_value",
            "Choose the kind of reference and enter the reference of the child it is about",
        ));
    }
    let urgent = one("urgency") == "urgent";
    if urgent && one("urgency_reason").is_empty() {
        errors.push(FieldError::new("urgency_reason", "Say why it is urgent"));
    }
    if !errors.is_empty() {
        return ask_page(&app, &s, &given, errors);
    }
    let urgency = if urgent {
        json!({"level": "urgent", "reason": one("urgency_reason")})
    } else {
        json!({"level": "routine"})
    };
    let request = json!({
        "holder": one("holder"),
        "purpose": one("purpose"),
        "lawful_basis": one("basis"),
        "requested": one("requested"),
        "grounds": one("grounds"),
        "subject_refs": [format!("{}:{}", one("ref_scheme"), one("ref_value"))],
        "urgency": urgency,
        "practitioner": {"name": s.person.name, "role": s.person.title, "contact": s.person.email},
    });
    let Ok(bytes) = serde_json::to_vec(&request) else {
        return pages::server_error();
    };
    let answer = crate::ingest::requests::make_request(&app.api, &submitter(&s), None, bytes).await;
    let status = answer.status();
    let Ok(body) = axum::body::to_bytes(answer.into_body(), 1024 * 1024).await else {
        return pages::server_error();
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status == StatusCode::CREATED {
        let reg = app.api.registry.current();
        let id = v["request_id"].as_str().unwrap_or_default().to_owned();
        return pages::render(&SentPage {
            title: "Request sent",
            reference: reference(&id),
            id,
            holder: org_name(&reg, v["holder"].as_str().unwrap_or_default()),
            due: if urgent {
                when(v["due_at"].as_str().unwrap_or_default())
            } else {
                v["due_date"].as_str().unwrap_or_default().to_owned()
            },
            urgent,
            errors: Vec::new(),
            who: who(&s),
        });
    }
    // Refused by policy: the rule's sentence, on the question it concerns.
    if status == StatusCode::FORBIDDEN {
        let field = form_field(v["field"].as_str().unwrap_or("holder"));
        let message = v["detail"]
            .as_str()
            .unwrap_or("Your agreements do not allow this request");
        return ask_page(&app, &s, &given, vec![FieldError::new(field, message)]);
    }
    let errors: Vec<FieldError> = v["errors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    FieldError::new(
                        form_field(e["field"].as_str().unwrap_or_default()),
                        e["message"].as_str().unwrap_or("Check this answer"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        return pages::problem(
            status,
            "The request was not sent",
            v["detail"]
                .as_str()
                .unwrap_or("Try again in a few minutes."),
        );
    }
    ask_page(&app, &s, &given, errors)
}

// ---------------------------------------------------------------------------------------------
// One request.

pub struct AnswerLine {
    pub reference: String,
    /// The share's page, for the organisation that sent it.
    pub link: Option<String>,
    pub what: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "request.html")]
pub struct RequestPage {
    pub title: &'static str,
    pub id: String,
    pub reference: String,
    pub status: &'static str,
    pub status_class: &'static str,
    /// The person's organisation was asked (else it asked).
    pub holder_side: bool,
    pub requester: String,
    pub holder: String,
    pub purpose: String,
    pub basis: String,
    pub urgency: String,
    pub requested: String,
    pub grounds: String,
    pub practitioner: String,
    pub about: Vec<String>,
    pub received: String,
    pub due: String,
    pub answers: Vec<AnswerLine>,
    /// The clarifications asked and given: who, when, what.
    pub clarifications: Vec<(String, String, String)>,
    /// A clarification is awaited from the requester.
    pub awaiting: bool,
    /// The clock stops while a clarification is awaited (`[requests] clarification`).
    pub clock_stops: bool,
    pub closed: bool,
    pub can_share: bool,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

fn scheme_label(reference: &str) -> String {
    match reference.split_once(':') {
        Some((scheme, value)) => {
            let label = SCHEMES
                .iter()
                .skip(1)
                .find(|(v, _)| *v == scheme)
                .map_or(scheme, |(_, l)| l);
            format!("{label}: {value}")
        }
        None => reference.to_owned(),
    }
}

impl RequestPage {
    pub fn err(&self, field: &str) -> Option<&str> {
        pages::error_for(&self.errors, field)
    }
}

fn request_page(
    reg: &Registry,
    s: &SignedIn,
    v: RequestView,
    clock_stops: bool,
    errors: Vec<FieldError>,
) -> RequestPage {
    let (status, status_class) = status_words(v.status);
    let holder_side = v.holder == s.person.org.as_str();
    let closed = matches!(
        v.status,
        RequestStatus::Answered | RequestStatus::Declined | RequestStatus::Withdrawn
    );
    RequestPage {
        title: "Request for information",
        reference: reference(&v.request_id),
        status,
        status_class,
        holder_side,
        requester: org_name(reg, &v.requester),
        holder: org_name(reg, &v.holder),
        purpose: purpose_name(reg, &v.purpose),
        basis: LawfulBasis::parse(&v.lawful_basis).map_or_else(
            || v.lawful_basis.clone(),
            |b| choices::basis_title(b).to_owned(),
        ),
        urgency: match &v.urgency_reason {
            Some(r) => format!("Urgent: {r}"),
            None => "Routine".to_owned(),
        },
        requested: v.requested,
        grounds: v.grounds,
        practitioner: format!(
            "{}, {} ({})",
            v.practitioner.name, v.practitioner.role, v.practitioner.contact
        ),
        about: v
            .subject_refs
            .unwrap_or_default()
            .iter()
            .map(|r| scheme_label(r))
            .collect(),
        received: when(&v.received_at),
        due: if v.urgency == "urgent" {
            when(&v.due_at)
        } else {
            format!("{} (the end of the day)", v.due_date)
        },
        answers: v
            .answers
            .iter()
            .map(|a| AnswerLine {
                reference: reference(&a.id),
                link: (holder_side && a.kind == "answer").then(|| format!("/transfers/{}", a.id)),
                what: match (a.kind.as_str(), a.answer) {
                    ("decline", _) => "Declined: a decision not to share, with its reasons".into(),
                    (_, Some(crate::domain::envelope::AnswerExtent::InPart)) => {
                        "Shared: answers it in part".into()
                    }
                    _ => "Shared: answers it in full".into(),
                },
                at: when(&a.at),
            })
            .collect(),
        clarifications: v
            .clarifications
            .iter()
            .map(|c| {
                (
                    if c.kind == "asked" {
                        format!("{} asked", org_name(reg, &v.holder))
                    } else {
                        format!("{} clarified", org_name(reg, &v.requester))
                    },
                    when(&c.at),
                    c.text.clone(),
                )
            })
            .collect(),
        awaiting: v.clarifications.last().is_some_and(|c| c.kind == "asked"),
        clock_stops,
        id: v.request_id,
        closed,
        can_share: s.person.may(Role::Share),
        errors,
        who: who(s),
    }
}

async fn show_page(
    app: &WebApp,
    s: &SignedIn,
    addr: &Client,
    id: &str,
    errors: Vec<FieldError>,
) -> Response {
    if !(s.person.may(Role::Share) || s.person.may(Role::Receive)) {
        return pages::not_found().await;
    }
    let Ok(rid) = id.parse::<RequestId>() else {
        return pages::not_found().await;
    };
    let v = match crate::ingest::requests::view(&app.api, rid, &s.person.org).await {
        Ok(Some(v)) => v,
        Ok(None) => return pages::not_found().await,
        Err(e) => return pages::store_down(&e),
    };
    // Who read what a request says about a child is on the record, as for an inbox item.
    let entry = super::signin::entry(
        &s.person,
        AccessEvent::RequestViewed,
        &client(addr.as_deref()),
        None,
        None,
        Some(rid.to_string()),
    );
    if let Err(r) = super::oversight::append(app, entry).await {
        return r;
    }
    let reg = app.api.registry.current();
    let page = request_page(&reg, s, v, app.api.requests.clarification.stops(), errors);
    pages::render_form(&page, &page.errors)
}

pub async fn show(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    Path(id): Path<String>,
) -> Response {
    show_page(&app, &s, &addr, &id, Vec::new()).await
}

/// A clarification asked (by the holder) or given (by the requester).
pub async fn clarify(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = may_share(&s) {
        return r;
    }
    let Ok(rid) = id.parse::<RequestId>() else {
        return pages::not_found().await;
    };
    let text = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "text")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    if text.is_empty() {
        return show_page(
            &app,
            &s,
            &addr,
            &id,
            vec![FieldError::new(
                "text",
                "Enter what needs clarifying, or the clarification",
            )],
        )
        .await;
    }
    let Ok(bytes) = serde_json::to_vec(&json!({ "text": text })) else {
        return pages::server_error();
    };
    let answer = crate::ingest::requests::clarify(&app.api, &submitter(&s), rid, &bytes).await;
    let refused = Refused {
        field: "text",
        too_long: "The text is too long: keep it under 4,000 characters",
        title: "The clarification was not recorded",
        detail: "The request may have been answered or withdrawn, or a clarification is already awaited. Reload its page to see.",
    };
    after(&app, &s, &addr, &rid.to_string(), answer.status(), refused).await
}

/// What a form on a request's page says when the API does not take it.
struct Refused {
    /// The field a 422 is about, and its message.
    field: &'static str,
    too_long: &'static str,
    /// The page for any other refusal.
    title: &'static str,
    detail: &'static str,
}

/// After a form on a request's page: back to the page, the page with the form's error, or
/// what went wrong.
async fn after(
    app: &WebApp,
    s: &SignedIn,
    addr: &Client,
    id: &str,
    status: StatusCode,
    refused: Refused,
) -> Response {
    match status {
        StatusCode::OK => see_other(&format!("/requests/{id}")),
        StatusCode::NOT_FOUND => pages::not_found().await,
        StatusCode::UNPROCESSABLE_ENTITY => {
            let error = FieldError::new(refused.field, refused.too_long);
            show_page(app, s, addr, id, vec![error]).await
        }
        status => pages::problem(status, refused.title, refused.detail),
    }
}

/// The requester withdraws its request, with an optional reason.
pub async fn withdraw(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = may_share(&s) {
        return r;
    }
    let Ok(rid) = id.parse::<RequestId>() else {
        return pages::not_found().await;
    };
    let reason = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|r| !r.is_empty());
    let Ok(bytes) = serde_json::to_vec(&json!({ "reason": reason })) else {
        return pages::server_error();
    };
    let answer =
        crate::ingest::requests::withdraw_request(&app.api, &submitter(&s), rid, &bytes).await;
    let refused = Refused {
        field: "reason",
        too_long: "The reason is too long: keep it under 4,000 characters",
        title: "The request was not withdrawn",
        detail: "It may have been answered, declined or withdrawn already. Reload its page to see.",
    };
    after(&app, &s, &addr, &rid.to_string(), answer.status(), refused).await
}
