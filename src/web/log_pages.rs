//! The transfer log in a browser, for data protection officers (role `dpo`: the records their
//! organisation is a party to) and auditors (`auditor`: the whole gateway): the list with
//! every filter `postern log list` has, chosen from names and kept in the URL; a record's page;
//! subject access; export as CSV or JSON lines, streamed; the report with charts; who looked at
//! the log; and "verify now". Every look is recorded in the log before anything is shown
//! (`oversight::record_access`), and every page carries the log's verification status.
//!
//! Reads go through `store::search` (the DPO's indexes) on the store's reader; an export and a
//! verification open a connection of their own, so that they hold up no page.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::oversight::{
    Scope, StatusLine, Verification, break_words, log_scope, record_access, when,
};
use super::pages::{self, FieldError, Opt, RecipientLine, Who, error_for};
use super::signin::{SignedIn, client};
use super::transfers::{recipient_line, reference, who};
use super::{ClientAddr, WebApp};
use crate::domain::choices;
use crate::domain::lawful::LawfulBasis;
use crate::domain::registry::Registry;
use crate::domain::subject::SubjectRef;
use crate::log::StoredRecord;
use crate::log::record::AccessEvent;
use crate::store::LogFilter;
use crate::store::search::{self, DecisionRow, LogQuery};

/// Rows on a page of the list.
const PAGE: usize = 50;
/// Dead deliveries the report lists; the rest are a link to the log, filtered.
const DEAD_SHOWN: usize = 100;

type Client = Option<axum::Extension<ClientAddr>>;

/// The filters, as in the URL (`/log?purpose=...&from=...`): what a bookmark keeps.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub from: String,
    pub to: String,
    pub sender: String,
    pub recipient: String,
    pub originator: String,
    pub purpose: String,
    pub basis: String,
    pub marking: String,
    pub decision: String,
    pub urgency: String,
    pub delivery: String,
    /// The next page: records before this one.
    pub before: Option<i64>,
}

const DECISIONS: [(&str, &str); 7] = [
    ("shared", "Shared"),
    ("refused", "Refused by the rules"),
    ("declined", "Decided not to share"),
    ("rejected", "Rejected (incomplete or invalid)"),
    ("inbound_refused", "Refused from a peer gateway"),
    ("requested", "Information requested"),
    ("request_refused", "Request refused by the rules"),
];
const URGENCIES: [(&str, &str); 2] = [("routine", "Routine"), ("urgent", "Urgent")];
const DELIVERY: [(&str, &str); 5] = [
    ("queued", "Waiting to be sent"),
    ("delivering", "Being sent"),
    ("retrying", "Trying again"),
    ("delivered", "Delivered"),
    ("dead", "Not delivered (gave up)"),
];

impl Filters {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut f = Filters::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let v = v.trim().to_owned();
            match &*k {
                "from" => f.from = v,
                "to" => f.to = v,
                "sender" => f.sender = v,
                "recipient" => f.recipient = v,
                "originator" => f.originator = v,
                "purpose" => f.purpose = v,
                "basis" => f.basis = v,
                "marking" => f.marking = v,
                "decision" => f.decision = v,
                "urgency" => f.urgency = v,
                "delivery" => f.delivery = v,
                "before" => f.before = v.parse().ok().filter(|b| *b > 0),
                _ => {}
            }
        }
        f
    }

    fn pairs(&self) -> [(&'static str, &str); 11] {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("sender", &self.sender),
            ("recipient", &self.recipient),
            ("originator", &self.originator),
            ("purpose", &self.purpose),
            ("basis", &self.basis),
            ("marking", &self.marking),
            ("decision", &self.decision),
            ("urgency", &self.urgency),
            ("delivery", &self.delivery),
        ]
    }

    /// The filters as a query string (without the page), for links and the access record.
    pub fn query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }

    /// The search, narrowed to what `scope` may see, or what is wrong with the filters.
    pub fn query(&self, scope: &Scope) -> Result<LogQuery, Vec<FieldError>> {
        let mut errors = Vec::new();
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let mut bound = |field: &str, v: &str, end: bool| {
            if v.is_empty() {
                return None;
            }
            let b = search::time_bound(v, end);
            if b.is_none() {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "Enter the {} date as year-month-day, for example 2026-11-30",
                        if end { "end" } else { "start" }
                    ),
                ));
            }
            b
        };
        let from = bound("from", &self.from, false);
        let to = bound("to", &self.to, true);
        let mut one_of = |field: &str, v: &str, allowed: &[&str], what: &str| {
            if !v.is_empty() && !allowed.contains(&v) {
                errors.push(FieldError::new(
                    field,
                    format!("Select {what} from the list"),
                ));
            }
        };
        one_of(
            "decision",
            &self.decision,
            &DECISIONS.map(|d| d.0),
            "a decision",
        );
        one_of(
            "urgency",
            &self.urgency,
            &URGENCIES.map(|d| d.0),
            "an urgency",
        );
        one_of(
            "delivery",
            &self.delivery,
            &DELIVERY.map(|d| d.0),
            "a delivery state",
        );
        // A marking is one of the levels offered; `%`, `_` and a backslash would be wildcards.
        if self.marking.contains(['%', '_', '\\']) {
            errors.push(FieldError::new("marking", "Select a marking from the list"));
        }
        if !self.basis.is_empty() && LawfulBasis::parse(&self.basis).is_none() {
            errors.push(FieldError::new(
                "basis",
                "Select a lawful basis from the list",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(LogQuery {
            from,
            to,
            sender: some(&self.sender),
            recipient: some(&self.recipient),
            originator: some(&self.originator),
            purpose: some(&self.purpose),
            lawful_basis: some(&self.basis),
            marking_level: some(&self.marking.to_uppercase()),
            decision: some(&self.decision),
            urgency: some(&self.urgency),
            delivery_state: some(&self.delivery),
            party: scope.party(),
            before: self.before,
            ..LogQuery::default()
        })
    }
}

/// A select's options: "Any" first, then the choices, the current one selected.
fn options(current: &str, choices: impl IntoIterator<Item = (String, String)>) -> Vec<Opt> {
    let mut out = vec![Opt {
        value: String::new(),
        label: "Any".into(),
        hint: None,
        checked: current.is_empty(),
    }];
    out.extend(choices.into_iter().map(|(value, label)| Opt {
        checked: value == current,
        value,
        label,
        hint: None,
    }));
    out
}

fn fixed(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
        .collect()
}

/// One select of the filter form.
pub struct Select {
    pub name: &'static str,
    pub label: &'static str,
    pub options: Vec<Opt>,
}

/// The filter form: the dates as typed, and selects of the registry's names.
pub struct FilterForm {
    pub f: Filters,
    pub selects: Vec<Select>,
}

impl FilterForm {
    fn new(reg: &Registry, f: Filters) -> Self {
        let mut orgs: Vec<(String, String)> = reg
            .organisations()
            .map(|o| (o.id.to_string(), o.name.clone()))
            .collect();
        orgs.sort_by(|a, b| a.1.cmp(&b.1));
        let mut purposes: Vec<(String, String)> = reg
            .purposes()
            .map(|p| (p.id.to_string(), p.title.clone()))
            .collect();
        purposes.sort_by(|a, b| a.1.cmp(&b.1));
        let select = |name, label, options| Select {
            name,
            label,
            options,
        };
        let selects = vec![
            select("sender", "Shared by", options(&f.sender, orgs.clone())),
            select(
                "recipient",
                "Shared with",
                options(&f.recipient, orgs.clone()),
            ),
            select(
                "originator",
                "Originated with",
                options(&f.originator, orgs),
            ),
            select("purpose", "Purpose", options(&f.purpose, purposes)),
            select(
                "basis",
                "Lawful basis",
                options(
                    &f.basis,
                    LawfulBasis::ALL
                        .iter()
                        .map(|b| (b.as_str().to_owned(), choices::basis_title(*b).to_owned())),
                ),
            ),
            select(
                "marking",
                "Marking",
                options(
                    &f.marking.to_uppercase(),
                    reg.marking
                        .levels()
                        .iter()
                        .map(|l| (l.to_uppercase(), l.clone())),
                ),
            ),
            select(
                "decision",
                "Decision",
                options(&f.decision, fixed(&DECISIONS)),
            ),
            select("urgency", "Urgency", options(&f.urgency, fixed(&URGENCIES))),
            select(
                "delivery",
                "Delivery",
                options(&f.delivery, fixed(&DELIVERY)),
            ),
        ];
        FilterForm { f, selects }
    }
}

/// A decision in the list.
pub struct Row {
    pub at: String,
    pub decision: &'static str,
    pub class: &'static str,
    pub reference: String,
    pub link: Option<String>,
    pub from: String,
    pub to: String,
    pub purpose: String,
    pub marking: String,
    pub code: String,
    pub pending: bool,
}

pub(super) fn org_name(reg: &Registry, id: &str) -> String {
    id.parse()
        .ok()
        .and_then(|o| reg.organisation(&o))
        .map_or_else(|| id.to_owned(), |o| o.name.clone())
}

pub(super) fn purpose_name(reg: &Registry, id: &str) -> String {
    id.parse()
        .ok()
        .and_then(|p| reg.purpose(&p))
        .map_or_else(|| id.to_owned(), |p| p.title.clone())
}

fn decision_words(d: &str) -> (&'static str, &'static str) {
    match d {
        "shared" => ("Shared", "done"),
        "refused" => ("Refused", "bad"),
        "declined" => ("Decided not to share", "wait"),
        "rejected" => ("Rejected", "bad"),
        "inbound_refused" => ("Refused from a peer", "bad"),
        "requested" => ("Information requested", "wait"),
        "request_refused" => ("Request refused", "bad"),
        _ => ("Recorded", "wait"),
    }
}

fn row(reg: &Registry, r: &DecisionRow) -> Row {
    let (decision, class) = decision_words(&r.decision);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    Row {
        at: when(&r.at),
        decision,
        class,
        reference: r.transfer_id.as_deref().map(reference).unwrap_or_default(),
        link: r.transfer_id.as_ref().map(|t| format!("/log/transfer/{t}")),
        from: r
            .sender
            .as_deref()
            .map(|s| org_name(reg, s))
            .unwrap_or_default(),
        to: r
            .recipients
            .iter()
            .map(|x| org_name(reg, x))
            .collect::<Vec<_>>()
            .join(", "),
        purpose: r
            .purpose
            .as_deref()
            .map(|p| purpose_name(reg, p))
            .unwrap_or_default(),
        marking: opt(&r.marking),
        code: opt(&r.code),
        pending: r.rationale_pending,
    }
}

/// The tabs over every log page.
pub struct Tab {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

fn tabs(current: &str) -> Vec<Tab> {
    [
        ("/log", "Records"),
        ("/log/subject", "Subject access"),
        ("/log/report", "Report"),
        ("/log/access", "Who looked"),
    ]
    .into_iter()
    .map(|(href, label)| Tab {
        href,
        label,
        current: href == current,
    })
    .collect()
}

/// The heading's note on whose records these are.
fn scope_note(reg: &Registry, scope: &Scope) -> String {
    match scope {
        Scope::All => "Every organisation's records (you are an auditor).".into(),
        Scope::Org(o) => format!(
            "Records {} is a party to: what it shared or received, its decisions, and refusals of its shares.",
            org_name(reg, o.as_str())
        ),
    }
}

fn status(app: &WebApp) -> StatusLine {
    match &app.oversight {
        Some(o) => o.status_line(),
        None => StatusLine {
            class: "wait",
            text: "The log's verification status is not available on this listener.".into(),
        },
    }
}

#[derive(Template)]
#[template(path = "log.html")]
pub struct ListPage {
    pub title: &'static str,
    pub tabs: Vec<Tab>,
    pub status: StatusLine,
    pub scope: String,
    pub form: FilterForm,
    pub rows: Vec<Row>,
    /// The next page's link, when there are older records.
    pub older: Option<String>,
    pub first_page: String,
    pub paged: bool,
    pub export_csv: String,
    pub export_jsonl: String,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

impl ListPage {
    pub fn err(&self, field: &str) -> Option<&str> {
        error_for(&self.errors, field)
    }
}

pub async fn list(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    RawQuery(raw): RawQuery,
) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let reg = app.api.registry.current();
    let f = Filters::parse(raw.as_deref());
    let qs = f.query_string();
    let (rows, older, errors) = match f.query(&scope) {
        Err(errors) => (Vec::new(), None, errors),
        Ok(q) => {
            let detail = Some(format!(
                "?{qs}{}",
                f.before.map(|b| format!(" before {b}")).unwrap_or_default()
            ));
            if let Err(r) = record_access(
                &app,
                &s,
                &client(addr.as_deref()),
                AccessEvent::LogListed,
                None,
                detail,
            )
            .await
            {
                return r;
            }
            let q = LogQuery {
                limit: Some(PAGE + 1),
                ..q
            };
            let found = match app.api.store.read(move |c| search::decisions(c, &q)).await {
                Ok(f) => f,
                Err(e) => return pages::store_down(&e),
            };
            let older = (found.len() > PAGE)
                .then(|| found.get(PAGE - 1).map(|r| r.seq))
                .flatten()
                .map(|seq| link("/log", &qs, Some(seq)));
            let rows = found.iter().take(PAGE).map(|r| row(&reg, r)).collect();
            (rows, older, Vec::new())
        }
    };
    let page = ListPage {
        title: "Transfer log",
        tabs: tabs("/log"),
        status: status(&app),
        scope: scope_note(&reg, &scope),
        rows,
        older,
        first_page: link("/log", &qs, None),
        paged: f.before.is_some(),
        export_csv: link_with("/log/export", "format=csv", &qs),
        export_jsonl: link_with("/log/export", "format=jsonl", &qs),
        form: FilterForm::new(&reg, f),
        errors,
        who: who(&s),
    };
    pages::render_form(&page, &page.errors)
}

fn link(path: &str, qs: &str, before: Option<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !qs.is_empty() {
        parts.push(qs.to_owned());
    }
    if let Some(b) = before {
        parts.push(format!("before={b}"));
    }
    if parts.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", parts.join("&"))
    }
}

fn link_with(path: &str, first: &str, qs: &str) -> String {
    if qs.is_empty() {
        format!("{path}?{first}")
    } else {
        format!("{path}?{first}&{qs}")
    }
}

/// One line of a record's page.
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// One delivery attempt.
pub struct Attempt {
    pub at: String,
    pub recipient: String,
    pub channel: String,
    pub attempt: String,
    pub outcome: String,
    pub detail: String,
}

/// A record of someone looking at, or receiving, this transfer.
pub struct Look {
    pub at: String,
    pub who: String,
    pub what: String,
}

#[derive(Template)]
#[template(path = "log_record.html")]
pub struct RecordPage {
    pub title: String,
    pub tabs: Vec<Tab>,
    pub status: StatusLine,
    pub id: String,
    pub decision: &'static str,
    pub class: &'static str,
    pub facts: Vec<Fact>,
    /// Why it was refused or rejected, in words.
    pub refusal: Option<String>,
    /// `/explain` pre-filled with this share, for a refusal (the viewer must be an admin).
    pub explain: Option<String>,
    pub timeline: Vec<Attempt>,
    pub deliveries: Vec<RecipientLine>,
    pub corrects: Option<String>,
    pub corrected_by: Vec<String>,
    /// Attempts to correct it that were refused or rejected: (transfer id, decision).
    pub correction_attempts: Vec<(String, String)>,
    pub later: Vec<Look>,
    pub looks: Vec<Look>,
    pub seq: i64,
    pub hash: String,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

fn at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn text(v: &serde_json::Value, path: &[&str]) -> Option<String> {
    match at(v, path)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => Some(other.to_string()),
    }
}

/// "status, reason" as a person reads it.
fn with_reason(v: &serde_json::Value, path: &[&str]) -> Option<String> {
    let status = text(v, &[path, &["status"]].concat())?.replace('_', " ");
    Ok::<_, ()>(match text(v, &[path, &["reason"]].concat()) {
        Some(r) => format!("{status}: {r}"),
        None => status,
    })
    .ok()
}

fn facts(reg: &Registry, r: &StoredRecord) -> Vec<Fact> {
    let b = &r.body;
    let e: &[&'static str] = if at(b, &["envelope"]).is_some() {
        &["envelope"]
    } else {
        &[]
    };
    let p = |rest: &[&'static str]| -> Vec<&'static str> { [e, rest].concat() };
    let mut out = Vec::new();
    let mut push = |label: &'static str, value: Option<String>| {
        if let Some(value) = value {
            out.push(Fact { label, value });
        }
    };
    push("Recorded", Some(when(&r.at)));
    let sender = text(b, &["sender", "org"]).or_else(|| text(b, &["sender"]));
    push("From", sender.as_deref().map(|s| org_name(reg, s)));
    push(
        "Shared by (person)",
        text(b, &["sender", "person"]).map(|email| {
            reg.person(&email)
                .map_or(email.clone(), |p| format!("{} ({email})", p.name))
        }),
    );
    let recipients = at(b, &p(&["recipients"]))
        .or_else(|| at(b, &["recipients"]))
        .or_else(|| at(b, &["recipient"]))
        .map(|v| match v {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str())
                .map(|x| org_name(reg, x))
                .collect::<Vec<_>>()
                .join(", "),
            serde_json::Value::String(x) => org_name(reg, x),
            _ => String::new(),
        });
    push("To", recipients);
    push(
        "Purpose",
        text(b, &p(&["purpose"])).map(|x| purpose_name(reg, &x)),
    );
    push(
        "Lawful basis",
        text(b, &p(&["lawful_basis"])).map(|x| match LawfulBasis::parse(&x) {
            Some(l) => format!("{} (UK GDPR Article 6)", choices::basis_title(l)),
            None => x,
        }),
    );
    push(
        "Article 9 condition",
        text(b, &p(&["special_category_condition"])).map(|x| x.replace('_', " ")),
    );
    push(
        "Kinds of information",
        text(b, &p(&["data_categories"])).map(|x| x.replace('_', " ")),
    );
    push(
        "Marking",
        text(b, &p(&["marking_normalised"])).or_else(|| text(b, &p(&["marking"]))),
    );
    push("Why it was shared", text(b, &p(&["justification"])));
    push("Reasons not to share", text(b, &["reasons"]));
    push("Consent", with_reason(b, &p(&["consent"])));
    push(
        "The person was told",
        with_reason(b, &p(&["subject_informed"])),
    );
    push("Urgency", with_reason(b, &p(&["urgency"])));
    push(
        "Request answered",
        text(b, &p(&["request", "reference"])).map(|r| {
            match text(b, &p(&["request", "requested"])) {
                Some(q) => format!("{r}: {q}"),
                None => r,
            }
        }),
    );
    push(
        "Summary of what was shared",
        text(b, &p(&["disclosed_summary"])),
    );
    push("Keep until", text(b, &p(&["retain_until"])));
    push(
        "Practitioner",
        text(b, &p(&["practitioner", "name"])).map(|n| {
            let role = text(b, &p(&["practitioner", "role"])).unwrap_or_default();
            let contact = text(b, &p(&["practitioner", "contact"])).unwrap_or_default();
            format!("{n}, {role}, {contact}")
        }),
    );
    let originator = text(b, &p(&["originator"]));
    if originator.is_some() && originator != sender {
        push(
            "Originated with",
            originator.as_deref().map(|o| org_name(reg, o)),
        );
        push(
            "Originator's permission",
            text(b, &p(&["originator_permission_ref"])),
        );
    }
    push("File", text(b, &p(&["file_name"])));
    push(
        "Size",
        at(b, &["payload", "size"])
            .and_then(serde_json::Value::as_u64)
            .map(|n| format!("{n} bytes")),
    );
    push(
        "About",
        at(b, &p(&["subject_ref_hashes"]))
            .and_then(|v| v.as_array())
            .map(|a| match a.len() {
                1 => "1 person (their reference is kept only as a keyed hash)".to_owned(),
                n => format!("{n} references (kept only as keyed hashes)"),
            }),
    );
    push(
        "Authorised by",
        at(b, &["decision", "authorisations"])
            .and_then(|v| v.as_array())
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{} under agreement {}",
                            org_name(reg, x["recipient"].as_str().unwrap_or_default()),
                            x["agreement"].as_str().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
    );
    out
}

fn look_words(code: &str) -> &'static str {
    match code {
        "item_viewed" => "opened it in the inbox",
        "item_downloaded" => "downloaded its file",
        "item_acknowledged" => "acknowledged it (its file was deleted)",
        "record_viewed" => "viewed this record in the transfer log",
        _ => "looked at it",
    }
}

fn later_words(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "payload_purged" => "The sealed file was deleted from the gateway's spool",
        "inbox_received" => "Received into the recipient's inbox",
        "inbox_acknowledged" => "The recipient acknowledged it; its file was deleted",
        "rationale_added" => "The urgent share's reasons were recorded",
        "transfer_failed" => "The request failed inside the gateway; nothing was accepted",
        _ => return None,
    })
}

pub async fn record(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    Path(id): Path<String>,
) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    // Not a transfer id: not found, like one of another organisation's.
    let Ok(transfer) = id.parse::<crate::domain::ids::TransferId>() else {
        return pages::not_found().await;
    };
    let q = LogQuery {
        transfer: Some(transfer.to_string()),
        party: scope.party(),
        limit: Some(1),
        ..LogQuery::default()
    };
    let key = transfer.to_string();
    let party = scope.party();
    let found = app
        .api
        .store
        .read(move |c| {
            let Some(d) = search::decisions(c, &q)?.into_iter().next() else {
                return Ok(None);
            };
            let records = crate::store::log_records(
                c,
                &LogFilter {
                    transfer_id: Some(key.clone()),
                    ..LogFilter::default()
                },
            )?;
            let deliveries = crate::store::recipient_statuses(c, &key)?;
            // A correction is listed only if it may be opened.
            let all = search::corrections_of(c, &key)?;
            let may_open = |id: &str| -> Result<bool, crate::store::StoreError> {
                let q = LogQuery {
                    transfer: Some(id.to_owned()),
                    party: party.clone(),
                    limit: Some(1),
                    ..LogQuery::default()
                };
                Ok(!search::decisions(c, &q)?.is_empty())
            };
            let mut corrections = search::Corrections::default();
            for id in all.accepted {
                if may_open(&id)? {
                    corrections.accepted.push(id);
                }
            }
            for (id, decision) in all.refused {
                if may_open(&id)? {
                    corrections.refused.push((id, decision));
                }
            }
            Ok(Some((d, records, deliveries, corrections)))
        })
        .await;
    let (d, records, deliveries, corrections) = match found {
        Ok(Some(f)) => f,
        Ok(None) => return pages::not_found().await,
        Err(e) => return pages::store_down(&e),
    };
    if let Err(r) = record_access(
        &app,
        &s,
        &client(addr.as_deref()),
        AccessEvent::RecordViewed,
        Some(transfer),
        None,
    )
    .await
    {
        return r;
    }
    let (mut records, deliveries) = within(&scope, &d, records, deliveries);
    records.reverse();
    let reg = app.api.registry.current();
    let decision_record = records
        .iter()
        .find(|r| r.seq == d.seq)
        .cloned()
        .unwrap_or_else(|| StoredRecord {
            seq: d.seq,
            at: d.at.clone(),
            kind: d.kind.clone(),
            transfer_id: d.transfer_id.clone(),
            sender: d.sender.clone(),
            code: d.code.clone(),
            body: d.record.clone(),
            hash: d.hash.clone(),
        });
    let (decision, class) = decision_words(&d.decision);
    let b = &decision_record.body;
    let refusal = match d.decision.as_str() {
        "refused" | "inbound_refused" => Some(format!(
            "{} (rule {}){}",
            text(b, &["decision", "detail"]).unwrap_or_else(|| "No detail was recorded.".into()),
            d.code.clone().unwrap_or_default(),
            text(b, &["decision", "agreement"])
                .map(|a| format!("; agreement considered: {a}"))
                .unwrap_or_default()
        )),
        "rejected" => Some(
            at(b, &["decision", "errors"])
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e["field"].as_str().unwrap_or_default(),
                                e["message"].as_str().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| {
                    text(b, &["decision", "detail"]).unwrap_or_else(|| "Invalid request.".into())
                }),
        ),
        _ => None,
    };
    let explain = (d.decision == "refused")
        .then(|| explain_link(&d, b))
        .flatten();
    let person_name = |email: &str| {
        reg.person(email).map_or_else(
            || email.to_owned(),
            |p| format!("{}, {}", p.name, org_name(&reg, p.org.as_str())),
        )
    };
    let timeline = records
        .iter()
        .filter(|r| r.kind == "delivery_attempt")
        .map(|r| Attempt {
            at: when(&r.at),
            recipient: text(&r.body, &["recipient"])
                .map(|x| org_name(&reg, &x))
                .unwrap_or_default(),
            channel: text(&r.body, &["channel"]).unwrap_or_default(),
            attempt: text(&r.body, &["attempt"]).unwrap_or_default(),
            outcome: text(&r.body, &["outcome"]).unwrap_or_default(),
            detail: match text(&r.body, &["cause"]) {
                Some(c) => format!("{} [{c}]", text(&r.body, &["detail"]).unwrap_or_default()),
                None => text(&r.body, &["detail"]).unwrap_or_default(),
            },
        })
        .collect();
    let later = records
        .iter()
        .filter_map(|r| {
            later_words(&r.kind).map(|w| Look {
                at: when(&r.at),
                who: text(&r.body, &["practitioner", "name"])
                    .or_else(|| text(&r.body, &["recipient"]).map(|x| org_name(&reg, &x)))
                    .unwrap_or_default(),
                what: match (r.kind.as_str(), text(&r.body, &["justification"])) {
                    ("rationale_added", Some(j)) => format!("{w}: {j}"),
                    _ => w.to_owned(),
                },
            })
        })
        .collect();
    let looks = records
        .iter()
        .filter(|r| r.kind == "person_access")
        .map(|r| Look {
            at: when(&r.at),
            who: text(&r.body, &["sender", "person"])
                .map(|e| person_name(&e))
                .unwrap_or_default(),
            what: look_words(r.code.as_deref().unwrap_or_default()).to_owned(),
        })
        .collect();
    let page = RecordPage {
        title: format!("Record {}", reference(&id)),
        tabs: tabs(""),
        status: status(&app),
        id: transfer.to_string(),
        decision,
        class,
        facts: facts(&reg, &decision_record),
        refusal,
        explain,
        timeline,
        deliveries: deliveries.iter().map(|r| recipient_line(&reg, r)).collect(),
        corrects: d.correction_of.clone(),
        corrected_by: corrections.accepted,
        correction_attempts: corrections.refused,
        later,
        looks,
        seq: d.seq,
        hash: d.hash.clone(),
        errors: Vec::new(),
        who: who(&s),
    };
    pages::render(&page)
}

/// What of a transfer's records a person in `scope` may see, given the decision record that let
/// them open it. The organisation that shared it (as this gateway recorded the share) sees all
/// of them; any other party sees the decision, what its own people did, and its own deliveries:
/// not another recipient's, and not what a peer gateway's claim about the transfer would reveal.
fn within(
    scope: &Scope,
    d: &DecisionRow,
    records: Vec<StoredRecord>,
    deliveries: Vec<crate::store::RecipientStatus>,
) -> (Vec<StoredRecord>, Vec<crate::store::RecipientStatus>) {
    let Scope::Org(o) = scope else {
        return (records, deliveries);
    };
    let o = o.as_str();
    let shared_by_o = records
        .iter()
        .any(|r| r.kind == "transfer_accepted" && r.sender.as_deref() == Some(o));
    if shared_by_o {
        return (records, deliveries);
    }
    let records = records
        .into_iter()
        .filter(|r| {
            r.seq == d.seq
                || r.sender.as_deref() == Some(o)
                || r.body.get("recipient").and_then(|v| v.as_str()) == Some(o)
        })
        .collect();
    let deliveries = deliveries
        .into_iter()
        .filter(|x| x.recipient == o)
        .collect();
    (records, deliveries)
}

/// `/explain` with this refused share's description.
fn explain_link(d: &DecisionRow, b: &serde_json::Value) -> Option<String> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("from", d.sender.as_deref()?);
    for r in &d.recipients {
        s.append_pair("to", r);
    }
    for (k, path) in [
        ("purpose", &["envelope", "purpose"][..]),
        ("lawful_basis", &["envelope", "lawful_basis"]),
        ("marking", &["envelope", "marking"]),
        (
            "special_category_condition",
            &["envelope", "special_category_condition"],
        ),
        ("originator", &["envelope", "originator"]),
        (
            "originator_permission_ref",
            &["envelope", "originator_permission_ref"],
        ),
    ] {
        if let Some(v) = text(b, path) {
            s.append_pair(k, &v);
        }
    }
    if let Some(a) = at(b, &["envelope", "data_categories"]).and_then(|v| v.as_array()) {
        for c in a.iter().filter_map(|c| c.as_str()) {
            s.append_pair("data_categories", c);
        }
    }
    if let Some(day) = d.at.get(..10) {
        s.append_pair("on", day);
    }
    Some(format!("/explain?{}", s.finish()))
}

#[derive(Template)]
#[template(path = "log_subject.html")]
pub struct SubjectPage {
    pub title: &'static str,
    pub tabs: Vec<Tab>,
    pub status: StatusLine,
    pub scope: String,
    pub kinds: Vec<Opt>,
    pub identifier: String,
    /// Whether a search was made (results, possibly none, are shown).
    pub searched: bool,
    pub rows: Vec<Row>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

const KINDS: [(&str, &str); 4] = [
    ("nhs", "NHS number"),
    ("case", "Case reference"),
    ("member", "An organisation's own reference"),
    ("other", "Another kind (type it as kind:reference)"),
];

fn kinds(current: &str) -> Vec<Opt> {
    KINDS
        .iter()
        .map(|(v, l)| Opt {
            value: (*v).to_owned(),
            label: (*l).to_owned(),
            hint: None,
            checked: *v == current,
        })
        .collect()
}

pub async fn subject_form(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let reg = app.api.registry.current();
    pages::render(&SubjectPage {
        title: "Subject access",
        tabs: tabs("/log/subject"),
        status: status(&app),
        scope: scope_note(&reg, &scope),
        kinds: kinds("nhs"),
        identifier: String::new(),
        searched: false,
        rows: Vec::new(),
        errors: Vec::new(),
        who: who(&s),
    })
}

/// The reference to look for, from the form's kind and text.
pub fn subject_ref(kind: &str, identifier: &str) -> Result<SubjectRef, &'static str> {
    let text = if kind == "other" {
        identifier.to_owned()
    } else {
        format!("{kind}:{identifier}")
    };
    SubjectRef::parse(&text).map_err(|_| {
        if kind == "nhs" {
            "Enter a valid NHS number: 10 digits, for example 943 476 5919"
        } else if kind == "other" {
            "Enter the reference as kind:reference, for example case:ABC123"
        } else {
            "Enter the reference"
        }
    })
}

pub async fn subject(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    body: Bytes,
) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let reg = app.api.registry.current();
    let form: BTreeMap<String, String> = super::form_pairs(&body).into_iter().collect();
    let kind = form.get("kind").map_or("nhs", String::as_str);
    let kind = if KINDS.iter().any(|(k, _)| *k == kind) {
        kind
    } else {
        "nhs"
    };
    let identifier = form.get("identifier").cloned().unwrap_or_default();
    let mut page = SubjectPage {
        title: "Subject access",
        tabs: tabs("/log/subject"),
        status: status(&app),
        scope: scope_note(&reg, &scope),
        kinds: kinds(kind),
        identifier: identifier.clone(),
        searched: false,
        rows: Vec::new(),
        errors: Vec::new(),
        who: who(&s),
    };
    let hashes = match subject_ref(kind, identifier.trim()) {
        Ok(r) => r
            .search_hashes(&app.api.subject_key)
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect::<Vec<_>>(),
        Err(m) => {
            page.errors.push(FieldError::new("identifier", m));
            return pages::render_form(&page, &page.errors);
        }
    };
    // The keyed hashes only: the identifier itself is never stored or logged.
    if let Err(r) = record_access(
        &app,
        &s,
        &client(addr.as_deref()),
        AccessEvent::SubjectSearched,
        None,
        Some(hashes.join(",")),
    )
    .await
    {
        return r;
    }
    let party = scope.party();
    let found = app
        .api
        .store
        .read(move |c| search::about(c, &hashes, party.as_deref()))
        .await;
    match found {
        Ok(rows) => {
            page.searched = true;
            page.rows = rows.iter().map(|r| row(&reg, r)).collect();
            pages::render(&page)
        }
        Err(e) => pages::store_down(&e),
    }
}

/// Streams the current filter's records, oldest first, as CSV (formula-safe) or JSON lines,
/// with the verification status as the first line. Read on a connection of its own, a batch
/// at a time through a small channel, so memory stays flat however many records there are.
pub async fn export(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    RawQuery(raw): RawQuery,
) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let format = form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let csv = match format.as_str() {
        "csv" => true,
        "jsonl" => false,
        _ => {
            return pages::problem(
                StatusCode::BAD_REQUEST,
                "Choose CSV or JSON lines",
                "Use one of the export links on the transfer log's page.",
            );
        }
    };
    let f = Filters::parse(raw.as_deref());
    let q = match f.query(&scope) {
        Ok(q) => LogQuery {
            before: None,
            oldest_first: true,
            ..q
        },
        Err(_) => {
            return pages::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The filters are not valid",
                "Go back to the transfer log, correct the filters, and export again.",
            );
        }
    };
    let Some(oversight) = app.oversight.clone() else {
        return pages::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Export is not available here",
            "This listener cannot open the log on its own. Use `postern log export` on the gateway.",
        );
    };
    let qs = f.query_string();
    if let Err(r) = record_access(
        &app,
        &s,
        &client(addr.as_deref()),
        AccessEvent::LogExported,
        None,
        Some(format!("{format} ?{qs}")),
    )
    .await
    {
        return r;
    }
    let status = oversight.status_line().text;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let source = oversight.source.clone();
    let head = if csv {
        // A comment line before the header row, as written (not a quoted cell), so that a
        // reader told to skip lines starting with `#` skips it.
        let comment = format!(
            "# Postern transfer log export, {}. {status} Filter: {}",
            crate::clock::stamp(crate::clock::now()),
            if qs.is_empty() { "none" } else { &qs }
        )
        .replace(['\r', '\n'], " ");
        let mut w = csv::Writer::from_writer(format!("{comment}\n").into_bytes());
        let _ = w.write_record(search::CSV_HEADER);
        w.into_inner().unwrap_or_default()
    } else {
        let mut v = serde_json::to_vec(&serde_json::json!({
            "export": {
                "at": crate::clock::stamp(crate::clock::now()),
                "verification": status,
                "filter": qs,
            }
        }))
        .unwrap_or_default();
        v.push(b'\n');
        v
    };
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // A browser that stops reading for two minutes ends the export: the read it holds open
        // would otherwise keep the log's write-ahead file from being folded back.
        let send = |b: Vec<u8>| {
            runtime
                .block_on(tokio::time::timeout(
                    std::time::Duration::from_secs(120),
                    tx.send(Ok(Bytes::from(b))),
                ))
                .is_ok_and(|sent| sent.is_ok())
        };
        if !send(head) {
            return;
        }
        let reader = match source.open(&runtime) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "web: an export could not open the log");
                let _ = tx.blocking_send(Err(std::io::Error::other("the log could not be read")));
                return;
            }
        };
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let r = search::for_each_decision(reader.db(), &q, |row| {
            if csv {
                let mut w = csv::Writer::from_writer(&mut buf);
                w.write_record(
                    search::csv_row(&row)
                        .into_iter()
                        .map(search::spreadsheet_safe),
                )
                .map_err(|_| "csv")?;
                w.flush().map_err(|_| "csv")?;
            } else {
                serde_json::to_writer(&mut buf, &row).map_err(|_| "json")?;
                buf.push(b'\n');
            }
            if buf.len() >= 64 * 1024 && !send(std::mem::take(&mut buf)) {
                // The browser went away.
                return Err("closed");
            }
            Ok(())
        });
        match r {
            Ok(()) => {
                send(buf);
            }
            Err(search::SearchError::Output(_)) => {}
            Err(search::SearchError::Store(e)) => {
                tracing::warn!(error = %e, "web: an export stopped");
                let _ = tx.blocking_send(Err(std::io::Error::other("the export stopped")));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut resp = Body::from_stream(stream).into_response();
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/jsonl; charset=utf-8", "jsonl")
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    let name = format!(
        "attachment; filename=\"postern-log-{}.{ext}\"",
        crate::clock::stamp(crate::clock::now())
            .get(..10)
            .unwrap_or("export")
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) =
        HeaderValue::from_str(&status.replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " "))
    {
        h.insert("postern-verification", v);
    }
    resp
}

/// One bar of a chart, with its place.
pub struct Bar {
    pub label: String,
    /// The label as the chart has room for it (the table has it whole).
    pub short: String,
    pub count: i64,
    pub y: usize,
    pub text_y: usize,
    pub width: usize,
    pub count_x: usize,
}

pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub bars: Vec<Bar>,
    pub height: usize,
    pub label_width: usize,
}

const BAR_H: usize = 28;
const CHART_W: usize = 360;

fn chart(
    id: &'static str,
    title: &'static str,
    counts: &BTreeMap<String, i64>,
    name: impl Fn(&str) -> String,
) -> Chart {
    let mut v: Vec<(String, i64)> = counts.iter().map(|(k, n)| (name(k), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let max = v.iter().map(|x| x.1).max().unwrap_or(1).max(1);
    let label_width = 260;
    let bars = v
        .into_iter()
        .enumerate()
        .map(|(i, (label, count))| {
            let width = usize::try_from(count)
                .unwrap_or(0)
                .saturating_mul(CHART_W - 70)
                / usize::try_from(max).unwrap_or(1).max(1);
            Bar {
                short: shorten(&label, 30),
                label,
                count,
                y: i * BAR_H,
                text_y: i * BAR_H + 19,
                width: width.max(2),
                count_x: label_width + width.max(2) + 6,
            }
        })
        .collect::<Vec<_>>();
    Chart {
        id,
        title,
        height: (bars.len().max(1)) * BAR_H,
        bars,
        label_width,
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub struct Overdue {
    pub at: String,
    pub link: String,
    pub reference: String,
    pub sender: String,
}

pub struct Dead {
    pub link: String,
    pub reference: String,
    pub recipient: String,
    pub channel: String,
    pub attempts: i64,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "log_report.html")]
pub struct ReportPage {
    pub title: &'static str,
    pub tabs: Vec<Tab>,
    pub status: StatusLine,
    pub scope: String,
    pub from: String,
    pub to: String,
    pub period: String,
    pub total: i64,
    pub charts: Vec<Chart>,
    pub overdue: Vec<Overdue>,
    pub dead: Vec<Dead>,
    /// More died than are listed: the log, filtered to them.
    pub dead_more: Option<String>,
    /// Requests for information received in the period, by the organisation asked.
    pub holders: Vec<HolderRow>,
    pub requests_overdue: Vec<RequestRow>,
    pub requests_late: Vec<RequestRow>,
    /// By recipient: shares, those it gave feedback on, and the percentage.
    pub feedback: Vec<(String, u64, u64, u64)>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

/// One organisation's answers to the requests it was asked.
pub struct HolderRow {
    pub name: String,
    pub received: u64,
    pub answered: u64,
    pub late: u64,
    pub overdue: u64,
    /// The median working days taken, or a dash.
    pub median: String,
}

/// A request overdue or answered late.
pub struct RequestRow {
    pub reference: String,
    pub requester: String,
    pub holder: String,
    pub due: String,
    pub urgent: bool,
}

impl ReportPage {
    pub fn err(&self, field: &str) -> Option<&str> {
        error_for(&self.errors, field)
    }
}

fn rule_words(code: &str) -> String {
    crate::domain::policy::Rule::ALL
        .iter()
        .find(|r| r.refusal_code() == code)
        .map_or_else(
            || code.replace('_', " "),
            |r| format!("Not met: {} ({code})", r.summary()),
        )
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

pub async fn report(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    RawQuery(raw): RawQuery,
) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let reg = app.api.registry.current();
    let f = Filters::parse(raw.as_deref());
    // A month unless the DPO says otherwise: the period a partnership meeting looks back on.
    let today = crate::clock::now().date();
    let (from, to) = if f.from.is_empty() && f.to.is_empty() {
        (
            (today - time::Duration::days(30)).to_string(),
            today.to_string(),
        )
    } else {
        (f.from.clone(), f.to.clone())
    };
    let period = Filters {
        from: from.clone(),
        to: to.clone(),
        ..Filters::default()
    };
    let mut page = ReportPage {
        title: "Report",
        tabs: tabs("/log/report"),
        status: status(&app),
        scope: scope_note(&reg, &scope),
        period: String::new(),
        from,
        to,
        total: 0,
        charts: Vec::new(),
        overdue: Vec::new(),
        dead: Vec::new(),
        dead_more: None,
        holders: Vec::new(),
        requests_overdue: Vec::new(),
        requests_late: Vec::new(),
        feedback: Vec::new(),
        errors: Vec::new(),
        who: who(&s),
    };
    let q = match period.query(&scope) {
        Ok(q) => q,
        Err(errors) => {
            page.errors = errors;
            return pages::render_form(&page, &page.errors);
        }
    };
    page.period = format!(
        "{} to {}",
        if page.from.is_empty() {
            "the beginning"
        } else {
            &page.from
        },
        if page.to.is_empty() { "now" } else { &page.to }
    );
    if let Err(r) = record_access(
        &app,
        &s,
        &client(addr.as_deref()),
        AccessEvent::ReportViewed,
        None,
        Some(period.query_string()),
    )
    .await
    {
        return r;
    }
    let cutoff = crate::clock::stamp(crate::clock::now() - time::Duration::hours(24));
    let now = crate::clock::stamp(crate::clock::now());
    let r = match app
        .api
        .store
        .read(move |c| search::report(c, &q, &cutoff, Some(DEAD_SHOWN), &now))
        .await
    {
        Ok(r) => r,
        Err(e) => return pages::store_down(&e),
    };
    page.total = r.decisions.values().sum();
    let decisions: BTreeMap<String, i64> = r
        .decisions
        .iter()
        .map(|(k, v)| (decision_words(k).0.to_owned(), *v))
        .collect();
    page.charts = vec![
        chart("decisions", "Decisions", &decisions, str::to_owned),
        chart("purpose", "Shared, by purpose", &r.shared_by_purpose, |p| {
            purpose_name(&reg, p)
        }),
        chart(
            "recipient",
            "Shared, by recipient",
            &r.shared_by_recipient,
            |o| org_name(&reg, o),
        ),
        chart(
            "marking",
            "Shared, by marking",
            &r.shared_by_marking,
            str::to_owned,
        ),
        chart(
            "basis",
            "Shared, by lawful basis",
            &r.shared_by_lawful_basis,
            |b| {
                LawfulBasis::parse(b)
                    .map_or_else(|| b.to_owned(), |l| choices::basis_title(l).to_owned())
            },
        ),
        chart(
            "refused",
            "Refused, by rule",
            &r.refused_by_reason,
            rule_words,
        ),
    ];
    page.overdue = r
        .rationale_overdue
        .iter()
        .map(|o| Overdue {
            at: when(&o.at),
            link: format!("/log/transfer/{}", o.transfer_id),
            reference: reference(&o.transfer_id),
            sender: org_name(&reg, &o.sender),
        })
        .collect();
    page.dead_more = r.dead_more.then(|| {
        link_with(
            "/log",
            "delivery=dead&decision=shared",
            &period.query_string(),
        )
    });
    page.dead = r
        .dead_deliveries
        .iter()
        .map(|d| Dead {
            link: format!("/log/transfer/{}", d.transfer_id),
            reference: reference(&d.transfer_id),
            recipient: org_name(&reg, &d.recipient),
            channel: d.channel.clone(),
            attempts: d.attempts,
            reason: d.reason.clone().unwrap_or_default(),
        })
        .collect();
    page.holders = r
        .requests
        .by_holder
        .iter()
        .map(|(holder, f)| HolderRow {
            name: org_name(&reg, holder),
            received: f.received,
            answered: f.answered,
            late: f.answered_late,
            overdue: f.overdue,
            median: f
                .median_working_days
                .map_or_else(|| "–".to_owned(), |m| format!("{m}")),
        })
        .collect();
    let line = |l: &crate::store::requests::RequestLine| RequestRow {
        reference: reference(&l.request_id),
        requester: org_name(&reg, &l.requester),
        holder: org_name(&reg, &l.holder),
        due: l.due_date.clone(),
        urgent: l.urgency == "urgent",
    };
    page.requests_overdue = r.requests.overdue.iter().map(line).collect();
    page.requests_late = r.requests.answered_late.iter().map(line).collect();
    page.feedback = r
        .feedback_by_recipient
        .iter()
        .map(|(recipient, f)| {
            (
                org_name(&reg, recipient),
                f.shared,
                f.with_feedback,
                f.with_feedback * 100 / f.shared.max(1),
            )
        })
        .collect();
    pages::render(&page)
}

pub struct AccessRow {
    pub at: String,
    pub who: String,
    pub what: String,
    pub link: Option<String>,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "log_access.html")]
pub struct AccessPage {
    pub title: &'static str,
    pub tabs: Vec<Tab>,
    pub status: StatusLine,
    pub scope: String,
    pub rows: Vec<AccessRow>,
    pub older: Option<String>,
    pub paged: bool,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

fn access_words(code: &str) -> &'static str {
    match code {
        "log_listed" => "Listed the transfer log",
        "record_viewed" => "Viewed a record",
        "subject_searched" => "Searched for a person (subject access)",
        "log_exported" => "Exported records",
        "report_viewed" => "Opened the report",
        "access_listed" => "Listed who looked at the log",
        "log_verified" => "Verified the log",
        "item_viewed" => "Opened an item in the inbox",
        "item_downloaded" => "Downloaded an item's file",
        "item_acknowledged" => "Acknowledged an item",
        "request_viewed" => "Opened a request for information",
        "signed_in" => "Signed in",
        "signed_out" => "Signed out",
        "code_sent" => "Was sent a sign-in code",
        "code_wrong" => "Entered a wrong sign-in code",
        "code_locked" => "Had a sign-in code stopped after wrong tries",
        "code_withheld" => "Asked for a code (a passkey is required)",
        "passkey_added" => "Added a passkey",
        "passkey_removed" => "Removed a passkey",
        "passkey_failed" => "Failed a passkey sign-in",
        _ => "Did something recorded",
    }
}

pub async fn access(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    addr: Client,
    RawQuery(raw): RawQuery,
) -> Response {
    let scope = match log_scope(&s) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let reg = app.api.registry.current();
    let before = Filters::parse(raw.as_deref()).before;
    if let Err(r) = record_access(
        &app,
        &s,
        &client(addr.as_deref()),
        AccessEvent::AccessListed,
        None,
        before.map(|b| format!("before {b}")),
    )
    .await
    {
        return r;
    }
    let filter = LogFilter {
        kind: Some("person_access".into()),
        sender: scope.party(),
        before,
        limit: Some(PAGE + 1),
        ..LogFilter::default()
    };
    let found = match app
        .api
        .store
        .read(move |c| crate::store::log_records(c, &filter))
        .await
    {
        Ok(f) => f,
        Err(e) => return pages::store_down(&e),
    };
    let older = (found.len() > PAGE)
        .then(|| found.get(PAGE - 1).map(|r| r.seq))
        .flatten()
        .map(|seq| format!("/log/access?before={seq}"));
    let rows = found
        .iter()
        .take(PAGE)
        .map(|r| {
            let code = r.code.as_deref().unwrap_or_default();
            let email = text(&r.body, &["sender", "person"]).unwrap_or_default();
            let detail = match code {
                // A keyed hash means nothing to a reader; say what it is.
                "subject_searched" => "the identifier is kept only as a keyed hash".to_owned(),
                _ => text(&r.body, &["detail"]).unwrap_or_default(),
            };
            AccessRow {
                at: when(&r.at),
                who: reg.person(&email).map_or_else(
                    || email.clone(),
                    |p| format!("{}, {}", p.name, org_name(&reg, p.org.as_str())),
                ),
                what: access_words(code).to_owned(),
                link: r.transfer_id.as_ref().map(|t| format!("/log/transfer/{t}")),
                detail,
            }
        })
        .collect();
    pages::render(&AccessPage {
        title: "Who looked",
        tabs: tabs("/log/access"),
        status: status(&app),
        scope: match &scope {
            Scope::All => "Every look at the log and every sign-in, by anyone.".into(),
            Scope::Org(o) => format!(
                "What the people of {} did on these pages, including every look at the log.",
                org_name(&reg, o.as_str())
            ),
        },
        rows,
        older,
        paged: before.is_some(),
        errors: Vec::new(),
        who: who(&s),
    })
}

#[derive(Template)]
#[template(path = "log_verified.html")]
pub struct VerifiedPage {
    pub title: &'static str,
    pub tabs: Vec<Tab>,
    pub status: StatusLine,
    pub intact: bool,
    pub facts: Vec<Fact>,
    pub broken: Option<String>,
    pub failed: Option<String>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

/// "Verify now": the full check `postern log verify` makes, shown with its result.
pub async fn verify(State(app): State<Arc<WebApp>>, s: SignedIn, addr: Client) -> Response {
    if let Err(r) = log_scope(&s) {
        return r;
    }
    let Some(oversight) = app.oversight.clone() else {
        return pages::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Verification is not available here",
            "Run `postern log verify` on the gateway.",
        );
    };
    // Recorded before the check runs, like every other look at the log.
    if let Err(r) = record_access(
        &app,
        &s,
        &client(addr.as_deref()),
        AccessEvent::LogVerified,
        None,
        None,
    )
    .await
    {
        return r;
    }
    let outcome = oversight.verify_and_keep().await;
    let mut page = VerifiedPage {
        title: "Verification",
        tabs: tabs(""),
        status: status(&app),
        intact: false,
        facts: Vec::new(),
        broken: None,
        failed: None,
        errors: Vec::new(),
        who: who(&s),
    };
    match outcome {
        Err(e) => page.failed = Some(e.to_string()),
        Ok(v) => {
            page.intact = v.report.intact();
            page.facts = verified_facts(&v);
            // The break once, in words; what the check found goes with the other facts.
            page.broken = v.report.first_break.as_ref().map(|b| {
                page.facts.insert(
                    0,
                    Fact {
                        label: "What the check found",
                        value: format!("{}.", capitalise(&b.message)),
                    },
                );
                format!(
                    "{} at {}.",
                    capitalise(break_words(b.kind)),
                    super::oversight::records(b.seq, b.to_seq)
                )
            });
        }
    }
    pages::render(&page)
}

fn verified_facts(v: &Verification) -> Vec<Fact> {
    let r = &v.report;
    let mut out = vec![
        Fact {
            label: "Records checked",
            value: match (r.first_seq, r.last_seq) {
                (Some(a), Some(b)) => format!("{} (records {a} to {b})", r.records),
                _ => r.records.to_string(),
            },
        },
        Fact {
            label: "Signed checkpoints checked",
            value: r.checkpoints.to_string(),
        },
        Fact {
            label: "Covered by a signature up to",
            value: r
                .covered_to
                .map_or_else(|| "no record yet".to_owned(), |c| format!("record {c}")),
        },
        Fact {
            label: "Checkpoint file",
            value: v.file.clone().unwrap_or_else(|| {
                "none configured (the database's checkpoints were checked)".into()
            }),
        },
        Fact {
            label: "Checked",
            value: format!(
                "{} (took {:.1} s)",
                when(&v.checked_at),
                v.took.as_secs_f64()
            ),
        },
    ];
    if r.uncovered > 0 {
        out.push(Fact {
            label: "Not yet signed",
            value: format!(
                "{} newer record(s): the gateway signs its head at intervals and at shutdown",
                r.uncovered
            ),
        });
    }
    for a in &r.accepted {
        out.push(Fact {
            label: "Accepted head",
            value: format!(
                "record {}: an operator accepted a log the gateway had not signed; reason: {}",
                a.seq, a.reason
            ),
        });
    }
    out
}
