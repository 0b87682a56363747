//! The pages' templates (askama, checked at compile time, in `templates/`) and the small
//! answers every handler shares: a rendered page, a problem page, the stylesheet.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::store::StoreError;

/// Who is signed in, for the header.
pub struct Who {
    pub name: String,
    pub org: String,
    /// A DPO or auditor: the header links to the transfer log.
    pub log: bool,
    /// The IT team: the header links to the registry.
    pub admin: bool,
}

/// A field's error: the field's id (the error summary links to it) and what to do.
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "email.html")]
pub struct EmailPage {
    pub title: &'static str,
    pub errors: Vec<FieldError>,
    pub email: String,
    pub note: Option<&'static str>,
    pub who: Option<Who>,
    /// Whether to offer "Sign in with a passkey" (to browsers that can).
    pub passkeys: bool,
    /// The page to go to once signed in (a path on this site), or empty.
    pub next: String,
}

impl EmailPage {
    pub fn new(errors: Vec<FieldError>, email: String, note: Option<&'static str>) -> Self {
        EmailPage {
            title: "Sign in",
            errors,
            email,
            note,
            who: None,
            passkeys: false,
            next: String::new(),
        }
    }
}

/// A passkey in the list.
pub struct PasskeyRow {
    /// The credential's id (base64url), which the remove form posts.
    pub id: String,
    pub name: String,
    pub added: String,
    pub used: String,
}

#[derive(Template)]
#[template(path = "passkeys.html")]
pub struct PasskeysPage {
    pub title: &'static str,
    pub passkeys: Vec<PasskeyRow>,
    /// The person's organisation requires passkeys (`sign_in = "passkey"`).
    pub required: bool,
    pub org: String,
    /// This gateway can offer passkeys (its pages have a name, not an IP address).
    pub available: bool,
    pub note: Option<&'static str>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "code.html")]
pub struct CodePage {
    pub title: &'static str,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
    /// As on the email page.
    pub next: String,
}

impl CodePage {
    pub fn new(errors: Vec<FieldError>, next: String) -> Self {
        CodePage {
            title: "Check your email",
            errors,
            who: None,
            next,
        }
    }
}

#[derive(Template)]
#[template(path = "problem.html")]
pub struct ProblemPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "accessibility.html")]
struct AccessibilityPage {
    title: &'static str,
    errors: Vec<FieldError>,
    who: Option<Who>,
}

/// One choice of a radio group, checkbox group or select.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub hint: Option<String>,
    pub checked: bool,
}

/// One question on a page: `kind` is radios, checkboxes, textarea, text, number or select.
pub struct Field {
    pub kind: &'static str,
    pub name: &'static str,
    pub label: String,
    pub hint: Option<String>,
    pub value: String,
    pub options: Vec<Opt>,
    pub error: Option<String>,
}

impl Field {
    /// An empty question of `kind`, to be given its value, options or error.
    pub fn new(kind: &'static str, name: &'static str, label: &str, hint: Option<&str>) -> Self {
        Field {
            kind,
            name,
            label: label.to_owned(),
            hint: hint.map(str::to_owned),
            value: String::new(),
            options: Vec::new(),
            error: None,
        }
    }
}

#[derive(Template)]
#[template(path = "question.html")]
pub struct QuestionPage {
    /// Where the form posts, what the page is part of, and its button.
    pub action: &'static str,
    pub caption: &'static str,
    pub button: &'static str,
    pub title: String,
    /// The page asks one group of choices whose legend is the page's title: the legend is the
    /// h1 (the GOV.UK pattern), so the question is not read twice.
    pub legend_h1: bool,
    pub step: &'static str,
    pub intro: Vec<String>,
    pub fields: Vec<Field>,
    /// The answers given on other pages, carried along.
    pub hidden: Vec<(String, String)>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
    /// "Not sure?": whom to ask, and whether to offer recording a decision not to share.
    pub ask: Vec<Ask>,
    pub decline_link: bool,
}

/// A person to ask when unsure, named by the organisation (`safeguarding_lead`, `dpo`).
pub struct Ask {
    pub role: &'static str,
    pub name: String,
    pub contact: String,
}

/// Whom the people of `org` ask before they share: its safeguarding lead and DPO as
/// organisations.toml names them (none named: the box says so in general words).
pub fn ask(
    registry: &crate::domain::registry::Registry,
    org: &crate::domain::ids::OrgId,
) -> Vec<Ask> {
    let Some(o) = registry.organisation(org) else {
        return Vec::new();
    };
    [
        ("safeguarding lead", &o.contacts.safeguarding_lead),
        ("data protection officer", &o.contacts.dpo),
    ]
    .into_iter()
    .filter_map(|(role, c)| {
        c.as_ref().map(|c| Ask {
            role,
            name: c.name.clone(),
            contact: c.contact.clone(),
        })
    })
    .collect()
}

/// A row of "check your answers".
pub struct Row {
    pub label: &'static str,
    pub lines: Vec<String>,
    pub step: &'static str,
}

#[derive(Template)]
#[template(path = "check.html")]
pub struct CheckPage {
    pub title: &'static str,
    pub rows: Vec<Row>,
    pub hidden: Vec<(String, String)>,
    pub max_size: String,
    /// The same, in bytes, for the script's check before upload.
    pub max_bytes: u64,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
    pub ask: Vec<Ask>,
    pub decline_link: bool,
}

/// A recipient's state, in words.
pub struct RecipientLine {
    pub name: String,
    pub state: &'static str,
    /// `done`, `wait` or `bad`: the tag's colour.
    pub state_class: &'static str,
    pub detail: String,
}

/// A transfer, as the pages show it.
pub struct TransferView {
    pub id: String,
    /// The short form people quote: the last 8 characters of the id, upper case.
    pub reference: String,
    pub sent: String,
    pub purpose: String,
    pub recipients: Vec<RecipientLine>,
}

#[derive(Template)]
#[template(path = "shared.html")]
pub struct SharedPage {
    pub title: &'static str,
    pub t: TransferView,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "declined.html")]
pub struct DeclinedPage {
    pub title: &'static str,
    pub reference: String,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "refused.html")]
pub struct RefusedPage {
    pub title: &'static str,
    pub why: String,
    pub what_to_do: String,
    pub reference: Option<String>,
    pub code: Option<String>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub title: String,
    pub can_share: bool,
    pub can_receive: bool,
    /// Items waiting for the organisation (when the person may receive).
    pub waiting: usize,
    /// Requests for information asked of the organisation and still to be answered (when the
    /// person may share or receive).
    pub requests_open: usize,
    pub recent: Vec<TransferView>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "transfers.html")]
pub struct TransfersPage {
    pub title: &'static str,
    pub can_share: bool,
    pub recent: Vec<TransferView>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

#[derive(Template)]
#[template(path = "transfer.html")]
pub struct TransferPage {
    pub title: &'static str,
    pub t: TransferView,
    /// An urgent share whose reasons are still to follow: the page asks for them.
    pub rationale_pending: bool,
    /// What its recipients said became of it: who, what, when, and their note.
    pub feedback: Vec<(String, String, Option<String>)>,
    pub can_share: bool,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

/// A page, 200.
pub fn render(t: &impl Template) -> Response {
    render_status(StatusCode::OK, t)
}

/// A page with a status (an error summary is 422, so that tests and tools see it too).
pub fn render_status(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web: a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown.",
            )
                .into_response()
        }
    }
}

/// A form's page: 200, or 422 when it shows errors.
pub fn render_form(t: &impl Template, errors: &[FieldError]) -> Response {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_status(status, t)
}

/// A page that says what went wrong and what to do.
pub fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    render_status(
        status,
        &ProblemPage {
            title,
            message,
            errors: Vec::new(),
            who: None,
        },
    )
}

/// The store could not answer: 503 with what to do (a full disk and a shutdown included).
pub fn store_down(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "web: the store could not answer");
    unavailable(
        "Sorry, Postern is not available right now",
        "Nothing was lost or shared. Try again in a few minutes. If it keeps happening, tell your IT team.",
    )
}

/// The gateway is receiving as many uploads as its memory cap allows: 503, try again soon.
pub fn busy() -> Response {
    unavailable(
        "Sorry, Postern is busy right now",
        "Nothing was shared and nothing was kept. Go back, wait a minute and press Send again. If it keeps happening, tell your IT team.",
    )
}

/// A 503 page that asks to come back in a minute (Retry-After).
fn unavailable(title: &str, detail: &str) -> Response {
    let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, title, detail);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

pub fn server_error() -> Response {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sorry, something went wrong",
        "Nothing was shared. Try again. If it keeps happening, tell your IT team.",
    )
}

pub async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Page not found",
        "If you typed the web address, check it is correct. If you followed a link to a share, it may belong to another organisation.",
    )
}

pub async fn accessibility() -> Response {
    render(&AccessibilityPage {
        title: "Accessibility statement",
        errors: Vec::new(),
        who: None,
    })
}

const STYLESHEET: &str = include_str!("../../assets/postern.css");
const SCRIPT: &str = include_str!("../../assets/postern.js");

pub async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

/// The only script, progressive enhancement: the file's size checked before an upload, and the
/// passkey ceremonies.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// A file served from the binary, which browsers may cache for an hour.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// The message of the error on `field`, if there is one (for a template's `err("...")`).
pub fn error_for<'a>(errors: &'a [FieldError], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}
