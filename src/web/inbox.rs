//! "What has arrived": a person with the `receive` role sees what was delivered into this
//! gateway's inbox for their organisation, opens an item's envelope (from whom, why, on what
//! basis, until when), downloads the file, and acknowledges it. For a `portal` organisation the
//! gateway holds the key: the envelope is opened and the file decrypted as it streams out, never
//! written in clear. Any item may also be downloaded sealed, as stored. Every view, download and
//! acknowledgement is recorded in the transfer log with the person.

use std::io::Read;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages::{self, FieldError, Row, Who};
use super::signin::{SignedIn, client, item_entry};
use super::transfers::who;
use super::{ClientAddr, WebApp, see_other};
use crate::domain::envelope::RecipientEnvelope;
use crate::domain::registry::{Channel, Registry, Role};
use crate::log::AccessEvent;
use crate::seal::SpoolKey;
use crate::store::inbox::{self as items, InboxItem, InboxPayload};
use crate::store::payloads::Area;

/// An item as the pages show it.
pub struct ItemView {
    pub id: String,
    pub from: String,
    pub purpose: String,
    pub marking: String,
    pub received: String,
    pub keep_until: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    title: &'static str,
    org: String,
    items: Vec<ItemView>,
    errors: Vec<FieldError>,
    who: Option<Who>,
}

#[derive(Template)]
#[template(path = "item.html")]
struct ItemPage {
    title: &'static str,
    item: ItemView,
    details: Vec<Row>,
    can_open: bool,
    acknowledged: bool,
    /// Shared through this gateway: the sender can be told what became of it.
    can_feedback: bool,
    /// Feedback the person's organisation gave on it already.
    given: Vec<String>,
    errors: Vec<FieldError>,
    who: Option<Who>,
}

impl ItemPage {
    fn err(&self, field: &str) -> Option<&str> {
        pages::error_for(&self.errors, field)
    }
}

fn view(reg: &Registry, i: &InboxItem) -> ItemView {
    ItemView {
        id: i.id.clone(),
        from: i.sender_name.clone(),
        purpose: i
            .purpose
            .parse()
            .ok()
            .and_then(|p| reg.purpose(&p))
            .map_or_else(|| i.purpose.clone(), |p| p.title.clone()),
        marking: i.marking.clone(),
        received: i
            .received_at
            .get(..16)
            .unwrap_or(&i.received_at)
            .replace('T', " ")
            + " UTC",
        keep_until: i.retain_until.clone(),
    }
}

/// The key this gateway holds for the person's organisation, if it receives by `portal`.
async fn portal_key(reg: &Registry, s: &SignedIn) -> Option<SpoolKey> {
    let Channel::Portal { identity_file } =
        &reg.organisation(&s.person.org)?.endpoint.as_ref()?.channel
    else {
        return None;
    };
    let path = std::path::PathBuf::from(identity_file);
    match tokio::task::spawn_blocking(move || SpoolKey::from_file(&path)).await {
        Ok(Ok(k)) => Some(k),
        Ok(Err(e)) => {
            tracing::error!(org = %s.person.org, error = %e, "web: the portal identity cannot be read");
            None
        }
        Err(_) => None,
    }
}

fn may_receive(s: &SignedIn) -> Result<(), Response> {
    if s.person.may(Role::Receive) {
        Ok(())
    } else {
        Err(pages::problem(
            StatusCode::FORBIDDEN,
            "You cannot open what arrives",
            "Your account cannot open what arrives for your organisation. Ask your organisation's safeguarding lead for the receive role.",
        ))
    }
}

pub async fn list(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    if let Err(r) = may_receive(&s) {
        return r;
    }
    let org = s.person.org.to_string();
    let found = app
        .api
        .store
        .read(move |c| items::list(c, &org, false))
        .await;
    let list = match found {
        Ok(l) => l,
        Err(e) => return pages::store_down(&e),
    };
    let reg = app.api.registry.current();
    pages::render(&InboxPage {
        title: "What has arrived",
        org: s.org_name.clone(),
        items: list.iter().map(|i| view(&reg, i)).collect(),
        errors: Vec::new(),
        who: who(&s),
    })
}

/// The item and its sealed envelope, if it is the person's organisation's; records the event.
async fn find(app: &WebApp, s: &SignedIn, id: &str) -> Result<(InboxItem, Vec<u8>), Response> {
    may_receive(s)?;
    let (org, key) = (s.person.org.to_string(), id.to_owned());
    match app.api.store.read(move |c| items::get(c, &org, &key)).await {
        Ok(Some(found)) => Ok(found),
        // Another organisation's item does not exist, whatever its id.
        Ok(None) => Err(pages::not_found().await),
        Err(e) => Err(pages::store_down(&e)),
    }
}

async fn record(
    app: &WebApp,
    s: &SignedIn,
    ip: &str,
    event: AccessEvent,
    item: &InboxItem,
    detail: Option<&str>,
) -> Result<(), Response> {
    let Ok(transfer) = item.transfer_id.parse() else {
        return Err(pages::server_error());
    };
    let entry = item_entry(
        &s.person,
        event,
        ip,
        Some((transfer, item.id.clone(), detail.map(str::to_owned))),
    );
    super::oversight::append(app, entry).await
}

pub async fn item(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    Path(id): Path<String>,
) -> Response {
    let (item, sealed_envelope) = match find(&app, &s, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ip = client(client_addr.as_deref());
    if let Err(r) = record(&app, &s, &ip, AccessEvent::ItemViewed, &item, None).await {
        return r;
    }
    item_page(&app, &s, &item, &sealed_envelope, Vec::new()).await
}

/// An item's page: its details (from the envelope, opened when this gateway holds the
/// organisation's key), its file, and feedback for the sender.
async fn item_page(
    app: &WebApp,
    s: &SignedIn,
    item: &InboxItem,
    sealed_envelope: &[u8],
    errors: Vec<FieldError>,
) -> Response {
    let reg = app.api.registry.current();
    let key = portal_key(&reg, s).await;
    let envelope = key.as_ref().and_then(|k| {
        let mut json = Vec::new();
        crate::seal::open(sealed_envelope, k.identity())
            .ok()?
            .read_to_end(&mut json)
            .ok()?;
        serde_json::from_slice::<RecipientEnvelope>(&json).ok()
    });
    let details = envelope.map(|e| details(&reg, &e)).unwrap_or_default();
    let can_open = key.is_some();
    let (t, org) = (item.transfer_id.clone(), s.person.org.to_string());
    // Feedback reaches a sender through the gateway that accepted the share: this one.
    let found = app
        .api
        .store
        .read(move |c| {
            let local = crate::store::feedback::sender_for_recipient(c, &t, &org)?.is_some();
            let given = crate::store::feedback::on_transfer(c, &t)?
                .into_iter()
                .filter(|f| f.from == org)
                .map(|f| {
                    format!(
                        "{}, {}",
                        f.status.words(),
                        f.at.get(..10).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>();
            Ok((local, given))
        })
        .await;
    let (can_feedback, given) = match found {
        Ok(f) => f,
        Err(e) => return pages::store_down(&e),
    };
    let page = ItemPage {
        title: "Shared with you",
        item: view(&reg, item),
        details,
        can_open,
        acknowledged: item.acknowledged_at.is_some(),
        can_feedback,
        given,
        errors,
        who: who(s),
    };
    pages::render_form(&page, &page.errors)
}

/// Feedback for the sender: what became of the item.
pub async fn feedback(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (item, sealed_envelope) = match find(&app, &s, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(transfer) = item.transfer_id.parse() else {
        return pages::not_found().await;
    };
    let pairs = super::form_pairs(&body);
    let one = |n: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let bytes = serde_json::json!({
        "status": one("status"),
        "comment": Some(one("comment")).filter(|c| !c.is_empty()),
    })
    .to_string()
    .into_bytes();
    let who = super::decline::submitter(&s);
    let answer = crate::ingest::feedback::record_feedback(&app.api, &who, transfer, &bytes).await;
    match answer.status() {
        axum::http::StatusCode::CREATED => see_other(&format!("/inbox/{id}")),
        axum::http::StatusCode::UNPROCESSABLE_ENTITY => {
            let status_missing =
                crate::domain::feedback::FeedbackStatus::parse(&one("status")).is_none();
            let error = if status_missing {
                FieldError::new("status", "Select what became of it")
            } else {
                FieldError::new("comment", "Keep the note under 500 characters")
            };
            item_page(&app, &s, &item, &sealed_envelope, vec![error]).await
        }
        axum::http::StatusCode::NOT_FOUND => pages::not_found().await,
        status => pages::problem(
            status,
            "Your feedback was not recorded",
            "Try again in a few minutes.",
        ),
    }
}

/// What the envelope says, for the item's page: the grounds of the share as recorded.
fn details(reg: &Registry, e: &RecipientEnvelope) -> Vec<Row> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut rows = vec![
        Row {
            label: "Lawful basis",
            lines: vec![crate::domain::choices::basis_title(e.lawful_basis).to_owned()],
            step: "",
        },
        Row {
            label: "What is shared",
            lines: vec![e.disclosed_summary.clone()],
            step: "",
        },
        Row {
            label: "Why it is shared",
            lines: vec![if e.justification.is_empty() {
                "To follow: it was shared urgently".to_owned()
            } else {
                e.justification.clone()
            }],
            step: "",
        },
        Row {
            label: "Who it is about",
            lines: e.subject_refs.iter().map(|r| reference_words(r)).collect(),
            step: "",
        },
        Row {
            label: "Shared by",
            lines: vec![format!(
                "{}, {} ({})",
                opt(&e.practitioner.name),
                opt(&e.practitioner.role),
                opt(&e.practitioner.contact)
            )],
            step: "",
        },
    ];
    if let Some(u) = &e.urgency.level
        && u == "urgent"
    {
        rows.push(Row {
            label: "Urgent",
            lines: vec![opt(&e.urgency.reason)],
            step: "",
        });
    }
    // The request it answers: the recipient's own, made through Postern (its reference as the
    // request's page and list show it), or one made some other way.
    if let Some(r) = &e.request {
        let mut lines = vec![match (&r.request_id, r.answer.as_deref()) {
            (Some(id), Some("in_part")) => {
                format!("Your request {}, in part", super::transfers::reference(id))
            }
            (Some(id), _) => format!("Your request {}, in full", super::transfers::reference(id)),
            (None, _) => format!("Request {}", opt(&r.reference)),
        }];
        if let Some(q) = &r.requested {
            lines.push(q.clone());
        }
        rows.push(Row {
            label: "Answers",
            lines,
            step: "",
        });
    }
    if let Some(f) = &e.file_name {
        rows.push(Row {
            label: "File",
            lines: vec![f.clone()],
            step: "",
        });
    }
    let _ = reg;
    rows
}

/// `nhs:9434765919` as "NHS number 943 476 5919", `case:X` as "Case reference X".
fn reference_words(r: &str) -> String {
    match r.split_once(':') {
        Some(("nhs", v)) if v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit()) => {
            let (a, rest) = v.split_at(3);
            let (b, c) = rest.split_at(3);
            format!("NHS number {a} {b} {c}")
        }
        Some(("case", v)) => format!("Case reference {v}"),
        Some(("member", v)) => format!("Reference {v}"),
        Some((scheme, v)) => format!("{v} ({scheme})"),
        None => r.to_owned(),
    }
}

/// A file name safe for a Content-Disposition header.
fn safe_name(name: Option<&str>, fallback: &str) -> String {
    let n: String = name
        .unwrap_or(fallback)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._- ".contains(*c))
        .collect();
    let n = n.trim().trim_start_matches('.').to_owned();
    if n.is_empty() { fallback.to_owned() } else { n }
}

async fn payload_reader(
    app: &WebApp,
    s: &SignedIn,
    id: &str,
) -> Result<Box<dyn Read + Send>, Response> {
    let (org, key) = (s.person.org.to_string(), id.to_owned());
    let found = app
        .api
        .store
        .read(move |c| items::payload(c, &org, &key))
        .await;
    match found {
        Ok(Some(InboxPayload::Inline(b))) => Ok(Box::new(std::io::Cursor::new(b))),
        Ok(Some(InboxPayload::File(f))) => match app.api.store.open_payload(Area::Inbox, &f) {
            Ok(file) => Ok(file),
            Err(e) => {
                tracing::error!(inbox_id = %id, error = %e, "web: an inbox payload file is missing");
                Err(pages::server_error())
            }
        },
        Ok(Some(InboxPayload::Gone)) => Err(pages::problem(
            StatusCode::GONE,
            "This file has been deleted",
            "The item was acknowledged, so Postern deleted its copy of the file. Ask the sender if you need it again.",
        )),
        Ok(None) => Err(pages::not_found().await),
        Err(e) => Err(pages::store_down(&e)),
    }
}

/// Streams `reader` (decrypted by `key` when given) as a download, from a blocking thread.
fn stream(reader: Box<dyn Read + Send>, key: Option<SpoolKey>, name: &str) -> Response {
    let body = Body::from_stream(crate::store::payloads::read_stream(move || match key {
        Some(k) => match crate::seal::open(reader, k.identity()) {
            Ok(r) => Ok(Box::new(r) as Box<dyn Read + Send>),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        },
        None => Ok(reader),
    }));
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

pub async fn file(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    Path(id): Path<String>,
) -> Response {
    download(app, s, client_addr, id, true).await
}

pub async fn sealed(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    Path(id): Path<String>,
) -> Response {
    download(app, s, client_addr, id, false).await
}

async fn download(
    app: Arc<WebApp>,
    s: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    id: String,
    decrypted: bool,
) -> Response {
    let (item, sealed_envelope) = match find(&app, &s, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let reg = app.api.registry.current();
    let key = if decrypted {
        match portal_key(&reg, &s).await {
            Some(k) => Some(k),
            None => {
                return pages::problem(
                    StatusCode::NOT_FOUND,
                    "This file cannot be opened here",
                    "Your organisation opens what arrives with its own key. Download it encrypted instead.",
                );
            }
        }
    } else {
        None
    };
    let reader = match payload_reader(&app, &s, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let ip = client(client_addr.as_deref());
    let what = if decrypted { "file" } else { "sealed" };
    if let Err(r) = record(
        &app,
        &s,
        &ip,
        AccessEvent::ItemDownloaded,
        &item,
        Some(what),
    )
    .await
    {
        return r;
    }
    let file_name = key.as_ref().and_then(|k| {
        let mut json = Vec::new();
        crate::seal::open(&sealed_envelope[..], k.identity())
            .ok()?
            .read_to_end(&mut json)
            .ok()?;
        serde_json::from_slice::<RecipientEnvelope>(&json)
            .ok()?
            .file_name
    });
    let name = if decrypted {
        safe_name(
            file_name.as_deref(),
            &format!("transfer-{}", item.transfer_id),
        )
    } else {
        format!(
            "transfer-{}-payload.age",
            safe_name(Some(&item.transfer_id), "item")
        )
    };
    stream(reader, key, &name)
}

pub async fn acknowledge(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    Path(id): Path<String>,
) -> Response {
    let (item, _) = match find(&app, &s, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ip = client(client_addr.as_deref());
    if item.acknowledged_at.is_none()
        && let Err(r) = record(&app, &s, &ip, AccessEvent::ItemAcknowledged, &item, None).await
    {
        return r;
    }
    match crate::ingest::inbound::acknowledge_item(&app.api, s.person.org.clone(), id.clone()).await
    {
        Ok(_) => see_other(&format!("/inbox/{id}")),
        Err(e) => pages::store_down(&e),
    }
}
