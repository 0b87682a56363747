//! The IT team's pages (role `admin`): the registry as readable tables, who may share with
//! whom, an organisation's page, the explain form, and the configuration's reload status.
//!
//! What an agency IT lead needs in under a minute: the rule that refused a share, in plain
//! words (`/explain`, the very decision `postern explain` runs: [`explain::explain`]), and who
//! may share what with whom (`/registry`). No personal data but the registered people's names
//! and addresses on their organisation's page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use time::Date;

use super::WebApp;
use super::oversight::{StatusLine, may_explain, require_admin, when};
use super::pages::{self, Field, FieldError, Opt, Who};
use super::signin::SignedIn;
use crate::domain::choices;
use crate::domain::explain::{self, Question};
use crate::domain::lawful::{DataCategory, LawfulBasis};
use crate::domain::policy::{Decision, Rule};
use crate::domain::registry::{
    Agreement, Channel, ClientIdentity, OrgKind, Organisation, Registry, Role, Sector, SignIn,
};

/// How many days ahead an agreement's end is flagged.
const ENDING_SOON_DAYS: i64 = 60;

/// A tag: words (never colour alone) and its look (`done`, `wait`, `bad`).
pub struct Tag {
    pub text: String,
    pub class: &'static str,
}

/// An organisation, by name, with its id.
pub struct OrgRef {
    pub id: String,
    pub name: String,
}

pub struct OrgRow {
    pub org: OrgRef,
    pub kind: String,
    pub clearance: String,
    pub receives: String,
}

pub struct PurposeRow {
    pub id: String,
    pub title: String,
    pub bases: String,
    pub statutory_only: bool,
    pub special_category: bool,
}

pub struct AgreementRow {
    pub id: String,
    pub title: String,
    pub parties: Vec<OrgRef>,
    pub purposes: Vec<String>,
    pub bases: String,
    pub max_marking: String,
    pub from: String,
    pub until: String,
    pub tag: Tag,
}

/// "Who may share with whom" as a grid: a row for each organisation that is a party to an
/// agreement, a column for each such organisation, and in each cell the agreements that let the
/// row share with the column. Purposes, bases and markings are in the agreements' table, once
/// per agreement (a row per direction and pair repeated them: 22,000 pixels for the demo).
pub struct Grid {
    pub columns: Vec<OrgRef>,
    pub rows: Vec<GridRow>,
}

pub struct GridRow {
    pub from: OrgRef,
    pub cells: Vec<GridCell>,
}

pub struct GridCell {
    /// The organisation itself (no agreement needed, none shown).
    pub same: bool,
    /// The column's name, for screen readers reading one cell.
    pub to: String,
    pub agreements: Vec<GridAgreement>,
}

pub struct GridAgreement {
    pub id: String,
    pub title: String,
    /// `None` for an agreement simply in force; otherwise when it ends, ended or starts.
    pub tag: Option<Tag>,
}

#[derive(Template)]
#[template(path = "registry.html")]
pub struct RegistryPage {
    pub title: &'static str,
    pub today: String,
    pub organisations: Vec<OrgRow>,
    pub purposes: Vec<PurposeRow>,
    pub agreements: Vec<AgreementRow>,
    /// For the agreements' table (`agreement_table.html`).
    pub agreements_caption: String,
    pub parties_heading: &'static str,
    pub grid: Grid,
    pub markings: Vec<String>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

pub struct IdentityRow {
    pub what: &'static str,
    pub value: String,
    pub ca: String,
}

pub struct ContactRow {
    pub role: &'static str,
    pub name: String,
    pub contact: String,
}

pub struct PersonRow {
    pub name: String,
    pub title: String,
    pub email: String,
    pub roles: String,
}

#[derive(Template)]
#[template(path = "registry_org.html")]
pub struct OrgPage {
    pub title: String,
    pub id: String,
    pub kind: String,
    pub clearance: String,
    pub identities: Vec<IdentityRow>,
    pub receives: String,
    pub ceiling: Option<String>,
    pub sealed_to: usize,
    pub contacts: Vec<ContactRow>,
    pub sign_in: &'static str,
    /// Its agreements, each with the other parties.
    pub agreements: Vec<AgreementRow>,
    pub agreements_caption: String,
    pub parties_heading: &'static str,
    pub people: Vec<PersonRow>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

/// One rule as the decision applied it.
pub struct CheckRow {
    pub passed: bool,
    pub code: &'static str,
    pub summary: &'static str,
    pub whom: String,
    pub detail: String,
}

/// What the decision was, in plain words.
pub struct Outcome {
    pub allowed: bool,
    /// "A share from ... to ..., as of ...".
    pub question: String,
    pub checks: Vec<CheckRow>,
    /// Allowed: each recipient and the agreement that allows it.
    pub allowed_by: Vec<String>,
    /// Refused: the rule, its code, and why.
    pub refused_by: Option<CheckRow>,
}

#[derive(Template)]
#[template(path = "explain.html")]
pub struct ExplainPage {
    pub title: &'static str,
    pub fields: Vec<Field>,
    pub outcome: Option<Outcome>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

pub struct RefusedView {
    pub at: String,
    pub by: String,
    pub errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub title: &'static str,
    /// `None`: this gateway keeps no status (the pages run without oversight).
    pub loaded: Option<(String, String)>,
    pub refused: Option<RefusedView>,
    pub needs_restart: Vec<String>,
    pub log: Option<StatusLine>,
    pub errors: Vec<FieldError>,
    pub who: Option<Who>,
}

fn sector_words(s: Sector) -> &'static str {
    match s {
        Sector::LocalAuthority => "local authority",
        Sector::Police => "police",
        Sector::Health => "health",
        Sector::Education => "education",
        Sector::Probation => "probation",
        Sector::YouthJustice => "youth justice",
        Sector::Other => "other",
    }
}

fn kind_words(k: OrgKind) -> String {
    match k {
        OrgKind::Statutory(s) => format!("Statutory body ({})", sector_words(s)),
        OrgKind::Voluntary => "Voluntary organisation".to_owned(),
        OrgKind::Private => "Private organisation".to_owned(),
    }
}

fn receives_words(o: &Organisation) -> String {
    match o.endpoint.as_ref().map(|e| &e.channel) {
        None => "Does not receive (it may only send)".to_owned(),
        Some(Channel::Email { address, tls_only }) => {
            if *tls_only {
                format!(
                    "Secure email to {address}, over verified TLS only (not encrypted to a key)"
                )
            } else {
                format!("Secure email to {address}, encrypted to its keys")
            }
        }
        Some(Channel::Https { url, ca_file }) => {
            format!("HTTPS with mutual TLS to {url} (its certificate checked against {ca_file})")
        }
        Some(Channel::Inbox) => {
            "This gateway's inbox: its system collects with its client certificate".to_owned()
        }
        Some(Channel::Portal { .. }) => {
            "This gateway's inbox, opened by its people on these pages (portal)".to_owned()
        }
    }
}

fn org_ref(reg: &Registry, id: &crate::domain::ids::OrgId) -> OrgRef {
    OrgRef {
        id: id.to_string(),
        name: reg
            .organisation(id)
            .map_or_else(|| id.to_string(), |o| o.name.clone()),
    }
}

fn purpose_title(reg: &Registry, id: &crate::domain::ids::PurposeId) -> String {
    reg.purpose(id)
        .map_or_else(|| id.to_string(), |p| p.title.clone())
}

fn bases_words<'a>(bases: impl IntoIterator<Item = &'a LawfulBasis>) -> String {
    bases
        .into_iter()
        .map(|b| choices::basis_title(*b))
        .collect::<Vec<_>>()
        .join(", ")
}

fn date(d: Date) -> String {
    d.to_string()
}

/// Whether an agreement is in force, ends soon, has ended or is still to start, in words.
pub fn agreement_tag(a: &Agreement, today: Date) -> Tag {
    let days_left = (a.valid_until - today).whole_days();
    if a.valid_until < today {
        Tag {
            text: format!("Ended on {}", date(a.valid_until)),
            class: "bad",
        }
    } else if today < a.valid_from {
        Tag {
            text: format!("Starts on {}", date(a.valid_from)),
            class: "wait",
        }
    } else if days_left <= ENDING_SOON_DAYS {
        Tag {
            text: match days_left {
                0 => "Ends today".to_owned(),
                1 => "Ends tomorrow".to_owned(),
                n => format!("Ends in {n} days"),
            },
            class: "wait",
        }
    } else {
        Tag {
            text: "In force".to_owned(),
            class: "done",
        }
    }
}

fn agreement_row(reg: &Registry, a: &Agreement, today: Date) -> AgreementRow {
    AgreementRow {
        id: a.id.to_string(),
        title: a.title.clone(),
        parties: a.parties.iter().map(|p| org_ref(reg, p)).collect(),
        purposes: a.purposes.iter().map(|p| purpose_title(reg, p)).collect(),
        bases: bases_words(&a.lawful_bases),
        max_marking: reg.marking.name(a.max_marking).to_owned(),
        from: date(a.valid_from),
        until: date(a.valid_until),
        tag: agreement_tag(a, today),
    }
}

fn by_name(reg: &Registry) -> Vec<&Organisation> {
    let mut orgs: Vec<&Organisation> = reg.organisations().collect();
    orgs.sort_by(|a, b| a.name.cmp(&b.name));
    orgs
}

/// Who may share with whom: for each agreement, each direction between two of its parties.
fn grid(reg: &Registry, today: Date) -> Grid {
    // Each party with its id, so that a row or column never pairs with another's agreements.
    let mut parties: Vec<(&crate::domain::ids::OrgId, OrgRef)> = reg
        .agreements()
        .iter()
        .flat_map(|a| a.parties.iter())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| (id, org_ref(reg, id)))
        .collect();
    parties.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let rows = parties
        .iter()
        .map(|(from_id, from)| GridRow {
            from: OrgRef {
                id: from.id.clone(),
                name: from.name.clone(),
            },
            cells: parties
                .iter()
                .map(|(to_id, to)| GridCell {
                    same: from_id == to_id,
                    to: to.name.clone(),
                    agreements: if from_id == to_id {
                        Vec::new()
                    } else {
                        reg.agreements()
                            .iter()
                            .filter(|a| a.binds(from_id, to_id))
                            .map(|a| {
                                let tag = agreement_tag(a, today);
                                GridAgreement {
                                    id: a.id.to_string(),
                                    title: a.title.clone(),
                                    tag: (tag.class != "done").then_some(tag),
                                }
                            })
                            .collect()
                    },
                })
                .collect(),
        })
        .collect();
    Grid {
        columns: parties.into_iter().map(|(_, r)| r).collect(),
        rows,
    }
}

pub async fn overview(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    if let Err(r) = require_admin(&s) {
        return r;
    }
    let reg = app.api.registry.current();
    let today = crate::clock::now().date();
    let organisations = by_name(&reg)
        .into_iter()
        .map(|o| OrgRow {
            org: org_ref(&reg, &o.id),
            kind: kind_words(o.kind),
            clearance: reg.marking.name(o.clearance).to_owned(),
            receives: receives_words(o),
        })
        .collect();
    let mut purposes: Vec<PurposeRow> = reg
        .purposes()
        .map(|p| PurposeRow {
            id: p.id.to_string(),
            title: p.title.clone(),
            bases: bases_words(&p.lawful_bases),
            statutory_only: p.statutory_only,
            special_category: p.special_category,
        })
        .collect();
    purposes.sort_by(|a, b| a.title.cmp(&b.title));
    let mut agreements: Vec<AgreementRow> = reg
        .agreements()
        .iter()
        .map(|a| agreement_row(&reg, a, today))
        .collect();
    agreements.sort_by(|a, b| a.title.cmp(&b.title));
    pages::render(&RegistryPage {
        title: "Who may share what with whom",
        today: date(today),
        organisations,
        purposes,
        agreements,
        agreements_caption:
            "The data sharing agreements: parties, purposes, lawful bases, highest marking and dates"
                .to_owned(),
        parties_heading: "Parties",
        grid: grid(&reg, today),
        markings: reg.marking.levels().to_vec(),
        errors: Vec::new(),
        who: super::transfers::who(&s),
    })
}

fn roles_words(roles: &std::collections::BTreeSet<Role>) -> String {
    let words: Vec<&str> = roles
        .iter()
        .map(|r| match r {
            Role::Share => "shares",
            Role::Receive => "receives",
            Role::Dpo => "data protection officer",
            Role::Auditor => "auditor",
            Role::Admin => "IT admin",
        })
        .collect();
    if words.is_empty() {
        "none".to_owned()
    } else {
        words.join(", ")
    }
}

pub async fn organisation(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    Path(org): Path<String>,
) -> Response {
    if let Err(r) = require_admin(&s) {
        return r;
    }
    let reg = app.api.registry.current();
    let Some(o) = org
        .parse()
        .ok()
        .and_then(|id: crate::domain::ids::OrgId| reg.organisation(&id))
    else {
        return pages::not_found().await;
    };
    let today = crate::clock::now().date();
    let identities = o
        .identities
        .iter()
        .map(|i| IdentityRow {
            what: match i {
                ClientIdentity::San { .. } => "Subject alternative name",
                ClientIdentity::Fingerprint { .. } => "Certificate fingerprint",
            },
            value: match i {
                ClientIdentity::San { name, .. } => name.clone(),
                ClientIdentity::Fingerprint { fingerprint, .. } => fingerprint.to_string(),
            },
            ca: i.ca().to_string(),
        })
        .collect();
    let contacts = [
        ("Safeguarding lead", &o.contacts.safeguarding_lead),
        ("Data protection officer", &o.contacts.dpo),
    ]
    .into_iter()
    .filter_map(|(role, c)| {
        c.as_ref().map(|c| ContactRow {
            role,
            name: c.name.clone(),
            contact: c.contact.clone(),
        })
    })
    .collect();
    let mut agreements: Vec<AgreementRow> = reg
        .agreements()
        .iter()
        .filter(|a| a.parties.contains(&o.id))
        .map(|a| {
            let mut row = agreement_row(&reg, a, today);
            row.parties.retain(|p| p.id != o.id.as_str());
            row
        })
        .collect();
    agreements.sort_by(|a, b| a.title.cmp(&b.title));
    let mut people: Vec<PersonRow> = reg
        .people()
        .filter(|p| p.org == o.id)
        .map(|p| PersonRow {
            name: p.name.clone(),
            title: p.title.clone(),
            email: p.email.clone(),
            roles: roles_words(&p.roles),
        })
        .collect();
    people.sort_by(|a, b| a.name.cmp(&b.name));
    pages::render(&OrgPage {
        title: o.name.clone(),
        id: o.id.to_string(),
        kind: kind_words(o.kind),
        clearance: reg.marking.name(o.clearance).to_owned(),
        identities,
        receives: receives_words(o),
        ceiling: o
            .endpoint
            .as_ref()
            .and_then(|e| e.ceiling)
            .map(|c| reg.marking.name(c).to_owned()),
        sealed_to: o.endpoint.as_ref().map_or(0, |e| e.age_recipients.len()),
        contacts,
        sign_in: match o.sign_in {
            SignIn::Code => "A code emailed to the person's registered address, or a passkey",
            SignIn::Passkey => "A passkey (a code only lets a person add their first passkey)",
        },
        agreements_caption: format!(
            "The agreements {} is a party to, with the other parties",
            o.name
        ),
        parties_heading: "With",
        agreements,
        people,
        errors: Vec::new(),
        who: super::transfers::who(&s),
    })
}

/// The explain form's answers, as the query string gave them. Repeated names (checkboxes) and
/// comma-separated lists (a link from the log) both give several values.
struct Answers(Vec<(String, String)>);

impl Answers {
    fn one(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn many(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn question(&self) -> Question {
        let categories = self.many("data_categories");
        Question {
            from: self.one("from").unwrap_or_default(),
            to: self.many("to"),
            purpose: self.one("purpose").unwrap_or_default(),
            lawful_basis: self.one("lawful_basis").unwrap_or_default(),
            marking: self.one("marking").unwrap_or_default(),
            // As `postern explain`: personal data unless told otherwise.
            data_categories: if categories.is_empty() {
                vec![DataCategory::Personal.as_str().to_owned()]
            } else {
                categories
            },
            special_category_condition: self.one("special_category_condition"),
            originator: self.one("originator"),
            originator_permission_ref: self.one("originator_permission_ref"),
            on: self.one("on"),
        }
    }
}

fn opt(value: &str, label: String, checked: bool) -> Opt {
    Opt {
        value: value.to_owned(),
        label,
        hint: None,
        checked,
    }
}

fn field(kind: &'static str, name: &'static str, label: &str, hint: Option<&str>) -> Field {
    Field::new(kind, name, label, hint)
}

/// A select's options: "choose" first (or "none", for an optional answer), then `choices`; a
/// value given that is not among them (from a link) is kept, so that the page says what was
/// asked.
fn select(first: &str, choices: Vec<(String, String)>, given: &str) -> Vec<Opt> {
    let mut out = vec![opt("", first.to_owned(), given.is_empty())];
    let known = choices.iter().any(|(v, _)| v == given);
    out.extend(choices.into_iter().map(|(v, l)| {
        let checked = v == given;
        opt(&v, l, checked)
    }));
    if !given.is_empty() && !known {
        out.push(opt(given, format!("{given} (as given)"), true));
    }
    out
}

fn org_choices(reg: &Registry) -> Vec<(String, String)> {
    by_name(reg)
        .into_iter()
        .map(|o| (o.id.to_string(), format!("{} ({})", o.name, o.id)))
        .collect()
}

/// The form, filled in with the question asked.
fn form(reg: &Registry, q: &Question, asked: bool) -> Vec<Field> {
    let mut from = field("select", "from", "Who shares", None);
    from.options = select("Choose an organisation", org_choices(reg), &q.from);

    let mut to = field(
        "checkboxes",
        "to",
        "Who to",
        Some(
            "Choose one or more. The decision is all or nothing: one recipient refused refuses the share.",
        ),
    );
    to.options = by_name(reg)
        .into_iter()
        .map(|o| {
            opt(
                o.id.as_str(),
                format!("{} ({})", o.name, o.id),
                q.to.iter().any(|t| t == o.id.as_str()),
            )
        })
        .collect();
    for t in
        q.to.iter()
            .filter(|t| reg.organisations().all(|o| o.id.as_str() != t.as_str()))
    {
        to.options.push(opt(t, format!("{t} (as given)"), true));
    }

    let mut purpose = field("select", "purpose", "Why: the purpose", None);
    let mut purposes: Vec<(String, String)> = reg
        .purposes()
        .map(|p| (p.id.to_string(), format!("{} ({})", p.title, p.id)))
        .collect();
    purposes.sort_by(|a, b| a.1.cmp(&b.1));
    purpose.options = select("Choose a purpose", purposes, &q.purpose);

    let mut basis = field(
        "select",
        "lawful_basis",
        "On what basis (UK GDPR Article 6)",
        None,
    );
    basis.options = select(
        "Choose a lawful basis",
        LawfulBasis::ALL
            .iter()
            .map(|b| {
                (
                    b.as_str().to_owned(),
                    format!("{} ({})", choices::basis_title(*b), b.as_str()),
                )
            })
            .collect(),
        &q.lawful_basis,
    );

    let mut marking = field("select", "marking", "Protective marking", None);
    // A level however it was written (`official sensitive`) is that level; anything else (a
    // descriptor, a legacy label) is kept as given.
    let given = reg
        .marking
        .rank_of(&q.marking)
        .map_or_else(|| q.marking.clone(), |r| reg.marking.name(r).to_owned());
    marking.options = select(
        "Choose a marking",
        reg.marking
            .levels()
            .iter()
            .map(|l| (l.clone(), l.clone()))
            .collect(),
        &given,
    );

    let mut categories = field("checkboxes", "data_categories", "What kinds of data", None);
    categories.options = DataCategory::ALL
        .iter()
        .map(|c| {
            let (title, hint) = choices::category_text(*c);
            Opt {
                value: c.as_str().to_owned(),
                label: title.to_owned(),
                hint: Some(hint.to_owned()),
                checked: q.data_categories.iter().any(|d| d == c.as_str())
                    || (!asked && *c == DataCategory::Personal),
            }
        })
        .collect();

    let mut condition = field(
        "select",
        "special_category_condition",
        "Article 9 condition (for special category data)",
        None,
    );
    condition.options = select(
        "None",
        choices::conditions()
            .into_iter()
            .map(|(c, title)| (c.as_str().to_owned(), format!("{title} ({c})")))
            .collect(),
        q.special_category_condition.as_deref().unwrap_or(""),
    );

    let mut originator = field(
        "select",
        "originator",
        "Where the data came from",
        Some("Only when another organisation first held it: sharing it on needs their permission."),
    );
    originator.options = select(
        "The organisation that shares",
        org_choices(reg),
        q.originator.as_deref().unwrap_or(""),
    );

    let mut permission = field(
        "text",
        "originator_permission_ref",
        "The originator's permission reference",
        None,
    );
    permission.value = q.originator_permission_ref.clone().unwrap_or_default();

    let mut on = field(
        "text",
        "on",
        "Decide as of (optional)",
        Some(
            "A date as YYYY-MM-DD, for example 2026-03-31: the agreements in force on that day. Leave empty for today.",
        ),
    );
    on.value = q.on.clone().unwrap_or_default();

    vec![
        from, to, purpose, basis, marking, categories, condition, originator, permission, on,
    ]
}

/// What is wrong with a question before the policy sees it: what the form requires.
fn missing(reg: &Registry, q: &Question) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let known = |id: &str| reg.organisations().any(|o| o.id.as_str() == id);
    if q.from.is_empty() {
        errors.push(FieldError::new(
            "from",
            "Choose the organisation that shares",
        ));
    } else if !known(&q.from) {
        errors.push(FieldError::new(
            "from",
            format!(
                "`{}` is not a registered organisation: choose one from the list",
                q.from
            ),
        ));
    }
    if q.to.is_empty() {
        errors.push(FieldError::new(
            "to",
            "Choose at least one organisation to share with",
        ));
    }
    for t in q.to.iter().filter(|t| !known(t)) {
        errors.push(FieldError::new(
            "to",
            format!("`{t}` is not a registered organisation: choose from the list"),
        ));
    }
    for (name, value, what) in [
        ("purpose", &q.purpose, "Choose a purpose"),
        ("lawful_basis", &q.lawful_basis, "Choose a lawful basis"),
        ("marking", &q.marking, "Choose a protective marking"),
    ] {
        if value.is_empty() {
            errors.push(FieldError::new(name, what));
        }
    }
    errors
}

fn org_name(reg: &Registry, id: &str) -> String {
    id.parse()
        .ok()
        .and_then(|id: crate::domain::ids::OrgId| reg.organisation(&id))
        .map_or_else(|| format!("`{id}`"), |o| o.name.clone())
}

fn check_row(
    reg: &Registry,
    rule: Rule,
    recipient: Option<&crate::domain::ids::OrgId>,
    agreement: Option<&crate::domain::ids::AgreementId>,
    passed: bool,
    detail: &str,
) -> CheckRow {
    let agreement_words = |a: &crate::domain::ids::AgreementId| {
        reg.agreements().iter().find(|x| &x.id == a).map_or_else(
            || format!("agreement `{a}`"),
            |x| format!("{} ({a})", x.title),
        )
    };
    let whom = match (recipient, agreement) {
        (Some(r), Some(a)) => format!(
            "{}, under {}",
            org_name(reg, r.as_str()),
            agreement_words(a)
        ),
        (Some(r), None) => org_name(reg, r.as_str()),
        (None, Some(a)) => agreement_words(a),
        (None, None) => "The share as a whole".to_owned(),
    };
    CheckRow {
        passed,
        code: rule.refusal_code(),
        summary: rule.summary(),
        whom,
        detail: detail.to_owned(),
    }
}

fn outcome(reg: &Registry, q: &Question, e: &explain::Explained) -> Outcome {
    let to: Vec<String> = q.to.iter().map(|t| org_name(reg, t)).collect();
    let question = format!(
        "A share from {} to {}, for {}, on the basis of {}, marked {}, as of {}.",
        org_name(reg, e.sender.as_str()),
        to.join(" and "),
        q.purpose
            .parse()
            .ok()
            .and_then(|p| reg.purpose(&p))
            .map_or_else(|| format!("`{}`", q.purpose), |p| p.title.clone()),
        LawfulBasis::parse(&q.lawful_basis).map_or_else(
            || q.lawful_basis.clone(),
            |b| choices::basis_title(b).to_owned()
        ),
        q.marking,
        date(e.as_of.date())
    );
    let checks = e
        .evaluation
        .checks
        .iter()
        .map(|c| {
            check_row(
                reg,
                c.rule,
                c.recipient.as_ref(),
                c.agreement.as_ref(),
                c.passed,
                &c.detail,
            )
        })
        .collect();
    match &e.evaluation.decision {
        Decision::Accept(auths) => Outcome {
            allowed: true,
            question,
            checks,
            allowed_by: auths
                .iter()
                .map(|a| {
                    let title = reg
                        .agreements()
                        .iter()
                        .find(|x| x.id == a.agreement)
                        .map_or_else(String::new, |x| format!("{} ", x.title));
                    format!(
                        "{}: under {title}({})",
                        org_name(reg, a.recipient.as_str()),
                        a.agreement
                    )
                })
                .collect(),
            refused_by: None,
        },
        Decision::Refuse(r) => Outcome {
            allowed: false,
            question,
            checks,
            allowed_by: Vec::new(),
            refused_by: Some(check_row(
                reg,
                r.rule,
                r.recipient.as_ref(),
                r.agreement.as_ref(),
                false,
                &r.detail,
            )),
        },
    }
}

pub async fn explain(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(r) = may_explain(&s) {
        return r;
    }
    let reg = app.api.registry.current();
    let answers = Answers(
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
    );
    // Asked: the form was sent (or a link filled it in); otherwise the empty form.
    let asked = answers.0.iter().any(|(k, _)| k == "from");
    let q = answers.question();
    let mut errors = if asked { missing(&reg, &q) } else { Vec::new() };
    let mut result = None;
    if asked && errors.is_empty() {
        match explain::explain(&reg, &q, crate::clock::now()) {
            Ok(e) => result = Some(outcome(&reg, &q, &e)),
            Err(e) => errors.extend(
                e.problems()
                    .into_iter()
                    .map(|(field, message)| FieldError::new(field, message)),
            ),
        }
    }
    let mut fields = form(&reg, &q, asked);
    for f in &mut fields {
        f.error = errors
            .iter()
            .find(|e| e.field == f.name)
            .map(|e| e.message.clone());
    }
    let page = ExplainPage {
        title: "Explain a decision",
        fields,
        outcome: result,
        errors,
        who: super::transfers::who(&s),
    };
    pages::render_form(&page, &page.errors)
}

pub async fn status(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    if let Err(r) = require_admin(&s) {
        return r;
    }
    let (loaded, refused, needs_restart, log) = match &app.oversight {
        None => (None, None, Vec::new(), None),
        Some(o) => {
            let r = o.reloads.get();
            let how = |by: &str| match by {
                "start-up" => "start-up (when the gateway started)".to_owned(),
                "SIGHUP" => "SIGHUP (a reload)".to_owned(),
                other => other.to_owned(),
            };
            (
                r.loaded_at
                    .as_deref()
                    .map(|at| (when(at), how(&r.loaded_by))),
                r.refused.map(|f| RefusedView {
                    at: when(&f.at),
                    by: how(&f.by),
                    errors: f.errors,
                }),
                r.needs_restart,
                Some(o.status_line()),
            )
        }
    };
    pages::render(&StatusPage {
        title: "Gateway status",
        loaded,
        refused,
        needs_restart,
        log,
        errors: Vec::new(),
        who: super::transfers::who(&s),
    })
}
